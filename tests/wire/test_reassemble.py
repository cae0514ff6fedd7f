"""Reassembling streams into non-streamed bodies; usage and endpoint classification."""

from __future__ import annotations

import json

import pytest

from parity.wire.endpoints import api_path, classify, has_side_effects
from parity.wire.reassemble import extract_usage, finish_reason, output_text, reassemble
from parity.wire.sse import SSEEvent


def evs(*objs, start: float = 0.0) -> list[SSEEvent]:
    out = []
    for i, o in enumerate(objs):
        if isinstance(o, tuple):  # (event name, data)
            out.append(SSEEvent(start + i, json.dumps(o[1]), event=o[0]))
        else:
            out.append(SSEEvent(start + i, o if isinstance(o, str) else json.dumps(o)))
    return out


def chunk(delta=None, finish=None, idx=0, **extra):
    c = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", **extra}
    c["choices"] = [] if delta is None else [{"index": idx, "delta": delta, "finish_reason": finish}]
    return c


def test_chat_text_usage_and_first_content_time() -> None:
    res = reassemble(
        "chat.completions",
        evs(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
            "[DONE]",
        ),
    )
    assert res.complete and res.done_marker
    assert res.body["object"] == "chat.completion" and res.body["id"] == "c1"
    assert res.body["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert res.body["choices"][0]["finish_reason"] == "stop"
    assert res.content_times == [1.0, 2.0]  # the role-only chunk is not content
    assert extract_usage(res.body).completion == 2 and finish_reason(res.body) == "stop"
    assert output_text(res.body) == "Hello"


def test_chat_parallel_tool_calls() -> None:
    tc = lambda i, **f: {"index": i, **f}  # noqa: E731
    res = reassemble(
        "chat.completions",
        evs(
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        tc(0, id="call_a", type="function", function={"name": "get_weather", "arguments": ""})
                    ],
                }
            ),
            chunk({"tool_calls": [tc(0, function={"arguments": '{"city":'})]}),
            chunk(
                {
                    "tool_calls": [
                        tc(1, id="call_b", type="function", function={"name": "get_time", "arguments": ""})
                    ]
                }
            ),
            chunk({"tool_calls": [tc(0, function={"arguments": ' "Paris"}'})]}),
            chunk({"tool_calls": [tc(1, function={"arguments": "{}"})]}),
            chunk({}, "tool_calls"),
            "[DONE]",
        ),
    )
    msg = res.body["choices"][0]["message"]
    assert msg["content"] is None
    assert [
        (t["id"], t["function"]["name"], json.loads(t["function"]["arguments"])) for t in msg["tool_calls"]
    ] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {}),
    ]
    assert res.body["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_logprobs_and_several_choices() -> None:
    lp = lambda t: {"content": [{"token": t, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}  # noqa: E731
    e = evs(
        {
            **chunk({"content": "a"}),
            "choices": [
                {"index": 0, "delta": {"content": "a"}, "logprobs": lp("a")},
                {"index": 1, "delta": {"content": "x"}, "logprobs": lp("x")},
            ],
        },
        {
            **chunk({"content": "b"}),
            "choices": [{"index": 0, "delta": {"content": "b"}, "logprobs": lp("b")}],
        },
        "[DONE]",
    )
    body = reassemble("chat.completions", e).body
    assert [c["message"]["content"] for c in body["choices"]] == ["ab", "x"]
    assert [t["token"] for t in body["choices"][0]["logprobs"]["content"]] == ["a", "b"]


def test_chat_error_event_mid_stream() -> None:
    res = reassemble(
        "chat.completions",
        evs(chunk({"content": "a"}), {"error": {"message": "boom", "type": "server_error"}}),
    )
    assert res.error == {"message": "boom", "type": "server_error"}
    assert not res.complete
    assert res.body["choices"][0]["message"]["content"] == "a"


def test_legacy_completions() -> None:
    def c(t, f=None):
        return {
            "id": "cmpl",
            "object": "text_completion",
            "model": "m",
            "choices": [{"index": 0, "text": t, "finish_reason": f}],
        }

    res = reassemble("completions", evs(c("one"), c(" two", "length"), "[DONE]"))
    assert res.body["object"] == "text_completion"
    assert res.body["choices"][0]["text"] == "one two" and res.body["choices"][0]["finish_reason"] == "length"
    assert output_text(res.body) == "one two"


def test_responses_typed_events_without_done() -> None:
    final = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [],
        "usage": {"input_tokens": 7, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 1}},
    }
    res = reassemble(
        "responses",
        evs(
            (
                "response.created",
                {"type": "response.created", "response": {**final, "status": "in_progress"}},
            ),
            ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
            (
                "response.function_call_arguments.delta",
                {"type": "response.function_call_arguments.delta", "delta": "{}"},
            ),
            ("response.completed", {"type": "response.completed", "response": final}),
        ),
    )
    assert res.complete and not res.done_marker
    assert res.body == final
    assert res.content_times == [1.0, 2.0]
    u = extract_usage(res.body)
    assert (u.prompt, u.completion, u.reasoning) == (7, 2, 1)
    assert finish_reason(res.body) == "completed"


def test_responses_cut_off_and_failed() -> None:
    res = reassemble(
        "responses",
        evs(
            {"type": "response.output_text.delta", "delta": "par"},
            {"type": "response.output_text.delta", "delta": "tial"},
        ),
    )
    assert not res.complete and res.body["status"] == "incomplete"
    assert output_text(res.body) == "partial"
    failed = {
        "type": "response.failed",
        "response": {
            "object": "response",
            "status": "failed",
            "error": {"code": "server_error", "message": "no"},
        },
    }
    res = reassemble("responses", evs(failed))
    assert res.complete and res.error == {"code": "server_error", "message": "no"}


def test_transcription_stream() -> None:
    res = reassemble(
        "audio.transcriptions",
        evs(
            {"type": "transcript.text.delta", "delta": "hello "},
            {"type": "transcript.text.delta", "delta": "world"},
            {
                "type": "transcript.text.done",
                "text": "hello world",
                "usage": {"input_tokens": 4, "output_tokens": 2},
            },
        ),
    )
    assert res.complete and res.body["text"] == "hello world" and res.content_times == [0.0, 1.0]
    assert extract_usage(res.body).prompt == 4


def test_usage_from_every_shape() -> None:
    assert (
        extract_usage(
            {
                "usage": {
                    "prompt_tokens": 1,
                    "completion_tokens": 2,
                    "prompt_tokens_details": {"cached_tokens": 1},
                }
            }
        ).cached
        == 1
    )
    assert extract_usage({"usage": {"prompt_tokens": 4, "total_tokens": 4}}).prompt == 4  # embeddings
    assert extract_usage({"usage": None}).prompt is None
    assert extract_usage({"usage": {"prompt_tokens": True}}).prompt is None  # bools are not counts
    assert extract_usage(None).prompt is None


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("POST", "/v1/chat/completions", "chat.completions"),
        ("POST", "/v1/chat/completions/", "chat.completions"),
        ("POST", "/openai/deployments/gpt4/chat/completions?api-version=2024-02-01", "chat.completions"),
        ("POST", "/api/v1/chat/completions", "chat.completions"),
        ("POST", "/v1beta/openai/chat/completions", "chat.completions"),
        ("POST", "/openai/v1/responses", "responses"),
        ("POST", "/v1/responses", "responses"),
        ("POST", "/v1/completions", "completions"),
        ("POST", "/v1/embeddings", "embeddings"),
        ("POST", "/v1/audio/transcriptions", "audio.transcriptions"),
        ("POST", "/v1/audio/translations", "audio.translations"),
        ("POST", "/v1/images/generations", "images.generations"),
        ("POST", "/v1/moderations", "moderations"),
        ("GET", "/v1/models", "models"),
        ("GET", "/v1/models/gpt-4o", "models"),
        ("DELETE", "/v1/models/ft:x", "other"),
        ("GET", "/v1/chat/completions", "other"),
        ("GET", "/v1/responses/resp_1", "other"),
        ("POST", "/v1/files", "other"),
        ("GET", "/health", "other"),
    ],
)
def test_classify(method: str, path: str, endpoint: str) -> None:
    assert classify(method, path) == endpoint


