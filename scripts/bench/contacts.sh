#!/usr/bin/env bash
# Contacts benchmark: CSV import of N rows (default 1,000,000) into the
# service, side by side with the sqlite3 command line's `.import` of the same
# file, and segment counts over the imported contacts. See contacts.py.
#
#   scripts/bench/contacts.sh [--rows N] [--runs R] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v sqlite3 >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends sqlite3
fi
cargo build --release --bin switchboard
exec python3 scripts/bench/contacts.py --binary target/release/switchboard "$@"
