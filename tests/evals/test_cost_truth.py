"""True costs from real store files: what is estimated, partial costs, and the $/month basis."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from evalhelpers import T0, chat_body, make_exchange, make_result, run_config, write_run

from parity import evals
from parity.cli import main

AUDIO_TOKENS = {"default": {"input_per_1m": 0.88, "output_per_1m": 0.88, "per_audio_minute": 0.0015}}
RECORDED = {"m": {"input_per_1m": 2.0, "output_per_1m": 8.0}}  # only model "m" has a price
CAND = {"default": {"input_per_1m": 1.0, "output_per_1m": 4.0}}


def _by(frame, *keys) -> dict:
    return {
        tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in frame.iter_rows(named=True)
    }


def test_audio_minute_price_does_not_mark_chat_cells_estimated(db):
    """A per-audio-minute price applies to audio cells only: chat cells with usage are exact."""
    usage = [(120, 40), (300, 90), (55, 12)]
    rows = [
        make_result(exchange_id=f"c{i}", provider=arm, prompt_tokens=p, completion_tokens=c)
        for i, (p, c) in enumerate(usage)
        for arm in ("recorded", "tok")
    ]
    rows += [  # audio: one arm reports the length, the other omits it (same file, same length)
        make_result(
            exchange_id="a0",
            provider="recorded",
            endpoint="audio.transcriptions",
            model="whisper-1",
            recorded_model="whisper-1",
            response_body={"text": "hi", "duration": 120.0},
            prompt_tokens=None,
            completion_tokens=None,
        ),
        make_result(
            exchange_id="a0",
            provider="tok",
            endpoint="audio.transcriptions",
            model="whisper-1",
            recorded_model="whisper-1",
            response_body={"text": "hi"},
            prompt_tokens=None,
            completion_tokens=None,
        ),
        make_result(  # no arm knows this one's length: its cost is unknown, not $0
            exchange_id="a1",
            provider="tok",
            endpoint="audio.transcriptions",
            model="whisper-1",
            recorded_model="whisper-1",
            response_body={"text": "hi"},
            prompt_tokens=None,
            completion_tokens=None,
        ),
    ]
    cfg = run_config(
        {"tok": {"base_url": "http://t/v1", "models": {"*": "*"}, "pricing": AUDIO_TOKENS}},
        {"default": {"input_per_1m": 2.5, "output_per_1m": 10.0, "per_audio_minute": 0.006}},
    )
    write_run(db, rows, cfg)
    c = _by(evals.cost(db, "r1"), "provider", "endpoint")
    chat = c[("tok", "chat.completions")]
    assert chat["cost_estimated_share"] == 0.0 and chat["cost_priced_share"] == 1.0
    want = sum(p * 0.88 + k * 0.88 for p, k in usage) / 1e6
    assert chat["cost_total_usd"] == pytest.approx(want, rel=1e-12)
    audio = c[("tok", "audio.transcriptions")]
    assert audio["cost_estimated_share"] == 0.0
    assert audio["cost_priced_share"] == 0.5 and audio["cost_partial"]
    assert audio["cost_total_usd"] == pytest.approx(2 * 0.0015)  # a0: 120 s from the recorded arm
    s = _by(evals.summary(db, "r1", questions=("cost",)), "provider")
    assert s["tok"]["cost_estimated_share"] == 0.0
    assert s["tok"]["cost_priced_share"] == pytest.approx(4 / 5)  # 3 chat cells and a0, of 5
    assert s["recorded"]["cost_estimated_share"] == 0.0


def _partial_run(db) -> dict:
    """Six exchanges, two of a model the recorded arm has no price for; a candidate priced for all."""
    rows, exch, costs = [], [], {}
    for i in range(6):
        model = "m" if i < 4 else "unpriced-x"
        p, k = 100 * (i + 1), 20 * (i + 1)
        exch.append(make_exchange(id=f"e{i}", model=model, recorded_at=T0 + timedelta(seconds=i)))
        for arm in ("recorded", "cand", "free"):
            rows.append(
                make_result(
                    exchange_id=f"e{i}",
                    provider=arm,
                    model=model,
                    recorded_model=model,
                    prompt_tokens=p,
                    completion_tokens=k,
                )
            )
        costs[("recorded", i)] = (p * 2.0 + k * 8.0) / 1e6 if model == "m" else None
        costs[("cand", i)] = (p * 1.0 + k * 4.0) / 1e6
    cfg = run_config(
        {
            "cand": {"base_url": "http://c/v1", "models": {"*": "*"}, "pricing": CAND},
            "free": {"base_url": "http://f/v1", "models": {"*": "*"}, "pricing": {"default": None}},
        },
        RECORDED,
    )
    write_run(db, rows, cfg, exchanges=exch)
    return costs


def test_unpriced_baseline_cells_give_a_partial_cost_and_a_delta_over_the_priced_subset(db):
    costs = _partial_run(db)
    c = _by(evals.summary(db, "r1", questions=("cost",)), "provider")
    rec, cand, free = c["recorded"], c["cand"], c["free"]
    # the baseline: partial total over its 4 priced cells, never blank and never $0
    assert rec["cost_total_usd"] == pytest.approx(sum(costs[("recorded", i)] for i in range(4)))
    assert rec["cost_priced_share"] == pytest.approx(4 / 6)
    assert cand["cost_priced_share"] == 1.0
    assert cand["cost_total_usd"] == pytest.approx(sum(costs[("cand", i)] for i in range(6)))
    # the delta: over e0..e3 only (priced in both arms), and it says so
    sub_c = sum(costs[("cand", i)] for i in range(4))
    sub_r = sum(costs[("recorded", i)] for i in range(4))
    assert cand["cost_delta_pct"] == pytest.approx((sub_c / sub_r - 1) * 100)
    assert cand["cost_delta_basis"] == "priced_common_subset"
    # an arm with no price at all: no total, no delta, priced share 0
    assert free["cost_total_usd"] is None and free["cost_delta_pct"] is None
    assert free["cost_priced_share"] == 0.0
    rows = _by(evals.cost(db, "r1"), "provider", "model")
    assert rows[("recorded", "m")]["cost_partial"] is False
    assert rows[("recorded", "unpriced-x")]["cost_total_usd"] is None
    assert rows[("cand", "unpriced-x")]["cost_delta_pct"] is None  # no priced baseline cell to compare
    assert rows[("cand", "unpriced-x")]["n_cost_pairs_answered"] == 2
    assert rows[("cand", "m")]["cost_delta_basis"] == "all_pairs"


def test_partial_cost_in_the_report(db, tmp_path, capsys):
    _partial_run(db)
    out = tmp_path / "r.md"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    md = out.read_text()
    assert "cost partial, 67% of successful requests priced" in md
    assert "priced in both arms" in md
    html = tmp_path / "r.html"
    assert main(["report", "--db", str(db), "--out", str(html)]) == 0
    assert "67% of successful requests priced" in html.read_text()


def _cost_run(db, span: timedelta, n: int = 4) -> float:
    """``n`` exchanges spread over ``span``, one priced candidate; returns its mean cost per request."""
    rows, exch, total = [], [], 0.0
    for i in range(n):
        p, k = 1000 * (i + 1), 100
        at = T0 + span * (i / (n - 1))
        exch.append(make_exchange(id=f"e{i}", recorded_at=at))
        rows += [
            make_result(exchange_id=f"e{i}", provider=a, prompt_tokens=p, completion_tokens=k, started_at=at)
            for a in ("recorded", "cand")
        ]
        total += (p * 1.0 + k * 4.0) / 1e6
    # one exchange the candidate was never sent (e.g. an unmapped model): its $/month still covers N
    rows.append(make_result(exchange_id="only-recorded", provider="recorded", started_at=T0))
    cfg = run_config({"cand": {"base_url": "http://c/v1", "models": {"*": "*"}, "pricing": CAND}}, RECORDED)
    write_run(db, rows, cfg, exchanges=exch)
    return total / n


def test_seconds_long_recording_gives_no_month_but_cost_per_1k(db):
    mean = _cost_run(db, timedelta(seconds=5))
    ev = evals.evaluate(db, "r1", questions=("cost",))
    c = _by(ev.summary, "provider")["cand"]
    assert c["cost_month_usd"] is None and c["cost_month_basis"] is None
    assert c["cost_per_1k_usd"] == pytest.approx(1000 * mean)
    row = _by(ev.cost, "provider")["cand"]
    assert "5 s, under 24 h" in row["cost_month_note"] and "--monthly-requests" in row["cost_month_note"]
    d = ev.to_dict()
    assert d["cost_month"]["basis"] is None and "under 24 h" in d["cost_month"]["note"]


def test_monthly_requests_projects_n_times_the_mean_cost(db):
    mean = _cost_run(db, timedelta(seconds=5))
    ev = evals.evaluate(db, "r1", questions=("cost",), monthly_requests=2_500_000)
    c = _by(ev.summary, "provider")["cand"]
    assert c["cost_month_usd"] == pytest.approx(2_500_000 * mean)
    assert c["cost_month_basis"] == "monthly_requests=2500000"
    with pytest.raises(evals.EvalError, match="positive"):
        evals.evaluate(db, "r1", questions=("cost",), monthly_requests=0)


def test_a_recording_of_three_days_extrapolates_its_own_rate(db):
    mean = _cost_run(db, timedelta(days=3))
    c = _by(evals.summary(db, "r1", questions=("cost",)), "provider")["cand"]
    assert c["cost_month_basis"] == "recording span 3.0 days"
    assert c["cost_month_usd"] == pytest.approx(mean * 5 * 30 / 3)  # 5 recorded requests in 3 days


def test_cli_monthly_requests_on_eval_report_and_check(db, tmp_path, capsys):
    mean = _cost_run(db, timedelta(seconds=5))
    assert main(["eval", "--db", str(db), "--json", "--monthly-requests", "1e6"]) == 0
    d = json.loads(capsys.readouterr().out)
    cand = next(r for r in d["cost"] if r["provider"] == "cand")
    assert cand["cost_month_usd"] == pytest.approx(1e6 * mean)
    assert d["cost_month"]["basis"] == "monthly_requests=1000000"
    limit = 1e6 * mean * 1.01
    assert (
        main(["check", "--db", str(db), "--fail-if", f"cost_month_usd > {limit}"]) == 1
    )  # no $/month: missing
    capsys.readouterr()
    rule = f"cost_month_usd > {limit}"
    assert main(["check", "--db", str(db), "--monthly-requests", "1000000", "--fail-if", rule]) == 0
    out = tmp_path / "r.md"
    assert main(["report", "--db", str(db), "--out", str(out), "--monthly-requests", "1_000_000"]) == 0
    assert "1,000,000 requests a month (--monthly-requests)" in out.read_text()
    with pytest.raises(SystemExit) as e:
        main(["eval", "--db", str(db), "--monthly-requests", "-3"])
    assert e.value.code == 2
    assert "positive number of requests per month" in capsys.readouterr().err


def test_zero_token_usage_in_a_stored_cell_is_unknown_not_free(db):
    """A store written before the replayer estimated 0-token usage: the cell has no cost, not $0."""
    rows = [
        make_result(exchange_id="e0", provider="recorded"),
        make_result(
            exchange_id="e0",
            provider="cand",
            prompt_tokens=0,
            completion_tokens=0,
            response_body=chat_body("A long answer that was billed.", usage=(0, 0)),
        ),
    ]
    cfg = run_config({"cand": {"base_url": "http://c/v1", "models": {"*": "*"}, "pricing": CAND}}, RECORDED)
    write_run(db, rows, cfg)
    c = _by(evals.summary(db, "r1", questions=("cost",)), "provider")["cand"]
    assert c["cost_total_usd"] is None and c["cost_priced_share"] == 0.0
    assert c["cost_delta_pct"] is None  # never -100%