def test_api_path_and_side_effects() -> None:
    assert api_path("/openai/deployments/x/chat/completions?a=1") == "/chat/completions"
    assert has_side_effects("POST", "/v1/files")
    assert has_side_effects("DELETE", "/v1/models/x")
    assert has_side_effects("POST", "/v1/responses/resp_1/cancel")
    assert not has_side_effects("POST", "/v1/chat/completions")


def test_chunks_shaped_like_no_openai_chunk_are_counted_not_fatal() -> None:
    from parity.wire.reassemble import dumps

    odd = [
        {"choices": [None, 5, {"index": [1], "delta": "x"}]},
        {"choices": {"0": 1}},
        {
            "choices": [
                {"delta": {"tool_calls": [None, {"index": "a", "function": {"name": 5, "arguments": ["x"]}}]}}
            ]
        },
        {"choices": [{"text": 5, "finish_reason": {"a": 1}}]},
        {"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]},
    ]
    for endpoint in ("chat.completions", "completions", "responses", "audio.transcriptions"):
        res = reassemble(endpoint, evs(*odd, {"type": "response.completed", "response": [1]}, "[DONE]"))
        json.loads(dumps(res.body))
        assert isinstance(res.body, dict) and isinstance(finish_reason(res.body), str | None)
    assert reassemble("chat.completions", evs(*odd)).body["choices"][0]["message"]["content"] == "ok"
    assert output_text({"object": "response", "output": [{"content": "x"}, 5]}) == ""
    assert output_text({"choices": [{"message": {"content": 5}}]}) == ""
    assert dumps({"a": float("nan"), "b": "\ud800"}) == '{"a":null,"b":"\ufffd"}'
