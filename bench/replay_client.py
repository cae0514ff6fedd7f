"""Is the replayer's client what limits or skews the measurement? Replayer vs a bare aiohttp loop.

One fake provider (a subprocess, ``parity.fake.server``, 32-token answers) serves both
clients in turn, with the same requests and the same delays:

1. 50 ms TTFT, 10 ms between tokens, 64 and then 256 concurrent streams: TTFT and
   per-token ITL p50/p99 of each client, and the replayer's error relative to the bare loop
   (targets: within +1 ms at p50 and +3 ms at p99).
2. zero delay, 64 concurrent streams: maximum streamed requests/s of each, and the ratio
   (target: replayer >= 0.5x the bare loop).

Each scenario runs as interleaved (bare, replayer) pairs, in alternating order, and
reports the median over pairs of the per-pair difference, so load from other work on the
machine, which comes and goes, hits both clients alike. Where possible the fake is pinned to CPU 1 and both
clients to CPU 0, so neither client can take the fake's CPU.

Both clients are measured the same way: ``perf_counter_ns`` at every read, events parsed
afterwards with ``parity.wire.sse`` / ``parity.wire.reassemble``, ITL per token
(``parity.replayer.tokens.per_token_itl``). Throughput = requests / (last response end - first send).
Bounded: a few thousand requests in all, well under 2 minutes.

    .venv/bin/python bench/replay_client.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parity.replayer.pacing import Pacing  # noqa: E402
from parity.replayer.progress import percentile  # noqa: E402
from parity.replayer.run import RunOptions, replay  # noqa: E402
from parity.replayer.select import Selection  # noqa: E402
from parity.replayer.tokens import per_token_itl  # noqa: E402
from parity.store.segments import segment_root, write_segment  # noqa: E402
from parity.store.store import connect  # noqa: E402
from parity.wire.reassemble import extract_usage, reassemble  # noqa: E402
from parity.wire.sse import parse_all  # noqa: E402

TOKENS = 32


def start_fake() -> tuple[subprocess.Popen, str]:
    """The fake provider as a subprocess; returns it and its base URL."""
    args = [
        sys.executable,
        "-m",
        "parity.fake.server",
        "--port",
        "0",
        "--profile",
        "instant",
        "--set",
        f"answer_min_tokens={TOKENS}",
        "--set",
        f"answer_max_tokens={TOKENS}",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"fake provider did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def body(i: int) -> dict:
    """The request body of exchange ``i`` (a streamed chat request with usage)."""
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Write a short note, #{i}."}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def measure(t0: int, times: list[int], chunks: list[bytes]) -> tuple[float | None, list[float]]:
    """TTFT and per-token ITL of one stream, from its stamped reads."""
    events, _ = parse_all([((t - t0) / 1e6, c) for t, c in zip(times, chunks, strict=True)])
    res = reassemble("chat.completions", events)
    if not res.content_times:
        return None, []
    itl = per_token_itl(res.content_times, res.content_chars, extract_usage(res.body).completion)
    return res.content_times[0], itl


async def bare_loop(base_url: str, n: int, conc: int, headers: dict[str, str], skip: int = 0) -> dict:
    """The reference client: aiohttp, stamps per read, nothing else on the loop."""
    raw: list[tuple[int, int, list[int], list[bytes]]] = []
    counter = iter(range(n))
    url = base_url + "/chat/completions"
    hdrs = {"content-type": "application/json", **headers}
    payloads = [json.dumps(body(i)).encode() for i in range(n)]
    connector = aiohttp.TCPConnector(limit=0)
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            """One closed-loop stream after another."""
            for i in counter:
                t0 = time.perf_counter_ns()
                times: list[int] = []
                chunks: list[bytes] = []
                async with session.post(url, data=payloads[i], headers=hdrs) as resp:
                    async for data in resp.content.iter_any():
                        times.append(time.perf_counter_ns())
                        chunks.append(data)
                raw.append((t0, time.perf_counter_ns(), times, chunks))

        await asyncio.gather(*(worker() for _ in range(conc)))
    cpu = time.process_time() - cpu0
    ttft, itl = [], []
    raw.sort(key=lambda r: r[0])
    for t0, _, times, chunks in raw[skip:]:
        f, gaps = measure(t0, times, chunks)
        if f is not None:
            ttft.append(f)
        itl.extend(gaps)
    span = (max(r[1] for r in raw) - min(r[0] for r in raw)) / 1e9
    return {"ttft": ttft, "itl": itl, "rps": len(raw) / span, "n": len(raw) - skip, "cpu_us": cpu / n * 1e6}


def run_replayer(
    base_url: str, n: int, conc: int, headers: dict[str, str], tmp: Path, tag: str, skip: int = 0
) -> dict:
    """Replay n requests through ``parity replay`` and read its results back."""
    db = tmp / f"{tag}.duckdb"
    start = datetime(2026, 11, 20, tzinfo=UTC)
    rows = [
        {
            "id": f"{tag}-{i:05d}",
            "recorded_at": start + timedelta(milliseconds=i),
            "endpoint": "chat.completions",
            "method": "POST",
            "path": "/v1/chat/completions",
            "model": "gpt-4o-mini",
            "stream": True,
            "status": 200,
            "request_body": json.dumps(body(i)),
            "request_content_type": "application/json",
        }
        for i in range(n)
    ]
    write_segment(segment_root(db), "exchanges", rows, "bench")
    hdr = ", ".join(f'"{k}" = "{v}"' for k, v in headers.items())
    providers = tmp / f"{tag}.toml"
    providers.write_text(
        f'[fake]\nbase_url = "{base_url}"\nmodels = {{ "*" = "*" }}\nheaders = {{ {hdr} }}\n'
    )
    out = open(tmp / f"{tag}.out", "w")  # noqa: SIM115
    opts = RunOptions(
        db=str(db),
        providers=str(providers),
        run_id=tag,
        selection=Selection(),
        pacing=Pacing(mode="concurrency", concurrency=conc),
        progress=False,
        out=out,
        err=out,
    )
    cpu0 = time.process_time()
    outcome = replay(opts)
    cpu = (
        time.process_time() - cpu0
    )  # the sender only (planning included); the post-processor is another process
    out.close()
    if outcome.state != "finished":
        raise SystemExit(f"replay {tag} ended {outcome.state}: {outcome.note}")
    con = connect(db)
    rows = con.execute(
        "SELECT ttft_ms, itl_ms, epoch_us(started_at), latency_ms FROM results WHERE provider = 'fake' "
        "AND error_type IS NULL ORDER BY started_at"
    ).fetchall()
    con.close()
    first = min(r[2] for r in rows) / 1e6
    last = max(r[2] / 1e6 + r[3] / 1e3 for r in rows)
    steady = rows[skip:]
    ttft = [r[0] for r in steady if r[0] is not None]
    itl = [v for r in steady for v in (r[1] or [])]
    return {
        "ttft": ttft,
        "itl": itl,
        "rps": len(rows) / (last - first),
        "n": len(steady),
        "cpu_us": cpu / n * 1e6,
    }


def fmt(v: float | None) -> str:
    """A number for the tables."""
    return "   -  " if v is None else f"{v:7.2f}"


def pct(run: dict, name: str, q: float) -> float | None:
    return percentile(run[name], q)


def scenario(label: str, pairs: list[tuple[dict, dict]]) -> None:
    """Print one scenario: pooled percentiles, and the median over pairs of the per-pair differences."""
    print(f"\n{label}")
    print(
        f"  {'metric':<8} {'bare p50':>9} {'bare p99':>9} {'repl p50':>9} {'repl p99':>9}   "
        f"{'Δp50 (median of pairs)':>23} {'Δp99 (median of pairs)':>23}"
    )
    for name in ("ttft", "itl"):
        b = [v for bare, _ in pairs for v in bare[name]]
        r = [v for _, rep in pairs for v in rep[name]]
        d50s = [pct(rep, name, 50) - pct(bare, name, 50) for bare, rep in pairs]
        d99s = [pct(rep, name, 99) - pct(bare, name, 99) for bare, rep in pairs]
        d50, d99 = statistics.median(d50s), statistics.median(d99s)
        ok = d50 <= 1.0 and d99 <= 3.0
        print(
            f"  {name + ' ms':<8} {fmt(percentile(b, 50)):>9} {fmt(percentile(b, 99)):>9} "
            f"{fmt(percentile(r, 50)):>9} {fmt(percentile(r, 99)):>9}   "
            f"{fmt(d50):>9} {str([round(x, 1) for x in d50s]):>13} {fmt(d99):>9} "
            f"{str([round(x, 1) for x in d99s]):>13}  {'OK' if ok else 'MISS'} (target +1 / +3 ms)"
        )
    print(f"  req/s per pair (bare, replayer): {[(round(b['rps']), round(r['rps'])) for b, r in pairs]}")
    print(
        f"  client CPU per request, µs (bare, replayer sender): "
        f"{[(round(b['cpu_us']), round(r['cpu_us'])) for b, r in pairs]}"
    )


def pin(pid: int, cpu: int) -> bool:
    """Pin a process to one CPU (Linux); False when not possible."""
    try:
        os.sched_setaffinity(pid, {cpu})
        return True
    except (AttributeError, OSError):
        return False


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main() -> int:
    """Run every scenario and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved (bare, replayer) runs per scenario")
    args = ap.parse_args()
    rounds = 2 if args.quick else 4
    max_n = 600 if args.quick else 1500
    proc, base_url = start_fake()
    t_start = time.monotonic()
    pinned = (os.cpu_count() or 1) >= 2 and pin(proc.pid, 1) and pin(0, 0)
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            delays = {"x-fake-ttft-ms": "50", "x-fake-itl-ms": "10"}
            print(
                f"fake provider {base_url}: {TOKENS}-token streamed chat answers; injected TTFT 50 ms, ITL 10 ms"
            )
            print(
                "CPU pinning: fake on CPU 1, clients (and the replayer's idle-priority post-processor) on CPU 0"
                if pinned
                else "CPU pinning: not available"
            )
            print(f"load average at start: {loadavg()} (other work on this machine skews both clients)")
            asyncio.run(bare_loop(base_url, 64, 64, delays))  # warm-up
            for conc in (64, 256):
                n = conc * rounds
                pairs = []
                for i in range(args.pairs):  # interleaved, order alternating: drifting load hits both alike
                    if i % 2:
                        rep = run_replayer(base_url, n, conc, delays, tmp, f"c{conc}r{i}", skip=conc)
                        bare = asyncio.run(bare_loop(base_url, n, conc, delays, skip=conc))
                    else:
                        bare = asyncio.run(bare_loop(base_url, n, conc, delays, skip=conc))
                        rep = run_replayer(base_url, n, conc, delays, tmp, f"c{conc}r{i}", skip=conc)
                    pairs.append((bare, rep))
                scenario(
                    f"C={conc}, 50 ms TTFT / 10 ms ITL, {n} streams per run, {args.pairs} interleaved pairs; "
                    f"first {conc} of each run (connection set-up) excluded",
                    pairs,
                )
            ratios, runs, cpus = [], [], []
            for i in range(args.pairs):
                if i % 2:
                    rep = run_replayer(base_url, max_n, 64, {}, tmp, f"max{i}")
                    bare = asyncio.run(bare_loop(base_url, max_n, 64, {}))
                else:
                    bare = asyncio.run(bare_loop(base_url, max_n, 64, {}))
                    rep = run_replayer(base_url, max_n, 64, {}, tmp, f"max{i}")
                runs.append((round(bare["rps"]), round(rep["rps"])))
                cpus.append((round(bare["cpu_us"]), round(rep["cpu_us"])))
                ratios.append(rep["rps"] / bare["rps"])
            ratio = statistics.median(ratios)
            print(f"\nzero delay, C=64, {max_n} streamed requests per run, {args.pairs} interleaved pairs")
            print(f"  max streamed req/s per pair (bare, replayer): {runs}")
            print(f"  client CPU per request, µs (bare, replayer sender): {cpus}")
            print(
                f"  ratio replayer/bare, median of pairs: {ratio:.2f} "
                f"({'OK' if ratio >= 0.5 else 'MISS'}, target >= 0.5)"
            )
    finally:
        proc.terminate()
        proc.wait(5)
    print(f"\nload average at end: {loadavg()}; bench wall time {time.monotonic() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
