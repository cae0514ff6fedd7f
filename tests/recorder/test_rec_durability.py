"""Loses nothing: kill -9, graceful stops, readers while recording, and store failures.

Every failure case sends real requests through a real ``parity record`` and checks that
each one got its 200 quickly (the store is never on the request path), that the failure was
counted and logged loudly, and that every row reaches the store once it is writable again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from waitkit import wait_for

from parity.store.store import connect, init_catalog

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

# A request that waited on the store would wait for a flush (0.2 s in these tests) and a segment
# write, every time. Judge the median, after a warm-up request, so a loaded machine does not fail
# the test with one slow request.
SLOW_REQUEST_MS = 100


@pytest.fixture(scope="module")
def fake():
    from parity.fake.server import FakeProvider

    with FakeProvider.running(profile="instant", port=0) as fp:
        yield fp


def send(rec, n: int, marker: str) -> list[float]:
    """Send ``n`` chat requests; every one must succeed. Returns client latencies in ms."""
    out = []
    with httpx.Client(base_url=rec.base_url, timeout=10) as c:
        for i in range(n):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{marker}-{i}"}]}
            t0 = time.perf_counter()
            r = c.post("/chat/completions", json=body)
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    return out


def count(db: Path, marker: str) -> int:
    con = connect(db)
    try:
        return con.execute(
            "SELECT count(DISTINCT request_body) FROM exchanges WHERE request_body LIKE ?", [f"%{marker}-%"]
        ).fetchall()[0][0]
    finally:
        con.close()


def wait_count(db: Path, marker: str, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := count(db, marker)) != n:
        assert time.monotonic() < deadline, f"{got} of {n} {marker} rows after {timeout} s"
        time.sleep(0.1)


def wait_log(rec, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in rec.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{rec.log()[-2000:]}"
        time.sleep(0.1)


def writer_alive(pid: int) -> bool:
    try:
        return "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def assert_not_delayed(latencies: list[float]) -> None:
    assert sorted(latencies)[len(latencies) // 2] < SLOW_REQUEST_MS, latencies


def test_kill_9_loses_at_most_the_last_flush_interval(fake, run_recorder) -> None:
    """The kill -9 window: the proxy hands queued exchanges to its writer process every
    --flush-interval (0.5 s here); the writer process writes each batch as one Parquet segment
    (temp file, fsync, rename). SIGKILL of the proxy loses only what it had not handed over yet,
    at most one interval; the writer process sees the pipe close, writes what it holds, exits.
    A segment being written when a process dies is a *.tmp file that readers never see."""
    rec = run_recorder(fake.url, "--flush-interval", "0.5")
    send(rec, 25, "k9")
    wait_count(rec.db, "k9", 25)  # handed over and written: what a kill -9 must not lose
    child = int(re.search(r"writer process (\d+) started", rec.log()).group(1))
    rec.kill9()
    assert rec.proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while writer_alive(child):
        assert time.monotonic() < deadline, "the writer process outlived its proxy"
        time.sleep(0.05)
    again = run_recorder(fake.url, db=rec.db)  # restart on the same store
    assert count(rec.db, "k9") == 25
    send(again, 1, "after")
    assert again.stop() == 0
    assert count(rec.db, "after") == 1 and count(rec.db, "k9") == 25


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_graceful_stop_flushes_everything(fake, run_recorder, sig) -> None:
    rec = run_recorder(fake.url, "--flush-interval", "1.0")
    send(rec, 12, "stop")
    assert rec.stop(sig) == 0  # immediately: the rows are still queued
    assert count(rec.db, "stop") == 12
    assert "wrote 12 exchanges (0 spilled, 0 re-imported, 0 lost)" in rec.log()


def test_stream_in_flight_at_stop_is_recorded(fake, run_recorder) -> None:
    rec = run_recorder(fake.url)
    got: list[bytes] = []

    def client():
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "inflight"}]}
        headers = {"x-fake-ttft-ms": "50", "x-fake-itl-ms": "200", "x-fake-tokens": "30"}
        try:
            with httpx.stream("POST", rec.base_url + "/chat/completions", json=body, headers=headers) as r:
                for data in r.iter_raw():
                    got.append(data)
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.6)
    assert rec.stop() == 0
    t.join(10)
    [(err, complete, content)] = (
        connect(rec.db)
        .execute(
            "SELECT error_type, stream_complete, response_body->>'$.choices[0].message.content' FROM exchanges"
        )
        .fetchall()
    )
    assert err == "recorder_stopped" and complete is False and content


def test_readers_in_another_process_see_rows_while_recording(fake, run_recorder) -> None:
    rec = run_recorder(fake.url, "--flush-interval", "0.5")
    reader = textwrap.dedent(
        f"""
        import duckdb, json
        from parity.store.store import connect
        a = connect({str(rec.db)!r}).execute("SELECT count(*) FROM exchanges").fetchall()[0][0]
        con = duckdb.connect({str(rec.db)!r}, read_only=True)  # the catalog: never locked by the recorder
        b, m = con.execute("SELECT count(*), max(request_body->>'$.model') FROM exchanges").fetchall()[0]
        print(json.dumps([a, b, m]))
        """
    )
    runs: list[subprocess.CompletedProcess] = []

    def read() -> list:
        runs.append(
            subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
        )
        return json.loads(runs[-1].stdout)

    for total in (10, 25):
        send(rec, total - (10 if total == 25 else 0), f"live{total}")
        want = [total, total, "gpt-4o-mini"]
        # rows are readable about one flush interval after their response (more on a busy machine)
        assert wait_for(lambda want=want: read() == want, timeout=6, every=0.2), runs[-1].stderr
        assert rec.proc.poll() is None  # still recording


def test_table_folder_broken_while_recording(fake, run_recorder) -> None:
    rec = run_recorder(fake.url, "--flush-interval", "0.2")
    send(rec, 3, "before")
    wait_count(rec.db, "before", 3)
    table = Path(str(rec.db) + ".d") / "exchanges"
    moved = table.with_name("exchanges.moved")
    table.rename(moved)
    table.write_text("a file where the folder was")  # chmod does not stop root; this does
    assert_not_delayed(send(rec, 10, "broken"))
    wait_log(rec, "STORE WRITE FAILED")
    wait_log(rec, "(total spilled 10)")  # the 10 rows may span two flushes
    spill = Path(rec.argv[rec.argv.index("--spill-dir") + 1]) / "exchanges"
    assert list(spill.glob("seg-*.parquet"))
    table.unlink()
    moved.rename(table)  # writable again: re-imported without a restart or new traffic
    wait_count(rec.db, "broken", 10)
    wait_log(rec, "re-imported 10 spilled rows")  # one import of both spilled segments
    assert count(rec.db, "before") == 3 and not list(spill.glob("seg-*.parquet"))
    assert rec.stop() == 0
    assert "(10 spilled, 10 re-imported, 0 lost)" in rec.log()


def test_store_under_a_file_spills_and_is_imported_on_next_start(fake, run_recorder, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    db = blocker / "parity.duckdb"
    spill = tmp_path / "spill-here"
    rec = run_recorder(fake.url, "--flush-interval", "0.2", db=db, spill_dir=spill)
    send(rec, 1, "warmup")
    assert_not_delayed(send(rec, 6, "underfile"))
    wait_log(rec, "STORE WRITE FAILED")
    assert rec.stop() == 0
    assert "(7 spilled, 0 re-imported, 0 lost)" in rec.log()
    blocker.unlink()
    blocker.mkdir()
    again = run_recorder(fake.url, db=db, spill_dir=spill)
    wait_log(again, "re-imported 7 spilled rows")
    assert count(db, "underfile") == 6


DISK_FULL = """
# Injected with PYTHONPATH into the recorder and its writer process: while the flag file exists,
# creating any file under the store fails with ENOSPC, as on a full disk (the spill is elsewhere).
import errno, os, types
flag, root = os.environ["PARITY_TEST_FULL_FLAG"], os.environ["PARITY_TEST_FULL_ROOT"]
import parity.store.segments as seg

