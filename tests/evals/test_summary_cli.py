"""Summary figures, JSON output and the ``parity eval`` command."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re

import polars as pl
import pytest
from evalhelpers import latency_arms, make_exchange, run_config, write_run

from parity import evals
from parity.evals import cli
from parity.evals.report.fmt import fmt_p, fmt_pct


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
    assert cli.main(["--db", str(store), "--run", "r1", "--slo", "ttft=400ms,e2e=10s", "--detail"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\b(null|NaN|None)\b", out), "one notation for a missing value: —"
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
    assert args.func is cli.cmd_eval and args.baseline == "together" and args.judge == "j:m"
    helptext = sub.choices["eval"].format_help()
    for opt in ("--db", "--run", "--baseline", "--slo", "--judge", "--providers", "--rubric", "--json"):
        assert opt in helptext
    for action in sub.choices["eval"]._actions:
        assert action.help, action.dest


def test_default_output_is_the_verdict_in_120_columns(store, capsys):
    """The default is the verdict: every line fits 120 columns, one notation for missing values and
    p-values, and the figures are the summary's (the slower candidate is labelled so)."""
    assert cli.main(["--db", str(store), "--run", "r1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 120 and len(lines) < 30, out
    assert not re.search(r"\b(null|NaN|None)\b", out), out
    assert "== latency" not in out  # the full tables are --detail's
    row = next(line for line in lines if line.startswith("cand "))
    assert "slower" in row and "0/60" in row
    s = evals.summary(store, "r1").filter(pl.col("provider") == "cand").row(0, named=True)
    assert fmt_pct(s["ttft_p95_delta_pct"]) in row
    summary_line = next(line for line in lines if line.startswith("cand: "))
    assert summary_line.startswith("cand: slower: TTFT +")
    assert f"({fmt_p(s['ttft_p_adjusted'])})" in summary_line  # the adjusted p behind the label


def test_formats_parse_and_json_is_an_alias(store, capsys):
    assert cli.main(["--db", str(store), "--format", "json"]) == 0
    as_format = json.loads(capsys.readouterr().out)
    assert cli.main(["--db", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == as_format
    assert cli.main(["--db", str(store), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["provider"] for r in table} == {"recorded", "cand"}
    assert list(table[0]) == ["provider", *evals.FIGURES]
    cand = next(r for r in table if r["provider"] == "cand")
    assert float(cand["ttft_p95_delta_pct"]) == pytest.approx(
        as_format["providers"]["cand"]["ttft_p95_delta_pct"]
    )
    assert cli.main(["--db", str(store), "--format", "md"]) == 0
    md = capsys.readouterr().out.splitlines()
    rows = [line for line in md if line.startswith("| cand |")]
    assert len(rows) == 2 and all(r.endswith(" |") for r in rows)
    assert any(line.startswith("- cand: slower") for line in md)
