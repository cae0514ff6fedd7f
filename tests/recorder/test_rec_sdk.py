"""The real openai SDK (sync and async) through a real ``parity record`` to the fake provider.

One recorder and one fake provider serve the whole module. Every call goes through
``with_raw_response`` so the test can find its row by the upstream's ``x-request-id``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import openai
import pytest

from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

MODEL = "gpt-4o-mini"
USER = [{"role": "user", "content": "What is the weather in Paris and what time is it?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
        },
    },
]
SECRET = "sk-sdk-test-key-31337"


@pytest.fixture(scope="module")
def stack(module_recorders):
    from parity.fake.server import FakeProvider

    with FakeProvider.running(profile="instant", port=0) as fp:
        rec = module_recorders(fp.url, "--tag", "sdk", "--flush-interval", "0.2")
        yield fp, rec


@pytest.fixture(scope="module")
def client(stack):
    _, rec = stack
    with openai.OpenAI(base_url=rec.base_url, api_key=SECRET, max_retries=0) as c:
        yield c


def row_by_request_id(db: Path, request_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        con = connect(db)
        cur = con.execute("SELECT * FROM exchanges WHERE request_id = ?", [request_id])
        names = [d[0] for d in cur.description]
        found = cur.fetchall()
        con.close()
        if found:
            assert len(found) == 1
            return dict(zip(names, found[0], strict=True))
        if time.monotonic() > deadline:
            raise AssertionError(f"no row for {request_id} after {timeout} s")
        time.sleep(0.1)


def recorded(stack, raw) -> dict:
    return row_by_request_id(stack[1].db, raw.headers["x-request-id"])


def body(row: dict, col: str = "response_body") -> dict:
    return json.loads(row[col])


def test_chat_non_streamed(stack, client) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    resp = raw.parse()
    row = recorded(stack, raw)
    assert (row["endpoint"], row["model"], row["stream"], row["status"], row["tag"]) == (
        "chat.completions",
        MODEL,
        False,
        200,
        "sdk",
    )
    assert body(row) == json.loads(raw.http_response.content)
    assert body(row)["choices"][0]["message"]["content"] == resp.choices[0].message.content
    assert row["completion_tokens"] == resp.usage.completion_tokens and row["prompt_tokens"] > 0
    assert json.loads(row["request_body"]) == {"model": MODEL, "messages": USER}
    assert row["ttfb_ms"] > 0 and row["latency_ms"] >= row["ttfb_ms"] and row["error_type"] is None
    assert row["source"] == "proxy" and row["user_agent"].startswith("OpenAI/Python")


def test_chat_streamed_with_usage(stack, client) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    for ch in raw.parse():
        if ch.choices and ch.choices[0].delta.content:
            text += ch.choices[0].delta.content
        usage = ch.usage or usage
    row = recorded(stack, raw)
    assert row["stream"] and row["stream_complete"] and row["error_type"] is None
    assert body(row)["choices"][0]["message"]["content"] == text
    assert row["completion_tokens"] == usage.completion_tokens and row["finish_reason"] == "stop"
    assert row["n_events"] == len(row["chunk_offsets_ms"]) and row["ttft_ms"] is not None
    assert row["response_raw"].rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls(stack, client, stream: bool) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=USER,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=True,
        stream=stream,
    )
    if stream:
        calls: dict[int, list[str]] = {}
        for ch in raw.parse():
            for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                calls.setdefault(tc.index, [tc.function.name or "", ""])
                calls[tc.index][1] += tc.function.arguments or ""
        sent = [tuple(calls[i]) for i in sorted(calls)]
    else:
        sent = [(t.function.name, t.function.arguments) for t in raw.parse().choices[0].message.tool_calls]
    row = recorded(stack, raw)
    got = body(row)["choices"][0]["message"]["tool_calls"]
    assert [(t["function"]["name"], t["function"]["arguments"]) for t in got] == sent
    assert all(json.loads(args) for _, args in sent)
    assert row["finish_reason"] == "tool_calls"


def test_structured_output(stack, client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    content = raw.parse().choices[0].message.content
    row = recorded(stack, raw)
    assert json.loads(body(row)["choices"][0]["message"]["content"]) == json.loads(content)
    assert body(row, "request_body")["response_format"]["json_schema"]["schema"] == schema


def test_responses_api(stack, client) -> None:
    raw = client.responses.with_raw_response.create(model=MODEL, input="Say hi")
    row = recorded(stack, raw)
    assert row["endpoint"] == "responses" and body(row) == json.loads(raw.http_response.content)
    assert row["prompt_tokens"] == raw.parse().usage.input_tokens


def test_responses_api_streamed(stack, client) -> None:
    raw = client.responses.with_raw_response.create(model=MODEL, input="Say hi", stream=True)
    events = list(raw.parse())
    final = events[-1]
    assert final.type == "response.completed"
    row = recorded(stack, raw)
    assert row["stream"] and row["stream_complete"] and row["error_type"] is None
    assert "[DONE]" not in row["response_raw"]  # typed events, no [DONE]
    assert body(row) == final.response.model_dump(mode="json", exclude_unset=True)
    assert row["n_events"] == len(events) and row["finish_reason"] == "completed"


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions(stack, client, stream: bool) -> None:
    raw = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Once upon", max_tokens=8, stream=stream
    )
    text = "".join(c.choices[0].text for c in raw.parse()) if stream else raw.parse().choices[0].text
    row = recorded(stack, raw)
    assert row["endpoint"] == "completions" and body(row)["choices"][0]["text"] == text


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_embeddings(stack, client, fmt: str) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format=fmt
    )
    row = recorded(stack, raw)
    assert row["endpoint"] == "embeddings" and body(row) == json.loads(raw.http_response.content)
    assert row["prompt_tokens"] == raw.parse().usage.prompt_tokens


def wav_bytes(seconds: float = 0.2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", (i * 37) % 2000 - 1000) for i in range(int(8000 * seconds))))
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["transcriptions", "translations"])
def test_audio_multipart_is_byte_exact(stack, client, kind: str) -> None:
    fp, _ = stack
    audio = wav_bytes()
    api = client.audio.transcriptions if kind == "transcriptions" else client.audio.translations
    raw = api.with_raw_response.create(
        model="whisper-1", file=("clip.wav", audio, "audio/wav"), response_format="json"
    )
    row = recorded(stack, raw)
    assert row["endpoint"] == f"audio.{kind}" and row["model"] == "whisper-1"
    seen = next(r for r in fp.requests if r["path"] == f"/v1/audio/{kind}" and "body_b64" in r)
    assert row["request_raw"] == base64.b64decode(seen["body_b64"])  # what upstream got, byte for byte
    assert audio in row["request_raw"]
    assert row["request_content_type"].startswith("multipart/form-data; boundary=")
    assert body(row)["text"] == raw.parse().text


def test_images_moderations_models(stack, client) -> None:
    raw = client.images.with_raw_response.generate(
        model="dall-e-2", prompt="a cat", response_format="b64_json", size="256x256"
    )
    row = recorded(stack, raw)
    assert row["endpoint"] == "images.generations" and body(row) == json.loads(raw.http_response.content)
    raw = client.moderations.with_raw_response.create(input="hello")
    assert recorded(stack, raw)["endpoint"] == "moderations"
    raw = client.models.with_raw_response.list()
    row = recorded(stack, raw)
    assert (row["endpoint"], row["method"]) == ("models", "GET") and body(row)["object"] == "list"
    raw = client.models.with_raw_response.retrieve("gpt-4o")
    assert recorded(stack, raw)["path"] == "/v1/models/gpt-4o"


def test_unknown_paths_are_recorded_as_other_and_passed_through(stack, client) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.files.list()
    row = row_by_request_id(stack[1].db, e.value.response.headers["x-request-id"])
    assert (row["endpoint"], row["status"], row["path"]) == ("other", 404, "/v1/files")


@pytest.mark.parametrize(
    ("kind", "exc"), [("429", openai.RateLimitError), ("500", openai.InternalServerError)]
)
@pytest.mark.parametrize("stream", [False, True])
def test_errors(stack, client, kind: str, exc, stream: bool) -> None:
    with pytest.raises(exc) as e:
        client.chat.completions.create(
            model=MODEL, messages=USER, stream=stream, extra_headers={"x-fake-error": kind}
        )
    row = row_by_request_id(stack[1].db, e.value.response.headers["x-request-id"])
    assert row["status"] == int(kind) and row["stream"] is stream
    assert row["error_type"] == e.value.body["type"] and row["error_message"] == e.value.body["message"]
    if kind == "429":
        assert json.loads(row["response_headers"])["retry-after"] == "1"


def test_async_client(stack) -> None:
    _, rec = stack

    async def go():
        async with openai.AsyncOpenAI(base_url=rec.base_url, api_key=SECRET, max_retries=0) as c:
            raw1 = await c.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
            raw2 = await c.chat.completions.with_raw_response.create(model=MODEL, messages=USER, stream=True)
            text = "".join([ch.choices[0].delta.content or "" async for ch in raw2.parse() if ch.choices])
            raw3 = await c.responses.with_raw_response.create(model=MODEL, input="x", stream=True)
            n3 = len([e async for e in raw3.parse()])
            return raw1, raw2, text, raw3, n3

    raw1, raw2, text, raw3, n3 = asyncio.run(go())
    assert body(recorded(stack, raw1)) == json.loads(raw1.http_response.content)
    assert body(recorded(stack, raw2))["choices"][0]["message"]["content"] == text
    row3 = recorded(stack, raw3)
    assert row3["stream_complete"] and row3["n_events"] == n3
    assert json.loads(row3["request_headers"])["x-stainless-async"].startswith("async:")


def test_ls_summarises_the_store(stack, client) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=USER)
    db = stack[1].db
    recorded(stack, raw)  # the newest row is in: the store is settled for this test
    out = subprocess.run(
        [sys.executable, "-m", "parity.recorder.cli", "ls", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    con = connect(db)
    total, streams, errors = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE stream), count(*) FILTER (WHERE error_type IS NOT NULL) FROM exchanges"
    ).fetchall()[0]
    assert f"{total} exchanges, {streams} streamed, {errors} with errors" in out.stdout
    assert "time span:" in out.stdout
    for (ep,) in con.execute("SELECT DISTINCT endpoint FROM exchanges").fetchall():
        assert ep in out.stdout
    assert "errors:" in out.stdout and "requests" in out.stdout


def test_upstream_reset_mid_stream(stack, client) -> None:
    before = time.time()
    with pytest.raises((openai.APIConnectionError, Exception)) as e:  # httpx RemoteProtocolError
        for _ in client.chat.completions.create(
            model=MODEL,
            messages=USER,
            stream=True,
            extra_headers={"x-fake-error": "reset", "x-fake-tokens": "20"},
        ):
            pass
    assert "closed" in str(e.value).lower() or "reset" in str(e.value).lower()
    db = stack[1].db
    deadline = time.monotonic() + 10
    while True:
        found = (
            connect(db)
            .execute(
                "SELECT error_type, stream_complete, n_events FROM exchanges "
                "WHERE error_type = 'upstream_error' AND epoch(recorded_at) >= ?",
                [before - 1],
            )
            .fetchall()
        )
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found and found[0][1] is False and found[0][2] >= 1
