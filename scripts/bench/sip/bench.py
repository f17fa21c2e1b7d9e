#!/usr/bin/env python3
"""SIP and media benchmarks: Switchboard as a B2BUA between two SIPp
instances, side by side with Kamailio (signalling) and Kamailio + rtpengine
(media) relaying the same SIPp calls, on the same machine in the same run.

    scripts/bench/sip.sh [options]        (installs, builds, then runs this)

Phases (each peer in turn, every trial with freshly started processes):

  cps    Call set-up rate. SIPp's built-in uac -> relay -> SIPp's built-in
         uas, 1 s calls, at RATE calls/s for WINDOW seconds. A trial passes
         when every call succeeds (SIPp exit 0, no failed call). RFC 7502
         style search; a trial also fails when calls are still unfinished
         5 s after the last one should have ended (a relay that queues
         passes short windows on SIP retransmissions but cannot sustain the
         rate). The rate doubles from --cps-start until a trial fails, then bisects until the gap is under 5 % (or 25 cps). The
         highest passing rate is then run once more for --confirm seconds
         (60 s by default, the issue's window); when that fails, half of it,
         then 3/4 (when half passed) or 1/4: the confirmed rate is the
         highest of these that passed.
  media  Concurrent bridged G.711 calls. SIPp does the signalling
         (media_uac.xml -> relay -> media_uas.xml), rtpmeter carries the
         media: PCMA, 20 ms packets, both ways, for every call. N calls are
         started at --media-rate calls/s and all N stay up together for a
         12 s plateau. A trial passes when every call is set up, every call's
         media flows both ways, loss is under 0.1 % and the jitter the relay
         adds (mean over the calls' streams of the RFC 3550 estimator, on
         kernel receive timestamps) is under 2 ms. A failed trial during
         which rtpmeter's own sends ran late (p99 over 5 ms: the machine was
         busy, not only the relay) is run again once. Search as above from
         --media-start, doubling, to a 10 % (or 50 calls) gap.
  Memory and CPU per call come from the media trials: PSS (and RSS) and CPU
  time of the relay's processes sampled from /proc over the plateau,
  against the same processes idle before the calls.

Writes everything under --work (each trial's logs and a results.json) and
prints a Markdown summary.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
NUMBER = "+442071838750"       # the Switchboard number SIPp dials
TRUNK_CALLER_ID = "+442071838760"
UAC_PORT, UAS_PORT, KAM_PORT, SB_SIP_PORT = 5080, 5070, 5060, 5062
# Ports kept clear of the kernel's ephemeral range (32768-60999) and of the
# ranges the project's tests use (20000-29999, 41000-60000), so a test run
# on the same machine does not take them: rtpmeter's caller side binds
# 10004-19600 (2400 calls), its callee side 9000; the relays' RTP is
# 30000-40999 (Switchboard here, rtpengine in rtpengine.conf).
METER_ABASE, METER_UPORT = 10000, 9000
SB_RTP = (30000, 40999)
# A set-up rate trial fails when calls are still unfinished this long after
# the last one should have ended (the relay is building a queue).
BACKLOG_SLACK_S = 5
# A failed media trial is repeated once when rtpmeter's sends were this late
# (p99, ms): the whole machine was busy (other work on it) rather than the relay.
HARNESS_LATE_MS = 5.0
CODECS = {"pcma": ("8", "PCMA"), "pcmu": ("0", "PCMU")}
HZ = os.sysconf("SC_CLK_TCK")
SIPP_COMMON = ["-i", "127.0.0.1", "-buff_size", "4194304", "-nostdin", "-trace_err"]

_procs = []


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- processes

class Proc:
    """A process we started; only these are ever signalled."""

    def __init__(self, name, argv, cwd, env=None, stdout=None):
        self.name = name
        self.out = open(os.path.join(cwd, f"{name}.out"), "w") if stdout is None else stdout
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.out,
                                  stderr=subprocess.STDOUT if stdout is None else open(
                                      os.path.join(cwd, f"{name}.err"), "w"),
                                  start_new_session=True)
        self.pid = self.p.pid
        _procs.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, wait=8):
        if self.p.poll() is None:
            try:
                # The process and the children it forked (Kamailio's workers)
                # are in the session we created for it.
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(wait)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        if self in _procs:
            _procs.remove(self)
        return self.p.returncode


def stop_all():
    for p in list(_procs):
        p.stop()


def descendants(pid):
    """pid and every process below it (Kamailio forks its workers)."""
    kids = {}
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        kids.setdefault(int(rest[1]), []).append(int(st.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            rest = s[s.rfind(")") + 2:].split()
            t += int(rest[11]) + int(rest[12])
        except (OSError, IndexError, ValueError):
            pass
    return t


def mem_kib(pids):
    """(PSS, RSS) summed over pids, KiB. PSS shares Kamailio's shm fairly."""
    pss = rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


