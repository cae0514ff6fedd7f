"""From a capture to a results row: timings, errors, tokens, cost and SDK validity."""

from __future__ import annotations

import json

from replayhelpers import make_exchange

from parity.replayer.client import Attempt, Capture
from parity.replayer.config import parse_config
from parity.replayer.mapping import prepare
from parity.replayer.results import build_result, recorded_result
from parity.replayer.select import Exchange

MS = 1_000_000  # ns


def _x(**kw) -> Exchange:
    row = make_exchange(**kw)
    return Exchange(**{k: v for k, v in row.items() if k in Exchange.__dataclass_fields__})


PROVIDER = parse_config(
    {
        "p": {
            "base_url": "http://127.0.0.1:9/v1",
            "models": {"*": "*"},
            "pricing": {"input_per_1m": 1.0, "output_per_1m": 2.0},
        }
    }
).providers["p"]


def _chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = (
        []
        if usage
        else [{"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}]
    )
    obj = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices}
    if usage:
        obj["usage"] = usage
    return f"data: {json.dumps(obj)}\n\n".encode()


SSE = [(b"content-type", b"text/event-stream")]
JSON_CT = [(b"content-type", b"application/json")]


def _attempt(status: int | None, reads: list[tuple[float, bytes]], headers=SSE, **kw) -> Attempt:
    a = Attempt(
        wall=1_790_000_000.0,
        t0=0,
        t_hdr=40 * MS,
        t_end=int((reads[-1][0] if reads else 50) * MS),
        status=status,
        raw_headers=tuple(headers),
        **kw,
    )
    a.times = [int(t * MS) for t, _ in reads]
    a.chunks = [d for _, d in reads]
    return a


def _row(x: Exchange, *attempts: Attempt, **cap) -> dict:
    c = Capture(x.id, "p", 0, attempts=list(attempts), **cap)
    row, att, summary = build_result("r", c, x, prepare(x, PROVIDER), PROVIDER.pricing)
    row["_attempts"] = att
    row["_summary"] = summary
    return row


def test_complete_stream() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    reads = [
        (100.0, _chunk("Hello")),
        (110.0, _chunk(" big") + _chunk(" world")),
        (130.0, _chunk(finish="stop")),
        (131.0, _chunk(usage=usage) + b"data: [DONE]\n\n"),
    ]
    row = _row(_x(), _attempt(200, reads))
    assert row["ttfb_ms"] == 40 and row["ttft_ms"] == 100 and row["latency_ms"] == 131
    assert row["chunk_offsets_ms"] == [100, 110, 110, 130, 131, 131]
    assert (
        row["error_type"] is None
        and row["stream_complete"]
        and row["sdk_valid"]
        and row["finish_reason"] == "stop"
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["tokens_estimated"]) == (10, 4, False)
    assert row["itl_ms"] and row["itl_mean_ms"] == (110 - 100) / len(row["itl_ms"])
    assert row["cost_usd"] == (10 * 1.0 + 4 * 2.0) / 1e6 and row["cost_estimated"] is False
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "Hello big world"


def test_clean_end_without_done_is_not_an_error_but_missing_finish_reason_is_a_compat_problem() -> None:
    row = _row(_x(), _attempt(200, [(100.0, _chunk("Hi")), (110.0, _chunk(finish="stop"))]))
    assert row["error_type"] is None and row["stream_complete"] is False and row["sdk_valid"]
    assert row["chk_done"] is False
    done = b"data: [DONE]\n\n"
    row = _row(_x(), _attempt(200, [(100.0, _chunk("Hi")), (110.0, _chunk(" there") + done)]))
    assert row["error_type"] is None and row["sdk_valid"] is False
    assert "finish_reason" in row["sdk_error"]
    assert row["tokens_estimated"] and row["cost_estimated"]  # no usage: estimated from the text


def test_stream_with_neither_done_nor_finish_reason_is_a_broken_request() -> None:
    row = _row(_x(), _attempt(200, [(100.0, _chunk("Hi")), (110.0, _chunk(" there"))]))
    assert row["error_type"] == "stream_broken" and "finish_reason" in row["error_message"]


def test_in_stream_error_is_a_failed_request() -> None:
    err = (
        b'data: {"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}\n\n'
    )
    row = _row(_x(), _attempt(200, [(100.0, _chunk("Hi")), (110.0, err)]))
    assert row["error_type"] == "in_stream_error" and "overloaded" in row["error_message"]


def test_cut_stream_and_connection_errors() -> None:
    reads = [(100.0, _chunk("Hi")), (105.0, b'data: {"id": "c1", "obj')]
    row = _row(
        _x(), _attempt(200, reads, error_type="stream_broken", error_message="ClientPayloadError: reset")
    )
    assert row["error_type"] == "stream_broken" and row["ttft_ms"] == 100 and row["cost_usd"] == 0
    row = _row(_x(), _attempt(200, reads))  # the body ended inside an event
    assert row["error_type"] == "stream_broken"
    row = _row(_x(), _attempt(None, [], headers=[], error_type="connection_error", error_message="refused"))
    assert row["status"] is None and row["error_type"] == "connection_error" and row["sdk_valid"] is None


def test_retried_429_then_ok() -> None:
    err = json.dumps(
        {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    ).encode()
    first = _attempt(
        429,
        [(45.0, err)],
        headers=JSON_CT + [(b"retry-after", b"1")],
        retry_after_ms=1000.0,
        waited_ms=1000.0,
    )
    reads = [(100.0, _chunk("Hi")), (110.0, _chunk(finish="stop") + b"data: [DONE]\n\n")]
    row = _row(_x(), first, _attempt(200, reads), limiter_wait_ms=250.0, schedule_lag_ms=3.5)
    assert row["attempts"] == 2 and row["status"] == 200 and row["latency_ms"] == 110
    assert row["rate_limit_wait_ms"] == 1250.0 and row["schedule_lag_ms"] == 3.5
    a1, a2 = row["_attempts"]
    assert (a1["attempt"], a1["status"], a1["error_type"], a1["retry_after_ms"], a1["waited_ms"]) == (
        1,
        429,
        "requests",
        1000.0,
        1000.0,
    )
    assert a2["status"] == 200 and row["_summary"]["n429"] == 1


def test_error_and_non_json_answers() -> None:
    x = _x(stream=False)
    body = json.dumps({"error": {"message": "bad", "type": "invalid_request_error", "code": 400}}).encode()
    row = _row(x, _attempt(400, [(60.0, body)], headers=JSON_CT))
    assert row["error_type"] == "invalid_request_error" and row["error_message"] == "bad"
    assert row["cost_usd"] == 0 and row["sdk_valid"] is None
    row = _row(x, _attempt(200, [(60.0, b"<html>oops</html>")], headers=[(b"content-type", b"text/html")]))
    assert row["error_type"] == "invalid_json" and row["sdk_valid"] is False and row["response_raw"]
    ok = json.loads(make_exchange()["response_body"])
    row = _row(_x(stream=True), _attempt(200, [(60.0, json.dumps(ok).encode())], headers=JSON_CT))
    assert row["sdk_valid"] is False and "not text/event-stream" in row["sdk_error"]


def test_recorded_arm_row() -> None:
    x = _x(stream=False)
    row = recorded_result("r", x, PROVIDER.pricing)
    assert row["provider"] == "recorded" and row["repeat"] == 0 and row["sdk_valid"]
    assert row["sent_body"] == x.request_body and row["ttft_ms"] == x.ttft_ms
    assert row["cost_usd"] == (12 * 1.0 + 5 * 2.0) / 1e6
