"""The replayer under faulty providers: one that hangs, one that resets, one that sends garbage SSE.

The run must finish in bounded time with one ``results`` row (and an outcome) per cell, and a
``--resume`` after a SIGKILL mid-run must send nothing again that had completed before the kill.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from argvkit import replay_argv
from faultkit import ROOT, exchange_row, fault_servers, kill9_tree, parity_argv, query, write_rows
from waitkit import wait_for

from parity.cli import main
from parity.store.segments import segment_root
from parity.wire.errors import EXIT_PROVIDER_DEAD

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

N_EXCHANGES = 8  # half streamed
PROVIDERS = ("hang", "reset", "garbage")
RETRIES = {"hang": 0, "reset": 1, "garbage": 0}
HANG_TIMEOUT_S = 1.0


def providers_toml(servers: dict, path: Path) -> Path:
    text = ""
    for name in PROVIDERS:
        text += (
            f'\n[{name}]\nbase_url = "{servers[name].base_url}"\nmodels = {{ "*" = "*" }}\n'
            f"timeout_s = {HANG_TIMEOUT_S if name == 'hang' else 10.0}\nconnect_timeout_s = 2.0\n"
            f"max_retries = {RETRIES[name]}\n"
        )
    path.write_text(text)
    return path


def store(tmp_path: Path, n: int = N_EXCHANGES) -> tuple[Path, list[dict]]:
    db = tmp_path / "parity.duckdb"
    rows = [exchange_row(stream=i % 2 == 0, n=i) for i in range(n)]
    write_rows(db, rows)
    return db, rows


def results(db: Path, run: str) -> dict[tuple[str, str], list[tuple]]:
    got: dict[tuple[str, str], list[tuple]] = {}
    for xid, prov, status, etype, attempts, resent, sdk_valid, stream in query(
        db,
        'SELECT exchange_id, provider, status, error_type, attempts, resent, sdk_valid, "stream" '
        "FROM results WHERE run_id = ?",
        [run],
    ):
        got.setdefault((xid, prov), []).append((status, etype, attempts, resent, sdk_valid, stream))
    return got


def replay_args(db: Path, pf: Path, run: str, conc: int) -> list[str]:
    return [
        *replay_argv(db, pf, run),
        "--concurrency",
        str(conc),
        "--no-progress",
        "--no-preflight",  # the faults are the point: past the preflight, which would refuse them
    ]


def check_outcomes(got: dict, rows: list[dict]) -> None:
    """One row per cell, each with the outcome its provider's fault calls for."""
    ids = {r["id"] for r in rows}
    streamed = {r["id"] for r in rows if r["stream"]}
    assert set(got) == {(x, p) for x in ids for p in (*PROVIDERS, "recorded")}
    assert all(len(v) == 1 for v in got.values()), {k: v for k, v in got.items() if len(v) != 1}
    for (xid, prov), [(status, etype, attempts, _resent, sdk_valid, _)] in got.items():
        if prov == "recorded":
            continue
        cell = f"{prov} {'stream' if xid in streamed else 'json'} {xid}: {status} {etype} {sdk_valid}"
        assert status is not None or etype is not None, cell  # every cell has an outcome
        if prov == "hang":
            assert etype == "timeout", cell
        elif prov == "reset":
            assert etype == ("stream_broken" if xid in streamed else "connection_error"), cell
            assert attempts == (1 if xid in streamed else 1 + RETRIES["reset"]), cell
        else:  # garbage: a 200 whose body is unusable must not pass as a valid answer
            assert status == 200, cell
            assert etype is not None or sdk_valid is False, cell


def test_faulty_providers_run_finishes_with_an_outcome_per_cell(tmp_path: Path, capsys) -> None:
    db, rows = store(tmp_path)
    with fault_servers(*PROVIDERS) as servers:
        pf = providers_toml(servers, tmp_path / "providers.toml")
        t0 = time.monotonic()
        rc = main(replay_args(db, pf, "faults", 4))
        took = time.monotonic() - t0
        hits = {name: s.snapshot() for name, s in servers.items()}
    out = capsys.readouterr().out
    assert rc == EXIT_PROVIDER_DEAD, out  # hang and reset answered no request; the run still finished
    # hang: 8 cells of 1 s timeout at concurrency 4 = ~2 s; the rest is fast
    assert took < 30, f"replay took {took:.1f} s"
    got = results(db, "faults")
    check_outcomes(got, rows)
    states = [s for (s,) in query(db, "SELECT state FROM run_events WHERE run_id = 'faults' ORDER BY \"at\"")]
    assert states == ["started", "finished"]
    for name in PROVIDERS:  # each HTTP attempt reached the provider once, no more
        attempts = {x: v[0][2] for (x, p), v in got.items() if p == name}
        assert dict(hits[name]) == attempts, name