def snapshot(roots):
    pids = []
    for r in roots:
        pids += descendants(r)
    pss, rss = mem_kib(pids)
    return {"t": time.monotonic(), "ticks": cpu_ticks(pids), "pss": pss, "rss": rss}


def udp_errors():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    d = dict(zip(rows[0][1:], map(int, rows[1][1:])))
    return d.get("RcvbufErrors", 0) + d.get("SndbufErrors", 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sipp_stats(csv_path):
    """Last line of a SIPp -trace_stat file as a dict."""
    try:
        with open(csv_path) as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    hdr = lines[0].split(";")
    return dict(zip(hdr, lines[-1].split(";")))


def stat_int(st, key):
    try:
        return int(st.get(key, "0"))
    except ValueError:
        return 0


# ---------------------------------------------------------------- relays

class Kamailio:
    """Kamailio relay (cps) or Kamailio + rtpengine (media): the peers."""
    label_cps = "Kamailio 5.6 (stateful relay)"
    label_media = "Kamailio 5.6 + rtpengine (userspace)"

    def __init__(self, media):
        self.media = media

    def start(self, d):
        self.procs = []
        if self.media:
            rtpe = Proc("rtpengine", ["rtpengine", f"--config-file={HERE}/rtpengine.conf",
                                      "--foreground", "--log-stderr",
                                      f"--pidfile={d}/rtpe.pid"], d)
            self.procs.append(rtpe)
            time.sleep(1)  # before Kamailio, or the module's first ping fails
        cfg = "kamailio-rtpengine.cfg" if self.media else "kamailio-relay.cfg"
        kam = Proc("kamailio", ["kamailio", "-f", f"{HERE}/{cfg}", "-DD", "-E", "-m", "2048",
                                "-M", "16", "-A", "NCHILDREN=2",
                                "-A", f'UAS_DU="sip:127.0.0.1:{UAS_PORT}"',
                                "-A", f'CTL_SOCK="unix:{d}/kam.ctl"'], d)
        self.procs.append(kam)
        time.sleep(1.5)
        for p in self.procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} did not start; see {d}/{p.name}.out")
        return f"127.0.0.1:{KAM_PORT}"

    def roots(self):
        # Kamailio's main process and workers (and rtpengine for media):
        # Switchboard's one process does both jobs.
        return [p.pid for p in self.procs]

    media_roots = roots

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


