"""SDK validity: the SDK's own lenient parsing plus the fields apps read; real OpenAI bodies pass."""

from __future__ import annotations

import json

import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.responses import Response
from replayhelpers import CORPUS

from parity.replayer.results import parse_stream
from parity.replayer.validate import check_body, check_stream
from parity.wire.endpoints import classify

CHECKED = ("chat.completions", "responses", "embeddings", "completions", "images.generations")


def _stream_verdict(endpoint: str, sse: str) -> str | None:
    sp = parse_stream(endpoint, [(0.0, sse.encode())])
    return check_stream(endpoint, sp["events"], sp["parsed"], sp["res"].body)


def _corpus() -> list[dict]:
    if not CORPUS.exists():
        pytest.skip("corpus /work/shared/corpus/openai-real is not available")
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def test_every_real_openai_200_is_sdk_valid() -> None:
    checked, strict_failures = 0, 0
    for r in _corpus():
        req, resp = r["request"], r["response"]
        endpoint = classify(req["method"], req["path"])
        if r["provider"] != "api.openai.com" or resp["status"] != 200 or endpoint not in CHECKED:
            continue
        if r["stream"]:
            verdict = _stream_verdict(endpoint, resp["sse"])
        else:
            verdict = check_body(endpoint, resp["body_json"], request=req.get("body_json"))
            strict = {"responses": Response, "embeddings": CreateEmbeddingResponse}.get(endpoint)
            if strict is not None:
                try:
                    strict.model_validate(resp["body_json"])
                except Exception:
                    strict_failures += 1
        assert verdict is None, (r["id"], verdict)
        checked += 1
    assert checked >= 250
    assert strict_failures > 0  # strict model_validate would have failed real OpenAI bodies


CHAT_OK = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b.pop("choices"), "choices is not a list"),
        (lambda b: b.update(choices=[]), "choices is empty"),
        (lambda b: b["choices"][0]["message"].update(content=5), "content is not a string"),
        (lambda b: b["choices"][0].update(finish_reason=None), "finish_reason is missing"),
        (
            lambda b: b["choices"][0]["message"].update(
                tool_calls=[{"id": "t", "type": "function", "function": {"arguments": "{}"}}]
            ),
            "name",
        ),
        (
            lambda b: b["choices"][0]["message"].update(
                tool_calls=[{"id": "t", "type": "function", "function": {"name": "f", "arguments": {}}}]
            ),
            "arguments is not a string",
        ),
    ],
)
def test_chat_problems(mutate, problem: str) -> None:
    body = json.loads(json.dumps(CHAT_OK))
    assert check_body("chat.completions", body) is None
    mutate(body)
    assert problem in (check_body("chat.completions", body) or "")


def _sse(*chunks: object, done: bool = True) -> str:
    out = "".join(f"data: {json.dumps(c) if not isinstance(c, str) else c}\n\n" for c in chunks)
    return out + ("data: [DONE]\n\n" if done else "")


CHUNK = {
    "id": "c",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
}
END = {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def test_stream_problems() -> None:
    assert _stream_verdict("chat.completions", _sse(CHUNK, END)) is None
    assert "not a JSON object" in _stream_verdict("chat.completions", _sse(CHUNK, "{oops", END))
    err = {"error": {"message": "overloaded", "type": "server_error"}}
    assert "in-stream error: overloaded" in _stream_verdict("chat.completions", _sse(CHUNK, err))
    bad = {**CHUNK, "choices": "no"}
    assert "chunk choices is not a list" in _stream_verdict("chat.completions", _sse(bad, END))
    assert "finish_reason is missing" in _stream_verdict("chat.completions", _sse(CHUNK, CHUNK, done=False))


def test_embeddings_base64_decoded_like_the_sdk() -> None:
    body = {
        "object": "list",
        "model": "e",
        "data": [{"object": "embedding", "index": 0, "embedding": "AACAPw=="}],
    }
    assert check_body("embeddings", body) is None
    body["data"][0]["embedding"] = "AACAP"
    assert "base64" in check_body("embeddings", body)
    body["data"][0]["embedding"] = [0.1, "x"]
    assert "list of floats" in check_body("embeddings", body)


def test_responses_and_audio() -> None:
    resp = {
        "id": "r",
        "object": "response",
        "status": "completed",
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "hi", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }
    assert check_body("responses", resp) is None
    assert "usage missing" in check_body("responses", {**resp, "usage": None})
    assert "output is not a list" in check_body("responses", {**resp, "output": {}})
    assert check_body("audio.transcriptions", {"text": "hello"}) is None
    assert (
        check_body("audio.transcriptions", None, "1\n00:00 --> 00:01\nhi", {"response_format": "srt"}) is None
    )
    assert check_body("audio.transcriptions", None, "hi", {"response_format": "json"}) == "body is not JSON"
