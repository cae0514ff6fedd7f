"""Throughput of 1 vs 2 ``parity record`` processes behind a real load balancer (HAProxy), one store.

Everything runs on 127.0.0.1 and every process is started and stopped here, by PID:

- upstream: the fake provider (``parity.fake.server``, profile ``instant``, short answers);
- recorders: three ``parity record`` processes (``python -m parity.recorder.cli record``): ``r1`` writes store
  ``one.duckdb``; ``r2a`` and ``r2b`` both write store ``two.duckdb``, without coordinating;
- balancer: HAProxy from Debian's packages (installed with apt-get if missing), one process with two
  HTTP frontends: ``fe1`` -> ``r1``, ``fe2`` -> round robin over ``r2a``, ``r2b`` (keep-alive both sides);
- client: aiohttp, closed loop, ``--concurrency`` (64) workers sending non-streamed chat requests, each
  measurement bounded by ``--seconds`` and ``--max-requests``. Variants: 1 recorder direct (no balancer),
  1 recorder behind HAProxy, 2 recorders behind HAProxy; reps interleaved, order rotating; medians.

Each request carries a unique id in its ``user`` field. At the end the recorders are stopped gracefully
and each store is read through ``parity.store.store.connect``: rows == distinct ids == requests answered,
and the two-recorder store holds rows from both recorders. CPU per request of each process (from
/proc, the recorders' writer processes included) is printed too: on a shared 2-core machine it moves
much less than the rates do.

Usage: ``python bench/multi_recorder.py [--seconds 8] [--reps 3] [--concurrency 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchkit import cpu_seconds

from parity.procs import free_port, stop_proc, wait_port

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
PY = sys.executable
PROSE = "Summarise the following note in one sentence. " + "The balancer spreads the load. " * 8


def ensure_haproxy() -> str | None:
    """Path of haproxy, installing Debian's package first if it is missing and we are root."""
    found = shutil.which("haproxy") or (Path("/usr/sbin/haproxy").exists() and "/usr/sbin/haproxy")
    if found:
        return str(found)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            "haproxy is not installed and cannot be installed here (needs root and apt-get): apt-get install haproxy"
        )
        return None
    print("haproxy not found: installing Debian's package (apt-get install haproxy) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "haproxy"]
    for attempt in (1, 2):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode == 0:
            break
        if attempt == 1:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
    found = shutil.which("haproxy") or (Path("/usr/sbin/haproxy").exists() and "/usr/sbin/haproxy")
    if not found:
        print(f"could not install haproxy (apt-get exit {r.returncode}): {r.stderr.strip()[-500:]}")
        return None
    return str(found)


def haproxy_cfg(fe1: int, fe2: int, r1: int, r2a: int, r2b: int) -> str:
    return f"""
global
    maxconn 4096
    nbthread 1

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend fe1
    bind 127.0.0.1:{fe1}
    default_backend one

frontend fe2
    bind 127.0.0.1:{fe2}
    default_backend two

backend one
    balance roundrobin
    server r1 127.0.0.1:{r1}

backend two
    balance roundrobin
    server r2a 127.0.0.1:{r2a}
    server r2b 127.0.0.1:{r2b}
"""


@dataclass
class Rec:
    name: str
    port: int
    db: Path
    proc: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pids(self) -> list[int]:
        return [self.proc.pid, *(int(p) for p in re.findall(r"writer process (\d+) started", self.text()))]


def start_recorder(name: str, db: Path, upstream: str, work: Path) -> Rec:
    port = free_port()
    argv = [
        PY,
        "-m",
        "parity.recorder.cli",
        "record",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        upstream,
        "--db",
        str(db),
        "--spill-dir",
        str(work / f"spill-{name}"),
        "--confdir",
        str(work / "mitmconf"),
        "--quiet",
    ]
    log = work / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(work / "state")}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    rec = Rec(name, port, db, proc, log)
    wait_port(port, proc, timeout=60.0)
    return rec


async def closed_loop(url: str, prefix: str, conc: int, seconds: float, max_requests: int) -> dict:
    import aiohttp

    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    answered: list[str] = []
    errors = 0
    n = 0

    def body(uid: str) -> bytes:
        return b'{"model":"gpt-4o-mini","user":"%s","messages":[{"role":"user","content":"%s %s"}]}' % (
            uid.encode(),
            PROSE.encode(),
            uid.encode(),
        )

    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def post(uid: str) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=body(uid), headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        answered.append(uid)
                    else:
                        errors += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                errors += 1

        # warm-up: open the keep-alive connections (counted in the store check, not in the rate)
        await asyncio.gather(*(post(f"{prefix}-w{i}") for i in range(conc)))
        warm = len(answered)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal n
            while time.perf_counter() < end and n < max_requests:
                n += 1
                await post(f"{prefix}-{n}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return {
        "answered": answered,
        "rate": (len(answered) - warm) / wall,
        "errors": errors,
        "n": len(answered) - warm,
    }


def measure(variant: str, url: str, procs: dict[str, list[int]], args, rep: int) -> dict:
    before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in procs.items()}
    res = asyncio.run(
        closed_loop(url, f"mr-{variant}-{rep}", args.concurrency, args.seconds, args.max_requests)
    )
    after = {k: sum(cpu_seconds(p) for p in pids) for k, pids in procs.items()}
    res["cpu_ms_per_req"] = {k: (after[k] - before[k]) * 1000 / max(1, res["n"]) for k in procs}
    print(
        f"  rep {rep} {variant:<22} {res['rate']:8.0f} req/s  ({res['n']} requests, {res['errors']} errors)",
        flush=True,
    )
    return res