def _journal(db: Path, run: str) -> Counter:
    c: Counter = Counter()
    for f in (segment_root(db) / "journal").glob(f"{run}.*.jsonl"):
        for line in f.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            c[(rec["k"], rec["p"])] += 1
            if rec["k"] == "c":
                c[("done", rec["x"], rec["p"])] += 1
    return c


def test_sigkill_mid_run_then_resume_sends_nothing_twice(tmp_path: Path, capsys) -> None:
    db, rows = store(tmp_path)
    conc = 2
    with fault_servers(*PROVIDERS, chunk_delay_s=0.15) as servers:
        pf = providers_toml(servers, tmp_path / "providers.toml")
        args = replay_args(db, pf, "killed", conc)
        err = tmp_path / "replay.stderr"
        with open(err, "wb") as fh:
            proc = subprocess.Popen(parity_argv(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=fh)
        try:
            # Kill once every provider has completed some cells and the hang provider is mid-way.
            progressed = wait_for(
                lambda: (
                    proc.poll() is not None or all(_journal(db, "killed")[("c", p)] >= 2 for p in PROVIDERS)
                ),
                timeout=45,
            )
            assert progressed and proc.poll() is None, (
                f"no progress before the kill (exit {proc.poll()}): {_journal(db, 'killed')}\n"
                f"{err.read_text(errors='replace')[-3000:]}"
            )
        finally:
            kids = kill9_tree(proc)
        assert wait_for(lambda: not any(Path(f"/proc/{k}").exists() for k in kids), timeout=10)
        time.sleep(0.3)  # anything the dead sender had on the wire has arrived by now
        before = {name: s.snapshot() for name, s in servers.items()}
        journal = _journal(db, "killed")
        completed = {(key[1], key[2]) for key in journal if key[0] == "done"}
        dispatched = sum(journal[("d", p)] for p in PROVIDERS)
        assert dispatched < N_EXCHANGES * len(PROVIDERS), "the kill came too late to test anything"

        t0 = time.monotonic()
        rc = main([*args, "--resume"])
        took = time.monotonic() - t0
        after = {name: s.snapshot() for name, s in servers.items()}
    out = capsys.readouterr().out
    assert rc == EXIT_PROVIDER_DEAD, out
    assert took < 30, f"resume took {took:.1f} s"
    got = results(db, "killed")
    check_outcomes(got, rows)
    for name in PROVIDERS:
        for xid in {r["id"] for r in rows}:
            n_before, n_after = before[name][xid], after[name][xid]
            [(_, _, attempts, resent, _, _)] = got[(xid, name)]
            if (xid, name) in completed:  # completed before the kill: never sent again
                assert n_after == n_before, (name, xid, n_before, n_after)
                assert not resent
            elif resent:  # in flight at the kill: sent again once, marked resent
                assert n_after - n_before == attempts, (name, xid, n_before, n_after, attempts)
            else:  # never dispatched before the kill
                assert n_before == 0 and n_after == attempts, (name, xid, n_before, n_after)
        in_flight = [x for (x, p), v in got.items() if p == name and v[0][3]]
        assert len(in_flight) <= conc, (name, in_flight)
    resent = sorted(p for (_, p), v in got.items() if v[0][3])
    assert "hang" in resent, resent  # the kill really cut requests in flight (hang cells take 1 s)
    print(f"\ncompleted before the kill: {len(completed)}, resent after it: {resent}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_fault_alone_still_finishes(tmp_path: Path, capsys, provider: str) -> None:
    """One faulty provider at a time, every exchange at concurrency 1: no cell is left without a row."""
    db, rows = store(tmp_path, 4)
    with fault_servers(provider) as servers:
        pf = tmp_path / "one.toml"
        s = servers[provider]
        pf.write_text(
            f'[{provider}]\nbase_url = "{s.base_url}"\nmodels = {{ "*" = "*" }}\n'
            f"timeout_s = 0.5\nmax_retries = 0\n"
        )
        t0 = time.monotonic()
        rc = main(replay_args(db, pf, f"alone-{provider}", 1))
        took = time.monotonic() - t0
    out = capsys.readouterr().out
    assert rc == (0 if provider == "garbage" else EXIT_PROVIDER_DEAD), out  # garbage's 200s are answers
    assert took < 30
    got = results(db, f"alone-{provider}")
    assert {x for x, p in got if p == provider} == {r["id"] for r in rows}
    assert all(st is not None or et is not None for (x, p), [(st, et, *_)] in got.items() if p == provider)
