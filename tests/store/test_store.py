"""The store: named migrations, views vs schema, permissions, catalog readers, compaction."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity.store.schema import JSON_COLUMNS, TABLES
from parity.store.segments import compact, list_segments, segment_root, write_segment
from parity.store.store import MIGRATIONS, connect, init_catalog

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


def exchange(i: int, **kw) -> dict:
    return {
        "id": f"id{i}",
        "recorded_at": datetime.now(UTC),
        "endpoint": "chat.completions",
        "model": "m",
        "status": 200,
        "request_body": '{"model": "m"}',
        **kw,
    }


def view_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def test_blank_database_gets_every_migration_once(tmp_path: Path) -> None:
    db = tmp_path / "parity.duckdb"
    assert init_catalog(db) == [name for name, _ in MIGRATIONS]
    assert init_catalog(db) == []  # a no-op the second time
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY name").fetchall()] == [
            "0001_base_views",
            "0002_runs_view",
            "0003_recordings_view",
        ]
        for table, schema in TABLES.items():
            cols = view_columns(con, table)
            assert [c for c, _ in cols] == schema.names, table
            types = dict(cols)
            for c in JSON_COLUMNS[table]:
                assert types[c] == "JSON", (table, c)
        assert [c for c, _ in view_columns(con, "runs")] == [
            "run_id",
            "started_at",
            "finished_at",
            "state",
            "config",
            "resumes",
        ]
    finally:
        con.close()


def test_in_memory_views_match_the_schema(migrated_store: Path) -> None:
    con = connect(migrated_store)
    for table, schema in TABLES.items():
        assert [c for c, _ in view_columns(con, table)] == schema.names
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]


def test_store_files_are_owner_only(migrated_store: Path) -> None:
    root = segment_root(migrated_store)
    write_segment(root, "exchanges", [exchange(1)], "w1")
    paths = [migrated_store, root, *root.rglob("*")]
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p}: {oct(mode)}"


def test_older_segments_without_new_columns_still_read(migrated_store: Path) -> None:
    root = segment_root(migrated_store)
    old = pa.table({"id": ["old"], "endpoint": ["embeddings"]})  # a segment from an older schema
    pq.write_table(old, root / "exchanges" / "seg-00000000T000000000000-old-000001.parquet")
    write_segment(root, "exchanges", [exchange(1)], "w")
    rows = connect(migrated_store).execute("SELECT id, endpoint, model FROM exchanges ORDER BY id").fetchall()
    assert rows == [("id1", "chat.completions", "m"), ("old", "embeddings", None)]


def test_catalog_is_readable_read_only_by_another_process(migrated_store: Path) -> None:
    write_segment(segment_root(migrated_store), "exchanges", [exchange(1), exchange(2)], "w")
    code = f"""
        import duckdb
        con = duckdb.connect({str(migrated_store)!r}, read_only=True)
        print(con.execute("SELECT count(*), max(request_body->>'$.model') FROM exchanges").fetchall())
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[(2, 'm')]", out.stderr


def test_locked_catalog_is_not_an_error_for_writers(migrated_store: Path, caplog) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(migrated_store)!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with caplog.at_level(logging.WARNING):
            assert init_catalog(migrated_store) == []
        assert "not updated" in caplog.text
        write_segment(segment_root(migrated_store), "exchanges", [exchange(1)], "w")
        assert connect(migrated_store).execute("SELECT count(*) FROM exchanges").fetchall() == [(1,)]
    finally:
        holder.kill()
        holder.wait()


def test_compact_merges_old_segments_without_losing_rows(migrated_store: Path) -> None:
    root = segment_root(migrated_store)
    for i in range(5):
        write_segment(root, "exchanges", [exchange(i)], "w")
    past = time.time() - 60
    for p in list_segments(root, "exchanges"):
        os.utime(p, (past, past))
    assert compact(root, "exchanges", min_age_s=5) == (5, 5)
    assert len(list_segments(root, "exchanges")) == 1
    assert connect(migrated_store).execute("SELECT count(DISTINCT id) FROM exchanges").fetchall() == [(5,)]


def test_connect_recreates_a_missing_table_folder(migrated_store: Path) -> None:
    root = segment_root(migrated_store)
    for p in (root / "judgments").iterdir():
        p.unlink()
    (root / "judgments").rmdir()
    assert connect(migrated_store).execute("SELECT count(*) FROM judgments").fetchall() == [(0,)]


def test_a_store_from_an_older_version_shows_every_current_column(tmp_path: Path, monkeypatch) -> None:
    """Segments without the newer columns, no seed of the current schema, a table folder missing,
    and a store this process cannot write (tests run as root, so the read-only filesystem is
    simulated where the store would add the seed): every view still has every column, as nulls."""
    root = segment_root(tmp_path / "old.duckdb")
    (root / "results").mkdir(parents=True)
    (root / "exchanges").mkdir()
    pq.write_table(
        pa.table({"id": ["x1"], "endpoint": ["chat.completions"]}), root / "exchanges" / "seg-1-a-1.parquet"
    )
    pq.write_table(
        pa.table({"run_id": ["r"], "exchange_id": ["x1"], "provider": ["p"]}),
        root / "results" / "seg-1-a-2.parquet",
    )

    def read_only(*_a, **_k):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr("parity.store.store.ensure_table", read_only)
    con = connect(tmp_path / "old.duckdb")
    for table, schema in TABLES.items():
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        assert set(schema.names) <= set(cols), (table, set(schema.names) - set(cols))
    assert con.execute("SELECT id, redactions FROM exchanges").fetchall() == [("x1", None)]
    assert con.execute("SELECT exchange_id, chk_error FROM results").fetchall() == [("x1", None)]
    assert con.execute("SELECT count(*) FROM recordings").fetchall() == [(0,)]
