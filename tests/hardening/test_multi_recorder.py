"""Several ``parity record`` processes writing one store without coordinating.

Every reader must see the union, each exchange exactly once, and ``parity compact`` run while a
recorder still writes must leave every exchange exactly once. Two known windows of
``parity.store.segments.compact`` are pinned by strict xfails at the end (they pass once fixed).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import pytest
from faultkit import ROOT, markers_in_store, parity_argv, query, send_all
from waitkit import wait_for

import parity.store.segments as segments
from parity.store.segments import compact, list_segments, segment_root, write_segment
from parity.store.store import connect, prepare

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


@pytest.fixture(scope="module")
def fake():
    from parity.fake.server import FakeProvider

    with FakeProvider.running(profile="instant", port=0, answer_min_tokens=4, answer_max_tokens=8) as fp:
        yield fp


def shared_db(tmp_path: Path) -> Path:
    db = tmp_path / "shared" / "parity.duckdb"
    db.parent.mkdir()
    return db


def test_two_recorders_one_store_union_exactly_once(fake, run_recorder, tmp_path: Path) -> None:
    db = shared_db(tmp_path)
    a = run_recorder(fake.url, "--flush-interval", "0.2", db=db)
    b = run_recorder(fake.url, "--flush-interval", "0.2", db=db)
    n = 240
    targets = [((a, b)[i % 2].base_url, f"mr1-{i:04d}", i % 3 == 0) for i in range(n)]
    status = asyncio.run(send_all(targets, concurrency=16))
    assert sorted(set(status.values())) == [200], {k: v for k, v in status.items() if v != 200}
    # a reader while both still run: never a duplicate, converging on the union
    deadline = time.monotonic() + 15
    while True:
        rows = markers_in_store(db, "mr1-")
        assert all(c == 1 for _, c, _ in rows), [r for r in rows if r[1] != 1]
        if len(rows) == n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert a.stop() == 0 and b.stop() == 0
    rows = markers_in_store(db, "mr1-")
    assert len(rows) == n and all(c == 1 for _, c, _ in rows)
    by_marker = {m: rid for m, _, rid in rows}
    pids = {a.proc.pid: "a", b.proc.pid: "b"}
    for i in range(n):  # each row carries the id of the recorder it went through
        rid = by_marker[f"mr1-{i:04d}"]
        assert pids[int(rid.rsplit("-", 1)[1])] == "ab"[i % 2], (i, rid)
    [(total, distinct)] = query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges")
    assert total == distinct == n
    for rec in (a, b):
        assert "0 spilled, 0 re-imported, 0 lost" in rec.log()


def test_compact_while_a_recorder_writes_keeps_every_row_once(fake, run_recorder, tmp_path: Path) -> None:
    db = shared_db(tmp_path)
    a = run_recorder(fake.url, "--flush-interval", "0.2", db=db)
    b = run_recorder(fake.url, "--flush-interval", "0.2", db=db)
    first = [((a, b)[i % 2].base_url, f"mc-{i:04d}", i % 3 == 0) for i in range(120)]
    assert set(asyncio.run(send_all(first, concurrency=8)).values()) == {200}
    assert b.stop() == 0  # b is done; a keeps writing below
    assert wait_for(lambda: len(markers_in_store(db, "mc-")) == 120)  # the first batch is in segments

    # a writes continuously (small batches, so many segments) while compaction runs
    later = [(a.base_url, f"mc-{i:04d}", i % 3 == 0) for i in range(120, 420)]
    status: dict[str, int] = {}

    def sender() -> None:
        for k in range(0, len(later), 20):
            status.update(asyncio.run(send_all(later[k : k + 20], concurrency=4)))
            time.sleep(0.1)

    seen = {"reads": 0, "dup_reads": 0, "max_extra": 0, "errors": []}
    stop_reader = threading.Event()

    def reader() -> None:
        while not stop_reader.is_set():
            try:
                [(total, distinct)] = query(
                    db,
                    "SELECT count(*), count(DISTINCT request_body->>'$.user') FROM exchanges "
                    "WHERE request_body->>'$.user' LIKE 'mc-%'",
                )
            except Exception as e:  # noqa: BLE001 (recorded and reported, not fatal here)
                seen["errors"].append(f"{type(e).__name__}: {str(e)[:160]}")
            else:
                seen["reads"] += 1
                if total > distinct:
                    seen["dup_reads"] += 1
                    seen["max_extra"] = max(seen["max_extra"], total - distinct)
            time.sleep(0.01)

    threads = [threading.Thread(target=sender), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    compactions = []
    try:
        for _ in range(3):
            time.sleep(0.6)
            out = subprocess.run(
                parity_argv("compact", "--db", str(db), "--min-age", "0"),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            compactions.append(out)
        threads[0].join(120)
    finally:
        stop_reader.set()
        for t in threads:
            t.join(30)
    assert a.stop() == 0
    assert all(o.returncode == 0 for o in compactions), [o.stderr for o in compactions]
    assert any("exchanges: merged" in o.stdout for o in compactions), [o.stdout for o in compactions]
    assert set(status.values()) == {200} and len(status) == len(later)
    rows = markers_in_store(db, "mc-")
    assert len(rows) == 420, len(rows)
    assert all(c == 1 for _, c, _ in rows), [r for r in rows if r[1] != 1]
    assert query(db, "SELECT count(*) - count(DISTINCT id) FROM exchanges") == [(0,)]
    # What readers saw meanwhile is reported, not asserted (see the xfails below for the windows).
    print(
        f"\nreader during compaction: {seen['reads']} reads, {seen['dup_reads']} saw duplicates "
        f"(max {seen['max_extra']} extra rows), {len(seen['errors'])} failed: {seen['errors'][:3]}"
    )


# ---------------------------------------------------------------- compaction windows (known issues)


def _store_with_segments(tmp_path: Path, n_segments: int = 4, rows_each: int = 5) -> Path:
    db = tmp_path / "c" / "parity.duckdb"
    db.parent.mkdir()
    root = segment_root(db)
    prepare(root)  # every table's folder and schema seed now: readers below write nothing
    for s in range(n_segments):
        rows = [
            {"id": f"c{s}-{i}", "endpoint": "chat.completions", "source": "test"} for i in range(rows_each)
        ]
        write_segment(root, "exchanges", rows, f"w{s}")
    return db


def test_reader_never_sees_a_compacted_row_twice(tmp_path: Path, monkeypatch) -> None:
    """A reader connecting while the merged segment and its sources are both on disk counts once."""
    db = _store_with_segments(tmp_path)
    real = segments.write_parquet_atomic
    during: list[int] = []

    def write_then_read(table, dest):
        out = real(table, dest)
        if "-compact-" in dest.name:  # the merged segment is in, the sources not yet deleted
            during.append(query(db, "SELECT count(*) FROM exchanges")[0][0])
        return out

    monkeypatch.setattr(segments, "write_parquet_atomic", write_then_read)
    assert compact(segment_root(db), "exchanges", min_age_s=0) == (4, 20)
    assert query(db, "SELECT count(*) FROM exchanges") == [(20,)]
    assert during == [20]


def test_a_connection_made_before_a_compaction_still_counts_each_row_once(tmp_path: Path) -> None:
    """Views list the folder when the connection is made: a later merge neither doubles nor drops rows,
    and the merge's sources are only deleted once they are older than the grace period."""
    db = _store_with_segments(tmp_path)
    root = segment_root(db)
    before = connect(db)
    try:
        assert before.execute("SELECT count(*), count(DISTINCT id) FROM exchanges").fetchall() == [(20, 20)]
        assert compact(root, "exchanges", min_age_s=0) == (4, 20)
        write_segment(root, "exchanges", [{"id": "late", "endpoint": "embeddings", "source": "test"}], "w9")
        # the old connection: sources still there (grace), the merged file unknown to it, new rows seen
        assert before.execute("SELECT count(*), count(DISTINCT id) FROM exchanges").fetchall() == [(21, 21)]
        assert query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges") == [(21, 21)]
        names = sorted(p.name for p in (root / "exchanges").glob("*.parquet"))
        assert sum(n.startswith("seg-") for n in names) == 5 and sum(n.startswith("cmp-") for n in names) == 1
        # within the grace period a second compaction deletes nothing; with it over, the sources go
        compact(root, "exchanges", min_age_s=3600)
        assert len(list((root / "exchanges").glob("seg-*.parquet"))) == 5
        compact(root, "exchanges", min_age_s=3600, grace_s=0)
        kinds = [p.name.split("-")[0] for p in sorted((root / "exchanges").glob("[cs]*-*.parquet"))]
        assert kinds == ["cmp", "seg"]  # the merge and the late segment; the four sources are gone
        assert query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges") == [(21, 21)]
    finally:
        before.close()


