"""Each gateway profile shows its one deviation on the wire; the clean openai-like profile shows none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fakehelpers import client_for, load_corpus, post_raw, sse_events

from parity.fake.cli import main
from parity.fake.profiles import OPENAI_MODEL_PATTERNS, PROFILES
from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

MSGS = [{"role": "user", "content": "Tell me about rivers."}]
CHAT = {"model": "gpt-4o-mini", "messages": MSGS}
USAGE_STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
RESP = {"model": "gpt-4o-mini", "input": "Tell me about rivers."}


@pytest.fixture(scope="module")
def clean() -> Iterator[FakeProvider]:
    """The control: openai-like, restricted to OpenAI's model names so "unknown" means something."""
    with FakeProvider.running("openai-like", time_scale=0.0, models=OPENAI_MODEL_PATTERNS) as fp:
        yield fp


def running(profile: str, **kw: Any) -> Any:
    return FakeProvider.running(profile, time_scale=0.0, **kw)


def chunks_of(raw: str) -> list[dict[str, Any]]:
    return [json.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]


# --- the control ------------------------------------------------------------------------------------
def test_clean_chat_and_completions_streams(clean: FakeProvider) -> None:
    raw = post_raw(clean, "/chat/completions", USAGE_STREAM).text
    assert raw.endswith("data: [DONE]\n\n") and "event:" not in raw
    chunks = chunks_of(raw)
    *content, usage = chunks
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    for chunk in content[:-1]:
        choice = chunk["choices"][0]
        assert choice["logprobs"] is None and choice["finish_reason"] is None and "finish_reason" in choice
        assert chunk["usage"] is None
    assert content[-1]["choices"][0]["finish_reason"] == "stop" and "logprobs" in content[-1]["choices"][0]
    legacy = post_raw(clean, "/completions", {"model": "davinci-002", "prompt": "x", "stream": True}).text
    assert legacy.endswith("data: [DONE]\n\n")


def test_clean_responses_stream(clean: FakeProvider) -> None:
    events = sse_events(post_raw(clean, "/responses", {**RESP, "stream": True}).text)
    types = [json.loads(d)["type"] for _, d in events]
    assert [e for e, _ in events] == types  # an event: line on every event, matching its type
    assert [json.loads(d)["sequence_number"] for _, d in events] == list(range(len(events)))
    assert types[0] == "response.created" and types[-1] == "response.completed"


