"""``parity.store.frames.scan``: a table as a polars frame is the same rows, columns and types as its view.

evals reads a run's cells through it (a third of the view's cost for that wide read), so it must
follow the views' listing rules exactly: a compaction's merged segment counts once and the segments
it replaced never, a segment lacking a column reads it as null, and an empty table is the schema.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from parity.store.frames import scan
from parity.store.schema import TABLES
from parity.store.segments import compact, segment_root, write_segment
from parity.store.store import connect, init_catalog, store_of

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def results(n: int, prefix: str, run: str = "r1") -> list[dict]:
    return [
        {
            "run_id": run,
            "exchange_id": f"{prefix}{i}",
            "provider": "cand" if i % 2 else "recorded",
            "repeat": 0,
            "endpoint": "chat.completions",
            "started_at": T0 + timedelta(seconds=i),
            "status": 200 if i % 7 else 500,
            "ttft_ms": 100.0 + i,
            "chk_error": bool(i % 7 == 0),
        }
        for i in range(n)
    ]


def view_frame(db, table: str) -> pl.DataFrame:
    con = connect(db)
    try:
        cols = ", ".join(f'"{c}"' for c in TABLES[table].names)
        df = pl.from_arrow(con.sql(f"SELECT {cols} FROM {table}").arrow().read_all())
    finally:
        con.close()
    # DuckDB names UTC Etc/UTC: the same instants
    return df.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    key = ["run_id", "exchange_id", "provider"]
    assert a.columns == b.columns
    assert a.height == b.height
    assert a.sort(key).equals(b.sort(key))


def test_scan_is_the_view_before_and_after_compaction(tmp_path):
    db = tmp_path / "parity.duckdb"
    init_catalog(db)
    root = segment_root(db)
    write_segment(root, "results", results(40, "a"), "w1")
    write_segment(root, "results", results(30, "b", run="r2"), "w2")
    # a segment written without some columns: they read as null, as in the view
    write_segment(
        root, "results", [{k: v for k, v in r.items() if k != "chk_error"} for r in results(5, "c")], "w3"
    )
    got = scan(db, "results").collect()
    assert got.schema == pl.from_arrow(TABLES["results"].empty_table()).schema
    same(got, view_frame(db, "results"))
    assert got.filter(pl.col("exchange_id").str.starts_with("c"))["chk_error"].null_count() == 5

    compact(root, "results", min_age_s=0.0)
    after = scan(db, "results").collect()
    assert after.height == 75  # every row once: the merged segment, not the segments it replaced
    same(after, view_frame(db, "results"))


def test_an_empty_table_is_the_schema_and_the_connection_names_its_store(tmp_path):
    db = tmp_path / "parity.duckdb"
    init_catalog(db)
    assert scan(db, "attempts").collect().height == 0
    assert scan(db, "attempts").collect_schema() == pl.from_arrow(TABLES["attempts"].empty_table()).schema
    con = connect(db)
    try:
        assert store_of(con) == str(db)
    finally:
        con.close()


def test_a_connection_not_from_the_store_is_named():
    import duckdb

    from parity.store.errors import StoreError

    with pytest.raises(StoreError, match="not opened by parity.store.store.connect"):
        store_of(duckdb.connect())
