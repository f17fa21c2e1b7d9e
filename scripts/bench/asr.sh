#!/usr/bin/env bash
# Speech recognition benchmark: Switchboard's ASR pipeline (upsampler,
# recognition threads, grammar phrase choice, pooled free-form recognizers)
# against libvosk called directly on the same espeak-ng audio in the same
# run. See benches/asr.rs.
#
#   scripts/bench/asr.sh [--rounds N] [--direct-on-main]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends espeak-ng sox
fi
if [ ! -f .tools/vosk/lib/libvosk.so ] || [ ! -d "${SWITCHBOARD_TEST_VOSK_MODEL:-.tools/vosk/model-ko}/am" ]; then
  scripts/setup-vosk.sh
fi
cargo bench --bench asr --no-run
# One malloc arena for every thread, so that which thread runs libvosk does
# not change its speed (see benches/asr.rs); MALLOC_ARENA_MAX=64 (say) shows
# the default behaviour. Set only for the run, not the build.
MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}" exec cargo bench --bench asr -- "$@"
