"""Benchmark the fake provider's timing accuracy and streaming throughput.

Starts `python -m parity.fake.server` in a subprocess (its own core/loop), then drives it with a bare
aiohttp closed-loop client: streamed chat completions, 32 content chunks each (max_tokens=32,
chunk_tokens=1), TTFT 50 ms and ITL 10 ms fixed, at concurrency 64 and 256; then the zero-delay
`instant` profile at concurrency 64 for the maximum streamed requests/s. Bounded: < 90 s in all.

    .venv/bin/python bench/fake_provider.py [--requests-per-slot 10] [--max-seconds 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
TTFT_MS, ITL_MS, CHUNKS = 50.0, 10.0, 32
PROMPT = "Summarise the following notes for the weekly report. " * 40  # ~2 KB request, as in perf-anchors


def body(i: int) -> bytes:
    """Request #i; the prompt differs per request so no two answers are generated from the same seed."""
    msgs = [{"role": "user", "content": f"{PROMPT}(request {i})"}]
    return json.dumps(
        {"model": "gpt-4o-mini", "messages": msgs, "stream": True, "max_tokens": CHUNKS}
    ).encode()


CONTENT_MARK = b'"delta":{"content":'  # content chunks only; the role chunk's delta starts with "role"


def start_server(profile: str, *sets: str) -> tuple[subprocess.Popen[str], str]:
    """Launch the fake in a subprocess and return (process, base_url) from its one stdout line."""
    args = [sys.executable, "-m", "parity.fake.server", "--port", "0", "--profile", profile]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"fake provider did not start: {line!r}")
    return proc, line.split("listening on ")[1].split()[0]


