"""Compatibility scorecard: a quirky provider fails exactly the checks it breaks, nothing else."""

from __future__ import annotations

import polars as pl
from evalhelpers import (
    WEATHER_TOOL,
    chat_body,
    chat_request,
    make_result,
    run_config,
    tool_call,
    with_facts,
    write_run,
)

from parity import evals

DONE_SSE = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: {"choices":[],"usage":{}}\n\ndata: [DONE]\n\n'
CUT_SSE = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
STREAM_REQ = chat_request(stream=True, stream_options={"include_usage": True})
ERROR_400 = {
    "error": {"message": "bad value", "type": "invalid_request_error", "param": "x", "code": "invalid_value"}
}
PROVIDERS = {
    p: {"base_url": f"http://{p}/v1", "models": {"*": "*"}, "models_listed": ["m"]}
    for p in ("good", "quirky")
}


def _results(card: pl.DataFrame, provider: str) -> dict[str, str]:
    return {
        r["check"]: r["result"] for r in card.filter(pl.col("provider") == provider).iter_rows(named=True)
    }


def _arm(provider: str, quirky: bool) -> list[dict]:
    p = {"provider": provider}
    stream = make_result(
        exchange_id="s",
        stream=True,
        ttft_ms=50.0,
        sent_body=STREAM_REQ,
        stream_complete=not quirky,
        response_raw=CUT_SSE if quirky else DONE_SSE,
        tokens_estimated=quirky,
        response_body=chat_body("Hi", finish=None if quirky else "stop", usage=None if quirky else (10, 1)),
        finish_reason=None if quirky else "stop",
        **p,
    )
    err = make_result(
        exchange_id="x",
        status=400,
        sdk_valid=None,
        finish_reason=None,
        response_body={"error": ERROR_400["error"] | {"code": 400}} if quirky else ERROR_400,
        **p,
    )
    args = '{"city": "Paris"' if quirky else '{"city": "Paris"}'
    tool = make_result(
        exchange_id="t",
        sent_body=chat_request(tools=[WEATHER_TOOL]),
        finish_reason="tool_calls",
        response_body=chat_body(None, "tool_calls", tool_calls=[tool_call("get_weather", args)]),
        **p,
    )
    limited = make_result(
        exchange_id="m",
        sent_body=chat_request(max_tokens=50),
        completion_tokens=120 if quirky else 50,
        response_body=chat_body("long " * 10, usage=(10, 120 if quirky else 50)),
        **p,
    )
    return [stream, err, tool, limited]


def _write(db, rows, config, **kw):
    """The rows as the replayer writes them: with their ``chk_*`` facts."""
    return write_run(db, with_facts(rows), config, **kw)


def test_quirky_provider_fails_exactly_what_it_breaks(db):
    rows = _arm("recorded", False) + _arm("good", False) + _arm("quirky", True)
    _write(db, rows, run_config(PROVIDERS))
    card = evals.compat(db, "r1")
    broken = {
        "stream_terminated",
        "usage_present",
        "finish_reason_present",
        "error_json",
        "tool_args_json",
        "max_tokens_respected",
        "error_code_known",  # an integer 400: the HTTP status where OpenAI sends an identifier
    }
    quirky = _results(card, "quirky")
    assert {c for c, r in quirky.items() if r == "fail"} == broken
    for arm in ("good", "recorded"):
        res = _results(card, arm)
        assert "fail" not in res.values(), res
        assert {c for c, r in res.items() if r == "pass"} >= broken | {
            "sdk_valid",
            "stream_wellformed",
            "error_status",
        }
    # production is the yardstick of the comparisons, not compared with itself
    assert _results(card, "good")["error_status_match"] == "pass"
    assert _results(card, "recorded")["error_status_match"] == "n/a"
    row = card.filter((pl.col("provider") == "quirky") & (pl.col("check") == "tool_args_json")).row(
        0, named=True
    )
    assert row["examples"] == ["t"] and row["failed"] == 1
    s = {r["provider"]: r for r in evals.summary(db, "r1").iter_rows(named=True)}
    assert s["quirky"]["compat_failures"] == 7
    assert s["quirky"]["compat.error_code_known"] == 1 and s["good"]["compat.error_code_known"] == 0
    # production's code ("invalid_value") is not one apps branch on: a different one fails nothing
    assert s["quirky"]["compat.error_code_match"] is None
    assert s["good"]["compat_failures"] == 0 and s["good"]["compat_score"] == 1.0
    assert (
        s["quirky"]["compat_score"]
        == (s["quirky"]["compat_applicable"] - 7) / s["quirky"]["compat_applicable"]
    )


