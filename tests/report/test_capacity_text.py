"""``parity eval``'s terminal answer to a capacity sweep: one line per provider, nothing otherwise."""

from __future__ import annotations

import polars as pl

from parity.evals.api import Evaluation
from parity.evals.report.verdict_text import capacity_lines


def _ev(capacity: pl.DataFrame | None) -> Evaluation:
    return Evaluation(run="cap-1", baseline="recorded", config={}, slos={"ttft_ms": 500.0}, capacity=capacity)


def test_each_provider_gets_its_capacity_the_step_that_failed_and_the_cost_there():
    caps = pl.DataFrame(
        [
            {
                "provider": "large",
                "by": "rate",
                "target": 0.95,
                "max_load": 16.0,
                "first_bad_load": 24.0,
                "first_bad_why": "goodput 68.3% < 95%",
                "cost_per_1k_at_max_usd": 0.24,
                "client_bound_steps": 0,
            },
            {
                "provider": "huge",
                "by": "rate",
                "target": 0.95,
                "max_load": 24.0,
                "first_bad_load": None,
                "first_bad_why": None,
                "cost_per_1k_at_max_usd": None,
                "client_bound_steps": 1,
            },
            {
                "provider": "tiny",
                "by": "rate",
                "target": 0.95,
                "max_load": None,
                "first_bad_load": 4.0,
                "first_bad_why": "goodput 10% < 95%",
                "cost_per_1k_at_max_usd": None,
                "client_bound_steps": 0,
            },
        ]
    )
    lines = capacity_lines(_ev(caps))
    assert lines[1].startswith("capacity (95% of requests within the SLOs: ttft <= 500 ms;")
    assert lines[2] == "  large: 16 req/s (at 24: goodput 68.3% < 95%); $0.24/1k req there"
    assert (
        lines[3]
        == "  huge: 24 req/s (every step met the SLOs: the capacity is at least this); 1 step(s) client-bound"
    )
    assert lines[4] == "  tiny: no step met the SLOs"


def test_a_run_that_is_not_a_sweep_says_nothing_about_capacity():
    assert capacity_lines(_ev(None)) == []
    assert capacity_lines(_ev(pl.DataFrame())) == []