class Switchboard:
    label_cps = "Switchboard (B2BUA, media anchored)"
    label_media = "Switchboard (B2BUA)"

    def __init__(self, binary, media):
        self.binary = binary
        self.media = media

    def start(self, d):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ,
                   SWITCHBOARD__HTTP__BIND=f"127.0.0.1:{port}",
                   SWITCHBOARD__HTTP__SECURE_COOKIES="false",
                   SWITCHBOARD__DATA__DIR=os.path.join(d, "sb-data"),
                   SWITCHBOARD__LOG__LEVEL="warn",
                   SWITCHBOARD__SIP__ENABLED="true",
                   SWITCHBOARD__SIP__BIND=f"127.0.0.1:{SB_SIP_PORT}",
                   SWITCHBOARD__SIP__RTP_BIND="127.0.0.1",
                   SWITCHBOARD__SIP__RTP_PORT_MIN=str(SB_RTP[0]),
                   SWITCHBOARD__SIP__RTP_PORT_MAX=str(SB_RTP[1]),
                   # All the load comes from 127.0.0.1: no per-source limit.
                   SWITCHBOARD__SIP__REQUESTS_PER_SOURCE_PER_SEC="10000000",
                   SWITCHBOARD__SIP__RECORD_CALLS="false",
                   # SIPp's uas would take a keep-alive OPTIONS for a call.
                   SWITCHBOARD__SIP__TRUNK_KEEPALIVE_SECS="3600")
        subprocess.run([self.binary, "seed", "--file", os.path.join(ROOT, "seed-data", "demo.toml")],
                       env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=open(os.path.join(d, "seed.out"), "w"))
        self.proc = Proc("switchboard", [self.binary, "serve"], d, env=env)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/readyz", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                if not self.proc.alive():
                    break
                time.sleep(0.1)
        else:
            raise RuntimeError(f"switchboard did not start; see {d}/switchboard.out")
        if not self.proc.alive():
            raise RuntimeError(f"switchboard exited; see {d}/switchboard.out")
        self.configure()
        return f"127.0.0.1:{SB_SIP_PORT}"

    def api(self, method, path, body=None, token=None, cookie=None, csrf=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if cookie:
            req.add_header("Cookie", cookie)
            req.add_header("X-CSRF-Token", csrf)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None), r.headers
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text), e.headers
            except ValueError:
                return e.code, text.decode(errors="replace"), e.headers

    def configure(self):
        st, body, hdrs = self.api("POST", "/api/v1/auth/login",
                                  {"tenant": "demo", "email": "admin@example.com",
                                   "password": "switchboard-demo"})
        if st != 200:
            raise RuntimeError(f"login: {st} {body}")
        cookie = hdrs["Set-Cookie"].split(";")[0]
        st, key, _ = self.api("POST", "/api/v1/api-keys", {"name": "bench", "role": "admin"},
                              cookie=cookie, csrf=body["csrf_token"])
        if st != 201:
            raise RuntimeError(f"api key: {st} {key}")
        tok = key["token"]
        st, trunk, _ = self.api("POST", "/api/v1/sip/trunks",
                                {"name": "sipp-uas", "host": "127.0.0.1", "port": UAS_PORT,
                                 "transport": "udp", "caller_id": TRUNK_CALLER_ID,
                                 "cps_limit": 1000}, token=tok)
        if st != 201:
            raise RuntimeError(f"trunk: {st} {trunk}")
        # Inbound number forwarded through the trunk to the dialed number.
        num = {"number": NUMBER, "forward_trunk_id": trunk["id"]}
        st, b, _ = self.api("POST", "/api/v1/sip/numbers", num, token=tok)
        if st == 422 and "queue_id" in json.dumps(b):
            # Older API shape: an entry point is still required beside forwarding.
            _, qs, _ = self.api("GET", "/api/v1/queues", token=tok)
            num["queue_id"] = qs["items"][0]["id"]
            st, b, _ = self.api("POST", "/api/v1/sip/numbers", num, token=tok)
        if st != 201:
            raise RuntimeError(f"number: {st} {b}")
        self.number_view = b

    def roots(self):
        return [self.proc.pid]

    media_roots = roots

    def stop(self):
        self.proc.stop(signal.SIGTERM, wait=20)


# ---------------------------------------------------------------- trials

def trial_dir(work, kind, peer, x):
    d = os.path.join(work, "runs", f"{kind}-{peer}-{x}-{time.time_ns()}")
    os.makedirs(d)
    return d