def test_merged_segments_merge_again_without_double_counting(tmp_path: Path) -> None:
    db = _store_with_segments(tmp_path)
    root = segment_root(db)
    assert compact(root, "exchanges", min_age_s=0) == (4, 20)
    for s in range(3):
        write_segment(root, "exchanges", [{"id": f"n{s}", "endpoint": "x", "source": "test"}], f"n{s}")
    assert compact(root, "exchanges", min_age_s=0) == (4, 23)  # the first merge plus three new segments
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges") == [(23, 23)]
    assert len(list_segments(root, "exchanges")) == 1
    compact(root, "exchanges", min_age_s=0, grace_s=0)
    assert len(list((root / "exchanges").glob("seg-*.parquet"))) == 0
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges") == [(23, 23)]


def test_two_concurrent_compactions_keep_every_row_once(tmp_path: Path, monkeypatch) -> None:
    """A second compaction of the same table while one runs does nothing (per-table lock)."""
    db = _store_with_segments(tmp_path)
    root = segment_root(db)
    real = segments.write_parquet_atomic
    first_writing = threading.Event()

    def slow_write(table, dest):
        if "-compact-" in dest.name:  # hold the first compaction mid-merge while the second starts
            first_writing.set()
            time.sleep(0.5)
        return real(table, dest)

    monkeypatch.setattr(segments, "write_parquet_atomic", slow_write)
    done: list = []
    first = threading.Thread(target=lambda: done.append(compact(root, "exchanges", min_age_s=0)))
    first.start()
    assert first_writing.wait(10)
    second = compact(root, "exchanges", min_age_s=0)
    first.join(30)
    assert second == (0, 0)
    assert done and done[0][0] >= 2
    assert len(list_segments(root, "exchanges")) >= 1
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges") == [(20, 20)]