def stop_server(proc: subprocess.Popen[str]) -> float:
    """SIGTERM the server by PID; return its CPU seconds (user+sys) from /proc."""
    cpu = proc_cpu(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return cpu


def proc_cpu(pid: int) -> float:
    """CPU seconds used so far by a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def pct(values: list[float], q: float) -> float:
    """q-th percentile (nearest rank on sorted data)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


async def one_stream(
    session: aiohttp.ClientSession, url: str, data: bytes, ttfts: list[float], gaps: list[float]
) -> int:
    """One streamed request; appends its TTFT and inter-chunk gaps (ms); returns content chunks seen."""
    last = None
    seen = 0
    t0 = time.perf_counter()
    async with session.post(url, data=data, headers={"content-type": "application/json"}) as resp:
        resp.raise_for_status()
        async for block in resp.content.iter_any():
            now = time.perf_counter()
            k = block.count(CONTENT_MARK)
            if not k:
                continue
            if last is None:
                ttfts.append((now - t0) * 1000)
            else:
                gaps.append((now - last) * 1000)
            gaps.extend([0.0] * (k - 1))  # chunks coalesced into one read arrived together
            last = now
            seen += k
    return seen


async def closed_loop(
    base: str, concurrency: int, total: int, max_seconds: float, ramp_s: float = 0.0
) -> dict[str, float]:
    """`concurrency` workers issue streams back to back until `total` requests or `max_seconds`.

    Worker k starts after k*ramp_s/concurrency: without a ramp all first requests hit the server in the
    same millisecond, and the first round measures that thundering herd instead of steady-state timing.
    """
    url = base + "/chat/completions"
    ttfts: list[float] = []
    gaps: list[float] = []
    done = 0
    bad = 0
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal done, bad, issued
        await asyncio.sleep(k * ramp_s / concurrency)
        while issued < total and time.perf_counter() < deadline:
            issued += 1
            chunks = await one_stream(session, url, body(issued), ttfts, gaps)
            done += 1
            bad += chunks != CHUNKS

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one_stream(session, url, body(0), [], [])  # warm-up: the first request may include imports
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
        client_cpu = time.process_time() - cpu0
    return {
        "requests": done,
        "bad": bad,
        "elapsed": elapsed,
        "rps": done / elapsed,
        "ttft50": pct(ttfts, 50),
        "ttft99": pct(ttfts, 99),
        "itl50": pct(gaps, 50),
        "itl99": pct(gaps, 99),
        "client_cpu": client_cpu / elapsed,
    }


def run_scenario(
    name: str, sets: tuple[str, ...], conc: int, total: int, seconds: float, ramp: float
) -> dict:
    """One fresh server subprocess + one closed-loop run; adds server CPU (cores) to the result."""
    proc, base = start_server("instant", *sets)
    try:
        cpu0 = proc_cpu(proc.pid)
        r = asyncio.run(closed_loop(base, conc, total, seconds, ramp))
        r["srv_cpu"] = (proc_cpu(proc.pid) - cpu0) / r["elapsed"]
    finally:
        stop_server(proc)
    r["name"], r["conc"] = name, conc
    return r


def median_run(runs: list[dict]) -> dict:
    """Per-metric median over repetitions."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], int | float)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions; medians are printed")
    ap.add_argument(
        "--requests-per-slot", type=int, default=10, help="requests = this x concurrency (timed runs)"
    )
    ap.add_argument("--max-seconds", type=float, default=8.0, help="time bound per timed run")
    ap.add_argument("--instant-seconds", type=float, default=4.0, help="time bound for the zero-delay run")
    ap.add_argument("--budget-seconds", type=float, default=80.0, help="no new repetition after this")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    # answer_min_tokens > 32 so max_tokens=32 always yields exactly 32 one-token content chunks.
    sizing = ("answer_min_tokens=64", "answer_max_tokens=64", "chunk_tokens=1")
    timed = (f"ttft_ms={TTFT_MS}", "ttft_dist=fixed", f"itl_ms={ITL_MS}", "itl_jitter_ms=0", *sizing)
    ramp = (TTFT_MS + (CHUNKS - 1) * ITL_MS) / 1000  # spread the first requests over one ideal e2e
    scenarios = [
        ("timed", timed, 64, 64 * args.requests_per_slot, args.max_seconds, ramp),
        ("timed", timed, 256, 256 * args.requests_per_slot, args.max_seconds, ramp),
        ("instant", sizing, 64, 1_000_000, args.instant_seconds, 0.0),
    ]
    results: list[list[dict]] = [[] for _ in scenarios]
    load = os.getloadavg()[0]
    for rep in range(args.reps):
        if rep and time.perf_counter() - t_start > args.budget_seconds:
            break
        order = (
            scenarios[rep % len(scenarios) :] + scenarios[: rep % len(scenarios)]
        )  # rotate, as perf-anchors
        for sc in order:
            results[scenarios.index(sc)].append(run_scenario(*sc))
    reps = len(results[0])
    print(
        f"fake provider bench: streamed chat, {CHUNKS} chunks, TTFT {TTFT_MS:g} ms, ITL {ITL_MS:g} ms (fixed);"
        f" closed loop, workers ramped in over {ramp * 1000:.0f} ms; median of {reps} interleaved reps;"
        f" {os.cpu_count()} cores shared by server+client, load average at start {load:.2f}"
    )
    print(
        f"{'conc':>5} {'reqs':>6} {'req/s':>7} {'TTFT p50':>9} {'p99':>7} {'drift p50':>10} {'p99':>7}"
        f" {'ITL p50':>8} {'p99':>7} {'drift p50':>10} {'p99':>7} {'srv CPU':>8} {'cli CPU':>8}"
    )
    for runs in results[:2]:
        r = median_run(runs)
        print(
            f"{r['conc']:>5.0f} {r['requests']:>6.0f} {r['rps']:>7.1f} {r['ttft50']:>9.2f} {r['ttft99']:>7.2f}"
            f" {r['ttft50'] - TTFT_MS:>+10.2f} {r['ttft99'] - TTFT_MS:>+7.2f}"
            f" {r['itl50']:>8.2f} {r['itl99']:>7.2f} {r['itl50'] - ITL_MS:>+10.2f} {r['itl99'] - ITL_MS:>+7.2f}"
            f" {r['srv_cpu']:>8.2f} {r['client_cpu']:>8.2f}"
            + (f"  ({r['bad']:.0f} streams != {CHUNKS} chunks)" if r["bad"] else "")
        )
        per_rep = ", ".join(f"{x['ttft50'] - TTFT_MS:+.2f}/{x['ttft99'] - TTFT_MS:+.2f}" for x in runs)
        print(f"{'':>5} TTFT drift p50/p99 per rep: {per_rep}")
    r = median_run(results[2])
    instant_reps = ", ".join(f"{x['rps']:.0f}" for x in results[2])
    print(
        f"zero delay (instant), conc 64: {r['rps']:.0f} streamed req/s ({r['rps'] * CHUNKS:.0f} chunks/s),"
        f" per rep {instant_reps}; TTFT p50 {r['ttft50']:.2f} ms"
        f" p99 {r['ttft99']:.2f} ms; CPU server {r['srv_cpu']:.2f} / client {r['client_cpu']:.2f} cores"
    )
    print(f"total bench time {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
