"""The store's layout changes what evaluation reads, never what it finds.

``parity replay`` compacts a finished run's results into files ordered by sample key (row groups
of ``ROW_GROUP_ROWS``), so evaluation's samples are one prefix of the run (the same exchanges in
every arm) that DuckDB reaches without reading the other bodies. Every figure must be the same as
on the segments as written.
"""

from __future__ import annotations

import math

import polars as pl
import pyarrow.parquet as pq
import pytest
from evalhelpers import chat_body, latency_arms, make_result, run_config, with_facts, write_run

from parity import evals
from parity.store.export import compact_store
from parity.store.segments import ROW_GROUP_ROWS, list_segments, segment_root

N = 600
FRAMES = ("latency", "reliability", "cost", "breakeven", "quality", "compat", "summary")
PROVIDERS = {"cand": {"base_url": "http://127.0.0.1:1/v1", "models": {"*": "*"}, "models_listed": ["m"]}}


def _rows() -> list[dict]:
    rows = latency_arms(N, seed=3, shift_ms=25.0)
    for i, r in enumerate(rows):
        words = ["alpha", "beta", "gamma", "delta"][: 1 + (i * 7) % 4]
        if r["provider"] == "cand" and i % 5 == 0:
            words = words[::-1]
        r["response_body"] = chat_body(" ".join(words), usage=(10, r["completion_tokens"]))
        if r["provider"] == "cand" and i % 37 == 0:  # scattered errors, one kind each
            err = {"error": {"message": "busy", "type": "server_error", "code": 503 if i % 2 else None}}
            r |= {
                "status": 429 if i % 3 else 500,
                "response_body": err,
                "response_headers": {"retry-after": "1"},
            }
    return [make_result(**r) if not isinstance(r.get("response_body"), str) else r for r in rows]


def _evaluate(db) -> dict[str, pl.DataFrame]:
    ev = evals.evaluate(db, "r1", quality_sample=N // 6, itl_sample=N // 10)
    return {f: getattr(ev, f) for f in FRAMES}


def _same(a: pl.DataFrame, b: pl.DataFrame, name: str) -> None:
    assert a.columns == b.columns, name
    assert a.height == b.height, name
    for row_a, row_b in zip(a.rows(named=True), b.rows(named=True), strict=True):
        for k, va in row_a.items():
            vb = row_b[k]
            if isinstance(va, float) and isinstance(vb, float):
                assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(vb, rel=1e-9, abs=1e-12), (
                    name,
                    k,
                )
            else:
                assert va == vb, (name, k, va, vb)


def test_compaction_changes_no_figure(tmp_path):
    rows = with_facts(_rows())
    db = tmp_path / "s.duckdb"
    root = segment_root(db)
    for k in range(0, len(rows), 250):  # segments as a writer flushes them
        write_run(db, rows[k : k + 250], run_config(PROVIDERS) if k == 0 else None)
    before = _evaluate(db)
    assert 0 < before["quality"]["n_text_compared"].sum() < N  # the quality sample really samples
    files, n = compact_store(db, min_age_s=0.0, tables=("results",))["results"]
    assert files > 1 and n == len(rows)
    (merged,) = list_segments(root, "results")
    meta = pq.ParquetFile(merged).metadata
    assert meta.num_row_groups == math.ceil(n / ROW_GROUP_ROWS)
    order = pl.from_arrow(pq.read_table(merged, columns=["sample_key", "exchange_id", "provider"]))
    # the sample is a prefix of the run's rows, each exchange's arms side by side
    assert order.rows() == sorted(order.rows())
    after = _evaluate(db)
    for f in FRAMES:
        _same(before[f], after[f], f)


def test_compacting_one_run_leaves_the_others_and_keeps_every_row(tmp_path):
    from parity.store.segments import MERGED_PREFIX, supersedes
    from parity.store.store import connect

    db = tmp_path / "s.duckdb"
    root = segment_root(db)
    for run in ("r1", "r2"):
        rows = [{**r, "run_id": run} for r in with_facts(_rows()[:300])]
        for k in range(0, len(rows), 100):
            write_run(db, rows[k : k + 100], run_id=run)
    before = {p.name for p in list_segments(root, "results")}
    files, n = compact_store(db, min_age_s=0.0, tables=("results",), run_id="r1")["results"]
    assert (files, n) == (3, 300)
    live = list_segments(root, "results")
    (merged,) = [p for p in live if p.name.startswith(MERGED_PREFIX)]
    assert set(supersedes(merged)) <= before and len(supersedes(merged)) == 3
    assert {p.name for p in live} - {merged.name} <= before  # r2's segments untouched
    assert oct(merged.stat().st_mode & 0o777) == "0o600"
    con = connect(db)
    try:
        got = con.sql(
            "SELECT run_id, count(*), count(DISTINCT (exchange_id, provider)) FROM results GROUP BY 1 ORDER BY 1"
        )
        assert got.fetchall() == [("r1", 300, 300), ("r2", 300, 300)]
    finally:
        con.close()
