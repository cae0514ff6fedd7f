"""Scale benchmark of ``evals``: the full evaluation (no judge) of 1,000,000 result cells.

Synthesises one run with three arms (``recorded`` + two providers, 333,334 exchanges each) as
Parquet segments in a temporary store, compacts them as ``parity replay`` does when a run
finishes (``--no-compact`` leaves them as written), then, in each of ``--reps`` fresh processes
(so peak RSS is the evaluation's own), times a plain DuckDB query of p50/p95/p99 latency per
provider over the same ``results`` view and the full ``evals.evaluate`` (latency, cost, quality,
compatibility, summary). The measuring processes inherit this environment as it is (an allocator
setting of your own, such as ``_RJEM_MALLOC_CONF``, applies to them and is printed). The machine
is noisy: every run is printed, and the medians compared. The regression guard: evaluation within
30x the query and peak RSS under 2 GB; the script exits 1 when the medians miss either.

    .venv/bin/python bench/evals_scale.py [--rows 1000000] [--keep DIR] [--reps 5]
    .venv/bin/python bench/evals_scale.py --store DIR      # measure a kept store again
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parity.replayer.facts import COLUMNS as FACT_COLUMNS  # noqa: E402
from parity.replayer.facts import cell_facts  # noqa: E402
from parity.replayer.sampling import sample_key  # noqa: E402
from parity.store.export import compact_store  # noqa: E402
from parity.store.schema import EXCHANGES, RESULTS  # noqa: E402
from parity.store.segments import list_segments, segment_root, write_segment  # noqa: E402

ARMS = ("recorded", "alpha", "beta")
RUN = "bench"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
VOCAB = np.array(
    "the a of to and in is it that for on with as this be are was by at or from an not can will your you we "
    "data model request response latency token stream provider price cost result value error check answer "
    "system user tool call function json schema field number string list object city weather today report "
    "fast slow good better best simple clear short long text word line page file code test run build".split()
)
SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
        "required": ["answer", "score"],
    }
)
TOOLS = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "request": {"type": "integer"}},
                    "required": ["city"],
                },
            },
        }
    ]
)
CITIES = ["Paris", "Lyon", "Oslo", "Rome", "Kyiv", "Lima"]


def texts(rng: np.random.Generator, n_words: np.ndarray, base: list[str] | None, change: float) -> list[str]:
    """Answer texts; with ``base``, each word is replaced with probability ``change``."""
    out = []
    for i, k in enumerate(n_words):
        if base is None:
            out.append(" ".join(VOCAB[rng.integers(0, len(VOCAB), k)]))
        else:
            w = base[i].split(" ")
            swap = rng.random(len(w)) < change
            for j in np.flatnonzero(swap):
                w[j] = VOCAB[rng.integers(0, len(VOCAB))]
            out.append(" ".join(w))
    return out


def synth(db: Path, rows: int, seed: int = 7, compact: bool = True) -> dict:
    """Write the run's results, exchanges and run config; returns counts."""
    rng = np.random.default_rng(seed)
    n = -(-rows // len(ARMS))
    ids = np.array([f"x{i:07d}" for i in range(n)])
    keys = np.array([sample_key(x) for x in ids], np.int32)
    u = rng.random(n)
    endpoint = np.where(u < 0.05, "embeddings", np.where(u < 0.15, "responses", "chat.completions"))
    chat = endpoint == "chat.completions"
    model = np.where(
        endpoint == "embeddings",
        "text-embedding-3-small",
        np.where(rng.random(n) < 0.7, "gpt-4o-mini", "gpt-4o"),
    )
    stream = np.where(
        chat, rng.random(n) < 0.65, np.where(endpoint == "responses", rng.random(n) < 0.3, False)
    )
    feature = np.where(chat, rng.choice(["plain", "tools", "json"], n, p=[0.8, 0.1, 0.1]), "plain")
    prompt = np.clip(rng.lognormal(np.log(800), 1.0, n), 5, 120_000).astype(np.int64)
    compl = np.where(endpoint == "embeddings", 0, np.clip(rng.lognormal(np.log(60), 0.8, n), 1, 1000)).astype(
        np.int64
    )
    difficulty = rng.lognormal(np.log(350), 0.5, n)
    recorded_at = [T0 + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, 7 * 86400, n))]
    words = np.clip(compl * 3 // 4, 1, 120)
    base_text = texts(rng, words, None, 0)
    base_vec = rng.normal(size=(n, 64)).astype(np.float32)
    sent = []
    for i in range(n):
        if endpoint[i] == "embeddings":
            sent.append(json.dumps({"model": model[i], "input": ["some text to embed"]}))
            continue
        if endpoint[i] == "responses":
            sent.append(
                json.dumps(
                    {"model": model[i], "input": "q", "max_output_tokens": 1024, "stream": bool(stream[i])}
                )
            )
            continue
        b = {"model": model[i], "messages": [{"role": "user", "content": "q"}], "max_tokens": 1024}
        if stream[i]:
            b |= {"stream": True, "stream_options": {"include_usage": True}}
        if feature[i] == "tools":
            b["tools"] = json.loads(TOOLS)
        if feature[i] == "json":
            b["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": json.loads(SCHEMA)},
            }
        sent.append(json.dumps(b))
    root = segment_root(db)
    config = {
        "run_id": RUN,
        "repeat": 1,
        "providers": {
            "alpha": {
                "base_url": "http://127.0.0.1:1/v1",
                "models": {"*": "*"},
                "models_listed": sorted(set(model)),
                "pricing": {
                    "default": {"input_per_1m": 0.10, "cached_input_per_1m": 0.05, "output_per_1m": 0.40}
                },
            },
            "beta": {
                "base_url": "http://127.0.0.1:2/v1",
                "models": {"*": "*"},
                "models_listed": None,
                "pricing": {"default": {"per_request": 0.0005}},
            },
        },
        "recorded": {
            "pricing": {
                "default": {"input_per_1m": 0.15, "cached_input_per_1m": 0.075, "output_per_1m": 0.60},
                "gpt-4o": {"input_per_1m": 2.5, "cached_input_per_1m": 1.25, "output_per_1m": 10.0},
                "text-embedding-3-small": {"input_per_1m": 0.02},
            }
        },
    }
    write_segment(
        root,
        "run_events",
        [{"run_id": RUN, "at": T0, "state": "finished", "config": json.dumps(config)}],
        "bench",
    )
    exch = pa.table(
        {
            "id": ids,
            "recorded_at": pa.array(recorded_at, pa.timestamp("us", tz="UTC")),
            "endpoint": endpoint,
            "model": model,
            "stream": stream,
            "status": np.full(n, 200, np.int32),
            "request_body": sent,
            "prompt_tokens": prompt,
            "completion_tokens": compl,
        }
    )
    write_segment(root, "exchanges", _conform(exch, EXCHANGES), "bench")
    total = 0
    for a, arm in enumerate(ARMS):
        rows_left = min(n, rows - total)
        text = (
            base_text if arm == "recorded" else texts(rng, words, base_text, 0.1 if arm == "alpha" else 0.3)
        )
        ttft = difficulty * rng.lognormal(0, 0.25, n) + (20.0 if arm == "alpha" else 0.0)
        ttft *= 1.1 if arm == "beta" else 1.0
        itl = rng.lognormal(np.log(18 if arm != "beta" else 22), 0.2, n)
        status = np.full(n, 200, np.int32)
        if arm != "recorded":
            status[rng.random(n) < (0.005 if arm == "alpha" else 0.02)] = 429 if arm == "beta" else 500
        latency = np.where(endpoint == "embeddings", difficulty / 5, ttft + itl * np.maximum(compl - 1, 0))
        vec = base_vec if arm != "beta" else base_vec @ rng.normal(size=(64, 96)).astype(np.float32)
        if arm == "alpha":
            vec = base_vec + rng.normal(scale=0.1, size=base_vec.shape).astype(np.float32)
        bodies = []
        for i in range(n):
            if status[i] != 200:
                bodies.append('{"error": {"message": "busy", "type": "server_error", "code": null}}')
            elif endpoint[i] == "embeddings":
                v = ",".join(f"{x:.4f}" for x in vec[i])
                bodies.append(
                    f'{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{v}]}}],"model":"{model[i]}","usage":{{"prompt_tokens":{prompt[i]},"total_tokens":{prompt[i]}}}}}'
                )
            elif endpoint[i] == "responses":
                bodies.append(
                    f'{{"id":"resp_{i}","object":"response","status":"completed","output":[{{"type":"message","role":"assistant","content":[{{"type":"output_text","text":"{text[i]}"}}]}}],"usage":{{"input_tokens":{prompt[i]},"output_tokens":{compl[i]}}}}}'
                )
            else:
                usage = f'"usage":{{"prompt_tokens":{prompt[i]},"completion_tokens":{compl[i]},"total_tokens":{prompt[i] + compl[i]}}}'
                if feature[i] == "tools":
                    city = CITIES[(i + (a if rng.random() < 0.2 else 0)) % len(CITIES)]
                    # unique arguments per exchange (a request id), so no check can be answered from a cache
                    args = json.dumps(json.dumps({"city": city, "request": int(i)}))
                    msg = f'"content":null,"tool_calls":[{{"id":"call_{i}","type":"function","function":{{"name":"get_weather","arguments":{args}}}}}]'
                    fin = "tool_calls"
                elif feature[i] == "json":
                    msg = '"content":' + json.dumps(json.dumps({"answer": text[i][:40], "score": 0.5}))
                    fin = "stop"
                else:
                    msg, fin = f'"content":"{text[i]}"', "stop"
                bodies.append(
                    f'{{"id":"c{i}","object":"chat.completion","created":1,"model":"{model[i]}","choices":[{{"index":0,"message":{{"role":"assistant",{msg}}},"finish_reason":"{fin}"}}],{usage}}}'
                )
        ok = status == 200
        st = stream & ok
        ntok = np.where(st, np.maximum(compl - 1, 0), 0)
        offs = np.concatenate([[0], np.cumsum(ntok)])
        itl_vals = np.repeat(itl, ntok)
        raw = [
            (
                'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: {"choices":[],"usage":{}}\n\ndata: [DONE]\n\n'
                if endpoint[i] == "chat.completions"
                else 'event: response.completed\ndata: {"type":"response.completed"}\n\n'
            )
            if st[i]
            else None
            for i in range(n)
        ]
        started = (
            [r + timedelta(milliseconds=1) for r in recorded_at]
            if arm == "recorded"
            else [T0 + timedelta(days=8, seconds=float(s)) for s in np.arange(n) * 0.05]
        )
        cols = {
            "run_id": np.full(n, RUN),
            "exchange_id": ids,
            "provider": np.full(n, arm),
            "repeat": np.zeros(n, np.int32),
            "endpoint": endpoint,
            "model": model,
            "recorded_model": model,
            "stream": stream,
            "started_at": pa.array(started, pa.timestamp("us", tz="UTC")),
            "attempts": np.where(status == 429, 3, 1).astype(np.int32),
            "status": status,
            "ttft_ms": pa.array(np.where(st, ttft, np.nan), from_pandas=True),
            "latency_ms": latency,
            "itl_ms": pa.ListArray.from_arrays(pa.array(offs.astype(np.int32)), pa.array(itl_vals)).cast(
                pa.list_(pa.float64())
            ),
            "itl_mean_ms": pa.array(np.where(st, itl, np.nan), from_pandas=True),
            "chunk_offsets_ms": pa.ListArray.from_arrays(
                pa.array(offs.astype(np.int32)), pa.array(np.repeat(ttft, ntok) + itl_vals)
            ),
            "prompt_tokens": np.where(ok, prompt, 0),
            "completion_tokens": np.where(ok, compl, 0),
            "cached_tokens": np.zeros(n, np.int64),
            "tokens_estimated": np.zeros(n, bool),
            "sdk_valid": ok,
            "stream_complete": pa.array(np.where(st, True, None).tolist(), pa.bool_()),
            "finish_reason": pa.array(
                np.where(
                    ok & (endpoint != "embeddings"), np.where(feature == "tools", "tool_calls", "stop"), None
                ).tolist(),
                pa.string(),
            ),
            "response_headers": [
                ('{"retry-after": "1"}' if s == 429 else '{"x-request-id": "req"}') for s in status
            ],
            "response_body": bodies,
            "response_raw": raw,
            "sent_body": sent,
        }
        # the compatibility facts the replayer's post-processor writes with every cell
        headers = cols["response_headers"]
        facts = [
            cell_facts(
                endpoint[i],
                json.loads(bodies[i]),
                json.loads(sent[i]),
                raw[i],
                bool(st[i]),
                status=int(status[i]),
                headers=json.loads(headers[i]),
            )
            for i in range(n)
        ]
        for c in FACT_COLUMNS:
            cols[c] = pa.array([f[c] for f in facts], RESULTS.field(c).type)
        cols["sample_key"] = keys
        del facts
        tbl = _conform(pa.table(cols).slice(0, rows_left), RESULTS)
        for k in range(0, tbl.num_rows, 100_000):
            write_segment(root, "results", tbl.slice(k, 100_000), f"bench{arm}")
        if arm == "beta":
            hit = np.flatnonzero(status == 429)
            att = [
                {
                    "run_id": RUN,
                    "exchange_id": ids[i],
                    "provider": arm,
                    "repeat": 0,
                    "attempt": k,
                    "status": 429,
                    "retry_after_ms": 1000.0,
                    "waited_ms": 1000.0,
                }
                for i in hit
                for k in (1, 2, 3)
            ]
            write_segment(root, "attempts", att, "bench")
        total += rows_left
    out = {"results": total, "exchanges": n, "compacted_s": None}
    if compact:
        t = time.perf_counter()
        compact_store(db, min_age_s=0.0, tables=("results", "attempts"), run_id=RUN)
        out["compacted_s"] = round(time.perf_counter() - t, 1)
    return out


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [
        t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


MAX_RATIO = 30.0  # evaluation / plain query, wall time
MAX_RSS_MB = 2048.0
# Variables that change how polars' allocator or numpy's CPU dispatch behave: never set here,
# only reported when the user set them, since they change the figures.
TUNING_ENV = ("_RJEM_MALLOC_CONF", "NPY_DISABLE_CPU_FEATURES")

QUERY = "SELECT provider, quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q FROM results GROUP BY provider ORDER BY provider"


def peak_rss_mb() -> float:
    """Peak RSS of this process: VmHWM (reset by exec) where Linux has it, else ru_maxrss.

    ru_maxrss survives exec, so a child forked from a big parent would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(db: Path) -> dict:
    """Time the plain query and the full evaluation in this (fresh) process."""
    from parity import evals
    from parity.store.store import connect

    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    con = connect(db)
    q = con.sql(QUERY).fetchall()
    con.close()
    t_query, c_query = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ev = evals.evaluate(db, RUN, baseline="recorded", slos="ttft=800ms,e2e=10s")
    t_eval, c_eval = time.perf_counter() - t, time.process_time() - c
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    peak_mb = peak_rss_mb()
    s = ev.summary
    return {
        "query_s": t_query,
        "eval_s": t_eval,
        "query_cpu_s": c_query,
        "eval_cpu_s": c_eval,
        "eval_faults": faults,
        "load_avg": load,
        "peak_rss_mb": peak_mb,
        "phases_s": ev.seconds,
        "query_rows": [[p, [round(x, 1) for x in v]] for p, v in q],
        "summary": s.select(
            "provider",
            "n_cells",
            "ttft_p50_ms",
            "ttft_p50_delta_ms",
            "significant_slower",
            "error_rate",
            "cost_month_usd",
            "quality_score",
            "compat_score",
            "compat_failures",
        ).to_dicts(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows", type=int, default=1_000_000, help="result cells to synthesise (default 1,000,000)"
    )
    ap.add_argument("--keep", type=Path, help="write the store here and keep it")
    ap.add_argument(
        "--store", type=Path, help="measure this kept store (a --keep folder) again; no synthesis"
    )
    ap.add_argument(
        "--no-compact", action="store_true", help="evaluate the segments as written, not compacted"
    )
    ap.add_argument(
        "--reps", type=int, default=5, help="measuring processes; medians are reported (default 5)"
    )
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--synth", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure), default=str))
        return 0
    if args.synth:
        print(json.dumps(synth(args.synth, args.rows, compact=not args.no_compact)))
        return 0
    if args.store:
        return report(args.store / "parity.duckdb", args.reps)
    tmp = Path(tempfile.mkdtemp(prefix="evals-bench-")) if not args.keep else args.keep
    db = tmp / "parity.duckdb"
    try:
        t = time.perf_counter()
        # both steps in their own processes: the measuring one starts small and owns its peak RSS
        made = subprocess.run(
            [sys.executable, __file__, "--synth", str(db), "--rows", str(args.rows)]
            + (["--no-compact"] if args.no_compact else []),
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if made.returncode:
            print(made.stderr, file=sys.stderr)
            return made.returncode
        counts = json.loads(made.stdout.strip().splitlines()[-1])
        root = segment_root(db)
        live = [p for d in root.iterdir() if d.is_dir() for p in list_segments(root, d.name)]
        size = sum(p.stat().st_size for p in live) / 1e6
        how = (
            f"compacted in {counts['compacted_s']} s as `parity replay` does when a run finishes"
            if counts["compacted_s"] is not None
            else "left as written (--no-compact)"
        )
        print(
            f"synthesised {counts['results']:,} results ({len(ARMS)} arms: {', '.join(ARMS)}; "
            f"{counts['exchanges']:,} exchanges) in {time.perf_counter() - t:.1f} s, {how}; "
            f"{size:.0f} MB of live Parquet"
        )
        return report(db, args.reps)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _measure_once(db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(db)], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(db: Path, reps: int) -> int:
    """Measure ``reps`` times, each in a fresh process; print every run, the medians and whether
    they stay within the guard (exit 1 when not)."""
    runs: list[dict] = []
    for i in range(max(1, reps)):
        try:
            r = _measure_once(db)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        runs.append(r)
        print(
            f"  run {i + 1}: query {r['query_s']:.3f} s, evaluation {r['eval_s']:.3f} s "
            f"({r['eval_s'] / r['query_s']:.1f}x), eval CPU {r['eval_cpu_s']:.2f} s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, page faults {r['eval_faults']:,}, load {r['load_avg']:.2f}"
        )
    print(f"machine: {os.cpu_count()} CPUs; medians of {len(runs)} measuring processes")
    tuning = [f"{k}={os.environ[k]}" for k in TUNING_ENV if k in os.environ]
    print(
        f"environment: {', '.join(tuning)} (set by you)"
        if tuning
        else "environment: no allocator or CPU-dispatch variables set"
    )
    med = {
        k: float(np.median([r[k] for r in runs]))
        for k in ("query_s", "eval_s", "query_cpu_s", "eval_cpu_s", "eval_faults")
    }
    phases = {
        k: round(float(np.median([r["phases_s"].get(k, 0.0) for r in runs])), 3) for k in runs[0]["phases_s"]
    }
    peak = max(r["peak_rss_mb"] for r in runs)
    ratio = med["eval_s"] / med["query_s"]
    print(
        f"  plain DuckDB p50/p95/p99 per provider: {med['query_s']:.3f} s wall, {med['query_cpu_s']:.3f} s CPU  {runs[-1]['query_rows']}"
    )
    print(
        f"  full evaluation (no judge):            {med['eval_s']:.3f} s wall, {med['eval_cpu_s']:.3f} s CPU, "
        f"{med['eval_faults']:,.0f} page faults"
    )
    print(f"    phases (wall s): {phases}")
    print(
        f"  ratio evaluation / query:              {ratio:.1f}x wall, "
        f"{med['eval_cpu_s'] / med['query_cpu_s']:.1f}x CPU  (guard: <= {MAX_RATIO:.0f}x wall)"
    )
    print(
        f"  peak RSS of the measuring process:     {peak:.0f} MB (the largest of the runs; guard: < {MAX_RSS_MB:.0f} MB)"
    )
    for row in runs[-1]["summary"]:
        print("  ", row)
    ok = ratio <= MAX_RATIO and peak < MAX_RSS_MB
    print(
        f"guard: {'ok' if ok else 'FAILED'} ({ratio:.1f}x of <= {MAX_RATIO:.0f}x, {peak:.0f} MB of < {MAX_RSS_MB:.0f} MB)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
