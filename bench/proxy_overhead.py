"""Proxy overhead: ``parity record`` against plain ``mitmdump`` streaming responses the same way.

One run, loopback only, every server started and stopped by PID here:

- upstream: a raw asyncio HTTP/1.1 keep-alive server (in a subprocess) answering
  ``/v1/chat/completions`` with a ~950-byte completion, or with 32 SSE chunks + usage +
  ``[DONE]`` on absolute deadlines set by ``x-fake-ttft-ms`` / ``x-fake-itl-ms``;
- baseline: ``mitmdump -q -s stream_tee.py`` (a trivial addon that streams every response
  through a callable keeping timestamped chunks, as perf-anchors' ``stream_addon.py``:
  comparing with buffered mitmdump would flatter nobody, see the reference Addendum);
- candidate: ``parity record --quiet`` writing to a temporary store (default ``--writer process``:
  rows are built and written in a child process, whose CPU is reported separately);
- client: aiohttp, closed loop, C concurrent workers, bounded in time and count.

Figures: throughput ratio (parity / mitmdump) of non-streamed requests at C=16 and C=64, and
TTFT added over mitmdump (p50 / p99) at C=64 streams with 50 ms TTFT and 10 ms ITL. Reps are
interleaved (the order rotates each rep) and medians are reported.
Targets: throughput >= 0.90x; TTFT added <= 1 ms p50 and <= 5 ms p99. The CPU each proxy process
spends per request is printed too: unlike rates and latencies, it barely moves when other
processes compete for the machine's cores.
Usage: ``python bench/proxy_overhead.py [--reps 3] [--seconds 3]``.
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
import tempfile
import time
from pathlib import Path

from benchkit import cpu_seconds

from parity.procs import free_port, stop_proc, wait_port

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent

STREAM_TEE = """
import time

class StreamTee:
    def responseheaders(self, flow):
        chunks = []
        def tee(data):
            if data:
                chunks.append((time.time(), data))
            return data
        flow.response.stream = tee
        flow.metadata["tee"] = chunks

    def response(self, flow):
        b"".join(d for _, d in flow.metadata.pop("tee", []))

