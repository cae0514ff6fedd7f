"""``--since`` / ``--until``: every figure about the exchanges production recorded in a window.

A continuous (shadow) run grows while it is read; "the last hour" must select whole exchanges by
production's time, every arm of an exchange in or out together, so the pairs stay whole and a
figure never mixes windows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from evalhelpers import T0, make_exchange, make_result, run_config, write_run

from parity import evals
from parity.evals import cli
from parity.evals.errors import EvalError
from parity.evals.window import window
from parity.store.store import connect

PROVIDERS = {"cand": {"base_url": "http://127.0.0.1:1/v1", "models": {"*": "*"}}}
HOURS = 3
PER_HOUR = 10


@pytest.fixture
def store(tmp_path):
    """Three hours of recorded exchanges; the candidate answered each a little after production,
    in the third hour twice as slowly, and with errors."""
    db = tmp_path / "parity.duckdb"
    rows, exchanges = [], []
    for h in range(HOURS):
        for i in range(PER_HOUR):
            xid = f"x{h}-{i}"
            at = T0 + timedelta(hours=h, minutes=i)
            exchanges.append(make_exchange(id=xid, recorded_at=at))
            rows.append(make_result(exchange_id=xid, started_at=at, latency_ms=400.0 + i))
            slow = 2.0 if h == 2 else 1.0
            rows.append(
                make_result(
                    exchange_id=xid,
                    provider="cand",
                    # the mirror starts after production's request: past the hour for the last one
                    started_at=at + timedelta(minutes=59, seconds=59),
                    latency_ms=(400.0 + i) * slow,
                    status=500 if h == 2 and i % 2 else 200,
                )
            )
    write_run(db, rows, run_config(PROVIDERS), exchanges=exchanges)
    return db


def _cells(ev) -> dict[str, int]:
    return {r["provider"]: r["n_cells"] for r in ev.summary.iter_rows(named=True)}


def test_a_window_keeps_whole_exchanges_by_production_time(store):
    whole = evals.evaluate(store, "r1")
    assert _cells(whole) == {"recorded": HOURS * PER_HOUR, "cand": HOURS * PER_HOUR}
    assert whole.window is None and whole.to_dict()["window"] is None

    # the second hour: its candidate cells started in the third hour, and still count here
    ev = evals.evaluate(store, "r1", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2))
    assert _cells(ev) == {"recorded": PER_HOUR, "cand": PER_HOUR}
    cand = next(r for r in ev.summary.iter_rows(named=True) if r["provider"] == "cand")
    assert cand["error_rate"] == 0.0  # the third hour's errors are outside

    last = evals.evaluate(store, "r1", since=T0 + timedelta(hours=2))
    cand = next(r for r in last.summary.iter_rows(named=True) if r["provider"] == "cand")
    assert cand["n_cells"] == PER_HOUR and cand["error_rate"] == pytest.approx(0.5)
    assert last.to_dict()["window"] == {"since": (T0 + timedelta(hours=2)).isoformat(), "until": None}


def test_durations_count_back_from_now_and_iso_times_are_utc():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    w = window("1h", None, now)
    assert w.since == now - timedelta(hours=1) and w.until is None
    assert window("90m", "30m", now).until == now - timedelta(minutes=30)
    assert window("2026-12-07T10:00", None, now).since == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert window(None, "2026-12-07T11:00:00+01:00", now).until == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert window(None, None, now) is None


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "--since 'yesterday' is neither an ISO 8601 time"),
        (None, "soon", "--until 'soon'"),
        ("1h", "2h", "must be before --until"),
    ],
)
def test_bad_windows_are_named(since, until, message):
    with pytest.raises(EvalError, match=message):
        window(since, until)


def test_an_empty_window_says_so_and_a_connection_is_refused(store):
    with pytest.raises(EvalError, match="no exchange in the window"):
        evals.evaluate(store, "r1", until=T0 - timedelta(days=1))
    con = connect(store)
    try:
        with pytest.raises(EvalError, match="needs the store's path"):
            evals.evaluate(con, "r1", since="1h")
    finally:
        con.close()


def test_the_cli_selects_a_window_and_shows_it(store, capsys):
    since = (T0 + timedelta(hours=2)).isoformat()
    assert cli.main(["--db", str(store), "--run", "r1", "--since", since, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["window"]["since"] == since
    assert out["providers"]["cand"]["n_cells"] == PER_HOUR
    assert cli.main(["--db", str(store), "--run", "r1", "--since", since]) == 0
    assert "only exchanges recorded from" in capsys.readouterr().out
    assert cli.main(["--db", str(store), "--run", "r1", "--since", "last tuesday"]) == 2
    assert "--since 'last tuesday'" in capsys.readouterr().err


def test_the_report_is_about_the_window_and_says_so(store):
    from parity.evals.report import page

    rep = page.build(store, "r1", since=T0 + timedelta(hours=2))
    assert rep.base_row["n_cells"] == PER_HOUR
    html = page.render(rep, "html")
    assert "only exchanges recorded from 2026-11-01 14:00:00 UTC to now" in html
    assert "Only exchanges recorded from" in page.render(rep, "md")
