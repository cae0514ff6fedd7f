"""Every endpoint through the real openai SDK, for every named profile (time-scaled)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import jsonschema
import openai
import pytest
from fakehelpers import HTTP, NEWS_TOOL, PERSON_SCHEMA, TIME_TOOL, WEATHER_TOOL, client_for, wav_bytes

from parity.fake.content import count_tokens
from parity.fake.profiles import GATEWAY_QUIRKS, PROFILES, Profile
from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

T = TypeVar("T")
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about rivers."}]
MODEL = "gpt-4o-mini"


@dataclass
class Env:
    """A running fake, its SDK client and its profile."""

    fp: FakeProvider
    client: openai.OpenAI
    p: Profile

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn; on the flaky profile, retry injected failures (incl. mid-stream resets)."""
        attempts = 12 if self.p.error_rate else 1
        for i in range(attempts):
            try:
                return fn()
            except (openai.APIError, httpx.HTTPError):
                if i == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def finish(self, expected: str) -> str | None:
        return None if self.p.no_finish_reason else expected


# The gateway profiles deviate on purpose (0 usage, broken streams, 429s); tests/fake/test_fake_gateway_profiles.py
# shows each one on the wire and through the SDK.
SDK_SHAPED = [name for name, p in PROFILES.items() if not set(p.quirks) & set(GATEWAY_QUIRKS)]


@pytest.fixture(scope="module", params=SDK_SHAPED)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    kw: dict[str, Any] = {"time_scale": 0.02}
    if request.param == "flaky":
        kw["retry_after_s"] = 0.01
    with FakeProvider.running(request.param, **kw) as fp:
        client = client_for(fp, max_retries=3 if fp.profile.error_rate else 0)
        yield Env(fp, client, fp.profile)


def _stream_chat(env: Env, **kw: Any) -> list[Any]:
    return env.call(lambda: list(env.client.chat.completions.create(model=MODEL, stream=True, **kw)))


def test_chat_non_stream(env: Env) -> None:
    r = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS))
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == MODEL
    msg = r.choices[0].message
    assert msg.role == "assistant" and isinstance(msg.content, str) and len(msg.content.split()) >= 5
    assert r.choices[0].finish_reason == env.finish("stop")
    assert r.usage.completion_tokens == count_tokens(msg.content)
    assert r.usage.prompt_tokens == count_tokens("Be brief.\nTell me about rivers.")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert isinstance(r.created, int)


def test_chat_stream_matches_non_stream(env: Env) -> None:
    chunks = _stream_chat(env, messages=MSGS, stream_options={"include_usage": True})
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    for c in chunks:
        if c.choices and c.choices[0].delta.content:
            assert count_tokens(c.choices[0].delta.content) == env.p.chunk_tokens
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    if env.p.no_finish_reason:
        assert not finals
    else:
        assert finals[-1].choices[0].finish_reason == "stop" and finals[-1].choices[0].delta.content is None
    usage = [c for c in chunks if c.usage is not None]
    if env.p.no_stream_usage:
        assert not usage
    else:
        assert usage == [chunks[-1]] and chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == count_tokens(text)
    r = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS))
    assert r.choices[0].message.content == text  # deterministic, stream or not


def _check_args(env: Env, arguments: str, tool: dict[str, Any]) -> None:
    if env.p.bad_tool_args:
        with pytest.raises(ValueError):
            json.loads(arguments)
    else:
        jsonschema.validate(json.loads(arguments), tool["function"]["parameters"])


def test_chat_single_tool(env: Env) -> None:
    r = env.call(
        lambda: env.client.chat.completions.create(
            model=MODEL, messages=MSGS, tools=[WEATHER_TOOL], tool_choice="required"
        )
    )
    calls = r.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    assert r.choices[0].message.content is None
    assert r.choices[0].finish_reason == env.finish("tool_calls")
    _check_args(env, calls[0].function.arguments, WEATHER_TOOL)


