"""BatchWriter: batching, spill on any store failure, re-import, never losing a row."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from waitkit import wait_for

import parity.store.writer as writer_mod
from parity.store.segments import list_segments, segment_root
from parity.store.store import connect
from parity.store.writer import BatchWriter


def row(i: int) -> dict:
    return {"id": f"r{i}", "recorded_at": datetime.now(UTC), "endpoint": "chat.completions", "status": 200}


def count(db: Path) -> int:
    return connect(db).execute("SELECT count(DISTINCT id) FROM exchanges").fetchall()[0][0]


@pytest.fixture
def writer(migrated_store: Path, tmp_path: Path):
    w = BatchWriter(
        segment_root(migrated_store), spill_dir=tmp_path / "spill", interval=0.1, retry_interval=0.2
    )
    w.start()
    yield w
    w.close()


def test_rows_are_written_in_batches_and_close_flushes(migrated_store: Path, tmp_path: Path) -> None:
    w = BatchWriter(segment_root(migrated_store), spill_dir=tmp_path / "spill", interval=1.0)
    w.start()
    t0 = time.perf_counter()
    for i in range(10_000):
        w.put("exchanges", row(i))
    put_s = time.perf_counter() - t0
    stats = w.close()
    assert put_s < 0.5  # put is a deque append: never blocks on the store
    assert (stats.written, stats.spilled, stats.lost) == (10_000, 0, 0)
    assert count(migrated_store) == 10_000
    assert len(list_segments(segment_root(migrated_store), "exchanges")) <= 4  # max_batch 5000


def test_table_folder_replaced_by_a_file_spills_then_reimports(writer, migrated_store: Path, caplog) -> None:
    # chmod cannot stop root (CI runs as root), so break the store with a file where a folder was.
    table = segment_root(migrated_store) / "exchanges"
    shutil.rmtree(table)
    table.write_text("not a folder")
    with caplog.at_level(logging.ERROR, "parity.writer"):
        for i in range(5):
            writer.put("exchanges", row(i))
        assert wait_for(lambda: writer.stats.spilled == 5)
    assert "STORE WRITE FAILED" in caplog.text and writer.stats.failures >= 1
    assert list((writer.spill_dir / "exchanges").glob("seg-*.parquet"))
    table.unlink()  # the store is writable again; no new traffic is needed
    assert wait_for(lambda: writer.stats.reimported == 5)
    assert count(migrated_store) == 5 and writer.stats.lost == 0
    assert not list((writer.spill_dir / "exchanges").glob("seg-*.parquet"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores chmod; the file-for-a-folder test covers this")
def test_read_only_table_folder_spills(writer, migrated_store: Path) -> None:
    table = segment_root(migrated_store) / "exchanges"
    table.chmod(0o500)
    try:
        writer.put("exchanges", row(1))
        assert wait_for(lambda: writer.stats.spilled == 1)
    finally:
        table.chmod(0o700)
    assert wait_for(lambda: writer.stats.reimported == 1)
    assert count(migrated_store) == 1


def test_disk_full_spills(writer, migrated_store: Path, monkeypatch) -> None:
    real = writer_mod.write_segment
    root = segment_root(migrated_store)
    full = {"on": True}

    def enospc(where, table, data, writer_id):
        if where == root and full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(where, table, data, writer_id)

    monkeypatch.setattr(writer_mod, "write_segment", enospc)
    for i in range(3):
        writer.put("exchanges", row(i))
    assert wait_for(lambda: writer.stats.spilled == 3)
    assert "No space left" in writer.stats.last_error
    full["on"] = False
    assert wait_for(lambda: writer.stats.reimported == 3)
    assert count(migrated_store) == 3


def test_store_and_spill_both_failing_keeps_rows_in_memory(writer, migrated_store: Path, monkeypatch) -> None:
    real = writer_mod.write_segment
    broken = {"on": True}

    def fail(*a):
        if broken["on"]:
            raise OSError(errno.EIO, "I/O error")
        return real(*a)

    monkeypatch.setattr(writer_mod, "write_segment", fail)
    for i in range(4):
        writer.put("exchanges", row(i))
    assert wait_for(lambda: writer.stats.failures >= 3)
    assert writer.pending == 4 and writer.stats.lost == 0
    broken["on"] = False
    assert wait_for(lambda: writer.stats.written == 4)
    assert count(migrated_store) == 4


def test_a_bad_row_does_not_sink_its_batch_and_is_kept_what_fits(writer, migrated_store: Path) -> None:
    writer.put("exchanges", row(1))
    writer.put("exchanges", {**row(2), "status": "not an int", "model": "lone \ud800 surrogate"})
    writer.put("exchanges", row(3))
    assert wait_for(lambda: writer.stats.written == 3)
    assert writer.stats.lost == 0 and count(migrated_store) == 3
    [(status, model, err, msg)] = (
        connect(migrated_store)
        .execute("SELECT status, model, error_type, error_message FROM exchanges WHERE id = 'r2'")
        .fetchall()
    )
    assert status is None and model == "lone ? surrogate"
    assert err == "recorder_error" and "dropped: status" in msg


def test_row_builders_run_on_the_writer_thread_with_a_fallback(writer, migrated_store: Path) -> None:
    import threading

    seen = []

    class Builder:
        def __call__(self):
            seen.append(threading.current_thread().name)
            raise ValueError("bug in build_row")

        def fallback(self, err):
            return {**row(9), "error_type": "recorder_error", "error_message": str(err)}

    writer.put("exchanges", Builder())
    assert wait_for(lambda: writer.stats.written == 1)
    assert seen == ["parity-writer"]
    assert connect(migrated_store).execute("SELECT error_type FROM exchanges").fetchall() == [
        ("recorder_error",)
    ]


def test_spill_left_by_an_earlier_process_is_imported_on_start(migrated_store: Path, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    writer_mod.write_segment(spill, "exchanges", [row(1), row(2)], "old")
    w = BatchWriter(segment_root(migrated_store), spill_dir=spill, interval=0.1)
    w.start()
    assert w.stats.reimported == 2
    w.close()
    assert count(migrated_store) == 2


def test_default_spill_dir_is_outside_the_store(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    d = writer_mod.default_spill_dir(tmp_path / "x" / "parity.duckdb.d")
    assert d.is_relative_to(tmp_path / "state" / "parity" / "spill")


# ---------------------------------------------------------------- the process writer


def capture(i: int):
    from mitmproxy.http import Headers

    from parity.recorder.capture import Capture

    return Capture(
        wall_start=time.time(),
        t_start=1.0,
        method="POST",
        path="/v1/chat/completions",
        host="h",
        request_headers=Headers([(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-x")]),
        request_raw=b'{"model": "m", "n": %d}' % i,
        status=200,
        response_headers=Headers([(b"content-type", b"text/event-stream")]),
        t_end=1.5,
        chunks=[
            (1.1, b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'),
            (1.2, b"data: [DONE]\n\n"),
        ],
    )


def test_process_writer_builds_rows_in_a_child(migrated_store: Path, tmp_path: Path) -> None:
    from parity.recorder.writer_proc import ProcessWriter

    w = ProcessWriter(segment_root(migrated_store), spill_dir=tmp_path / "spill", interval=0.1)
    w.start()
    for i in range(300):
        w.put("exchanges", capture(i) if i % 2 else row(i))
    stats = w.close()
    assert (stats.queued, stats.written, stats.lost) == (300, 300, 0)
    con = connect(migrated_store)
    assert con.execute(
        "SELECT count(*), count(*) FILTER (WHERE stream_complete) FROM exchanges"
    ).fetchall() == [(300, 150)]


def test_process_writer_replaces_a_dead_child(migrated_store: Path, tmp_path: Path) -> None:
    import os
    import signal as sig

    from parity.recorder.writer_proc import ProcessWriter

    w = ProcessWriter(segment_root(migrated_store), spill_dir=tmp_path / "spill", interval=0.1)
    w.start()
    w.put("exchanges", row(1))
    assert wait_for(lambda: count(migrated_store) == 1)
    first = w._proc.pid
    os.kill(first, sig.SIGKILL)  # the child this test started
    w._proc.join(5)
    for i in range(2, 12):
        w.put("exchanges", row(i))
    assert wait_for(lambda: count(migrated_store) == 11)
    assert w._proc.pid != first
    assert w.close().lost == 0


def test_process_writer_falls_back_to_a_thread(migrated_store: Path, tmp_path: Path, monkeypatch) -> None:
    from parity.recorder.writer_proc import ProcessWriter

    w = ProcessWriter(segment_root(migrated_store), spill_dir=tmp_path / "spill", interval=0.1)
    monkeypatch.setattr(w, "_spawn", lambda: False)  # no child can start here
    w.start()
    w.put("exchanges", row(1))
    assert w.close().written == 1 and count(migrated_store) == 1