def test_clean_errors(clean: FakeProvider) -> None:
    r = post_raw(clean, "/chat/completions", CHAT, {"x-fake-error": "429"})
    err = r.json()["error"]
    assert r.status_code == 429 and set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["param"], err["code"]) == ("requests", None, "rate_limit_exceeded")
    assert float(r.headers["retry-after"]) > 0 and float(r.headers["retry-after-ms"]) > 0
    r = post_raw(clean, "/embeddings", {"model": "nonexistent", "input": "x"})
    assert r.status_code == 404 and r.json() == {
        "error": {
            "message": "The model `nonexistent` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    r = post_raw(clean, "/batches", {"input_file_id": "f"})
    assert r.status_code == 404 and r.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/batches)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_clean_model_not_found_matches_the_corpus(clean: FakeProvider) -> None:
    real = [
        r
        for r in load_corpus()
        if r["provider"] == "api.openai.com"
        and r["response"]["status"] == 404
        and (r["response"]["body_json"] or {}).get("error", {}).get("code") == "model_not_found"
    ]
    assert real, "the corpus has no model_not_found exchange"
    for rec in real:
        r = post_raw(clean, rec["request"]["path"].removeprefix("/v1"), rec["request"]["body_json"])
        assert (r.status_code, r.json()) == (404, rec["response"]["body_json"])


# --- one deviation each ---------------------------------------------------------------------------
def test_usage_chunk_choices(clean: FakeProvider) -> None:
    with running("usage-chunk-choices") as fp:
        raw = post_raw(fp, "/chat/completions", USAGE_STREAM).text
        sdk = list(client_for(fp).chat.completions.create(**USAGE_STREAM))
    usage = chunks_of(raw)[-1]
    assert usage["choices"] == [{"index": 0, "delta": {}}] and usage["usage"]["total_tokens"] > 0
    assert raw.endswith("data: [DONE]\n\n")
    # App code that finds the usage chunk with `if not chunk.choices` misses it here.
    assert [c for c in sdk if not c.choices] == [] and sdk[-1].usage is not None
    assert chunks_of(post_raw(clean, "/chat/completions", USAGE_STREAM).text)[-1]["choices"] == []


def test_chunk_keys_omitted(clean: FakeProvider) -> None:
    with running("chunk-keys-omitted") as fp:
        chunks = chunks_of(post_raw(fp, "/chat/completions", {**CHAT, "stream": True}).text)
    for chunk in chunks[:-1]:
        assert set(chunk["choices"][0]) == {"index", "delta"}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    for chunk in chunks_of(post_raw(clean, "/chat/completions", {**CHAT, "stream": True}).text):
        assert {"logprobs", "finish_reason"} <= set(chunk["choices"][0])


def test_error_envelope(clean: FakeProvider) -> None:
    with running("error-envelope") as fp:
        statuses = [post_raw(fp, "/chat/completions", CHAT).status_code for _ in range(20)]
        r = post_raw(fp, "/chat/completions", CHAT, {"x-fake-error": "429"})
        bad = post_raw(fp, "/chat/completions", {"messages": MSGS})
        with pytest.raises(openai.RateLimitError) as info:
            client_for(fp).chat.completions.create(**CHAT, extra_headers={"x-fake-error": "429"})
    assert statuses.count(429) == 2 and statuses[9] == statuses[19] == 429  # every 10th request
    assert r.json() == {
        "error": {"message": r.json()["error"]["message"], "type": "RateLimitError", "code": "429"}
    }
    assert float(r.headers["retry-after"]) > 0 and float(r.headers["retry-after-ms"]) > 0
    assert bad.status_code == 400 and (bad.json()["error"]["type"], bad.json()["error"]["code"]) == (
        "BadRequestError",
        "400",
    )
    assert info.value.code == "429" and info.value.type == "RateLimitError"
    assert all(post_raw(clean, "/chat/completions", CHAT).status_code == 200 for _ in range(20))
    err = post_raw(clean, "/chat/completions", {"messages": MSGS}).json()["error"]
    assert err["type"] == "invalid_request_error" and "param" in err and err["code"] is None


def test_unknown_model_400(clean: FakeProvider) -> None:
    with running("unknown-model-400") as fp:
        unknown = post_raw(fp, "/chat/completions", {**CHAT, "model": "nonexistent"})
        known = post_raw(fp, "/chat/completions", {**CHAT, "model": "gpt-4o-mini-2024-07-18"})
        with pytest.raises(openai.BadRequestError):
            client_for(fp).embeddings.create(model="nonexistent", input="x")
    assert known.status_code == 200
    err = unknown.json()["error"]
    assert unknown.status_code == 400 and err["code"] != "model_not_found"
    assert set(err) == {"message", "type", "param", "code"}  # only the status and code deviate
    with running("unknown-model-400", models="my-model") as fp:  # --set models=a,b names the served models
        assert post_raw(fp, "/chat/completions", {**CHAT, "model": "my-model"}).status_code == 200
        assert post_raw(fp, "/chat/completions", CHAT).status_code == 400
    r = post_raw(clean, "/chat/completions", {**CHAT, "model": "nonexistent"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_responses_no_event_lines(clean: FakeProvider) -> None:
    with running("responses-no-event-lines") as fp:
        raw = post_raw(fp, "/responses", {**RESP, "stream": True}).text
        sdk = [e.type for e in client_for(fp).responses.create(**RESP, stream=True)]
    assert raw.startswith("data: {") and "event:" not in raw
    types = [json.loads(d)["type"] for _, d in sse_events(raw)]
    assert types[-1] == "response.completed" and sdk == types
    clean_raw = post_raw(clean, "/responses", {**RESP, "stream": True}).text
    assert all(e is not None for e, _ in sse_events(clean_raw))


def test_stream_breaks(clean: FakeProvider) -> None:
    with running("stream-breaks") as fp:
        chats = [post_raw(fp, "/chat/completions", {**CHAT, "stream": True}).text for _ in range(6)]
        whole = post_raw(fp, "/chat/completions", CHAT)  # non-streamed requests are not affected
        resps = [post_raw(fp, "/responses", {**RESP, "stream": True}).text for _ in range(3)]
        sdk_errors = 0
        for _ in range(3):
            try:
                list(client_for(fp).chat.completions.create(**CHAT, stream=True))
            except openai.APIError:
                sdk_errors += 1
    broken = [not raw.endswith("data: [DONE]\n\n") for raw in chats]
    assert broken == [False, False, True, False, False, True]  # every 3rd stream (seed 0)
    for raw in (chats[2], chats[5]):
        *content, (_, last) = sse_events(raw)
        # three token steps (the first also carries the role chunk), then the error; no finish chunk
        assert len(content) == 4 and "[DONE]" not in raw and '"finish_reason":"stop"' not in raw
        assert json.loads(last)["error"]["type"] == "server_error"
        assert all(json.loads(d)["object"] == "chat.completion.chunk" for _, d in content)
    assert whole.status_code == 200
    # Streams 7-9: the 9th (a Responses stream) breaks without its terminal event.
    ends = [sse_events(raw)[-1] for raw in resps]
    assert [json.loads(d).get("type") for _, d in ends[:2]] == ["response.completed"] * 2
    assert ends[2][0] == "error" and "error" in json.loads(ends[2][1])
    assert "response.completed" not in resps[2] and "response.incomplete" not in resps[2]
    assert sdk_errors == 1  # streams 10-12: the 12th raises openai.APIError mid-stream
    for _ in range(6):
        assert post_raw(clean, "/chat/completions", {**CHAT, "stream": True}).text.endswith(
            "data: [DONE]\n\n"
        )


def test_zero_usage(clean: FakeProvider) -> None:
    def usages(fp: FakeProvider) -> list[dict[str, Any]]:
        chat = post_raw(fp, "/chat/completions", CHAT).json()
        assert chat["choices"][0]["message"]["content"]
        streamed = chunks_of(post_raw(fp, "/chat/completions", USAGE_STREAM).text)[-1]["usage"]
        legacy = post_raw(fp, "/completions", {"model": "davinci-002", "prompt": "hi"}).json()["usage"]
        resp = post_raw(fp, "/responses", RESP).json()
        assert resp["output"][0]["content"][0]["text"]
        u = resp["usage"]
        return [
            chat["usage"],
            streamed,
            legacy,
            {"prompt_tokens": u["input_tokens"], "completion_tokens": u["output_tokens"]},
        ]

    with running("zero-usage") as fp:
        for u in usages(fp):
            assert (u["prompt_tokens"], u["completion_tokens"]) == (0, 0)
    for u in usages(clean):
        assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0


def test_list_profiles_describes_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-profiles", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(PROFILES)
    for name, opts in listed.items():
        assert opts["description"] and "\n" not in opts["description"], name
    assert main(["--list-profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PROFILES)
    assert all(line.split(None, 1)[1] == PROFILES[line.split()[0]].description for line in lines)


def test_gateway_profiles_keep_their_quirk_under_overrides() -> None:
    with running("stream-breaks", break_every=1, break_after_chunks=1) as fp:
        raw = post_raw(fp, "/chat/completions", {**CHAT, "stream": True}).text
    events = sse_events(raw)
    assert len(events) == 3 and "error" in json.loads(events[-1][1])  # role + first token, then the error
