"""Wire shapes: strict SDK validation where OpenAI itself passes, and key sets vs recorded OpenAI traffic."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest
from fakehelpers import HTTP, TIME_TOOL, WEATHER_TOOL, load_corpus, post_raw, sse_events, wav_bytes
from openai.types import Completion, CreateEmbeddingResponse, ImagesResponse, ModerationCreateResponse
from openai.types.audio import Transcription, TranscriptionVerbose
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

MSGS = [{"role": "user", "content": "What is the capital of France?"}]
RESPONSE_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def fp() -> Iterator[FakeProvider]:
    with FakeProvider.running("openai-like", time_scale=0.0) as fake:
        yield fake


def _chat(fp: FakeProvider, **kw: Any) -> Any:
    r = post_raw(fp, "/chat/completions", {"model": "gpt-4o-mini", "messages": MSGS, **kw})
    assert r.status_code == 200, r.text
    return (
        r.json() if not kw.get("stream") else [json.loads(d) for _, d in sse_events(r.text) if d != "[DONE]"]
    )


# --- strict validation (the SDK itself only constructs leniently; OpenAI passes these) ---------------
def test_strict_chat_completion(fp: FakeProvider) -> None:
    ChatCompletion.model_validate(_chat(fp))
    ChatCompletion.model_validate(_chat(fp, tools=[WEATHER_TOOL, TIME_TOOL], n=2))
    ChatCompletion.model_validate(_chat(fp, max_tokens=3))


@pytest.mark.parametrize(
    "kw",
    [
        {"stream_options": {"include_usage": True}},
        {"tools": [WEATHER_TOOL, TIME_TOOL], "stream_options": {"include_usage": True}},
        {"n": 2, "max_tokens": 6},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_strict_chat_chunks(fp: FakeProvider, kw: dict[str, Any]) -> None:
    chunks = _chat(fp, stream=True, **kw)
    assert len(chunks) > 2
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)


def test_strict_other_endpoints(fp: FakeProvider) -> None:
    r = post_raw(fp, "/completions", {"model": "davinci-002", "prompt": "hi"})
    Completion.model_validate(r.json())
    r = post_raw(
        fp, "/embeddings", {"model": "text-embedding-3-small", "input": "hi", "encoding_format": "float"}
    )
    CreateEmbeddingResponse.model_validate(r.json())
    ModerationCreateResponse.model_validate(post_raw(fp, "/moderations", {"input": "hi"}).json())
    r = post_raw(fp, "/images/generations", {"prompt": "cat", "response_format": "b64_json", "size": "64x64"})
    ImagesResponse.model_validate(r.json())

    for fmt, cls in (("json", Transcription), ("verbose_json", TranscriptionVerbose)):
        r = HTTP.post(
            fp.base_url + "/audio/transcriptions",
            files={"file": ("a.wav", wav_bytes(1.0), "audio/wav")},
            data={"model": "whisper-1", "response_format": fmt},
        )
        cls.model_validate(r.json())


def test_responses_strict(fp: FakeProvider) -> None:
    """Responses bodies pass strict validation, usage.input_tokens_details.cache_write_tokens included."""
    r = post_raw(fp, "/responses", {"model": "gpt-4o-mini", "input": "hi"}).json()
    Response.model_validate(r, strict=True)
    stream = post_raw(
        fp,
        "/responses",
        {
            "model": "gpt-4o-mini",
            "input": "hi",
            "stream": True,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
        },
    )
    for event, data in sse_events(stream.text):
        payload = json.loads(data)
        assert payload["type"] == event
        RESPONSE_EVENT.validate_python(payload, strict=True)


# --- key sets against the recorded corpus ---------------------------------------------------------
def _real(pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    recs = [r for r in load_corpus() if r["provider"] == "api.openai.com" and pred(r)]
    assert recs, "no matching recorded exchanges"
    return recs


# Keys the current SDK types require but the (older) recordings predate.
NEWER_THAN_CORPUS = {"response.function_call_arguments.done": {"name"}}


def _check_keys(fake: dict[str, Any], real: list[dict[str, Any]], where: str) -> None:
    """fake keys must include every key all real samples share, and only keys some real sample has."""
    sets = [set(o) for o in real if isinstance(o, dict)]
    common, seen = set.intersection(*sets), set.union(*sets) | NEWER_THAN_CORPUS.get(where, set())
    assert common <= set(fake), f"{where}: missing {common - set(fake)}"
    assert set(fake) <= seen, f"{where}: keys OpenAI never sends: {set(fake) - seen}"


def test_chat_completion_keys(fp: FakeProvider) -> None:
    real = [
        r["response"]["body_json"]
        for r in _real(
            lambda r: (
                r["endpoint"] == "chat.completions" and not r["stream"] and r["response"]["status"] == 200
            )
        )
    ]
    fakes = [_chat(fp), _chat(fp, tools=[WEATHER_TOOL])]
    for fake in fakes:
        _check_keys(fake, real, "chat")
        _check_keys(fake["choices"][0], [c["choices"][0] for c in real], "chat.choices[0]")
        _check_keys(fake["choices"][0]["message"], [c["choices"][0]["message"] for c in real], "chat.message")
        _check_keys(fake["usage"], [c["usage"] for c in real], "chat.usage")
    real_calls = [t for c in real for t in c["choices"][0]["message"].get("tool_calls") or []]
    _check_keys(fakes[1]["choices"][0]["message"]["tool_calls"][0], real_calls, "chat.tool_calls[0]")


def test_chat_chunk_keys(fp: FakeProvider) -> None:
    recs = _real(
        lambda r: r["endpoint"] == "chat.completions" and r["stream"] and r["response"]["status"] == 200
    )
    real = [json.loads(d) for r in recs for _, d in sse_events(r["response"]["sse"]) if d.startswith("{")]
    with_usage = [
        r for r in recs if (r["request"]["body_json"].get("stream_options") or {}).get("include_usage")
    ]
    real_usage = [
        json.loads(d) for r in with_usage for _, d in sse_events(r["response"]["sse"]) if d.startswith("{")
    ]
    for fake in _chat(fp, stream=True) + _chat(fp, stream=True, tools=[WEATHER_TOOL]):
        _check_keys(fake, real, "chunk")
        if fake["choices"]:
            _check_keys(
                fake["choices"][0], [c["choices"][0] for c in real if c["choices"]], "chunk.choices[0]"
            )
            _check_keys(
                fake["choices"][0]["delta"],
                [c["choices"][0]["delta"] for c in real if c["choices"]],
                "chunk.delta",
            )
    for fake in _chat(fp, stream=True, stream_options={"include_usage": True}):
        _check_keys(fake, real_usage, "chunk(include_usage)")
    assert all(raw.endswith("data: [DONE]\n\n") for raw in (r["response"]["sse"] for r in recs))


def test_responses_keys(fp: FakeProvider) -> None:
    recs = _real(lambda r: r["endpoint"] == "responses" and r["request"]["path"] == "/v1/responses")
    bodies = [
        r["response"]["body_json"]
        for r in recs
        if not r["stream"] and (r["response"]["body_json"] or {}).get("object") == "response"
    ]
    fake = post_raw(fp, "/responses", {"model": "gpt-4o-mini", "input": "hi"}).json()
    _check_keys(fake, bodies, "response")
    _check_keys(fake["usage"], [b["usage"] for b in bodies if b.get("usage")], "response.usage")
    _check_keys(
        fake["output"][0], [o for b in bodies for o in b["output"] if o["type"] == "message"], "message item"
    )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if r["stream"]:
            for _, d in sse_events(r["response"]["sse"]):
                ev = json.loads(d)
                by_type.setdefault(ev["type"], []).append(ev)
    for body in (
        {"model": "gpt-4o-mini", "input": "hi", "stream": True},
        {
            "model": "gpt-4o-mini",
            "input": "hi",
            "stream": True,
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "parameters": {
                        "type": "object",
                        "properties": {"a": {"type": "string"}},
                        "required": ["a"],
                    },
                }
            ],
        },
    ):
        raw = post_raw(fp, "/responses", body).text
        assert "[DONE]" not in raw
        for event, data in sse_events(raw):
            ev = json.loads(data)
            assert event in by_type, f"OpenAI never sent event {event}"
            _check_keys(ev, by_type[event], event)


def test_embeddings_completions_images_error_keys(fp: FakeProvider) -> None:
    emb = [
        r["response"]["body_json"]
        for r in _real(lambda r: r["endpoint"] == "embeddings" and r["response"]["status"] == 200)
    ]
    fake = post_raw(
        fp,
        "/embeddings",
        {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "base64"},
    ).json()
    _check_keys(fake, emb, "embeddings")
    _check_keys(fake["data"][0], [e["data"][0] for e in emb], "embeddings.data[0]")
    assert isinstance(fake["data"][0]["embedding"], str)
    cmpl = [
        r["response"]["body_json"]
        for r in _real(lambda r: r["endpoint"] == "completions" and not r["stream"])
    ]
    fake = post_raw(fp, "/completions", {"model": "davinci-002", "prompt": "hi"}).json()
    _check_keys(fake, cmpl, "completions")
    _check_keys(fake["choices"][0], [c["choices"][0] for c in cmpl], "completions.choices[0]")
    streams = _real(lambda r: r["endpoint"] == "completions" and r["stream"])
    real_chunks = [
        json.loads(d) for r in streams for _, d in sse_events(r["response"]["sse"]) if d.startswith("{")
    ]
    raw = post_raw(fp, "/completions", {"model": "davinci-002", "prompt": "hi", "stream": True}).text
    for _, d in sse_events(raw):
        if d != "[DONE]":
            _check_keys(json.loads(d), real_chunks, "completions chunk")
    imgs = [
        r["response"]["body_json"]
        for r in _real(lambda r: r["endpoint"] == "images.generations" and r["response"]["status"] == 200)
    ]
    fake = post_raw(
        fp, "/images/generations", {"prompt": "cat", "model": "dall-e-2", "size": "256x256"}
    ).json()
    _check_keys(fake, imgs, "images")
    _check_keys(fake["data"][0], [i["data"][0] for i in imgs], "images.data[0]")
    errs = [r["response"]["body_json"] for r in _real(lambda r: r["response"]["status"] >= 400)]
    fake = post_raw(fp, "/chat/completions", {"model": "gpt-4o-mini"}).json()
    _check_keys(fake, errs, "error")
    _check_keys(fake["error"], [e["error"] for e in errs], "error.error")


def test_obfuscation_padding_like_openai(fp: FakeProvider) -> None:
    chunks = _chat(fp, stream=True)
    pads = {c["obfuscation"] for c in chunks}
    assert len(pads) > 3 and all(isinstance(p, str) and p for p in pads)  # varying sizes on the wire
    plain = _chat(fp, stream=True, stream_options={"include_obfuscation": False})
    assert all("obfuscation" not in c for c in plain)
