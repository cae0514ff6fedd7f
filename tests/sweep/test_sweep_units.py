"""The sweep's pure parts: arrivals, cycling with the step in ``repeat``, the auto policy, and the
sweep/capacity rows evals computes from cells of a known shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from parity.evals.metrics import capacity
from parity.evals.metrics.timing import request_metrics
from parity.replayer.errors import ReplayError
from parity.replayer.plan import Cell, Group
from parity.replayer.select import Exchange
from parity.replayer.sweep import (
    STRIDE,
    AutoState,
    Sweep,
    arrivals,
    meets,
    parse_slos,
    parse_values,
    passes,
    step_cell,
    step_group,
    step_of,
)


def _base(n: int, providers=("a", "b")) -> list[Group]:
    out = []
    for i in range(n):
        x = Exchange.__new__(Exchange)
        object.__setattr__(x, "id", f"x{i}")
        out.append(Group(x, 0, [Cell(x, p, 0, 0.001, 10) for p in providers]))
    return out


def test_arrivals_offer_exactly_the_rate_with_poisson_bursts() -> None:
    times = arrivals(10.0, 30.0, "poisson", seed=1, step=2)
    assert len(times) == 300 and times == sorted(times) and 0 <= times[0] and times[-1] < 30
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    cv = (sum((g - 0.1) ** 2 for g in gaps) / len(gaps)) ** 0.5 / 0.1
    assert 0.8 < cv < 1.2  # exponential gaps: coefficient of variation ~1 (constant: 0)
    assert arrivals(10.0, 30.0, "poisson", seed=1, step=2) == times  # seeded per step
    assert arrivals(10.0, 30.0, "poisson", seed=1, step=3) != times
    assert arrivals(4.0, 1.0, "constant", 0, 0) == [0.0, 0.25, 0.5, 0.75]


def test_cycling_puts_the_step_and_the_reuse_in_repeat() -> None:
    base = _base(3)
    g = step_group(base, step=4, position=7, providers=["b"])
    assert g.exchange.id == "x1" and [c.provider for c in g.cells] == ["b"]
    assert g.cells[0].repeat == 4 * STRIDE + 2 and step_of(g.cells[0].repeat) == (4, 2)
    keys = {c.key for j in range(30) for c in step_group(base, 1, j, ["a", "b"]).cells}
    assert len(keys) == 60  # every cell of a step is distinct, however often the selection is cycled
    assert step_cell(base, 0, 5, "a").key == ("x2", "a", 1)
    assert step_cell(_base(2, ("a",)), 0, 0, "b") is None


def test_slos_and_values_parse_or_fail_with_the_flag_named() -> None:
    assert parse_slos("ttft=300ms,e2e=2s,tpot=40") == {"ttft_ms": 300.0, "e2e_ms": 2000.0, "tpot_ms": 40.0}
    with pytest.raises(ReplayError, match="keys: ttft"):
        parse_slos("latency=2s")
    assert parse_values("20,5,10", "rate") == (5.0, 10.0, 20.0) and parse_values("auto", "rate") == ()
    with pytest.raises(ReplayError, match="--sweep-concurrency"):
        parse_values("x", "concurrency")
    with pytest.raises(ReplayError, match="differ"):
        Sweep(values=(5.0, 5.0)).check()


def test_a_request_meets_the_slos_on_every_figure_it_has() -> None:
    s = {"ttft_ms": 100.0, "latency_ms": 900.0, "completion_tokens": 11, "itl_mean_ms": 70.0}
    assert meets(s, {"ttft_ms": 200.0, "e2e_ms": 1000.0, "tpot_ms": 80.0})
    assert not meets(s, {"tpot_ms": 79.0})  # (900 - 100) / 10 = 80 ms per token
    assert meets({"latency_ms": 50.0}, {"ttft_ms": 1.0})  # not streamed: no TTFT to miss


def test_passes_names_why_a_step_failed() -> None:
    sw = Sweep(values=(), target=0.95, max_error_rate=0.05)
    good = {"requests": 100, "error_rate": 0.0, "goodput_rate": 0.99, "achieved_rate": 9.5}
    assert passes(good, sw, 10.0) == (True, "ok")
    assert "achieved" in passes({**good, "achieved_rate": 8.0}, sw, 10.0)[1]
    assert "goodput" in passes({**good, "goodput_rate": 0.9}, sw, 10.0)[1]
    assert "errors" in passes({**good, "error_rate": 0.2}, sw, 10.0)[1]
    conc = Sweep(by="concurrency", values=())
    assert "flat" in passes({**good, "achieved_rate": 10.0}, conc, None, {"achieved_rate": 9.8})[1]


def test_auto_grows_geometrically_then_halves_each_bracket() -> None:
    st = AutoState(Sweep(values=(), start=2.0, factor=2.0, refine=2), ["small", "big"])
    capacity_of = {"small": 10.0, "big": 20.0}
    seen = []
    while steps := st.next_steps():
        for load, provs in steps:
            seen.append((load, tuple(provs)))
            for p in provs:
                st.record(p, load, load <= capacity_of[p], "x")
    growth = [s for s in seen[:5]]
    assert growth == [(2.0, ("small", "big")), (4.0, ("small", "big")), (8.0, ("small", "big")),
                      (16.0, ("small", "big")), (32.0, ("big",))]  # fmt: skip
    assert st.good == {"small": 10.0, "big": 20.0} and st.bad == {"small": 12.0, "big": 24.0}


def test_auto_stops_at_the_limit_and_concurrency_stays_whole() -> None:
    st = AutoState(Sweep(by="concurrency", values=(), factor=1.5, limit=5), ["a"])
    loads = []
    while steps := st.next_steps():
        for load, _ in steps:
            loads.append(load)
            st.record("a", load, True, "ok")
    assert loads == [1.0, 2.0, 3.0, 4.0]  # 3 x 1.5 rounds to 4; 6 would pass the limit


def _cells() -> pl.DataFrame:
    """A provider of capacity 10 req/s under steps at 5, 10 and 20 req/s for 10 s each, and the
    recorded arm: at 20 req/s it answers 100 of the 200 requests within the step, the rest late."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for step, rate in enumerate((5, 10, 20)):
        start = t0 + timedelta(seconds=60 * step)
        n = rate * 10
        for j in range(n):
            sent = start + timedelta(seconds=j / rate)
            wait = max(0.0, j / 10 - j / rate)  # served at 10 req/s: the backlog grows past capacity
            rows.append(
                {
                    "provider": "p",
                    "repeat": step * STRIDE + j // 40,
                    "status": 200,
                    "error_type": None,
                    "started_at": sent,
                    "ttft_ms": 50 + wait * 1000,
                    "latency_ms": 200 + wait * 1000,
                    "completion_tokens": 20,
                    "cost_usd": 0.001,
                    "itl_mean_ms": 8.0,
                    "saw_429": False,
                }
            )
    rows.append({**rows[0], "provider": "recorded", "repeat": 0})
    return pl.DataFrame(rows)


