"""Cost against hand-computed figures, and the vectorised formula against parity.replayer.pricing."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from evalhelpers import T0, make_exchange, make_result, run_config, write_run
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import evals
from parity.evals.metrics import spend
from parity.replayer.costs import units_known
from parity.replayer.pricing import Pricing, breakeven_prompt_tokens, request_cost

TOKEN = {"default": {"input_per_1m": 3.0, "cached_input_per_1m": 1.5, "output_per_1m": 12.0}}
FLAT = {"default": {"per_request": 0.002}}
RECORDED = {"default": {"input_per_1m": 2.5, "cached_input_per_1m": 1.25, "output_per_1m": 10.0}}


def _config(**extra) -> dict:
    providers = {
        "tok": {"base_url": "http://t/v1", "models": {"*": "*"}, "pricing": TOKEN},
        "flat": {"base_url": "http://f/v1", "models": {"*": "*"}, "pricing": FLAT},
    } | extra
    return run_config(providers, RECORDED)


def test_hand_computed_costs_match_to_the_cent(db):
    usage = [(120_000, 2_000, 100_000), (30_000, 500, 0), (8_000, 8_000, 0)]  # prompt, completion, cached
    rows, exch = [], []
    for i, (p, c, cached) in enumerate(usage):
        for arm in ("recorded", "tok", "flat"):
            rows.append(
                make_result(
                    exchange_id=f"e{i}",
                    provider=arm,
                    prompt_tokens=p,
                    completion_tokens=c,
                    cached_tokens=cached,
                )
            )
        exch.append(
            make_exchange(
                id=f"e{i}", recorded_at=T0 + timedelta(hours=12 * i), prompt_tokens=p, completion_tokens=c
            )
        )
    rows.append(
        make_result(exchange_id="e3", provider="tok", status=500, prompt_tokens=0, completion_tokens=0)
    )
    rows.append(make_result(exchange_id="e3", provider="recorded"))
    rows.append(make_result(exchange_id="e3", provider="flat"))
    write_run(
        db, rows, _config(), exchanges=exch + [make_exchange(id="e3", recorded_at=T0 + timedelta(hours=36))]
    )
    c = {r["provider"]: r for r in evals.cost(db, "r1").iter_rows(named=True)}
    # tok: e0 20k*3 + 100k*1.5 + 2k*12 = 0.06 + 0.15 + 0.024; e1 0.09 + 0.006; e2 0.024 + 0.096; e3 failed = 0
    assert c["tok"]["cost_total_usd"] == pytest.approx(0.234 + 0.096 + 0.120, abs=0.005)
    assert round(c["tok"]["cost_total_usd"], 2) == 0.45
    assert c["tok"]["cost_total_usd"] == pytest.approx(0.45, abs=1e-12)
    assert c["flat"]["cost_total_usd"] == pytest.approx(4 * 0.002, abs=1e-12)
    assert c["flat"]["cost_per_success_usd"] == pytest.approx(0.002)
    assert c["tok"]["cost_per_success_usd"] == pytest.approx(0.45 / 3)
    # 4 exchanges recorded over 36 h -> 4 / 1.5 days -> x 30 days = 80 requests / month
    assert c["flat"]["cost_month_usd"] == pytest.approx(0.002 * 80)
    assert c["tok"]["cost_month_usd"] == pytest.approx(0.15 * 80)
    # paired delta over exchanges both answered: tok e0..e2 vs recorded e0..e2
    rec = (
        20_000 * 2.5 + 100_000 * 1.25 + 2_000 * 10 + 30_000 * 2.5 + 500 * 10 + 8_000 * 2.5 + 8_000 * 10
    ) / 1e6
    assert c["tok"]["cost_delta_pct"] == pytest.approx((0.45 / rec - 1) * 100)
    assert c["recorded"]["cost_delta_pct"] is None


def test_breakeven_and_traffic_beyond_it(db):
    prompts = [1_000, 5_000, 20_000, 100_000]
    rows = [
        make_result(exchange_id=f"e{i}", provider=a, prompt_tokens=p, completion_tokens=200)
        for i, p in enumerate(prompts)
        for a in ("recorded", "flat")
    ]
    exch = [
        make_exchange(
            id=f"e{i}", prompt_tokens=p, completion_tokens=200, recorded_at=T0 + timedelta(minutes=i)
        )
        for i, p in enumerate(prompts)
    ]
    cfg = run_config(
        {
            "flat": {
                "base_url": "http://f/v1",
                "models": {"*": "*"},
                "pricing": {"default": {"per_request": 0.01}},
            }
        },
        RECORDED,
    )
    write_run(db, rows, cfg, exchanges=exch)
    row = evals.breakeven(db, "r1").row(0, named=True)
    assert (row["token_provider"], row["flat_provider"]) == ("recorded", "flat")
    # flat 0.01 == p * 2.5e-6 + 200 * 10e-6  ->  p = 3200 prompt tokens
    assert row["breakeven_prompt_tokens"] == pytest.approx(3200.0)
    assert row["breakeven_prompt_tokens"] == pytest.approx(
        breakeven_prompt_tokens(Pricing(**RECORDED["default"]), Pricing(per_request=0.01), 200)
    )
    assert row["share_beyond"] == pytest.approx(0.75)
    assert row["share_flat_cheaper"] == pytest.approx(0.75)
    s = {r["provider"]: r for r in evals.summary(db, "r1").iter_rows(named=True)}
    assert s["flat"]["breakeven_prompt_tokens"] == pytest.approx(3200.0)
    assert s["flat"]["breakeven_traffic_share"] == pytest.approx(0.75)


def test_unpriced_provider_has_no_cost_not_zero(db):
    rows = [make_result(provider="recorded"), make_result(provider="free")]
    write_run(
        db,
        rows,
        _config(free={"base_url": "http://x/v1", "models": {"*": "*"}, "pricing": {"default": None}}),
    )
    c = {r["provider"]: r for r in evals.cost(db, "r1").iter_rows(named=True)}
    assert c["free"]["cost_total_usd"] is None and c["free"]["cost_missing"]
    assert c["recorded"]["cost_total_usd"] == pytest.approx((10 * 2.5 + 5 * 10) / 1e6)


def test_estimated_tokens_marked_and_dated_snapshot_priced(db):
    cfg = run_config(
        {}, {"default": {"input_per_1m": 99.0}, "gpt-4o-mini": {"input_per_1m": 0.15, "output_per_1m": 0.6}}
    )
    rows = [
        make_result(
            model="gpt-4o-mini-2024-07-18",
            recorded_model="gpt-4o-mini-2024-07-18",
            tokens_estimated=True,
            prompt_tokens=1_000_000,
            completion_tokens=0,
        )
    ]
    write_run(db, rows, cfg)
    row = evals.cost(db, "r1").row(0, named=True)
    assert row["cost_total_usd"] == pytest.approx(0.15)
    assert row["cost_estimated_share"] == 1.0


def test_images_and_audio_minutes(db):
    cfg = run_config(
        {
            "img": {
                "base_url": "http://i/v1",
                "models": {"*": "*"},
                "pricing": {"default": {"per_image": 0.04}},
            }
        },
        {"default": {"per_audio_minute": 0.006}},
    )
    rows = [
        make_result(
            exchange_id="a",
            endpoint="audio.transcriptions",
            response_body={"text": "hi", "duration": 90.0},
            prompt_tokens=None,
            completion_tokens=None,
        ),
        make_result(
            exchange_id="i",
            endpoint="images.generations",
            response_body={"created": 1, "data": [{"url": "u"}] * 3},
        ),
        make_result(
            exchange_id="i",
            provider="img",
            endpoint="images.generations",
            response_body={"created": 1, "data": [{"url": "u"}] * 3},
            prompt_tokens=None,
        ),
    ]
    write_run(db, rows, cfg)
    c = evals.cost(db, "r1")
    get = {(r["provider"], r["endpoint"]): r["cost_total_usd"] for r in c.iter_rows(named=True)}
    assert get[("recorded", "audio.transcriptions")] == pytest.approx(1.5 * 0.006)
    assert get[("img", "images.generations")] == pytest.approx(3 * 0.04)


prices = st.floats(0, 100, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(0, 2_000_000),
    c=st.integers(0, 200_000),
    cached=st.integers(0, 3_000_000),
    inp=prices,
    cin=st.none() | prices,
    out=prices,
    req=st.floats(0, 1),
    ok=st.booleans(),
)
def test_vectorised_cost_equals_request_cost(p, c, cached, inp, cin, out, req, ok):
    pr = Pricing(input_per_1m=inp, cached_input_per_1m=cin, output_per_1m=out, per_request=req)
    cells = pl.DataFrame(
        {
            "exchange_id": ["e"],
            "provider": ["x"],
            "repeat": [0],
            "provider_model": ["m"],
            "endpoint": ["chat.completions"],
            "status": [200 if ok else 500],
            "error_type": [None if ok else "server_error"],
            "prompt_tokens": [p],
            "completion_tokens": [c],
            "cached_tokens": [cached],
            "tokens_estimated": [False],
            "cost_usd": [None],
            "cost_estimated": [None],
        },
        schema_overrides={"cost_usd": pl.Float64, "cost_estimated": pl.Boolean},
    )
    got = spend.request_costs(cells, spend.price_frame({"x": spend.PricingTable(default=pr)}, cells))[
        "cost_usd"
    ][0]
    if ok and not units_known(pr, "chat.completions", p, c, None):  # token-priced, no tokens: unknown
        assert got is None
    else:
        assert got == pytest.approx(request_cost(pr, p, c, cached, succeeded=ok), rel=1e-12, abs=1e-15)
