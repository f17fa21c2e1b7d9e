#!/usr/bin/env python3
"""Contacts benchmark: CSV import speed and memory, side by side with the
sqlite3 command line's `.import`, and segment counts over the result.

    scripts/bench/contacts.sh [--rows 1000000] [--runs 3]

(the wrapper builds the release binary and installs sqlite3 if missing; this
file does the measuring and needs only Python's standard library).

Per run, on the same generated file:
  * sqlite3: `.import --csv --skip 1` into one table with the same columns, a
    primary key on the external id and indexes on phone and email (what the
    service needs to dedupe), on a fresh database file, with sqlite3's default
    durability; timed and its peak RSS taken by /usr/bin/time.
  * switchboard: a fresh embedded server (SQLite, WAL, synchronous=FULL);
    the file is uploaded, then imported as a job (validation, E.164
    normalisation, dedupe, upsert, tags, a typed attribute, one transaction
    and checkpoint per chunk). Import time is the job's own started_at to
    finished_at; the server's RSS is sampled every 100 ms during the import.
  * segment counts: `GET /contacts/count?segment=...` for a few expressions
    over the imported contacts, 21 times each; p50 and p90.

Prints a Markdown report (medians over the runs, and the ratio).
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
         "Radia", "Leslie", "Margaret", "John", "Sophie", "Linus", "Anita", "Niklaus"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
        "Thompson", "Perlman", "Lamport", "Hamilton", "McCarthy", "Wilson", "Torvalds",
        "Borg", "Wirth"]
TAGS = ["vip", "newsletter", "churn-risk", "trial", "b2b", "partner"]
PLANS = ["gold", "silver", "bronze", "free"]
AREAS = ["201", "202", "206", "212", "213", "303", "305", "312", "404", "415",
         "503", "512", "602", "617", "702", "713", "718", "801", "813", "919"]
SEGMENTS = [
    'tags has "vip"',
    'tags has "vip" and attributes.plan = "gold"',
    'last_name starts_with "Ho" or attributes.plan in ["silver", "bronze"]',
]


def generate(path, rows, seed=42):
    """A deterministic CSV: unique external ids, phones and emails."""
    rnd = random.Random(seed)
    with open(path, "w", newline="") as f:
        f.write("external_id,first_name,last_name,phone,email,tags,plan\n")
        for i in range(rows):
            first = rnd.choice(FIRST)
            last = rnd.choice(LAST)
            # Unique, valid NANP numbers: real area codes, exchanges from 201.
            rest = i // len(AREAS)
            phone = f"({AREAS[i % len(AREAS)]}) {201 + rest // 10000:03d}-{rest % 10000:04d}"
            phone = f"+1 {phone}" if i % 2 else phone
            tags = ";".join(sorted(rnd.sample(TAGS, rnd.randint(0, 2))))
            f.write(f"C{i:08d},{first},{last},{phone},{first.lower()}.{i}@example.com,"
                    f"{tags},{rnd.choice(PLANS)}\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Api:
    def __init__(self, base):
        self.base = base
        self.token = None

    def call(self, method, path, body=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=3600) as r:
            text = r.read()
            return json.loads(text) if text else None


def sign_in(api):
    """An admin API key for the demo tenant (login, then create a key)."""
    body = json.dumps({"tenant": "demo", "email": "admin@example.com",
                       "password": "switchboard-demo"}).encode()
    req = urllib.request.Request(api.base + "/api/v1/auth/login", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
        csrf = json.loads(r.read())["csrf_token"]
    req = urllib.request.Request(api.base + "/api/v1/api-keys", method="POST",
                                 data=json.dumps({"name": "bench", "role": "admin"}).encode())
    req.add_header("Content-Type", "application/json")
    req.add_header("Cookie", cookie)
    req.add_header("X-CSRF-Token", csrf)
    with urllib.request.urlopen(req) as r:
        api.token = json.loads(r.read())["token"]


def run_sqlite3(csv_path, workdir):
    db = os.path.join(workdir, "sqlite3-import.db")
    if os.path.exists(db):
        os.remove(db)
    schema = ("CREATE TABLE contacts(external_id TEXT PRIMARY KEY, first_name TEXT, "
              "last_name TEXT, phone TEXT, email TEXT, tags TEXT, plan TEXT);"
              "CREATE INDEX contacts_phone ON contacts(phone);"
              "CREATE INDEX contacts_email ON contacts(email);")
    subprocess.run(["sqlite3", db, schema], check=True)
    t = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "sqlite3", db,
         f".import --csv --skip 1 {csv_path} contacts"],
        check=True, capture_output=True, text=True)
    secs, max_kib = t.stderr.strip().splitlines()[-1].split()
    n = int(subprocess.run(["sqlite3", db, "SELECT count(*) FROM contacts"],
                           check=True, capture_output=True, text=True).stdout)
    return {"secs": float(secs), "peak_mib": int(max_kib) / 1024, "rows": n}


def start_server(binary, workdir):
    port = free_port()
    data = os.path.join(workdir, "sb-data")
    env = dict(os.environ,
               SWITCHBOARD__HTTP__BIND=f"127.0.0.1:{port}",
               SWITCHBOARD__DATA__DIR=data,
               SWITCHBOARD__LOG__LEVEL="warn",
               SWITCHBOARD__HTTP__SECURE_COOKIES="false")
    # The demo users, without the demo contacts: the tenant starts empty.
    demo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "seed-data", "demo.toml")
    subprocess.run([binary, "seed", "--file", demo], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([binary, "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "server.log"), "w"))
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return proc, base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start; see {workdir}/server.log")


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def run_switchboard(binary, csv_path, workdir, rows):
    proc, base = start_server(binary, workdir)
    try:
        api = Api(base)
        sign_in(api)
        api.call("POST", "/api/v1/contact-attributes", {"key": "plan", "kind": "string", "label": "Plan"})
        idle_kib = rss_kib(proc.pid)
        t0 = time.monotonic()
        with open(csv_path, "rb") as f:
            up = api.call("POST", "/api/v1/uploads?filename=bench.csv", raw=f, ctype="text/csv")
        upload_secs = time.monotonic() - t0
        job = api.call("POST", "/api/v1/contacts/imports", {"upload_id": up["id"]})
        samples = []
        while True:
            samples.append(rss_kib(proc.pid))
            j = api.call("GET", f"/api/v1/jobs/{job['id']}")
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        if j["status"] != "succeeded":
            raise SystemExit(f"the import ended {j['status']}: {j.get('error')}")
        secs = (ts(j["finished_at"]) - ts(j["started_at"])).total_seconds()
        count = api.call("GET", "/api/v1/contacts/count")["count"]
        seg = {}
        for expr in SEGMENTS:
            q = urllib.parse.quote(expr)
            times, n = [], None
            for _ in range(21):
                t = time.monotonic()
                n = api.call("GET", f"/api/v1/contacts/count?segment={q}")["count"]
                times.append((time.monotonic() - t) * 1000)
            times.sort()
            seg[expr] = {"count": n, "p50_ms": times[10], "p90_ms": times[18]}
        return {"secs": secs, "upload_secs": upload_secs, "rows": count,
                "result": j.get("result"),
                "idle_mib": idle_kib / 1024, "peak_mib": max(samples) / 1024,
                "rss_mib_quartiles": [round(x / 1024) for x in statistics.quantiles(samples, n=4)]
                if len(samples) > 1 else [], "segments": seg}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default="target/release/switchboard")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        csv_path = os.path.join(tmp, "contacts.csv")
        generate(csv_path, a.rows)
        size_mib = os.path.getsize(csv_path) / 2**20
        print(f"generated {a.rows} rows ({size_mib:.0f} MiB)", file=sys.stderr)
        results = []
        for i in range(a.runs):
            run_dir = tempfile.mkdtemp(dir=tmp)
            # Alternate the order so neither always runs on a warmer cache.
            if i % 2 == 0:
                s = run_sqlite3(csv_path, run_dir)
                b = run_switchboard(a.binary, csv_path, run_dir, a.rows)
            else:
                b = run_switchboard(a.binary, csv_path, run_dir, a.rows)
                s = run_sqlite3(csv_path, run_dir)
            if s["rows"] != a.rows or b["rows"] != a.rows:
                print(json.dumps(b.get("result"), indent=1)[:3000], file=sys.stderr)
                raise SystemExit(f"row counts differ: sqlite3 {s['rows']}, switchboard {b['rows']}, file {a.rows}")
            results.append({"sqlite3": s, "switchboard": b})
            print(f"run {i + 1}: sqlite3 {s['secs']:.1f} s, switchboard {b['secs']:.1f} s "
                  f"(peak {b['peak_mib']:.0f} MiB)", file=sys.stderr)
            subprocess.run(["rm", "-rf", run_dir])

    med = lambda xs: statistics.median(xs)  # noqa: E731
    s_secs = med([r["sqlite3"]["secs"] for r in results])
    b_secs = med([r["switchboard"]["secs"] for r in results])
    s_mem = med([r["sqlite3"]["peak_mib"] for r in results])
    b_mem = med([r["switchboard"]["peak_mib"] for r in results])
    b_idle = med([r["switchboard"]["idle_mib"] for r in results])
    up = med([r["switchboard"]["upload_secs"] for r in results])
    print(f"## Contacts import: {a.rows:,} rows ({size_mib:.0f} MiB CSV), median of {a.runs} runs\n")
    print("| | time (s) | rows/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    print(f"| sqlite3 `.import` (one table, 3 indexes) | {s_secs:.1f} | {a.rows / s_secs:,.0f} | {s_mem:.0f} |")
    print(f"| switchboard import job | {b_secs:.1f} | {a.rows / b_secs:,.0f} | {b_mem:.0f} (idle {b_idle:.0f}) |")
    print(f"\nspeed ratio switchboard / sqlite3: **{s_secs / b_secs:.2f}x**; "
          f"upload before the job: {up:.1f} s ({size_mib / up:.0f} MiB/s)\n")
    print("RSS quartiles during each switchboard import (MiB): " +
          "; ".join(str(r["switchboard"]["rss_mib_quartiles"]) for r in results) + "\n")
    print(f"## Segment counts over {a.rows:,} contacts (GET /contacts/count?segment=, 21 calls each, last run)\n")
    print("| expression | matches | p50 (ms) | p90 (ms) |")
    print("|---|---:|---:|---:|")
    for expr, v in results[-1]["switchboard"]["segments"].items():
        print(f"| `{expr}` | {v['count']:,} | {v['p50_ms']:.0f} | {v['p90_ms']:.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