def test_chat_parallel_tools_stream_and_not(env: Env) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL, NEWS_TOOL]
    by_name = {t["function"]["name"]: t for t in tools}
    r = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS, tools=tools))
    calls = r.choices[0].message.tool_calls
    assert 2 <= len(calls) <= 3 and len({c.id for c in calls}) == len(calls)
    for c in calls:
        _check_args(env, c.function.arguments, by_name[c.function.name])
    chunks = _stream_chat(env, messages=MSGS, tools=tools)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.tool_calls[0].function.arguments == ""
    assert first.tool_calls[0].id == calls[0].id and first.tool_calls[0].type == "function"
    args: dict[int, str] = {}
    for ch in chunks:
        for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
            if tc.id:
                assert tc.function.name and tc.function.arguments == ""
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
    assert [args[i] for i in sorted(args)] == [c.function.arguments for c in calls]
    single = env.call(
        lambda: env.client.chat.completions.create(
            model=MODEL, messages=MSGS, tools=tools, parallel_tool_calls=False
        )
    )
    assert len(single.choices[0].message.tool_calls) == 1


def test_chat_tool_choice_variants(env: Env) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL]
    none = env.call(
        lambda: env.client.chat.completions.create(
            model=MODEL, messages=MSGS, tools=tools, tool_choice="none"
        )
    )
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content
    forced = env.call(
        lambda: env.client.chat.completions.create(
            model=MODEL,
            messages=MSGS,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls] == ["get_time"]
    call = forced.choices[0].message.tool_calls[0]
    follow = [
        *MSGS,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "12:00"},
    ]
    answer = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=follow, tools=tools))
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content


def test_chat_streaming_helper_accumulates(env: Env) -> None:
    def run() -> Any:
        with env.client.chat.completions.stream(model=MODEL, messages=MSGS, tools=[WEATHER_TOOL]) as s:
            for _ in s:
                pass
            return s.get_final_completion()

    if env.p.bad_tool_args:
        return  # the SDK helper json-parses arguments; invalid JSON is that quirk's whole point
    final = env.call(run)
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_chat_json_schema_and_object(env: Env) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True}}
    r = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS, response_format=fmt))
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON_SCHEMA)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in _stream_chat(env, messages=MSGS, response_format={"type": "json_object"})
        if c.choices
    )
    assert isinstance(json.loads(text), dict)


def test_chat_n_stop_max_tokens(env: Env) -> None:
    ignore = env.p.ignore_params
    r = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS, n=3))
    assert [c.index for c in r.choices] == ([0] if ignore else [0, 1, 2])
    chunks = _stream_chat(env, messages=MSGS, n=2)
    assert {c.choices[0].index for c in chunks if c.choices} == ({0} if ignore else {0, 1})
    full = r.choices[0].message.content
    stop_word = full.split()[3]
    cut = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS, stop=[stop_word]))
    if ignore:
        assert cut.choices[0].message.content == full
    else:
        assert (
            full.startswith(cut.choices[0].message.content)
            and stop_word not in cut.choices[0].message.content
        )
        assert cut.choices[0].finish_reason == env.finish("stop")
    short = env.call(lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=5))
    if ignore:
        assert short.choices[0].message.content == full
    else:
        assert short.usage.completion_tokens == 5 and full.startswith(short.choices[0].message.content)
        assert short.choices[0].finish_reason == env.finish("length")
    mct = env.call(
        lambda: env.client.chat.completions.create(model=MODEL, messages=MSGS, max_completion_tokens=7)
    )
    assert mct.usage.completion_tokens == (count_tokens(full) if ignore else 7)


