"""Latency and reliability through the public API, on stores whose ground truth we wrote."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from evalhelpers import T0, latency_arms, make_result, run_config, write_run

from parity import evals
from parity.evals.metrics.reliability import parse_slos


def test_slower_provider_found_and_identical_one_not(db):
    rows = latency_arms(300, seed=5, shift_ms=30.0, providers=("recorded", "slow"))
    same = [r | {"provider": "same"} for r in latency_arms(300, seed=5, providers=("recorded", "x"))[300:]]
    write_run(db, rows + same, run_config())
    lat = evals.latency(db, "r1")
    slow = lat.filter((pl.col("provider") == "slow") & (pl.col("metric") == "ttft_ms")).row(0, named=True)
    assert slow["test"] == "sign" and slow["n_pairs"] == 300
    assert slow["median_diff_ci_low"] > 0 and slow["slower"]
    assert slow["p50_delta"] > 0
    s = {r["provider"]: r for r in evals.summary(db, "r1").iter_rows(named=True)}
    assert s["slow"]["significant_slower"] is True
    assert s["slow"]["ttft_median_diff_ms_ci_low"] > 0
    assert s["same"]["significant_slower"] is False and s["same"]["significant_faster"] is False
    assert s["recorded"]["is_baseline"] and s["recorded"]["ttft_p50_delta_ms"] is None


def test_itl_is_per_token_and_tpot_follows_vllm(db):
    # one stream: ttft 100 ms, 11 tokens, events carrying 1, 2 and 8 tokens -> per-token gaps
    itl = [10.0] + [15.0] * 2 + [5.0] * 7  # completion_tokens - 1 = 10 gaps
    rows = [
        make_result(
            stream=True,
            ttft_ms=100.0,
            latency_ms=200.0,
            completion_tokens=11,
            itl_ms=itl,
            stream_complete=True,
        ),
        make_result(
            provider="p",
            stream=True,
            ttft_ms=100.0,
            latency_ms=200.0,
            completion_tokens=11,
            itl_ms=itl,
            stream_complete=True,
        ),
    ]
    write_run(db, rows, run_config())
    lat = evals.latency(db, "r1")
    it = lat.filter((pl.col("provider") == "p") & (pl.col("metric") == "itl_ms")).row(0, named=True)
    assert it["n"] == 10 and it["p50"] == pytest.approx(np.median(itl))
    tp = lat.filter((pl.col("provider") == "p") & (pl.col("metric") == "tpot_ms")).row(0, named=True)
    assert tp["p50"] == pytest.approx((200.0 - 100.0) / (11 - 1))
    tps = lat.filter((pl.col("provider") == "p") & (pl.col("metric") == "output_tps")).row(0, named=True)
    assert tps["p50"] == pytest.approx(11 / 0.2)


def test_rates_goodput_and_429(db):
    rows = [make_result(exchange_id=f"e{i}", latency_ms=100.0 * (i + 1)) for i in range(10)]
    cand = [make_result(exchange_id=f"e{i}", provider="p", latency_ms=100.0 * (i + 1)) for i in range(7)]
    cand.append(
        make_result(
            exchange_id="e7",
            provider="p",
            status=429,
            latency_ms=10.0,
            response_body={
                "error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}
            },
        )
    )
    cand.append(
        make_result(
            exchange_id="e8",
            provider="p",
            status=None,
            error_type="timeout",
            latency_ms=None,
            response_body=None,
        )
    )
    cand.append(
        make_result(exchange_id="e9", provider="p", attempts=2, rate_limit_wait_ms=1000.0, latency_ms=1000.0)
    )
    attempts = [
        {
            "run_id": "r1",
            "exchange_id": "e9",
            "provider": "p",
            "repeat": 0,
            "attempt": 1,
            "status": 429,
            "retry_after_ms": 1000.0,
        },
        {"run_id": "r1", "exchange_id": "e9", "provider": "p", "repeat": 0, "attempt": 2, "status": 200},
    ]
    write_run(db, rows + cand, run_config(), attempts=attempts)
    rel = evals.reliability(db, "r1", slos="e2e=500ms").filter(pl.col("provider") == "p").row(0, named=True)
    assert rel["n_cells"] == 10 and rel["n_ok"] == 8
    assert rel["error_rate"] == pytest.approx(0.2)
    assert rel["rate_429"] == pytest.approx(0.2)  # e7 (final 429) and e9 (429 then 200)
    assert rel["no_response_rate"] == pytest.approx(0.1)
    assert rel["retry_rate"] == pytest.approx(0.1)
    assert rel["goodput_rate"] == pytest.approx(0.5)  # e0..e4 succeed within 500 ms
    assert evals.reliability(db, "r1").filter(pl.col("provider") == "p")["goodput_rate"][0] is None


def test_cold_start_penalty_is_measured(db):
    rows = []
    for p, penalty in (("recorded", 0.0), ("cold", 2500.0)):
        t = T0
        for burst in range(6):
            for k in range(5):
                ttft = 200.0 + (penalty if k == 0 else 0.0) + k
                i = burst * 5 + k
                rows.append(
                    make_result(
                        exchange_id=f"e{i}",
                        provider=p,
                        stream=True,
                        ttft_ms=ttft,
                        latency_ms=ttft + 100,
                        started_at=t,
                        stream_complete=True,
                    )
                )
                t += timedelta(seconds=1)
            t += timedelta(minutes=5)  # idle gap
    write_run(db, rows, run_config())
    rel = {r["provider"]: r for r in evals.reliability(db, "r1").iter_rows(named=True)}
    assert rel["cold"]["n_cold"] == 6 and rel["cold"]["n_warm"] == 24
    assert rel["cold"]["cold_start_delta_ms"] == pytest.approx(2500.0, abs=5)
    assert rel["cold"]["cold_start_p_value"] < 0.01
    card = evals.compat(db, "r1")
    res = {
        r["provider"]: r["result"] for r in card.filter(pl.col("check") == "cold_start").iter_rows(named=True)
    }
    assert res == {"cold": "fail", "recorded": "pass"}


def test_repeats_pair_with_baseline_repeat_zero(db):
    rows = latency_arms(50, seed=2, providers=("recorded",))
    for rep in range(3):
        rows += [
            r | {"provider": "p", "repeat": rep}
            for r in latency_arms(50, seed=10 + rep, providers=("recorded",))
        ]
    write_run(db, rows, run_config())
    row = (
        evals.latency(db, "r1")
        .filter((pl.col("provider") == "p") & (pl.col("metric") == "ttft_ms"))
        .row(0, named=True)
    )
    assert row["n"] == 150 and row["n_pairs"] == 50


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("ttft=500ms,e2e=10s", {"ttft_ms": 500.0, "e2e_ms": 10000.0}),
        ("tpot=40", {"tpot_ms": 40.0}),
        ("e2e=1.5m", {"e2e_ms": 90000.0}),
    ],
)
def test_parse_slos(spec, want):
    assert parse_slos(spec) == want


@pytest.mark.parametrize("bad", ["ttft", "speed=3s", "ttft=fast"])
def test_parse_slos_rejects(bad):
    with pytest.raises(evals.EvalError):
        parse_slos(bad)


def test_unknown_run_and_baseline_are_eval_errors(db):
    write_run(db, [make_result()], run_config())
    with pytest.raises(evals.EvalError, match="no results for run 'nope'"):
        evals.latency(db, "nope")
    with pytest.raises(evals.EvalError, match="baseline 'ghost'"):
        evals.latency(db, "r1", baseline="ghost")
    with pytest.raises(evals.EvalError, match="no store"):
        evals.latency(db.parent / "missing.duckdb", "r1")


def test_cell_written_twice_counts_once_with_the_later_answer(db):
    rows = [
        make_result(provider="p", status=None, error_type="timeout", latency_ms=None, started_at=T0),
        make_result(provider="p", latency_ms=700.0, started_at=T0 + timedelta(minutes=1), resent=True),
        make_result(),
    ]
    write_run(db, rows, run_config())
    rel = evals.reliability(db, "r1").filter(pl.col("provider") == "p").row(0, named=True)
    assert rel["n_cells"] == 1 and rel["error_rate"] == 0.0
