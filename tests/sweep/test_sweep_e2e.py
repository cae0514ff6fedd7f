"""Capacity sweeps end to end: recorded real chat traffic swept across fake servers of known capacity
(a fixed number of slots, a fixed service time), through ``parity replay --sweep``, ``parity eval --json``
and ``parity check``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sweephelpers import Server, real_chat_rows, write_exchanges

from parity.cli import main
from parity.replayer.sweep import STRIDE
from parity.store.store import connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SLO = "e2e=1500ms"


@pytest.fixture
def servers() -> Iterator[dict[str, Server]]:
    """small: 2 slots x 200 ms = 10 req/s; big: 4 slots x 200 ms = 20 req/s."""
    started = {"small": Server(2, 200), "big": Server(4, 200)}
    yield started
    for s in started.values():
        s.stop()


@pytest.fixture
def store(tmp_path: Path, servers: dict[str, Server]) -> tuple[Path, Path]:
    db = tmp_path / "parity.duckdb"
    write_exchanges(db, real_chat_rows(24))
    pricing = "[{n}.pricing]\ninput_per_1m = 1.0\noutput_per_1m = 4.0\n"
    text = "".join(s.table(n, pricing.format(n=n)) for n, s in servers.items())
    pf = tmp_path / "providers.toml"
    pf.write_text(text)
    return db, pf


def _replay(db: Path, pf: Path, run: str, *extra: str) -> int:
    return main(["replay", "--db", str(db), "--providers", str(pf), "--run", run, "--no-progress", *extra])


def _eval(db: Path, run: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", "--db", str(db), "--run", run, "--slo", SLO, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fixed_sweep_finds_each_capacity_within_one_step_in_order(store, servers, capsys) -> None:
    db, pf = store
    rates = [4.0, 8.0, 12.0, 16.0, 24.0]
    code = _replay(
        db, pf, "cap", "--sweep", ",".join(f"{r:g}" for r in rates), "--step-seconds", "4", "--slo", SLO
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "sweep step 4: 24 req/s" in out.err and "Sweep (live figures" in out.out
    data = _eval(db, "cap", capsys)

    rows = data["sweep"]
    assert {(r["provider"], r["step"]) for r in rows} == {(p, i) for p in servers for i in range(len(rates))}
    for r in rows:  # Poisson arrivals, exactly rate x step seconds of them; the 24 requests cycled
        assert r["requests"] == round(rates[r["step"]] * 4) and r["offered_rate"] == pytest.approx(
            rates[r["step"]]
        )
        assert r["reused"] == max(0, r["requests"] - 24)
        assert r["error_rate"] == 0 and r["achieved_rate"] <= r["offered_rate"] + 1e-9
    caps = {c["provider"]: c for c in data["capacity"]}
    for name, server in servers.items():  # the reported capacity lands within one step of the true one
        below = max(r for r in rates if r <= server.capacity)
        above = min(r for r in rates if r > server.capacity)
        got = caps[name]["max_rate"]
        assert below - (above - below) <= got <= above, (name, got, server.capacity, caps[name])
        assert caps[name]["bounded"] and caps[name]["first_bad_rate"] > got
        # saturated, the server answers at its capacity: the peak achieved rate is the true one
        assert caps[name]["peak_achieved_rate"] == pytest.approx(server.capacity, rel=0.15)
    assert caps["small"]["max_rate"] < caps["big"]["max_rate"]
    assert data["providers"]["big"]["capacity.max_rate"] == caps["big"]["max_rate"]
    # latency turns at the knee: the small server's saturated steps queue far beyond the service time
    small = sorted((r for r in rows if r["provider"] == "small"), key=lambda r: r["step"])
    assert small[-1]["ttft_p50_ms"] > 5 * small[0]["ttft_p50_ms"]

    con = connect(db)
    try:
        steps = con.execute(
            "SELECT DISTINCT \"repeat\" // ? FROM results WHERE run_id = 'cap' AND provider <> 'recorded'",
            [STRIDE],
        ).fetchall()
    finally:
        con.close()
    assert sorted(s for (s,) in steps) == list(range(len(rates)))

    html = db.parent / "report.html"
    assert main(["report", "--db", str(db), "--run", "cap", "--slo", SLO, "--out", str(html)]) == 0
    page = html.read_text()
    assert (
        '<section id="capacity">' in page
        and '<a href="#capacity">' in page
        and "e2e p99 vs load" in page
        and "SLO e2e 1.5 s" in page
    )
    assert "goodput vs load" in page and "target 95%" in page

    capsys.readouterr()
    gate = ["check", "--db", str(db), "--run", "cap", "--fail-if", "capacity.max_rate < 14"]
    assert main(gate) == 1
    verdict = capsys.readouterr().out
    assert "FAIL small" in verdict and "FAIL big" not in verdict


def test_auto_sweep_grows_refines_and_saturated_providers_leave(store, servers, capsys) -> None:
    db, pf = store
    code = _replay(
        db, pf, "auto", "--sweep", "auto", "--sweep-start", "4", "--step-seconds", "3", "--slo", SLO
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "leaving the sweep: small" in out.err
    data = _eval(db, "auto", capsys)
    by_step: dict[int, set[str]] = {}
    for r in data["sweep"]:
        by_step.setdefault(r["step"], set()).add(r["provider"])
    loads = {r["step"]: r["load"] for r in data["sweep"]}
    assert [loads[i] for i in range(3)] == [4.0, 8.0, 16.0]  # geometric growth from --sweep-start
    # small saturates first and leaves the growth; big goes on alone
    assert any(provs == {"big"} for provs in by_step.values())
    caps = {c["provider"]: c for c in data["capacity"]}
    for name, server in servers.items():
        c = caps[name]
        assert c["bounded"] and c["max_rate"] < c["first_bad_rate"]
        assert c["max_rate"] <= server.capacity * 1.1 and c["first_bad_rate"] >= server.capacity * 0.9, c
        # refined: the bracket is narrower than the growth step it started from
        assert c["first_bad_rate"] - c["max_rate"] < c["max_rate"], c
    assert caps["small"]["max_rate"] < caps["big"]["max_rate"]


def test_concurrency_sweep_is_closed_loop(store, servers, capsys) -> None:
    db, pf = store
    code = _replay(
        db, pf, "conc", "--provider", "small", "--sweep-concurrency", "1,2,8", "--step-seconds", "3"
    )
    assert code == 0, capsys.readouterr().err
    data = _eval(db, "conc", capsys)
    rows = {r["step"]: r for r in data["sweep"] if r["provider"] == "small"}
    assert [rows[i]["load"] for i in range(3)] == [1.0, 2.0, 8.0]
    assert rows[0]["offered_rate"] is None  # closed loop offers no rate
    assert rows[0]["achieved_rate"] == pytest.approx(5.0, rel=0.15)  # one at a time, 200 ms each
    assert rows[1]["achieved_rate"] == pytest.approx(10.0, rel=0.15)  # both slots busy
    assert rows[2]["achieved_rate"] == pytest.approx(10.0, rel=0.15)  # more in flight only queues
    assert rows[2]["e2e_p50_ms"] > 3 * rows[1]["e2e_p50_ms"]
    cap = data["capacity"][0]  # the most in flight that still adds throughput: the server's 2 slots
    assert cap["max_load"] == 2 and cap["max_rate"] == pytest.approx(10.0, rel=0.15)
    assert "throughput flat" in cap["first_bad_why"]


def test_dry_run_prints_steps_requests_and_cost(store, capsys) -> None:
    db, pf = store
    assert (
        _replay(db, pf, "plan", "--sweep", "5,10", "--step-seconds", "10", "--dry-run", "--max-cost", "1e-6")
        == 0
    )
    out = capsys.readouterr().out
    assert "Sweep by rate (open loop, poisson arrivals), 10 s a step" in out
    lines = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("0 ", "1 "))]
    assert lines[0][:4] == ["0", "5", "req/s", "50"] and lines[1][:5] == ["1", "10", "req/s", "100", "76"]
    assert all("$" in ln[-1] for ln in lines)
    assert "--max-cost $1e-06: the sweep would stop in step 0" in out
    con = connect(db)
    try:
        assert con.execute("SELECT count(*) FROM results").fetchone() == (0,)  # nothing sent
    finally:
        con.close()


def test_max_cost_stops_the_sweep(store, capsys) -> None:
    db, pf = store
    code = _replay(db, pf, "cheap", "--sweep", "4,8,16", "--step-seconds", "2", "--max-cost", "0.0005")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "--max-cost $0.0005 reached" in out.out
    con = connect(db)
    try:
        sent, steps = con.execute(
            "SELECT count(*), max(\"repeat\" // ?) FROM results WHERE run_id = 'cheap' AND provider <> 'recorded'",
            [STRIDE],
        ).fetchone()
        state, note = con.execute(
            "SELECT state, note FROM run_events WHERE run_id = 'cheap' ORDER BY \"at\" DESC"
        ).fetchone()
    finally:
        con.close()
    # the budget counts estimates from the recorded usage until the answers' costs arrive, so it stops
    # within the first step (the full sweep would send (8 + 16 + 32) x 2 requests)
    assert state == "stopped" and "--max-cost" in note and steps == 0 and sent < 16


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sweep", "5,10", "--rate", "3"], "a sweep sets its own loads: drop --rate"),
        (["--sweep", "fast"], "--sweep 'fast': a comma list of loads like 5,10,20, or auto"),
        (["--sweep-concurrency", "1.5,2"], "--sweep-concurrency takes whole numbers"),
        (["--sweep", "5", "--slo", "ttft=soon"], "'soon' is not a duration"),
        (["--slo", "ttft=300ms"], "--slo only go with --sweep"),
        (["--sweep", "5", "--step-seconds", "0"], "--step-seconds must be > 0"),
    ],
)
def test_bad_sweep_options_fail_early_with_one_line(store, capsys, extra, message) -> None:
    db, pf = store
    assert _replay(db, pf, "bad", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