def check_store(db: Path, answered: set[str]) -> dict:
    from parity.store.store import connect

    con = connect(db)
    try:
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT request_body->>'$.user') FROM exchanges"
        ).fetchall()[0]
        ids = {u for (u,) in con.execute("SELECT request_body->>'$.user' FROM exchanges").fetchall()}
        by_rec = dict(con.execute("SELECT recorder_id, count(*) FROM exchanges GROUP BY 1").fetchall())
    finally:
        con.close()
    return {
        "rows": total,
        "distinct": distinct,
        "answered": len(answered),
        "missing": len(answered - ids),
        "unknown": len(ids - answered),
        "by_recorder": sorted(by_rec.values(), reverse=True),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="measured seconds per variant and rep (default 8)"
    )
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--concurrency", type=int, default=64, help="closed-loop clients (default 64)")
    ap.add_argument("--max-requests", type=int, default=50_000, help="cap per measurement (default 50000)")
    ap.add_argument("--workdir", help="keep stores and logs here (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    haproxy = ensure_haproxy()
    if haproxy is None:
        print("multi_recorder: no load balancer available; nothing measured")
        return 2
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="parity-multi-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "stores").mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []
    recs: list[Rec] = []
    lb = None
    try:
        up = subprocess.Popen(
            [
                PY,
                "-m",
                "parity.fake.server",
                "--port",
                "0",
                "--profile",
                "instant",
                "--set",
                "answer_min_tokens=8",
                "--set",
                "answer_max_tokens=16",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        procs.append(up)
        line = up.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"fake provider did not start: {line!r}")
        upstream = line.split("listening on ", 1)[1].split()[0].rsplit("/v1", 1)[0]
        one, two = work / "stores" / "one.duckdb", work / "stores" / "two.duckdb"
        r1 = start_recorder("r1", one, upstream, work)
        recs.append(r1)
        r2a = start_recorder("r2a", two, upstream, work)
        recs.append(r2a)
        r2b = start_recorder("r2b", two, upstream, work)
        recs.append(r2b)
        fe1, fe2 = free_port(), free_port()
        cfg = work / "haproxy.cfg"
        cfg.write_text(haproxy_cfg(fe1, fe2, r1.port, r2a.port, r2b.port))
        check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config rejected: {check.stdout}{check.stderr}")
        with open(work / "haproxy.log", "ab") as fh:
            lb = subprocess.Popen(
                [haproxy, "-db", "-f", str(cfg)], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_port(fe1, lb, timeout=60.0)
        wait_port(fe2, lb, timeout=60.0)
        version = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        time.sleep(1.0)  # the recorders' writer processes finish starting
        variants = {
            "1 recorder, direct": (
                f"http://127.0.0.1:{r1.port}/v1/chat/completions",
                {"recorders": r1.pids()},
            ),
            "1 recorder, haproxy": (
                f"http://127.0.0.1:{fe1}/v1/chat/completions",
                {"recorders": r1.pids(), "haproxy": [lb.pid]},
            ),
            "2 recorders, haproxy": (
                f"http://127.0.0.1:{fe2}/v1/chat/completions",
                {"recorders": r2a.pids() + r2b.pids(), "haproxy": [lb.pid]},
            ),
        }
        for _, p in variants.values():
            p["upstream"] = [up.pid]
        print(
            f"multi_recorder: {version}; concurrency {args.concurrency}, {args.seconds:g} s per run, "
            f"{args.reps} interleaved reps, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        results: dict[str, list[dict]] = {v: [] for v in variants}
        names = list(variants)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for v in order:
                url, pids = variants[v]
                results[v].append(measure(v.replace(", ", "-").replace(" ", "_"), url, pids, args, rep))
        stop_proc(lb)
        lb = None
        codes = {r.name: stop_proc(r.proc, timeout=120) for r in recs}
        answered_one = {u for v in names[:2] for res in results[v] for u in res["answered"]}
        answered_two = {u for res in results[names[2]] for u in res["answered"]}
        s1, s2 = check_store(one, answered_one), check_store(two, answered_two)

        base = statistics.median(r["rate"] for r in results[names[1]])
        print("\nthroughput, non-streamed chat requests (median of reps)")
        print(f"{'variant':<24}{'req/s':>9}{'vs 1 behind LB':>16}{'reps':>24}   CPU ms/request by process")
        for v in names:
            rates = [r["rate"] for r in results[v]]
            med = statistics.median(rates)
            cpu = {k: statistics.median(r["cpu_ms_per_req"][k] for r in results[v]) for k in variants[v][1]}
            cpu_s_ = ", ".join(f"{k} {x:.2f}" for k, x in cpu.items())
            reps = "/".join(f"{x:.0f}" for x in rates)
            print(f"{v:<24}{med:9.0f}{med / base:15.2f}x{reps:>24}   {cpu_s_}")
        print("\nstores (every reader sees the union, no duplicates)")
        ok = True
        for name, s, want_recs in (("one.duckdb (r1)", s1, 1), ("two.duckdb (r2a + r2b)", s2, 2)):
            good = (
                s["rows"] == s["distinct"] == s["answered"]
                and s["missing"] == 0
                and s["unknown"] == 0
                and len(s["by_recorder"]) == want_recs
            )
            ok &= good
            print(
                f"  {name:<24} rows {s['rows']:,}, distinct ids {s['distinct']:,}, answered {s['answered']:,}, "
                f"missing {s['missing']}, unknown {s['unknown']}, rows per recorder {s['by_recorder']}  "
                f"{'OK' if good else 'FAIL'}"
            )
        print(f"  recorder exit codes {codes}")
        ok &= all(c == 0 for c in codes.values())
        return 0 if ok else 1
    finally:
        stop_proc(lb)
        for r in recs:
            stop_proc(r.proc, timeout=120)
        for p in procs:
            stop_proc(p)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
