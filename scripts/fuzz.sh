#!/usr/bin/env bash
# Runs the cargo-fuzz targets in tests/fuzz (everything that parses network
# input: SIP messages, SDP offers, RTP/RTCP, RFC 4733 events, and the WAV
# reader), each for a short while, and fails if any of them crashes.
# scripts/test.sh runs it after the suite.
#
# Needs a nightly toolchain (libFuzzer); installs cargo-fuzz when missing.
# The RFC 4475 torture messages (tests/data/rfc4475) seed `sip_message`; they
# are copied into a temporary corpus at run time, never into git.
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 15)
#   FUZZ_TARGETS   targets to run, space separated (default: all)
# A crash leaves its input in tests/fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run --fuzz-dir tests/fuzz -s none <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
FUZZ_TARGETS="${FUZZ_TARGETS:-sip_message sdp rtp dtmf_event wav_header}"
FUZZ_DIR=tests/fuzz
# Rust is memory safe: what we look for are panics (overflow, indexing,
# unwrap), which need no sanitizer, and the build is much faster without one.
FUZZ_FLAGS=(--fuzz-dir "$FUZZ_DIR" -s none)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "installing the nightly toolchain (libFuzzer needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

say "building the fuzz targets"
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
for target in $FUZZ_TARGETS; do
  corpus="$work/$target"
  mkdir -p "$corpus"
  case "$target" in
    sip_message) cp tests/data/rfc4475/*.dat "$corpus"/ ;;
    sdp)
      # The offer SIPp's uac_pcap scenario makes, and one with telephone-event.
      printf 'v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n' >"$corpus/offer1"
      printf 'v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 31\r\nm=audio 7000 RTP/AVP 0 8\r\nc=IN IP6 ::1\r\na=ptime:30\r\na=sendonly\r\n' >"$corpus/offer2"
      ;;
    wav_header)
      # 8 kHz mono 16-bit PCM, two samples.
      printf 'RIFF\x28\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x04\x00\x00\x00\x10\x00\xf0\xff' >"$corpus/pcm16"
      ;;
  esac
  say "fuzzing $target for ${FUZZ_SECONDS}s"
  if ! cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "$corpus" -- \
      -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>"$work/$target.log"; then
    failed+=("$target")
    # The crash report: the panic, its backtrace and the artifact's path.
    grep -m1 -A12 "panicked at" "$work/$target.log" >&2 || true
    tail -n 40 "$work/$target.log" >&2
  else
    grep -E '^(#[0-9]+.*DONE|Done [0-9]+ runs|stat::number_of_executed_units)' "$work/$target.log" || true
  fi
done

total=$(wc -w <<<"$FUZZ_TARGETS")
echo "fuzz: $((total - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "fuzz targets crashed: ${failed[*]} (inputs in $FUZZ_DIR/artifacts/)" >&2
  exit 1
fi
say "fuzz targets ran ${FUZZ_SECONDS}s each without a crash: $FUZZ_TARGETS"
