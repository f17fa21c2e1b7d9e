#!/usr/bin/env bash
# SIP benchmarks (issue 5): call set-up rate and concurrent bridged G.711
# calls through Switchboard as a B2BUA (SIPp uac -> Switchboard -> SIPp uas),
# side by side in the same run with Kamailio (stateful relay) and Kamailio +
# rtpengine (userspace media relay) between the same SIPp pair; memory and
# CPU per call. A benchmark, not a test. See scripts/bench/sip/bench.py.
#
#   scripts/bench/sip.sh [--runs R] [--cps-window S] [--confirm S]
#                        [--phases cps,media] [--peers kamailio,switchboard]
#                        [--work DIR] [... bench.py --help]
#
# Installs what it needs (kamailio, rtpengine-daemon, rtpengine-utils,
# sip-tester, sysstat) when missing, raises net.core.{r,w}mem_max to 8 MiB
# when they are under 4 MiB (the relays and SIPp ask for 4 MiB socket
# buffers), builds the release binary and the rtpmeter helper, starts
# everything itself and stops only what it started. Uses, on 127.0.0.1,
# UDP ports 5060, 5062, 5070, 5080, 2223, 9900 (SIP and control), 9000 and
# 10000-19600 (rtpmeter, SIPp), 30000-40999 (the relays' RTP).
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

need=()
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
command -v rtpengine >/dev/null 2>&1 || need+=(rtpengine-daemon)
command -v rtpengine-ctl >/dev/null 2>&1 || need+=(rtpengine-utils)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v pidstat >/dev/null 2>&1 || need+=(sysstat)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Debian's packages ship services; we run our own copies in the foreground.
for svc in kamailio rtpengine-daemon; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "==> the packaged $svc service is running: it holds the ports we need; stop it (systemctl stop $svc)" >&2
    exit 1
  fi
done
for k in rmem_max wmem_max; do
  if [ "$(sysctl -n net.core.$k)" -lt 4194304 ]; then
    echo "==> net.core.$k -> 8388608"
    $SUDO sysctl -qw net.core.$k=8388608
  fi
done

echo "==> building (release)"
cargo build --release --bin switchboard
target_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
(cd scripts/bench/sip/rtpmeter && CARGO_TARGET_DIR="$target_dir/rtpmeter" cargo build --release -q)
exec python3 scripts/bench/sip/bench.py \
  --binary "$target_dir/release/switchboard" \
  --meter "$target_dir/rtpmeter/release/rtpmeter" "$@"