def _config() -> dict:
    steps = [
        {"step": i, "load": float(r), "offered_rate": float(r), "seconds": 10.0, "lag_p99_ms": 1.0}
        for i, r in enumerate((5, 10, 20))
    ]
    return {"sweep": {"by": "rate", "step_seconds": 10.0, "stride": STRIDE, "target": 0.95, "steps": steps}}


def test_sweep_and_capacity_rows_from_cells_of_known_capacity() -> None:
    sw = capacity.sweep_rows(request_metrics(_cells()), _config(), {"e2e_ms": 1000.0}, "recorded")
    assert sw["provider"].to_list() == ["p"] * 3 and sw["step"].to_list() == [0, 1, 2]
    assert sw["requests"].to_list() == [50, 100, 200] and sw["reused"].to_list() == [10, 60, 160]
    assert sw["achieved_rate"].to_list()[:2] == pytest.approx([5.0, 10.0], rel=0.05)
    assert sw["achieved_rate"][2] == pytest.approx(10.0, rel=0.05)  # saturated: the capacity
    assert sw["goodput_rate"].to_list()[:2] == [1.0, 1.0] and sw["goodput_rate"][2] < 0.1
    assert sw["good"].to_list() == [True, True, False] and "goodput" in sw["why"][2]
    assert sw["cost_per_1k_usd"][0] == pytest.approx(1.0)
    assert sw["output_tokens_per_s"][0] == pytest.approx(100.0, rel=0.05)
    cap = capacity.capacity_rows(sw, _config()).row(0, named=True)
    assert cap["max_rate"] == 10.0 and cap["first_bad_rate"] == 20.0 and cap["bounded"]
    assert cap["knee_rate"] == 10.0 and cap["peak_achieved_rate"] == pytest.approx(10.0, rel=0.05)
    assert cap["cost_per_hour_at_max_usd"] == pytest.approx(1.0 / 1000 * 10 * 3600)


def test_client_bound_steps_never_count_as_capacity() -> None:
    cfg = _config()
    cfg["sweep"]["steps"][1]["client_bound"] = True
    sw = capacity.sweep_rows(request_metrics(_cells()), cfg, {}, "recorded")
    assert sw["good"].to_list()[:2] == [True, False] and "client-bound" in sw["why"][1]
    assert capacity.capacity_rows(sw, cfg)["max_rate"][0] == 5.0


def test_not_a_sweep_gives_empty_rows_and_the_summary_unchanged() -> None:
    empty = capacity.sweep_rows(request_metrics(_cells()), {}, {}, "recorded")
    assert empty.is_empty() and capacity.capacity_rows(empty, {}).is_empty()
    summary = pl.DataFrame(
        {"provider": ["p"], "capacity.max_rate": [None]}, schema_overrides={"capacity.max_rate": pl.Float64}
    )
    assert capacity.fill_summary(summary, capacity.capacity_rows(empty, {})).equals(summary)


def test_curves_draw_each_provider_the_slo_line_and_the_target() -> None:
    from parity.evals.report import sweep_charts

    cfg = _config()
    sw = capacity.sweep_rows(request_metrics(_cells()), cfg, {"e2e_ms": 1000.0}, "recorded")
    cap = capacity.capacity_rows(sw, cfg)
    colour = {"p": "#0072B2"}
    lat = sweep_charts.latency_vs_load(sw.to_dicts(), cap.to_dicts(), colour, {"e2e_ms": 1000.0})
    good = sweep_charts.goodput_vs_load(sw.to_dicts(), cap.to_dicts(), colour, 0.95)
    assert lat is not None and "SLO e2e 1 s" in lat and "e2e p99 vs load" in lat and lat.count("<circle") == 3
    assert good is not None and "target 95%" in good and "offered load (requests/s)" in good
    assert sweep_charts.latency_vs_load([], [], colour, {}) is None