addons = [StreamTee()]
"""

CHAT_REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. " * 20},
        {"role": "user", "content": "Summarise the following text in two sentences. " + "lorem ipsum " * 120},
    ],
    "temperature": 0.2,
}


# ---------------------------------------------------------------- upstream (subprocess)


def _upstream_payloads() -> tuple[bytes, list[bytes]]:
    body = json.dumps(
        {
            "id": "chatcmpl-bench000000000000000000000",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "word " * 120, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 480, "completion_tokens": 120, "total_tokens": 600},
            "system_fingerprint": "fp_bench",
        }
    ).encode()
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    )
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
    }
    events = [
        b"data: "
        + json.dumps(
            {**chunk, "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}]}
        ).encode()
        + b"\n\n"
        for i in range(32)
    ]
    usage = {
        **chunk,
        "choices": [],
        "usage": {"prompt_tokens": 480, "completion_tokens": 32, "total_tokens": 512},
    }
    events.append(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
    return head + body, events


async def _serve_upstream(port: int) -> None:
    plain, events = _upstream_payloads()
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                body = await reader.readexactly(n) if n else b""
                if b'"stream": true' not in body and b'"stream":true' not in body:
                    writer.write(plain)
                    continue
                ttft = float(headers.get("x-fake-ttft-ms", "0")) / 1000
                itl = float(headers.get("x-fake-itl-ms", "0")) / 1000
                t0 = loop.time()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                    b"x-request-id: req_bench\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for i, ev in enumerate(events):
                    delay = t0 + ttft + min(i, 31) * itl - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    last = b"0\r\n\r\n" if i == len(events) - 1 else b""
                    writer.write(b"%x\r\n%s\r\n%s" % (len(ev), ev, last))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


# ---------------------------------------------------------------- processes


def start(argv: list[str], port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    wait_port(port, proc, timeout=60.0)
    return proc


# ---------------------------------------------------------------- load


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def closed_loop(url: str, conc: int, seconds: float, stream: bool, max_requests: int) -> dict:
    import aiohttp

    body = json.dumps({**CHAT_REQUEST, "stream": True} if stream else CHAT_REQUEST).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    if stream:
        headers.update({"x-fake-ttft-ms": "50", "x-fake-itl-ms": "10"})
    ttfts: list[float] = []
    lat: list[float] = []
    errors = 0
    sent = 0
    conn = aiohttp.TCPConnector(limit=conc)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        # warm the connections up, then measure a fixed window
        await asyncio.gather(
            *(session.post(url, data=json.dumps(CHAT_REQUEST).encode(), headers=headers) for _ in range(conc))
        )
        t_end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, sent
            while time.perf_counter() < t_end and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        if stream:
                            first = None
                            async for chunk in r.content.iter_any():
                                if first is None and b"data:" in chunk:
                                    first = time.perf_counter() - t0
                            ttfts.append(first * 1000 if first is not None else float("nan"))
                        else:
                            await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                lat.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return {"rps": len(lat) / wall, "n": len(lat), "errors": errors, "ttft": ttfts, "lat": lat}


def children_cpu_seconds(pid: int) -> float:
    """CPU time of the live children of ``pid`` (parity's writer process)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_load(url: str, conc: int, seconds: float, stream: bool, pid: int | None = None) -> dict:
    """One closed-loop cell; with ``pid``, also the CPU ms that process (and its children) spent per request."""
    c0 = cpu_seconds(pid) if pid else 0.0
    k0 = children_cpu_seconds(pid) if pid else 0.0
    r = asyncio.run(closed_loop(url, conc, seconds, stream, max_requests=200_000))
    n = max(r["n"] + conc, 1)
    r["cpu_ms"] = (cpu_seconds(pid) - c0) * 1000 / n if pid else float("nan")
    r["child_cpu_ms"] = (children_cpu_seconds(pid) - k0) * 1000 / n if pid else float("nan")
    return r


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="parity record vs plain mitmdump (streaming responses)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median reported)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured window per cell")
    ap.add_argument("--serve-upstream", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_upstream is not None:
        asyncio.run(_serve_upstream(args.serve_upstream))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="parity-bench-"))
    (tmp / "stream_tee.py").write_text(STREAM_TEE)
    procs: list[subprocess.Popen] = []
    try:
        up_port, mitm_port, parity_port = free_port(), free_port(), free_port()
        procs.append(start([PY, __file__, "--serve-upstream", str(up_port)], up_port, tmp / "upstream.log"))
        upstream = f"http://127.0.0.1:{up_port}"
        procs.append(
            start(
                [
                    str(BIN / "mitmdump"),
                    "-q",
                    "--mode",
                    f"reverse:{upstream}",
                    "--listen-host",
                    "127.0.0.1",
                    "--listen-port",
                    str(mitm_port),
                    "-s",
                    str(tmp / "stream_tee.py"),
                    "--set",
                    f"confdir={tmp / 'c1'}",
                ],
                mitm_port,
                tmp / "mitmdump.log",
            )
        )
        procs.append(
            start(
                [
                    PY,
                    "-m",
                    "parity.recorder.cli",
                    "record",
                    "--upstream",
                    upstream,
                    "--listen",
                    f"127.0.0.1:{parity_port}",
                    "--db",
                    str(tmp / "bench.duckdb"),
                    "--quiet",
                    "--confdir",
                    str(tmp / "c2"),
                    "--spill-dir",
                    str(tmp / "spill"),
                ],
                parity_port,
                tmp / "parity.log",
            )
        )
        targets = {
            "mitmdump": f"http://127.0.0.1:{mitm_port}/v1/chat/completions",
            "parity": f"http://127.0.0.1:{parity_port}/v1/chat/completions",
        }
        pids = {"mitmdump": procs[1].pid, "parity": procs[2].pid, "direct": None}
        direct = f"{upstream}/v1/chat/completions"
        print(
            f"proxy overhead: {os.cpu_count()} CPUs, {args.reps} interleaved reps, {args.seconds:g} s windows",
            flush=True,
        )

        results: dict[tuple, list[dict]] = {}
        names = list(targets)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for conc in (16, 64):
                for name in order:
                    r = run_load(targets[name], conc, args.seconds, stream=False, pid=pids[name])
                    results.setdefault(("plain", conc, name), []).append(r)
                    print(
                        f"  rep {rep + 1} C={conc:<2} non-streamed {name:<8} {r['rps']:7.0f} req/s  "
                        f"p50 {pct(r['lat'], 0.5):6.1f} ms  proxy CPU {r['cpu_ms']:.2f} ms/req  errors {r['errors']}",
                        flush=True,
                    )
            for name in ["direct", *order]:
                url = direct if name == "direct" else targets[name]
                r = run_load(url, 64, args.seconds + 1, stream=True, pid=pids[name])
                results.setdefault(("stream", 64, name), []).append(r)
                print(
                    f"  rep {rep + 1} C=64 streams      {name:<8} {r['rps']:7.1f} req/s  TTFT p50 "
                    f"{pct(r['ttft'], 0.5):6.1f} p99 {pct(r['ttft'], 0.99):6.1f} ms  "
                    f"proxy CPU {r['cpu_ms']:.2f} ms/req  errors {r['errors']}",
                    flush=True,
                )

        med = statistics.median
        print("\nresults (medians over reps)")
        ok = True
        for conc in (16, 64):
            base, cand = results[("plain", conc, "mitmdump")], results[("plain", conc, "parity")]
            ratios = [b["rps"] / a["rps"] for a, b in zip(base, cand, strict=True)]
            ratio = med(ratios)
            ok &= ratio >= 0.90
            cm, cp = med(r["cpu_ms"] for r in base), med(r["cpu_ms"] for r in cand)
            cw = med(r["child_cpu_ms"] for r in cand)
            print(
                f"non-streamed C={conc}: mitmdump {med(r['rps'] for r in base):6.0f} req/s, "
                f"parity {med(r['rps'] for r in cand):6.0f} req/s, ratio {ratio:.3f} "
                f"(per rep {', '.join(f'{x:.3f}' for x in ratios)}; target >= 0.90); "
                f"proxy-process CPU/request {cm:.2f} vs {cp:.2f} ms ({cp / cm:.2f}x), "
                f"+ parity's writer process {cw:.2f} ms"
            )
        adds50, adds99 = [], []
        for a, b in zip(results[("stream", 64, "mitmdump")], results[("stream", 64, "parity")], strict=True):
            adds50.append(pct(b["ttft"], 0.5) - pct(a["ttft"], 0.5))
            adds99.append(pct(b["ttft"], 0.99) - pct(a["ttft"], 0.99))
        for name in ("direct", "mitmdump", "parity"):
            rs = results[("stream", 64, name)]
            cpu = (
                f", proxy-process CPU {med(r['cpu_ms'] for r in rs):.2f} ms/stream"
                if name != "direct"
                else ""
            )
            if name == "parity":
                cpu += f" + writer process {med(r['child_cpu_ms'] for r in rs):.2f} ms"
            print(
                f"streams C=64 50/10 ms {name:<8}: TTFT p50 {med(pct(r['ttft'], 0.5) for r in rs):6.1f} ms, "
                f"p99 {med(pct(r['ttft'], 0.99) for r in rs):6.1f} ms, {med(r['rps'] for r in rs):5.1f} streams/s{cpu}"
            )
        a50, a99 = med(adds50), med(adds99)
        ok &= a50 <= 1.0 and a99 <= 5.0
        print(
            f"TTFT added by parity over mitmdump at C=64: p50 {a50:+.2f} ms, p99 {a99:+.2f} ms "
            f"(per rep p50 {', '.join(f'{x:+.1f}' for x in adds50)}; p99 {', '.join(f'{x:+.1f}' for x in adds99)}; "
            "targets <= 1 ms / <= 5 ms)"
        )
        stored = subprocess.run(
            [PY, "-m", "parity.recorder.cli", "ls", "--db", str(tmp / "bench.duckdb")],
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout.splitlines()[:1]
        print(f"parity recorded: {stored[0] if stored else '?'}")
        print("all targets met" if ok else "SOME TARGETS MISSED")
        return 0
    finally:
        for p in reversed(procs):
            stop_proc(p, timeout=20)


if __name__ == "__main__":
    sys.exit(main())
