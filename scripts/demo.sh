#!/usr/bin/env bash
# Builds Switchboard and runs it on the embedded database (SQLite, under
# ./data) with the demo tenant loaded. It prints where to sign in.
#
# Override any setting with SWITCHBOARD__SECTION__KEY, e.g.
#   SWITCHBOARD__HTTP__BIND=0.0.0.0:8080 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first." >&2
  exit 1
fi
echo "==> building (release; the first build takes a few minutes)"
scripts/setup-vosk.sh
cargo build --release --bin switchboard
# Speech recognition with the model setup-vosk.sh fetched (any Vosk model works).
export SWITCHBOARD__ASR__MODEL_DIR="${SWITCHBOARD__ASR__MODEL_DIR:-$PWD/.tools/vosk/model-ko}"
exec target/release/switchboard serve --demo "$@"
