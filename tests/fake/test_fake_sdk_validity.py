"""Every body and SSE event the fake serves validates strictly against the pinned openai SDK types."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pydantic
import pytest
from fakehelpers import HTTP, PERSON_SCHEMA, TIME_TOOL, WEATHER_TOOL, post_raw, sse_events, wav_bytes
from openai.types import (
    Completion,
    CreateEmbeddingResponse,
    ImagesResponse,
    Model,
    ModerationCreateResponse,
)
from openai.types.audio import Transcription, TranscriptionVerbose, Translation, TranslationVerbose
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject

from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
RESPONSE_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
FN_TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}
FN_TOOL2 = {"type": "function", "name": "get_time", "parameters": TIME_TOOL["function"]["parameters"]}


def strict(model: type[pydantic.BaseModel], obj: Any) -> pydantic.BaseModel:
    """Strict pydantic validation: no type coercion, every required field present."""
    return model.model_validate(obj, strict=True)


@pytest.fixture(scope="module")
def fp() -> Iterator[FakeProvider]:
    with FakeProvider.running("openai-like", time_scale=0.0) as fake:
        yield fake


def _ok(r: httpx.Response) -> httpx.Response:
    assert r.status_code == 200, r.text
    return r


def _chat_chunks(raw: str) -> list[dict[str, Any]]:
    events = sse_events(raw)
    assert events[-1] == (None, "[DONE]") and all(e is None for e, _ in events)
    return [json.loads(d) for _, d in events[:-1]]


CHAT_CASES = {
    "plain": {},
    "tools": {"tools": [WEATHER_TOOL], "tool_choice": "required"},
    "parallel-tools": {"tools": [WEATHER_TOOL, TIME_TOOL]},
    "json-schema": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON_SCHEMA}}
    },
    "n2-length": {"n": 2, "max_tokens": 5},
}


@pytest.mark.parametrize("case", list(CHAT_CASES))
def test_chat_body_and_chunks(fp: FakeProvider, case: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": MSGS, **CHAT_CASES[case]}
    strict(ChatCompletion, _ok(post_raw(fp, "/chat/completions", body)).json())
    for opts in ({}, {"stream_options": {"include_usage": True}}):
        raw = _ok(post_raw(fp, "/chat/completions", {**body, "stream": True, **opts})).text
        chunks = _chat_chunks(raw)
        for chunk in chunks:
            strict(ChatCompletionChunk, chunk)
        if opts:  # the usage chunk, choices [] and all, is a valid ChatCompletionChunk
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_completions(fp: FakeProvider, stream: bool) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ["hi", "there"], "n": 2, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    r = _ok(post_raw(fp, "/completions", body))
    if not stream:
        strict(Completion, r.json())
        return
    chunks = _chat_chunks(r.text)
    for chunk in chunks:  # the SDK parses legacy stream chunks as Completion
        try:
            strict(Completion, chunk)
        except pydantic.ValidationError as exc:
            # OpenAI's own legacy chunks carry finish_reason null until the last one (every recorded
            # stream does), which Completion's Literal does not admit; that is the only allowed gap.
            assert all(e["loc"][-1] == "finish_reason" and e["input"] is None for e in exc.errors())
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["choices"][0]["finish_reason"] for c in chunks[:-1] if c is chunks[-2])


RESPONSES_CASES = {
    "text": {},
    "function-call": {"tools": [FN_TOOL], "tool_choice": "required"},
    "parallel-calls": {"tools": [FN_TOOL, FN_TOOL2]},
    "incomplete": {"max_output_tokens": 16},
    "json-schema": {"text": {"format": {"type": "json_schema", "name": "p", "schema": PERSON_SCHEMA}}},
    "instructions": {"instructions": "Be brief.", "input": [{"role": "user", "content": "hi"}]},
}


@pytest.mark.parametrize("case", list(RESPONSES_CASES))
def test_responses_body_and_events(fp: FakeProvider, case: str) -> None:
    body = {"model": "gpt-4o-mini", "input": "Tell me a story", **RESPONSES_CASES[case]}
    final = strict(Response, _ok(post_raw(fp, "/responses", body)).json())
    assert final.usage is not None and final.usage.input_tokens_details.cache_write_tokens == 0
    raw = _ok(post_raw(fp, "/responses", {**body, "stream": True})).text
    events = sse_events(raw)
    assert "[DONE]" not in raw
    for n, (event, data) in enumerate(events):
        payload = json.loads(data)
        assert event == payload["type"] and payload["sequence_number"] == n
        RESPONSE_EVENT.validate_python(payload, strict=True)
    assert events[-1][0] in ("response.completed", "response.incomplete")
    last = json.loads(events[-1][1])["response"]
    assert last["usage"] == final.usage.model_dump() or case == "incomplete" or last["usage"]["total_tokens"]


def test_embeddings(fp: FakeProvider) -> None:
    body = {"model": "text-embedding-3-small", "input": ["a cat", "a dog"]}
    floats = strict(CreateEmbeddingResponse, _ok(post_raw(fp, "/embeddings", body)).json())
    assert len(floats.data) == 2 and len(floats.data[0].embedding) == 1536
    b64 = _ok(post_raw(fp, "/embeddings", {**body, "encoding_format": "base64", "dimensions": 256})).json()
    # The SDK decodes base64 itself and then holds floats: validate that decoded form strictly.
    for item in b64["data"]:
        raw = base64.b64decode(item["embedding"])
        item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    decoded = strict(CreateEmbeddingResponse, b64)
    assert len(decoded.data[1].embedding) == 256


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "a cat", "size": "64x64"},
        {"prompt": "a cat", "model": "dall-e-3", "size": "64x64", "n": 1},
        {"prompt": "a cat", "model": "gpt-image-1", "size": "64x64", "n": 2},
    ],
)
def test_images(fp: FakeProvider, body: dict[str, Any]) -> None:
    img = strict(ImagesResponse, _ok(post_raw(fp, "/images/generations", body)).json())
    assert img.data and all(d.url or d.b64_json for d in img.data)


@pytest.mark.parametrize(
    ("path", "fmt", "model"),
    [
        ("transcriptions", "json", Transcription),
        ("transcriptions", "verbose_json", TranscriptionVerbose),
        ("translations", "json", Translation),
        ("translations", "verbose_json", TranslationVerbose),
    ],
)
def test_audio(fp: FakeProvider, path: str, fmt: str, model: type[pydantic.BaseModel]) -> None:
    r = HTTP.post(
        f"{fp.base_url}/audio/{path}",
        files={"file": ("a.wav", wav_bytes(1.5), "audio/wav")},
        data={"model": "whisper-1", "response_format": fmt, "timestamp_granularities[]": "word"},
    )
    strict(model, _ok(r).json())


def test_moderations_and_models(fp: FakeProvider) -> None:
    body = {"input": ["hello", "I will kill the bug"]}
    mod = strict(ModerationCreateResponse, _ok(post_raw(fp, "/moderations", body)).json())
    assert [r.flagged for r in mod.results] == [False, True]
    listing = _ok(HTTP.get(fp.base_url + "/models")).json()
    assert listing["object"] == "list" and listing["data"]
    for item in listing["data"]:
        strict(Model, item)
    strict(Model, _ok(HTTP.get(fp.base_url + "/models/gpt-4o-mini")).json())


def _errors(fp: FakeProvider) -> list[httpx.Response]:
    chat = {"model": "gpt-4o-mini", "messages": MSGS}
    out = [post_raw(fp, "/chat/completions", chat, {"x-fake-error": k}) for k in ("401", "429", "500", "503")]
    out.append(post_raw(fp, "/chat/completions", {"messages": MSGS}))  # no model
    out.append(post_raw(fp, "/chat/completions", {**chat, "n": "2"}))  # wrong type
    out.append(post_raw(fp, "/chat/completions", b"{not json"))
    out.append(post_raw(fp, "/responses", {"model": "gpt-4o-mini"}))  # no input
    out.append(post_raw(fp, "/batches", {"input_file_id": "f"}))  # an endpoint the fake does not serve
    out.append(HTTP.get(fp.base_url + "/chat/completions"))  # wrong method
    return out


def test_every_error_is_openais_envelope(fp: FakeProvider) -> None:
    responses = _errors(fp)
    with FakeProvider.running("instant", models="gpt-4o-mini") as narrow:
        responses.append(post_raw(narrow, "/chat/completions", {"model": "gpt-x", "messages": MSGS}))
        responses.append(HTTP.get(narrow.base_url + "/models/gpt-x"))
    for r in responses:
        assert r.status_code >= 400
        body = r.json()
        assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}, body
        err = strict(ErrorObject, body["error"])
        assert err.message and err.type
    assert {r.status_code for r in responses} == {400, 401, 404, 429, 500, 503}