class DiskFull(types.ModuleType):
    def __getattr__(self, name):
        return getattr(os, name)

def full_open(path, flags, mode=0o777, *a, **k):
    if os.path.exists(flag) and str(path).startswith(root) and flags & os.O_CREAT:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return os.open(path, flags, mode, *a, **k)

fake_os = DiskFull("os")
fake_os.open = full_open
seg.os = fake_os  # every file the store creates goes through segments' os.open
"""


def test_disk_full(fake, run_recorder, tmp_path: Path) -> None:
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(DISK_FULL)
    db = tmp_path / "store" / "parity.duckdb"
    db.parent.mkdir()
    flag = tmp_path / "disk-is-full"
    env = {
        "PYTHONPATH": f"{inject}{os.pathsep}{Path(__file__).resolve().parents[2]}",
        "PARITY_TEST_FULL_FLAG": str(flag),
        "PARITY_TEST_FULL_ROOT": str(db) + ".d",
    }
    rec = run_recorder(fake.url, "--flush-interval", "0.2", db=db, env=env)
    send(rec, 2, "ok")
    wait_count(db, "ok", 2)
    flag.touch()
    assert_not_delayed(send(rec, 8, "full"))
    wait_log(rec, "(total spilled 8)")
    assert "No space left on device" in rec.log() and count(db, "full") == 0
    flag.unlink()
    wait_count(db, "full", 8)
    assert rec.stop() == 0
    assert "(8 spilled, 8 re-imported, 0 lost)" in rec.log()


def test_locked_catalog(fake, run_recorder, tmp_path: Path) -> None:
    db = tmp_path / "locked" / "parity.duckdb"
    db.parent.mkdir()
    init_catalog(db)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        rec = run_recorder(fake.url, "--flush-interval", "0.2", db=db)
        send(rec, 1, "warmup")
        assert_not_delayed(send(rec, 10, "locked"))
        assert "not updated" in rec.log()  # said once, at start; recording goes on into segments
        wait_count(db, "locked", 10)
    finally:
        holder.kill()
        holder.wait()
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM exchanges").fetchall() == [(11,)]  # with the warm-up
    con.close()
    assert rec.stop() == 0
