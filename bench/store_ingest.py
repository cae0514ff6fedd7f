"""Store ingest: how many exchanges per second the BatchWriter gets into Parquet segments.

Realistic rows: ~2 KB request JSON, ~2 KB response JSON, 32 chunk offsets, the usual
scalar columns. The clock runs from the first ``put`` until every row is in a segment on
disk (``stats.written == N``), so it includes Arrow conversion, zstd Parquet, fsync and
rename. A second figure runs the recorder's real path: ``Capture`` objects whose rows are
built (JSON parsing, SSE reassembly, header filtering) on the writer thread; a third runs the
same captures with content redaction on (the five built-in rules and one custom rule; each
request carries an e-mail, a phone number and a customer id), next to the figure without.

Target: >= 20,000 exchanges/s for rows. Usage: ``python bench/store_ingest.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity.recorder.capture import Capture  # noqa: E402
from parity.recorder.redact import Redactor  # noqa: E402
from parity.recorder.redaction_rules import BUILTIN, RedactionSpec, Rule  # noqa: E402
from parity.store.segments import segment_root  # noqa: E402
from parity.store.store import connect, init_catalog  # noqa: E402
from parity.store.writer import BatchWriter  # noqa: E402

WORDS = "the of and to in is you that it he was for on are as with his they at be this have from".split()


def text(rng: random.Random, n_chars: int) -> str:
    out, size = [], 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def bodies(rng: random.Random, i: int) -> tuple[str, str, list[bytes]]:
    req = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [
            {"role": "system", "content": text(rng, 600)},
            {"role": "user", "content": f"request {i}: " + text(rng, 1300)},
        ],
        "temperature": 0.2,
    }
    answer = text(rng, 1700)
    resp = {
        "id": f"chatcmpl-{i:012d}",
        "object": "chat.completion",
        "created": 1700000000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 480, "completion_tokens": 400, "total_tokens": 880},
    }
    pieces = [answer[k : k + len(answer) // 32 + 1] for k in range(0, len(answer), len(answer) // 32 + 1)]
    events = [
        b"data: "
        + json.dumps(
            {
                "id": resp["id"],
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": p}}],
            }
        ).encode()
        + b"\n\n"
        for p in pieces
    ] + [b"data: [DONE]\n\n"]
    return json.dumps(req), json.dumps(resp), events


def make_rows(n: int) -> list[dict]:
    rng = random.Random(1)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        req, resp, _ = bodies(rng, i) if i < 500 else (None, None, None)
        if req is None:  # reuse generated text but keep every row distinct
            base = rows[i % 500]
            req = base["request_body"].replace("request ", f"request {i} ", 1)
            resp = base["response_body"].replace('"chatcmpl-', f'"chatcmpl-{i}-', 1)
        rows.append(
            {
                "id": f"{i:032x}",
                "recorded_at": now,
                "endpoint": "chat.completions",
                "method": "POST",
                "path": "/v1/chat/completions",
                "model": "gpt-4o-mini",
                "stream": True,
                "status": 200,
                "request_body": req,
                "request_content_type": "application/json",
                "request_headers": '{"content-type":"application/json","user-agent":"OpenAI/Python 2.54.0"}',
                "response_body": resp,
                "response_content_type": "text/event-stream",
                "response_headers": '{"x-request-id":"req_abc","openai-processing-ms":"312"}',
                "ttfb_ms": 120.5,
                "ttft_ms": 180.25,
                "latency_ms": 900.0 + i % 100,
                "chunk_offsets_ms": [180.25 + 22.5 * k for k in range(32)],
                "n_events": 33,
                "prompt_tokens": 480,
                "completion_tokens": 400,
                "finish_reason": "stop",
                "stream_complete": True,
                "client_disconnected": False,
                "truncated": False,
                "request_bytes": len(req),
                "response_bytes": len(resp),
                "upstream_host": "api.openai.com",
                "api_key_fingerprint": "0123456789abcdef",
                "request_id": f"req_{i}",
                "user_agent": "OpenAI/Python 2.54.0",
                "recorder_id": "bench",
                "source": "proxy",
            }
        )
    return rows


def make_captures(n: int) -> list[Capture]:
    rng = random.Random(2)
    made = [bodies(rng, i) for i in range(200)]
    caps = []
    t = time.perf_counter()
    for i in range(n):
        req, _, events = made[i % 200]
        # what a redaction rule set is for: contact details and an internal id in the prompt
        req = req.replace(
            "request ", f"request from jane.doe{i}@example.com, +1 415 555 {i % 10000:04d}, CUST-{i:06d}: ", 1
        )
        caps.append(
            Capture(
                wall_start=time.time(),
                t_start=t,
                method="POST",
                path="/v1/chat/completions",
                host="api.openai.com",
                request_headers={"content-type": "application/json", "authorization": "Bearer sk-bench"},
                request_raw=req.encode(),
                status=200,
                response_headers={"content-type": "text/event-stream", "x-request-id": f"req_{i}"},
                t_headers=t + 0.1,
                t_end=t + 0.9,
                chunks=[(t + 0.15 + 0.02 * k, e) for k, e in enumerate(events)],
            )
        )
    return caps


def typical_redactor() -> Redactor:
    """The five built-in rules and one custom rule."""
    return Redactor(RedactionSpec((*BUILTIN.values(), Rule("customer", r"CUST-\d{6}"))))


def run(items: list, label: str, timeout: float, redactor: Redactor | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        init_catalog(db)
        w = BatchWriter(segment_root(db), spill_dir=Path(tmp) / "spill", interval=0.2, redactor=redactor)
        w.start()
        n = len(items)
        t0 = time.perf_counter()
        for item in items:
            w.put("exchanges", item)
        put_s = time.perf_counter() - t0
        deadline = t0 + timeout
        while w.stats.written < n and time.perf_counter() < deadline:
            time.sleep(0.005)
        total = time.perf_counter() - t0
        stats = w.close()
        stored = connect(db).execute("SELECT count(*) FROM exchanges").fetchall()[0][0]
        size = sum(p.stat().st_size for p in segment_root(db).rglob("*.parquet"))
        assert stored == n == stats.written and stats.lost == 0, (stored, stats)
        rate = n / total
        print(
            f"{label:<34} {n:>7,} rows in {total:6.2f} s = {rate:>8,.0f} rows/s  "
            f"(put {put_s * 1e6 / n:4.1f} us/row, {stats.segments} segments, "
            f"flush p50 {statistics.median(stats.flush_ms):.0f} ms max {max(stats.flush_ms):.0f} ms, "
            f"{size / n:,.0f} B/row on disk)",
            flush=True,
        )
        return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=60_000, help="rows per run (default 60000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions; the median is reported")
    ap.add_argument("--timeout", type=float, default=60.0, help="give up on a run after this many seconds")
    args = ap.parse_args(argv)
    rows = make_rows(args.rows)
    avg = sum(len(r["request_body"]) + len(r["response_body"]) for r in rows[:1000]) / 1000
    print(f"store ingest: {args.rows:,} rows, ~{avg / 1024:.1f} KB of JSON + 32 offsets each", flush=True)
    run(rows[: len(rows) // 4], "warm-up (not counted)", args.timeout)  # allocator and page cache
    rates = [run(rows, f"rows, rep {i + 1}", args.timeout) for i in range(args.reps)]
    n_caps = max(1, args.rows // 6)
    caps = make_captures(n_caps)
    cap_rate = run(caps, "captures (build_row on the thread)", args.timeout)
    red_rate = run(make_captures(n_caps), "captures + redaction (6 rules)", args.timeout, typical_redactor())
    med = statistics.median(rates)
    print(
        f"median: {med:,.0f} rows/s (target >= 20,000: {'met' if med >= 20_000 else 'MISSED'}); "
        f"full recorder path with row building: {cap_rate:,.0f} exchanges/s"
    )
    print(
        f"redaction: {cap_rate:,.0f} exchanges/s without, {red_rate:,.0f} with 6 rules "
        f"({red_rate / cap_rate:.0%} of the rate; {1e6 / red_rate - 1e6 / cap_rate:,.0f} us more per exchange)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
