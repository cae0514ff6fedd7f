"""Each compatibility quirk is visible on the wire (and, where it matters, through the SDK)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from fakehelpers import WEATHER_TOOL, client_for, post_raw, sse_events

from parity.fake.profiles import GATEWAY_QUIRKS, LEGACY_QUIRKS, PROFILES, QUIRKS
from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

MSGS = [{"role": "user", "content": "Hello there"}]
CHAT = {"model": "gpt-4o-mini", "messages": MSGS}


def _chunks(raw: str) -> list[dict[str, Any]]:
    return [json.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]


def test_quirky_profile_enables_every_older_quirk() -> None:
    assert PROFILES["quirky"].quirks == LEGACY_QUIRKS
    assert set(QUIRKS) == set(LEGACY_QUIRKS) | set(GATEWAY_QUIRKS)
    assert PROFILES["openai-like"].quirks == ()


@pytest.mark.parametrize("profile", ["instant", "quirky"])
def test_no_done(profile: str) -> None:
    with FakeProvider.running(profile, time_scale=0) as fp:
        chat = post_raw(fp, "/chat/completions", {**CHAT, "stream": True}).text
        legacy = post_raw(fp, "/completions", {"model": "davinci-002", "prompt": "x", "stream": True}).text
    quirk = profile == "quirky"
    assert chat.endswith("data: [DONE]\n\n") != quirk
    assert legacy.endswith("data: [DONE]\n\n") != quirk
    assert ("[DONE]" in chat) != quirk


def test_no_stream_usage() -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with FakeProvider.running("instant") as fp:
        normal = _chunks(post_raw(fp, "/chat/completions", body).text)
    with FakeProvider.running("instant", no_stream_usage=True) as fp:
        quirky = _chunks(post_raw(fp, "/chat/completions", body).text)
    assert normal[-1]["choices"] == [] and normal[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in normal[:-1])
    assert all(c.get("usage") is None for c in quirky) and all(c["choices"] for c in quirky)


def test_no_finish_reason() -> None:
    with FakeProvider.running("instant", no_finish_reason=True) as fp:
        full = post_raw(fp, "/chat/completions", CHAT).json()
        chunks = _chunks(post_raw(fp, "/chat/completions", {**CHAT, "stream": True}).text)
        legacy = post_raw(fp, "/completions", {"model": "davinci-002", "prompt": "x"}).json()
        sdk = client_for(fp).chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert full["choices"][0]["finish_reason"] is None and legacy["choices"][0]["finish_reason"] is None
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["delta"] == {}  # the finish chunk is still there, without a reason
    assert sdk.choices[0].finish_reason is None  # the SDK builds it leniently; apps must cope


def test_int_error_codes() -> None:
    for profile, expected in (("instant", "rate_limit_exceeded"), ("quirky", 429)):
        with FakeProvider.running(profile, time_scale=0) as fp:
            raw = post_raw(fp, "/chat/completions", CHAT, {"x-fake-error": "429"}).json()
            assert raw["error"]["code"] == expected
            with pytest.raises(openai.RateLimitError) as info:
                client_for(fp).chat.completions.create(
                    model="gpt-4o-mini", messages=MSGS, extra_headers={"x-fake-error": "429"}
                )
            # openai 2.54 keeps the int as is (construct_type does not coerce); compare as text.
            assert info.value.code == expected and str(info.value.code) == str(expected)
            missing = post_raw(fp, "/chat/completions", {"messages": MSGS}).json()
            assert isinstance(missing["error"]["code"], int) == (profile == "quirky")


def test_bad_tool_args() -> None:
    body = {**CHAT, "tools": [WEATHER_TOOL], "tool_choice": "required"}
    with FakeProvider.running("instant", bad_tool_args=True) as fp:
        call = post_raw(fp, "/chat/completions", body).json()["choices"][0]["message"]["tool_calls"][0]
        chunks = _chunks(post_raw(fp, "/chat/completions", {**body, "stream": True}).text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["function"]["arguments"])
    streamed = "".join(
        tc["function"].get("arguments", "")
        for c in chunks
        for tc in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert streamed == call["function"]["arguments"]


def test_extra_fields() -> None:
    with FakeProvider.running("instant", extra_fields=True) as fp:
        full = post_raw(fp, "/chat/completions", CHAT).json()
        chunks = _chunks(post_raw(fp, "/chat/completions", {**CHAT, "stream": True}).text)
        emb = post_raw(fp, "/embeddings", {"model": "text-embedding-3-small", "input": "x"}).json()
        sdk = client_for(fp).chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert full["provider"] == "fake-provider" and full["choices"][0]["native_finish_reason"] == "stop"
    assert "reasoning_content" in full["choices"][0]["message"]
    assert all(c["provider"] == "fake-provider" for c in chunks) and emb["provider"] == "fake-provider"
    assert sdk.model_extra["provider"] == "fake-provider"  # kept by the SDK, not rejected


def test_ignore_params() -> None:
    body = {**CHAT, "n": 3, "max_tokens": 4, "stop": ["."]}
    with FakeProvider.running("instant") as fp:
        honoured = post_raw(fp, "/chat/completions", body).json()
        plain = post_raw(fp, "/chat/completions", CHAT).json()
    with FakeProvider.running("instant", ignore_params=True) as fp:
        ignored = post_raw(fp, "/chat/completions", body).json()
        resp = post_raw(
            fp, "/responses", {"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 16}
        ).json()
    assert len(honoured["choices"]) == 3 and honoured["usage"]["completion_tokens"] <= 12
    assert len(ignored["choices"]) == 1 and ignored["choices"][0]["finish_reason"] == "stop"
    assert ignored["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert resp["status"] == "completed" and resp["usage"]["output_tokens"] >= 20  # answers are >= 20 tokens