def test_legacy_completions(env: Env) -> None:
    r = env.call(
        lambda: env.client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say something")
    )
    assert r.object == "text_completion" and r.choices[0].text
    if not env.p.ignore_params:
        assert r.usage.completion_tokens == 16 and r.choices[0].finish_reason == env.finish("length")
    chunks = env.call(
        lambda: list(
            env.client.completions.create(
                model="gpt-3.5-turbo-instruct",
                prompt="Say something",
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert (chunks[-1].usage is None) == env.p.no_stream_usage


def test_responses_non_stream_and_stream(env: Env) -> None:
    r = env.call(
        lambda: env.client.responses.create(
            model=MODEL, input="Tell me about rivers.", instructions="Be brief."
        )
    )
    assert r.object == "response" and r.status == "completed" and r.output_text
    assert r.usage.output_tokens == count_tokens(r.output_text)
    assert (
        r.usage.input_tokens_details.cached_tokens == 0
        and r.usage.output_tokens_details.reasoning_tokens == 0
    )
    events = env.call(
        lambda: list(
            env.client.responses.create(
                model=MODEL, input="Tell me about rivers.", instructions="Be brief.", stream=True
            )
        )
    )
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == r.output_text
    assert events[-1].response.output_text == r.output_text
    assert events[-1].response.usage.total_tokens == r.usage.total_tokens


def test_responses_function_tools_and_helper(env: Env) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER_TOOL["function"]["parameters"],
        "strict": True,
    }
    r = env.call(lambda: env.client.responses.create(model=MODEL, input="Weather in Oslo?", tools=[tool]))
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    _check_args(env, calls[0].arguments, WEATHER_TOOL)

    def run() -> Any:
        with env.client.responses.stream(model=MODEL, input="Weather in Oslo?", tools=[tool]) as s:
            for _ in s:
                pass
            return s.get_final_response()

    if not env.p.bad_tool_args:
        final = env.call(run)
        assert final.output[0].arguments == calls[0].arguments
    follow = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": "get_weather",
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
    ]
    answer = env.call(lambda: env.client.responses.create(model=MODEL, input=follow, tools=[tool]))
    assert answer.output_text


def test_embeddings(env: Env) -> None:
    texts = ["the quick brown fox", "the quick brown dog", "stock market report"]
    flt = env.call(
        lambda: env.client.embeddings.create(
            model="text-embedding-3-small", input=texts, encoding_format="float"
        )
    )
    b64 = env.call(
        lambda: env.client.embeddings.create(model="text-embedding-3-small", input=texts)
    )  # SDK: base64
    assert [d.index for d in flt.data] == [0, 1, 2] and len(flt.data[0].embedding) == 1536
    for a, b in zip(flt.data, b64.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    v = [d.embedding for d in flt.data]
    dot = [sum(x * y for x, y in zip(v[0], other, strict=True)) for other in v]
    assert dot[0] == pytest.approx(1.0, abs=1e-5) and dot[1] > dot[2]
    assert flt.usage.prompt_tokens == sum(count_tokens(t) for t in texts)
    small = env.call(
        lambda: env.client.embeddings.create(model="text-embedding-3-large", input="x y", dimensions=256)
    )
    assert len(small.data[0].embedding) == 256


def test_audio_transcriptions_and_translations(env: Env) -> None:
    wav = wav_bytes(2.0)
    tr = env.client.audio.transcriptions
    js = env.call(lambda: tr.create(model="whisper-1", file=("a.wav", wav, "audio/wav")))
    assert js.text and js.usage.seconds == 2
    text = env.call(lambda: tr.create(model="whisper-1", file=("a.wav", wav), response_format="text"))
    assert isinstance(text, str) and text.strip() == js.text
    verbose = env.call(
        lambda: tr.create(
            model="whisper-1",
            file=("a.wav", wav),
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    )
    assert (
        verbose.duration == 2.0 and verbose.text == js.text and verbose.segments[-1].end == pytest.approx(2.0)
    )
    assert [w.word for w in verbose.words] == [w.strip(".,") for w in js.text.split()]
    srt = env.call(lambda: tr.create(model="whisper-1", file=("a.wav", wav), response_format="srt"))
    assert srt.startswith("1\n00:00:00,000 --> ")
    trans = env.call(lambda: env.client.audio.translations.create(model="whisper-1", file=("a.wav", wav)))
    assert trans.text == js.text


def test_images(env: Env) -> None:
    r = env.call(
        lambda: env.client.images.generate(
            prompt="a cat", model="dall-e-2", size="256x256", response_format="b64_json", n=2
        )
    )
    png = base64.b64decode(r.data[0].b64_json)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 256 and len(r.data) == 2
    u = env.call(lambda: env.client.images.generate(prompt="a cat", model="dall-e-3"))
    assert u.data[0].url.startswith("http://127.0.0.1:") and u.data[0].revised_prompt == "a cat"
    assert HTTP.get(u.data[0].url).content[:4] == b"\x89PNG"


def test_models_and_moderations(env: Env) -> None:
    models = env.call(lambda: env.client.models.list())
    assert MODEL in [m.id for m in models.data] and all(m.object == "model" for m in models.data)
    assert env.call(lambda: env.client.models.retrieve(MODEL)).id == MODEL
    mod = env.call(lambda: env.client.moderations.create(input=["hello friend", "I will kill you"]))
    assert [r.flagged for r in mod.results] == [False, True]
    assert mod.results[1].categories.violence and mod.results[1].category_scores.violence > 0.5
