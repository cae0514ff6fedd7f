"""The store in a bucket: segments uploaded per second, and a large run's evaluation read from the bucket.

Runs moto's S3-compatible server on 127.0.0.1 in this process (the only S3 server the package
registries here offer; a real S3, MinIO or R2 has other latencies, so these figures are for
comparing parity's two backends on one machine, not a forecast of AWS).

1. Upload: ``write_segment`` into ``s3://bench/store`` of ``--segments`` flushes of ``--rows-per-segment``
   exchange rows (~4 KB each, as ``bench/store_ingest.py``), from 1 writer and from ``--writers``
   threads at once (each flush is one PUT); the same into a local store for comparison.
2. Evaluation: ``bench/evals_scale.py``'s synthetic run of ``--cells`` result cells (three arms,
   compacted as ``parity replay`` does), written to a local store, its live segments uploaded to the
   bucket under the same names; then the full ``evals.evaluate`` and a plain DuckDB query are timed
   in fresh processes against the local store and against ``s3://bench/eval`` (``--reps`` each, medians).

    .venv/bin/python bench/s3_store.py [--cells 1000000] [--segments 200] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parity.procs import free_port, wait_port  # noqa: E402
from parity.store import objstore  # noqa: E402
from parity.store.format import MANIFEST, manifest_bytes  # noqa: E402
from parity.store.schema import TABLES  # noqa: E402
from parity.store.segments import list_segments, segment_root, write_segment  # noqa: E402

EVALS_SCALE = ROOT / "bench" / "evals_scale.py"


def start_s3() -> tuple[object, str]:
    """moto's server on a free port, this process's AWS_* variables pointing at it, bucket ``bench``."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_port(port)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_EC2_METADATA_DISABLED="true",
    )
    objstore.fs.cache_clear()
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    return server, endpoint


def exchange_rows(n: int, k: int) -> list[dict]:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "w " * 900}]})
    answer = json.dumps({"choices": [{"message": {"content": "a " * 900}}]})
    now = datetime.now(UTC)
    return [
        {
            "id": f"b{k}-{i}",
            "recorded_at": now,
            "endpoint": "chat.completions",
            "model": "gpt-4o-mini",
            "status": 200,
            "request_body": body,
            "response_body": answer,
            "chunk_offsets_ms": [float(j) for j in range(32)],
            "latency_ms": 120.0,
        }
        for i in range(n)
    ]


def upload_rate(root, segments: int, rows: int, writers: int) -> tuple[float, float]:
    """(segments/s, exchanges/s) for ``segments`` flushes of ``rows`` rows by ``writers`` threads."""
    batches = [exchange_rows(rows, k) for k in range(segments)]
    t = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda b: write_segment(root, "exchanges", b, "bench"), batches))
    s = time.perf_counter() - t
    return segments / s, segments * rows / s


def upload_store(local_db: Path, url: str) -> tuple[int, float]:
    """Copy the live segments of ``local_db`` into the bucket store ``url``; (files, MB)."""
    src, dest = segment_root(local_db), segment_root(url)
    objstore.put(dest / MANIFEST, manifest_bytes())
    files, size = 0, 0
    for table in TABLES:
        for p in list_segments(src, table):
            data = p.read_bytes()
            objstore.put(dest / table / p.name, data)
            files, size = files + 1, size + len(data)
    return files, size / 1e6


def measure(db: str, reps: int) -> dict:
    """Medians of ``evals_scale.py --measure`` (query and full evaluation) in ``reps`` fresh processes."""
    runs = []
    for _ in range(reps):
        out = subprocess.run(
            [sys.executable, str(EVALS_SCALE), "--measure", db], capture_output=True, text=True, cwd=ROOT
        )
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in runs) for k in ("query_s", "eval_s", "eval_cpu_s")}
    med["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    med["runs"] = [round(r["eval_s"], 2) for r in runs]
    med["summary"] = runs[-1]["summary"]
    return med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1_000_000, help="result cells of the evaluated run")
    ap.add_argument("--segments", type=int, default=200, help="segments to upload per upload figure")
    ap.add_argument("--rows-per-segment", type=int, default=50, help="exchange rows per segment")
    ap.add_argument("--writers", type=int, default=4, help="threads uploading at once")
    ap.add_argument("--reps", type=int, default=3, help="measuring processes per backend (medians)")
    args = ap.parse_args(argv)
    server, endpoint = start_s3()
    tmp = Path(tempfile.mkdtemp(prefix="s3-bench-"))
    try:
        print(f"S3-compatible server: moto on {endpoint} (in this process); {os.cpu_count()} CPUs")
        seg, rows = args.segments, args.rows_per_segment
        for name, root in (("bucket", segment_root("s3://bench/upload")), ("local disk", tmp / "up.d")):
            one = upload_rate(root, seg, rows, 1)
            many = upload_rate(root, seg, rows, args.writers)
            print(
                f"upload to {name}: {one[0]:,.0f} segments/s ({one[1]:,.0f} exchanges/s) from 1 writer; "
                f"{many[0]:,.0f} segments/s ({many[1]:,.0f} exchanges/s) from {args.writers} at once "
                f"({seg} segments of {rows} rows, ~4 KB each)"
            )
        local = tmp / "eval" / "parity.duckdb"
        t = time.perf_counter()
        made = subprocess.run(
            [sys.executable, str(EVALS_SCALE), "--synth", str(local), "--rows", str(args.cells)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if made.returncode:
            print(made.stderr[-3000:], file=sys.stderr)
            return 1
        t_synth = time.perf_counter() - t
        t = time.perf_counter()
        files, mb = upload_store(local, "s3://bench/eval")
        print(
            f"run of {args.cells:,} cells: synthesised and compacted locally in {t_synth:.1f} s; "
            f"{files} live segments ({mb:.0f} MB) uploaded in {time.perf_counter() - t:.1f} s"
        )
        figures = {}
        for name, db in (("local disk", str(local)), ("bucket", "s3://bench/eval")):
            m = figures[name] = measure(db, args.reps)
            print(
                f"  {name:10}: evaluation {m['eval_s']:.2f} s wall (runs {m['runs']}), "
                f"{m['eval_cpu_s']:.2f} s CPU, plain query {m['query_s']:.2f} s, peak RSS {m['peak_rss_mb']:.0f} MB"
            )
        a, b = figures["local disk"], figures["bucket"]
        print(
            f"  bucket / local disk: evaluation {b['eval_s'] / a['eval_s']:.2f}x, query {b['query_s'] / a['query_s']:.2f}x"
        )
        if a["summary"] != b["summary"]:
            print("  RESULTS DIFFER between the backends", file=sys.stderr)
            return 1
        print("  both backends give the same summary")
        return 0
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
