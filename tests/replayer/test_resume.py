"""A run killed with SIGKILL and resumed completes every cell exactly once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from argvkit import replay_argv
from replayhelpers import ROOT, fake_table, make_chat_workload, providers_file, write_exchanges
from waitkit import wait_for

from parity.cli import main
from parity.store.segments import segment_root
from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

CONC = 3
SECRET = "sk-parity-kill-test-5e2d8b7a41"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _journal_counts(db: Path, run: str) -> Counter:
    c: Counter = Counter()
    for f in (segment_root(db) / "journal").glob(f"{run}.*.jsonl"):
        for line in f.read_text().splitlines():
            try:
                c[json.loads(line)["k"]] += 1
            except ValueError:
                c["torn"] += 1
    return c


def test_sigkill_then_resume(db: Path, tmp_path: Path, fakes, capsys, monkeypatch) -> None:
    rows = make_chat_workload(24)
    write_exchanges(db, rows)
    fa = fakes("ka", "instant", ttft_ms=150, itl_ms=5, answer_min_tokens=6, answer_max_tokens=8)
    fb = fakes("kb", "instant", ttft_ms=100, itl_ms=5, answer_min_tokens=6, answer_max_tokens=8)
    pf = providers_file(
        tmp_path, fake_table("a", fa, 'api_key_env = "PARITY_TEST_KILL_KEY"') + fake_table("b", fb)
    )
    monkeypatch.setenv("PARITY_TEST_KILL_KEY", SECRET)
    args = [
        *replay_argv(db, pf, "killed"),
        "--concurrency",
        str(CONC),
        "--no-progress",
        "--no-preflight",  # the sent requests are counted below
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "parity.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: _journal_counts(db, "killed")["c"] >= 12, timeout=60), (
            "no progress before kill"
        )
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        for w in workers:  # the post-processor too: journaled results must survive without it
            os.kill(w, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for(lambda: not any(_alive(w) for w in workers), timeout=10)
    before = _journal_counts(db, "killed")
    assert before["d"] < 48  # it really was cut short
    files = [f for f in segment_root(db).rglob("*") if f.is_file()]
    assert any(f.suffix == ".jsonl" for f in files)
    assert not any(SECRET.encode() in f.read_bytes() for f in files)  # not in the journal, not anywhere

    rc = main([*args, "--resume"])
    out = capsys.readouterr().out
    assert rc == 0, out
    con = connect(db)
    try:
        cells = con.execute(
            'SELECT exchange_id, provider, "repeat", count(*), bool_or(resent) FROM results '
            "WHERE run_id = 'killed' GROUP BY ALL"
        ).fetchall()
        states = [
            s
            for (s,) in con.execute(
                "SELECT state FROM run_events WHERE run_id = 'killed' ORDER BY \"at\""
            ).fetchall()
        ]
        runs_state = con.execute("SELECT state, resumes FROM runs WHERE run_id = 'killed'").fetchall()
        note = con.execute(
            "SELECT note FROM run_events WHERE run_id = 'killed' AND state = 'resumed'"
        ).fetchall()
    finally:
        con.close()
    ids = {r["id"] for r in rows}
    got = {(x, p, r): (n, resent) for x, p, r, n, resent in cells}
    assert set(got) == {(x, p, 0) for x in ids for p in ("a", "b", "recorded")}
    assert all(n == 1 for n, _ in got.values())  # every cell completed exactly once
    assert states == ["started", "resumed", "finished"] and runs_state == [("finished", 1)]
    assert not list((segment_root(db) / "journal").glob("killed.*.jsonl"))
    assert "in flight at the stop" in note[0][0] and "journaled results restored" in note[0][0]

    for name, fp in (("a", fa), ("b", fb)):
        resent = {x for (x, p, _), (_, r) in got.items() if p == name and r}
        assert len(resent) <= CONC  # at most the requests in flight at the kill
        sent = Counter(
            re.search(r"Say hello to (\w+)\.", r["body"]["messages"][0]["content"]).group(1)
            for r in fp.posts()
        )
        assert set(sent) == ids  # everything was sent ...
        twice = {x for x, n in sent.items() if n > 1}
        assert twice <= resent  # ... and only in-flight cells were sent again
        assert max(sent.values()) <= 2


def test_ctrl_c_stops_cleanly_and_resumes(db: Path, tmp_path: Path, fakes, capsys) -> None:
    rows = make_chat_workload(16)
    write_exchanges(db, rows)
    fp = fakes("int", "instant", ttft_ms=150, itl_ms=5, answer_min_tokens=6, answer_max_tokens=8)
    pf = providers_file(tmp_path, fake_table("a", fp))
    args = [
        *replay_argv(db, pf, "ctrlc"),
        "--concurrency",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "parity.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert wait_for(lambda: _journal_counts(db, "ctrlc")["c"] >= 4, timeout=60)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "stopped" in out and "--resume" in out
    con = connect(db)
    try:
        state, note = con.execute(
            "SELECT state, note FROM run_events WHERE run_id = 'ctrlc' ORDER BY \"at\" DESC LIMIT 1"
        ).fetchall()[0]
    finally:
        con.close()
    assert state == "stopped" and "interrupted" in note
    assert main([*args, "--resume"]) == 0
    capsys.readouterr()
    con = connect(db)
    try:
        counts = con.execute(
            "SELECT count(*), count(DISTINCT exchange_id), count(*) FILTER (WHERE resent) "
            "FROM results WHERE run_id = 'ctrlc' AND provider = 'a'"
        ).fetchall()[0]
    finally:
        con.close()
    assert counts[0] == counts[1] == 16 and counts[2] <= 2


def test_each_start_journals_to_a_new_file(tmp_path: Path) -> None:
    """A resume that gets the same process id (one process running main() twice, or pid 1 in a
    container) must not append to, and then re-read, the earlier start's journal."""
    from parity.replayer.journal import Journal, load

    first, second = Journal(tmp_path, "r"), Journal(tmp_path, "r")
    try:
        assert first.path != second.path and first.path.parent == second.path.parent
        first.dispatched(("x1", "p", 0))
        second.dispatched(("x2", "p", 0))
    finally:
        first.close()
        second.close()
    assert load(tmp_path, "r").dispatched == {("x1", "p", 0), ("x2", "p", 0)}