def cps_trial(relay, peer, rate, window, work, hold_ms=1000):
    d = trial_dir(work, "cps", peer, rate)
    n = rate * window
    uas = Proc("uas", ["sipp", "-sn", "uas", "-p", str(UAS_PORT), *SIPP_COMMON,
                       "-trace_stat", "-stf", "uas.csv", "-fd", "1"], d)
    res = {"kind": "cps", "peer": peer, "rate": rate, "window_s": window, "calls": n}
    try:
        target = relay.start(d)
        time.sleep(0.5)
        if not uas.alive():
            raise RuntimeError(f"sipp uas did not start; see {d}/uas.out")
        s0 = snapshot(relay.roots())
        e0 = udp_errors()
        t0 = time.monotonic()
        uac = Proc("uac", ["sipp", "-sn", "uac", "-p", str(UAC_PORT), target, "-s", NUMBER,
                           "-r", str(rate), "-rp", "1000", "-m", str(n), "-d", str(hold_ms),
                           "-l", str(rate * hold_ms // 1000 * 3 + 100),
                           "-default_behaviors", "all,-abortunexp", *SIPP_COMMON,
                           "-recv_timeout", "10000", "-timeout", f"{window + 60}s",
                           "-trace_stat", "-stf", "uac.csv", "-fd", "1"], d)
        early = backlog = False
        # The last call starts at `window` s and lasts hold_ms: a relay that
        # keeps up has answered everything a few seconds later. One that
        # queues (answers late, after SIPp's retransmissions) fails here,
        # even when every call would still complete inside SIP's timers.
        deadline = t0 + window + hold_ms / 1000 + BACKLOG_SLACK_S
        while uac.alive():
            time.sleep(0.5)
            # A failed call is final: stop early instead of waiting for the rest.
            if stat_int(sipp_stats(os.path.join(d, "uac.csv")), "FailedCall(C)") > 0:
                early = True
            elif time.monotonic() > deadline:
                backlog = True
            if early or backlog:
                uac.stop(signal.SIGTERM, wait=5)
                break
        rc = uac.p.wait()
        t1 = time.monotonic()
        s1 = snapshot(relay.roots())
        st = sipp_stats(os.path.join(d, "uac.csv"))
        res.update(
            rc=rc, early_stop=early, backlog=backlog,
            ok=stat_int(st, "SuccessfulCall(C)"), failed=stat_int(st, "FailedCall(C)"),
            retrans=stat_int(st, "Retransmissions(C)"),
            elapsed_s=round(t1 - t0, 1), udp_buf_errors=udp_errors() - e0,
            relay_cpu_pct=round((s1["ticks"] - s0["ticks"]) * 100 / HZ / (t1 - t0), 1),
        )
        res["relay_cpu_us_per_call"] = (round((s1["ticks"] - s0["ticks"]) / HZ * 1e6 / res["ok"], 1)
                                        if res["ok"] else None)
        res["passed"] = (rc == 0 and res["failed"] == 0 and res["ok"] == n
                         and not early and not backlog)
    except RuntimeError as e:
        res.update(passed=False, error=str(e))
    finally:
        relay.stop()
        uas.stop()
        stu = sipp_stats(os.path.join(d, "uas.csv"))
        res["uas_failed"] = stat_int(stu, "FailedCall(C)")
    res["dir"] = d
    log("  cps  %-11s rate=%-5d calls=%-6d %s ok=%s failed=%s%s retrans=%s relay_cpu=%s%% (%s us/call) %s" % (
        peer, rate, n, "PASS" if res["passed"] else "FAIL", res.get("ok"), res.get("failed"),
        " BACKLOG" if res.get("backlog") else "",
        res.get("retrans"), res.get("relay_cpu_pct"), res.get("relay_cpu_us_per_call"),
        res.get("error", "")))
    return res


def media_trial(relay, peer, n, rate, plateau, work, meter, law):
    d = trial_dir(work, "media", peer, n)
    ramp = n / rate
    hold = ramp + plateau
    res = {"kind": "media", "peer": peer, "calls": n, "rate": rate, "hold_s": round(hold, 1)}
    uac_log = os.path.join(d, "uac_actions.log")
    stop_file = os.path.join(d, "meter.stop")
    mout = open(os.path.join(d, "meter.json"), "w")
    pt, codec = CODECS[law]
    m = Proc("rtpmeter", [meter, "--log", uac_log, "--stop", stop_file, "--abase", str(METER_ABASE),
                          "--uport", str(METER_UPORT), "--pt", pt], d, stdout=mout)
    uas = Proc("uas", ["sipp", "-sf", f"{HERE}/media_uas.xml", "-p", str(UAS_PORT),
                       "-key", "uport", str(METER_UPORT), "-key", "pt", pt, "-key", "codec", codec,
                       *SIPP_COMMON,
                       "-trace_stat", "-stf", "uas.csv", "-fd", "1"], d)
    try:
        target = relay.start(d)
        time.sleep(1)
        for p in (m, uas):
            if not p.alive():
                raise RuntimeError(f"{p.name} did not start; see {d}/{p.name}.out")
        idle = snapshot(relay.media_roots())
        e0 = udp_errors()
        uac = Proc("uac", ["sipp", "-sf", f"{HERE}/media_uac.xml", "-p", str(UAC_PORT),
                           "-mp", str(METER_ABASE), target, "-s", NUMBER,
                           "-key", "hold", str(int(hold * 1000)),
                           "-key", "pt", pt, "-key", "codec", codec,
                           "-r", str(rate), "-rp", "1000", "-l", str(n), "-m", str(n),
                           "-default_behaviors", "all,-abortunexp", *SIPP_COMMON,
                           "-recv_timeout", "10000", "-timeout", f"{int(hold + 60)}s",
                           "-trace_logs", "-log_file", uac_log,
                           "-trace_stat", "-stf", "uac.csv", "-fd", "1"], d)
        t0 = time.monotonic()
        # Plateau: every call is up from `ramp` to `hold` seconds.
        time.sleep(max(0.0, ramp + 1.5 - (time.monotonic() - t0)))
        p0 = snapshot(relay.media_roots())
        samples = []
        while time.monotonic() - t0 < hold - 1.0 and uac.alive():
            time.sleep(1.0)
            samples.append(snapshot(relay.media_roots()))
        p1 = samples[-1] if samples else p0
        rc = uac.p.wait()
        open(stop_file, "w").close()
        try:
            m.p.wait(30)
        except subprocess.TimeoutExpired:
            pass
        m.stop()
        mout.close()
        st = sipp_stats(os.path.join(d, "uac.csv"))
        try:
            with open(os.path.join(d, "meter.json")) as f:
                meter_res = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            meter_res = {}
        plat_s = p1["t"] - p0["t"]
        cpu = (p1["ticks"] - p0["ticks"]) * 100 / HZ / plat_s if plat_s > 0 else None
        pss = statistics.median(s["pss"] for s in samples) if samples else p0["pss"]
        rss = statistics.median(s["rss"] for s in samples) if samples else p0["rss"]
        res.update(
            rc=rc, ok=stat_int(st, "SuccessfulCall(C)"), failed=stat_int(st, "FailedCall(C)"),
            udp_buf_errors=udp_errors() - e0, plateau_s=round(plat_s, 1),
            relay_cpu_pct=round(cpu, 1) if cpu is not None else None,
            idle_pss_kib=idle["pss"], idle_rss_kib=idle["rss"],
            plateau_pss_kib=pss, plateau_rss_kib=rss,
            cpu_pct_per_call=round(cpu / n, 4) if cpu is not None else None,
            pss_kib_per_call=round((pss - idle["pss"]) / n, 1),
            rss_kib_per_call=round((rss - idle["rss"]) / n, 1),
            meter=meter_res,
        )
        loss = meter_res.get("loss", 1.0)
        jit = meter_res.get("jitter_ms", {}).get("mean", 99.0)
        res["loss"] = loss
        res["jitter_ms"] = jit
        res["passed"] = (rc == 0 and res["failed"] == 0 and res["ok"] == n
                         and meter_res.get("calls_started") == n
                         and meter_res.get("calls_latched") == n
                         and loss < 0.001 and jit < 2.0)
    except RuntimeError as e:
        res.update(passed=False, error=str(e))
    finally:
        if not os.path.exists(stop_file):
            open(stop_file, "w").close()
        relay.stop()
        uas.stop()
        m.stop()
    res["dir"] = d
    mr = res.get("meter", {})
    log("  media %-11s calls=%-5d %s sip_ok=%s failed=%s loss=%.4f%% jitter=%.3f/%.3f ms (mean/p99) "
        "transit p99=%s ms relay_cpu=%s%% pss/call=%s KiB send_late_p99=%s ms %s" % (
            peer, n, "PASS" if res["passed"] else "FAIL", res.get("ok"), res.get("failed"),
            100 * res.get("loss", 1.0), res.get("jitter_ms", 0) or 0,
            mr.get("jitter_ms", {}).get("p99", 0), mr.get("transit_ms", {}).get("p99"),
            res.get("relay_cpu_pct"), res.get("pss_kib_per_call"),
            mr.get("send_late_ms", {}).get("p99"), res.get("error", "")))
    return res


def search(run, start, cap, frac, floor_step):
    """Doubling from `start` until a failure (or `cap`), then bisection until
    the gap between the highest pass and the lowest failure is within `frac`
    of the pass (or `floor_step`). Returns (highest pass or 0, lowest fail,
    trials)."""
    trials = []
    lo, hi, x = 0, None, start
    while True:
        r = run(x)
        trials.append(r)
        if r["passed"]:
            lo = x
            if x >= cap:
                return lo, None, trials
            x = min(cap, x * 2)
        else:
            hi = x
            break
    while hi - lo > max(floor_step, frac * lo):
        x = (lo + hi) // 2
        if lo == 0 and x < floor_step:
            break
        r = run(x)
        trials.append(r)
        if r["passed"]:
            lo = x
        else:
            hi = x
    return lo, hi, trials


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary")
    ap.add_argument("--meter")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only print the summary of an earlier run")
    ap.add_argument("--work", default="/tmp/switchboard-bench-sip")
    ap.add_argument("--phases", default="cps,media")
    ap.add_argument("--peers", default="kamailio,switchboard",
                    help="which relays to measure (kamailio = Kamailio / Kamailio+rtpengine)")
    ap.add_argument("--runs", type=int, default=1, help="searches per peer (medians reported)")
    ap.add_argument("--cps-window", type=int, default=10, help="seconds per search trial")
    ap.add_argument("--confirm", type=int, default=60, help="seconds of the confirming trial (0: none)")
    ap.add_argument("--cps-start", type=int, default=250)
    ap.add_argument("--cps-cap", type=int, default=16000)
    ap.add_argument("--media-start", type=int, default=200)
    ap.add_argument("--media-cap", type=int, default=2400)
    ap.add_argument("--media-rate", type=int, default=100, help="calls/s while ramping up")
    ap.add_argument("--plateau", type=int, default=12, help="seconds all N calls are up")
    ap.add_argument("--codec", choices=sorted(CODECS), default="pcma",
                    help="the law both SIPp ends offer and answer (media phase)")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            r = json.load(f)
        report(r, r["args"]["peers"].split(","), argparse.Namespace(**r["args"]))
        return
    if not (a.binary and a.meter):
        ap.error("--binary and --meter are required (scripts/bench/sip.sh passes them)")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = os.path.join(a.work, stamp)
    os.makedirs(work)
    phases = a.phases.split(",")
    peers = a.peers.split(",")
    results = {"started": stamp, "args": vars(a), "cps": {}, "media": {}}

    def save():
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump(results, f, indent=1)

    def relay_for(peer, media):
        return Kamailio(media) if peer == "kamailio" else Switchboard(a.binary, media)

    log(f"work directory: {work}")
    if "cps" in phases:
        log(f"== call set-up rate: {a.cps_window} s search windows, 1 s calls, confirm {a.confirm} s")
        for run in range(a.runs):
            for peer in peers:
                relay = relay_for(peer, False)
                log(f"- {peer}, search {run + 1}/{a.runs}")
                best, fail, trials = search(
                    lambda r: cps_trial(relay, peer, r, a.cps_window, work),
                    a.cps_start, a.cps_cap, 0.05, 25)
                entry = {"search_max": best, "first_fail": fail, "trials": trials}
                if a.confirm and best:
                    # At most three long trials: the search's rate, then half
                    # of it, then 3/4 (half passed) or 1/4 (half failed).
                    f, step = 1.0, 0.5
                    for _ in range(3):
                        r = int(best * f)
                        c = cps_trial(relay, peer, r, a.confirm, work)
                        entry.setdefault("confirm", []).append(c)
                        if c["passed"]:
                            entry["confirmed"] = max(entry.get("confirmed", 0), r)
                            if f == 1.0:
                                break
                            f += step
                        else:
                            f -= step
                        step /= 2
                results["cps"].setdefault(peer, []).append(entry)
                save()
    if "media" in phases:
        log(f"== concurrent media calls: PCMA 20 ms both ways, ramp {a.media_rate} calls/s, "
            f"{a.plateau} s plateau")
        for run in range(a.runs):
            for peer in peers:
                relay = relay_for(peer, True)
                log(f"- {peer}, search {run + 1}/{a.runs}")
                def run_media(n):
                    r = media_trial(relay, peer, n, a.media_rate, a.plateau, work, a.meter, a.codec)
                    # rtpmeter's own sends were late: the machine, not only
                    # the relay, was short of CPU. Such a failure is run again once.
                    late = r.get("meter", {}).get("send_late_ms", {}).get("p99", 0)
                    if not r["passed"] and late > HARNESS_LATE_MS:
                        log(f"    (rtpmeter sent late: p99 {late} ms; trial repeated once)")
                        r2 = media_trial(relay, peer, n, a.media_rate, a.plateau, work, a.meter, a.codec)
                        r2["repeat_of"] = r
                        r = r2
                    return r
                best, fail, trials = search(
                    run_media,
                    a.media_start, a.media_cap, 0.10, 50)
                results["media"].setdefault(peer, []).append(
                    {"max_calls": best, "first_fail": fail, "trials": trials})
                save()
    save()
    report(results, peers, a)
    log(f"\nall trials and logs: {work}")


def report(results, peers, a):
    """The Markdown summary; also `bench.py --report results.json`."""
    names = {"kamailio": ("Kamailio (relay)", "Kamailio + rtpengine"), "switchboard": ("Switchboard", "Switchboard")}
    out = ["", "## Results", ""]
    cps = results["cps"]
    if cps:
        out += [f"Call set-up rate ({a.runs} search(es) per peer, {a.cps_window} s windows, "
                f"confirmed over {a.confirm} s):", "",
                "| relay | max zero-failure cps (search) | confirmed over the long window | "
                "relay CPU at the search max | CPU per call (µs) | SIPp retransmissions |",
                "|---|---:|---:|---:|---:|---:|"]
        best = {}
        for p in peers:
            es = cps.get(p, [])
            s = med([e["search_max"] for e in es])
            c = med([e.get("confirmed") for e in es])
            top = [t for e in es for t in e["trials"] if t["passed"] and t["rate"] == e["search_max"]]
            cpu = med([t.get("relay_cpu_pct") for t in top])
            us = med([t.get("relay_cpu_us_per_call") for t in top])
            rt = med([t.get("retrans") for t in top])
            best[p] = (s, c)
            tried = [t["rate"] for e in es for t in e.get("confirm", [])]
            cs = fmt(c) if c else ("none passed (" + ", ".join(map(str, tried)) + " tried)" if tried else "n/a")
            out.append(f"| {names[p][0]} | {fmt(s)} | {cs} | {fmt(cpu)} % | {fmt(us)} | {fmt(rt)} |")
        if "kamailio" in best and "switchboard" in best:
            (ks, kc), (ss, sc) = best["kamailio"], best["switchboard"]
            out += ["", f"Switchboard / Kamailio: **{ratio(ss, ks)}** on the search windows"
                    + (f", **{ratio(sc, kc)}** on the confirmed rates" if sc and kc else "")
                    + " (aim >= 0.5x)"]
    media = results["media"]
    if media:
        out += ["", f"Concurrent G.711 calls (loss < 0.1 %, added jitter < 2 ms; {a.runs} search(es) per peer):", "",
                "| relay | max calls | at that N: loss | jitter mean / p99 (ms) | transit p99 (ms) | relay CPU | CPU per call | memory per call (PSS) | idle PSS |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        best = {}
        for p in peers:
            es = media.get(p, [])
            mx = med([e["max_calls"] for e in es])
            best[p] = mx
            at = [t for e in es for t in e["trials"] if t["passed"] and t["calls"] == e["max_calls"]]
            loss = med([t["loss"] for t in at])
            jm = med([t["meter"]["jitter_ms"]["mean"] for t in at])
            jp = med([t["meter"]["jitter_ms"]["p99"] for t in at])
            tp = med([t["meter"]["transit_ms"]["p99"] for t in at])
            cpu = med([t["relay_cpu_pct"] for t in at])
            cpc = med([t["cpu_pct_per_call"] for t in at])
            mem = med([t["pss_kib_per_call"] for t in at])
            idle = med([t["idle_pss_kib"] for t in at])
            out.append(f"| {names[p][1]} | {fmt(mx)} | {fmt(loss * 100 if loss is not None else None, 3)} % | "
                       f"{fmt(jm, 3)} / {fmt(jp, 3)} | {fmt(tp, 2)} | {fmt(cpu)} % | {fmt(cpc, 3)} % | "
                       f"{fmt(mem, 1)} KiB | {fmt(idle / 1024 if idle else None, 1)} MiB |")
        if "kamailio" in best and "switchboard" in best:
            out += ["", f"Switchboard / rtpengine: **{ratio(best['switchboard'], best['kamailio'])}** (aim >= 1.0x)"]
        # Per-call costs at the same N for both: every trial where all N
        # calls were up with media both ways counts (the jitter rule aside).
        def up(t):
            return t.get("ok") == t["calls"] and t.get("meter", {}).get("calls_latched") == t["calls"]
        ns = None
        if len(peers) > 1:
            sets = [{t["calls"] for e in media.get(p, []) for t in e["trials"] if up(t)} for p in peers]
            common = set.intersection(*sets) if all(sets) else set()
            ns = max(common) if common else None
        if ns:
            out += ["", f"Per-call cost at the same load, {ns} calls up with media (median over trials):", "",
                    "| relay | CPU (100 % = 1 core) | CPU per call | PSS per call | RSS per call |",
                    "|---|---:|---:|---:|---:|"]
            for p in peers:
                at = [t for e in media.get(p, []) for t in e["trials"] if up(t) and t["calls"] == ns]
                out.append(f"| {names[p][1]} | {fmt(med([t['relay_cpu_pct'] for t in at]))} % | "
                           f"{fmt(med([t['cpu_pct_per_call'] for t in at]), 3)} % | "
                           f"{fmt(med([t['pss_kib_per_call'] for t in at]), 1)} KiB | "
                           f"{fmt(med([t['rss_kib_per_call'] for t in at]), 1)} KiB |")
    log("\n".join(out))


if __name__ == "__main__":
    def _term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    finally:
        stop_all()
