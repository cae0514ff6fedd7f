"""Summary figures, JSON output and the ``parity eval`` command."""

from __future__ import annotations

import argparse
import json

import pytest
from evalhelpers import latency_arms, make_exchange, run_config, write_run

from parity import evals
from parity.evals import cli


@pytest.fixture
def store(db):
    rows = latency_arms(60, seed=8, shift_ms=40.0, providers=("recorded", "cand"))
    cfg = run_config(
        {
            "cand": {
                "base_url": "http://c/v1",
                "models": {"*": "*"},
                "models_listed": ["m"],
                "pricing": {"default": {"per_request": 0.001}},
            }
        },
        {"default": {"input_per_1m": 2.5, "output_per_1m": 10.0}},
    )
    write_run(db, rows, cfg, exchanges=[make_exchange(id=f"e{i}") for i in range(60)])
    return db


def test_figures_are_documented_and_summary_has_exactly_them(store):
    assert all(isinstance(v, str) and v and "\n" not in v for v in evals.FIGURES.values())
    for name in (
        "ttft_p50_ms",
        "ttft_p95_ms",
        "ttft_p95_delta_pct",
        "ttft_p50_delta_ms",
        "ttft_p50_delta_ms_ci_low",
        "ttft_p50_delta_ms_ci_high",
        "e2e_p95_delta_pct",
        "itl_p50_ms",
        "error_rate",
        "rate_429",
        "cost_total_usd",
        "cost_per_success_usd",
        "cost_month_usd",
        "cost_delta_pct",
        "quality_score",
        "text_similarity_mean",
        "json_valid_rate",
        "tool_call_agreement",
        "compat_score",
        "compat_failures",
        "goodput_rate",
        "significant_slower",
    ):
        assert name in evals.FIGURES, name
    s = evals.summary(store, "r1", slos="ttft=400ms")
    assert s.columns == ["provider", *evals.FIGURES]
    cand = s.filter(s["provider"] == "cand").row(0, named=True)
    assert cand["significant_slower"] is True and cand["goodput_rate"] is not None
    assert cand["cost_total_usd"] == pytest.approx(60 * 0.001)


def test_summary_dict_is_json(store):
    d = evals.summary_dict(store, "r1")
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["run"] == "r1" and back["baseline"] == "recorded"
    assert set(back["providers"]) == {"recorded", "cand"}
    assert set(back["providers"]["cand"]) == set(evals.FIGURES)
    for key in ("latency", "reliability", "cost", "breakeven", "quality", "compat"):
        assert isinstance(back[key], list)
    assert back["latency"] and back["compat"]


def test_cli_tables_json_and_errors(store, capsys):
    assert cli.main(["--db", str(store), "--run", "r1", "--slo", "ttft=400ms,e2e=10s"]) == 0
    out = capsys.readouterr().out
    for title in (
        "== summary ==",
        "== latency",
        "== reliability ==",
        "== cost (USD) ==",
        "== quality vs baseline ==",
        "== compatibility ==",
    ):
        assert title in out
    assert cli.main(["--db", str(store), "--json"]) == 0  # --run defaults to the newest run
    data = json.loads(capsys.readouterr().out)
    assert data["providers"]["cand"]["significant_slower"] is True
    assert cli.main(["--db", str(store), "--run", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parity eval: error: no results for run 'nope'") and err.count("\n") == 1
    assert cli.main(["--db", str(store), "--slo", "ttft=soon"]) == 2
    assert "bad SLO duration" in capsys.readouterr().err
    assert cli.main(["--db", str(store.parent / "none.duckdb")]) == 2
    assert "no store" in capsys.readouterr().err


def test_register_adds_eval_with_help():
    parser = argparse.ArgumentParser(prog="parity")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(
        ["eval", "--db", "x.duckdb", "--baseline", "together", "--judge", "j:m", "--json"]
    )
    assert args.func is cli.handler and args.baseline == "together" and args.judge == "j:m"
    helptext = sub.choices["eval"].format_help()
    for opt in ("--db", "--run", "--baseline", "--slo", "--judge", "--providers", "--rubric", "--json"):
        assert opt in helptext
    for action in sub.choices["eval"]._actions:
        assert action.help, action.dest