def test_rate_limits_parameters_and_models(db):
    err429 = {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}
    rows = [make_result(exchange_id=x) for x in ("a", "b", "c", "d", "e", "f", "g", "h", "i")]
    rows += [
        make_result(
            exchange_id="a",
            provider="good",
            status=429,
            response_body=err429,
            response_headers={"retry-after": "2"},
        ),
        make_result(
            exchange_id="a",
            provider="bad",
            status=429,
            response_body=err429,
            response_headers={"x-should-retry": "false"},
        ),
        make_result(
            exchange_id="b",
            provider="good",
            sent_body=chat_request(stop=["END"]),
            response_body=chat_body("fine"),
        ),
        make_result(
            exchange_id="b",
            provider="bad",
            sent_body=chat_request(stop="END"),
            response_body=chat_body("fine END more"),
        ),
        make_result(
            exchange_id="c", provider="good", sent_body=chat_request(n=2), response_body=chat_body("x", n=2)
        ),
        make_result(
            exchange_id="c", provider="bad", sent_body=chat_request(n=2), response_body=chat_body("x", n=1)
        ),
        make_result(exchange_id="d", provider="good"),
        make_result(
            exchange_id="d",
            provider="bad",
            response_body={"error": {"message": "oops", "type": "server_error", "code": None}},
        ),
        make_result(
            exchange_id="e",
            provider="good",
            stream=True,
            stream_complete=True,
            response_raw=DONE_SSE + 'data: {"cut',
            sent_body=STREAM_REQ,
        ),
        make_result(
            exchange_id="e",
            provider="bad",
            stream=True,
            stream_complete=True,
            response_raw="<html>502</html>\n" + DONE_SSE,
            sent_body=STREAM_REQ,
        ),
        make_result(
            exchange_id="i",
            provider="good",
            stream=True,
            stream_complete=True,
            response_raw=DONE_SSE,
            sent_body=STREAM_REQ,
        ),
        make_result(
            exchange_id="i",
            provider="bad",
            stream=True,
            stream_complete=True,
            response_raw="data: {oops}\n\n" + DONE_SSE,
            sent_body=STREAM_REQ,
        ),
        make_result(exchange_id="f", provider="good", model="m"),
        make_result(exchange_id="f", provider="bad", model="m-unlisted"),
        make_result(exchange_id="g", provider="good"),
        make_result(exchange_id="g", provider="bad", sdk_valid=False, sdk_error="choices: field required"),
        make_result(
            exchange_id="h",
            provider="good",
            status=500,
            response_body={"error": {"message": "x", "type": "server_error", "code": None}},
        ),
        make_result(
            exchange_id="h",
            provider="bad",
            status=500,
            response_body={"error": {"message": "x", "type": "rate_limit_error", "code": None}},
        ),
    ]
    attempts = [
        {
            "run_id": "r1",
            "exchange_id": "a",
            "provider": "good",
            "repeat": 0,
            "attempt": 1,
            "status": 429,
            "retry_after_ms": 2000.0,
        },
        {
            "run_id": "r1",
            "exchange_id": "a",
            "provider": "bad",
            "repeat": 0,
            "attempt": 1,
            "status": 429,
            "retry_after_ms": None,
        },
    ]
    providers = {
        p: {"base_url": f"http://{p}/v1", "models": {"*": "*"}, "models_listed": ["m"]}
        for p in ("good", "bad")
    }
    _write(db, rows, run_config(providers), attempts=attempts)
    card = evals.compat(db, "r1")
    good, bad = _results(card, "good"), _results(card, "bad")
    checks = [
        "retry_after_429",
        "retryable_429",
        "stop_respected",
        "n_choices",
        "error_status",
        "stream_wellformed",
        "sdk_valid",
    ]
    for c in checks:
        assert good[c] == "pass", c
        assert bad[c] == "fail", c
    # an unlisted model breaks no code (its requests fail or not on their own): informational
    assert good["models_listed"] == "pass" and bad["models_listed"] == "info"
    detail = card.filter((pl.col("provider") == "bad") & (pl.col("check") == "sdk_valid"))["detail"][0]
    assert "field required" in detail
    wf = card.filter((pl.col("provider") == "bad") & (pl.col("check") == "stream_wellformed")).row(
        0, named=True
    )
    assert sorted(wf["examples"]) == ["e", "i"]  # a non-SSE line, and a data payload that is not JSON
    listed = card.filter((pl.col("provider") == "bad") & (pl.col("check") == "models_listed")).row(
        0, named=True
    )
    assert listed["examples"] == ["m-unlisted"]
