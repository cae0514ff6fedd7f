"""The store: named migrations, views vs schema, permissions, catalog readers, compaction."""

from __future__ import annotations

import json
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

from parity.store.format import MANIFEST, STORE_FORMAT
from parity.store.schema import JSON_COLUMNS, TABLES
from parity.store.segments import compact, list_segments, segment_root, write_segment
from parity.store.store import MIGRATIONS, StoreFormatError, connect, init_catalog
from parity.store.upgrade import upgrade

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


def test_a_missing_table_folder_reads_as_an_empty_table(migrated_store: Path) -> None:
    root = segment_root(migrated_store)
    for p in (root / "judgments").iterdir():
        p.unlink()
    (root / "judgments").rmdir()
    assert connect(migrated_store).execute("SELECT count(*) FROM judgments").fetchall() == [(0,)]


def _prerelease_store(tmp_path: Path, results: pa.Table) -> Path:
    """A store as a pre-release parity left it: no format stamp, segments lacking newer columns."""
    root = segment_root(tmp_path / "old.duckdb")
    (root / "results").mkdir(parents=True)
    (root / "exchanges").mkdir()
    pq.write_table(
        pa.table({"id": ["x1"], "endpoint": ["chat.completions"]}), root / "exchanges" / "seg-1-a-1.parquet"
    )
    pq.write_table(results, root / "results" / "seg-1-a-2.parquet")
    return tmp_path / "old.duckdb"


def test_a_store_without_the_format_stamp_is_refused_naming_the_upgrade(tmp_path: Path) -> None:
    db = _prerelease_store(tmp_path, pa.table({"run_id": ["r"], "exchange_id": ["x1"]}))
    with pytest.raises(StoreFormatError) as e:
        connect(db)
    assert str(db) in str(e.value) and f"parity upgrade --db {db}" in str(e.value)
    out = subprocess.run(
        [sys.executable, "-m", "parity.cli", "ls", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "parity upgrade" in out.stderr, out.stderr


def test_a_store_of_a_newer_format_is_refused(migrated_store: Path) -> None:
    (segment_root(migrated_store) / MANIFEST).write_text(json.dumps({"format": STORE_FORMAT + 1}))
    with pytest.raises(StoreFormatError, match="newer parity"):
        connect(migrated_store)


def test_upgrade_refuses_results_without_the_facts_and_leaves_the_store_alone(tmp_path: Path) -> None:
    db = _prerelease_store(tmp_path, pa.table({"run_id": ["r7"], "exchange_id": ["x1"], "provider": ["p"]}))
    before = sorted(p.name for p in segment_root(db).rglob("*"))
    out = subprocess.run(
        [sys.executable, "-m", "parity.cli", "upgrade", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "r7" in out.stderr and "chk_" in out.stderr and "replay" in out.stderr, out.stderr
    assert sorted(p.name for p in segment_root(db).rglob("*")) == before
    with pytest.raises(StoreFormatError):
        connect(db)


def test_upgrade_gives_older_segments_their_missing_columns_then_reads_them(tmp_path: Path) -> None:
    facts = {f.name: pa.nulls(1, f.type) for f in TABLES["results"] if f.name.startswith("chk_")}
    results = pa.table({"run_id": ["r"], "exchange_id": ["x1"], "provider": ["p"], **facts})
    db = _prerelease_store(tmp_path, results)
    assert "upgraded to format" in upgrade(db)
    con = connect(db)
    for table, schema in TABLES.items():
        assert [c for c, _ in view_columns(con, table)] == schema.names, table
    assert con.execute("SELECT id, redactions FROM exchanges").fetchall() == [("x1", None)]
    assert con.execute("SELECT exchange_id, provider FROM results").fetchall() == [("x1", "p")]
    assert "already" in upgrade(db)


def test_a_new_store_is_stamped_by_its_first_writer(tmp_path: Path) -> None:
    root = segment_root(tmp_path / "new.duckdb")
    write_segment(root, "exchanges", [exchange(1)], "w")
    assert json.loads((root / MANIFEST).read_text())["format"] == STORE_FORMAT
    assert connect(tmp_path / "new.duckdb").execute("SELECT count(*) FROM exchanges").fetchall() == [(1,)]
