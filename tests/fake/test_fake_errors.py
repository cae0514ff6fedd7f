"""Injected errors (rate, schedule, headers, resets) and OpenAI-shaped answers to bad input."""

from __future__ import annotations

import httpx
import openai
import pytest
from fakehelpers import HTTP, client_for, post_raw, wav_bytes

from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

MSGS = [{"role": "user", "content": "Hello there"}]
CHAT = {"model": "gpt-4o-mini", "messages": MSGS}


def _assert_openai_error(r: httpx.Response, status: int, etype: str = "invalid_request_error") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
    assert err["type"] == etype
    return err


def test_429_headers_body_and_sdk(instant: FakeProvider) -> None:
    r = post_raw(instant, "/chat/completions", CHAT, {"x-fake-error": "429"})
    err = _assert_openai_error(r, 429, "requests")
    assert err["code"] == "rate_limit_exceeded" and err["param"] is None
    assert r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "1000"
    assert r.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.RateLimitError) as info:
        client_for(instant).chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"x-fake-error": "429"}
        )
    assert info.value.code == "rate_limit_exceeded" and info.value.status_code == 429


@pytest.mark.parametrize(
    "kind,cls", [("500", openai.InternalServerError), ("503", openai.InternalServerError)]
)
def test_5xx(instant: FakeProvider, kind: str, cls: type[Exception]) -> None:
    _assert_openai_error(
        post_raw(instant, "/chat/completions", CHAT, {"x-fake-error": kind}), int(kind), "server_error"
    )
    with pytest.raises(cls):
        client_for(instant).embeddings.create(
            model="text-embedding-3-small", input="x", extra_headers={"x-fake-error": kind}
        )


def test_sdk_retries_honour_retry_after() -> None:
    with FakeProvider.running("instant", error_schedule="429@1,429@2", retry_after_s=0.05) as fp:
        r = client_for(fp, max_retries=2).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MSGS
        )
        assert r.retries_taken == 2 and r.parse().choices[0].message.content
        assert [q["headers"].get("x-stainless-retry-count") for q in fp.requests] == ["0", "1", "2"]


def test_reset_non_stream_and_mid_stream(instant: FakeProvider) -> None:
    with pytest.raises(openai.APIConnectionError):
        client_for(instant).chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, extra_headers={"x-fake-error": "reset"}
        )
    got = b""
    with (
        pytest.raises(httpx.HTTPError),
        HTTP.stream(
            "POST",
            instant.base_url + "/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-fake-error": "reset", "x-fake-itl-ms": "20"},
        ) as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_raw():
            got += chunk
    # reset_after_chunks=3 steps (the first carries the role chunk and the first token), then RST
    assert got.count(b'"delta":{"content":') == 3 and b"[DONE]" not in got
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        stream = client_for(instant).chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True, extra_headers={"x-fake-error": "reset"}
        )
        list(stream)


def test_error_schedule_counts_requests() -> None:
    with FakeProvider.running("instant", error_schedule="429@2,500@4,reset@5") as fp:
        codes = []
        for _ in range(6):
            try:
                codes.append(post_raw(fp, "/chat/completions", CHAT).status_code)
            except httpx.HTTPError:
                codes.append("reset")
    assert codes == [200, 429, 200, 500, "reset", 200]


def test_error_rate_is_deterministic_by_request_order() -> None:
    def run(seed: int) -> list[int]:
        with FakeProvider.running("instant", error_rate=0.3, error_kinds="429:3,503:1", seed=seed) as fp:
            return [post_raw(fp, "/embeddings", {"model": "m", "input": "x"}).status_code for _ in range(40)]

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert set(a) == {200, 429, 503} and 5 <= sum(x != 200 for x in a) <= 20
    with FakeProvider.running("flaky", time_scale=0) as fp:
        statuses = []
        for _ in range(60):
            try:
                statuses.append(post_raw(fp, "/moderations", {"input": "x"}).status_code)
            except httpx.HTTPError:
                statuses.append(0)
    assert statuses.count(429) >= 2 and statuses.count(200) >= 40


def test_x_fake_error_none_overrides_schedule() -> None:
    with FakeProvider.running("instant", error_schedule="500@1") as fp:
        assert post_raw(fp, "/chat/completions", CHAT, {"x-fake-error": "none"}).status_code == 200


# --- bad input -----------------------------------------------------------------------------------
def test_malformed_json(instant: FakeProvider) -> None:
    err = _assert_openai_error(post_raw(instant, "/chat/completions", b'{"model": "x", '), 400)
    assert "could not parse the JSON body" in err["message"]
    _assert_openai_error(post_raw(instant, "/chat/completions", b"[1, 2]"), 400)
    _assert_openai_error(post_raw(instant, "/responses", b""), 400)


def test_unknown_model() -> None:
    with FakeProvider.running("instant", models="gpt-4o-mini,text-embedding-3-small") as fp:
        err = _assert_openai_error(post_raw(fp, "/chat/completions", {**CHAT, "model": "gpt-9"}), 404)
        assert err["code"] == "model_not_found" and "gpt-9" in err["message"]
        with pytest.raises(openai.NotFoundError):
            client_for(fp).embeddings.create(model="nope", input="x")
        with pytest.raises(openai.NotFoundError):
            client_for(fp).models.retrieve("gpt-9")
        assert [m.id for m in client_for(fp).models.list().data] == ["gpt-4o-mini", "text-embedding-3-small"]
        assert post_raw(fp, "/chat/completions", CHAT).status_code == 200


@pytest.mark.parametrize(
    "path,body,param",
    [
        ("/chat/completions", {"model": "gpt-4o-mini"}, "messages"),
        ("/chat/completions", {"messages": MSGS}, None),
        ("/responses", {"model": "gpt-4o-mini"}, "input"),
        ("/embeddings", {"model": "text-embedding-3-small"}, "input"),
        ("/completions", {"model": "davinci-002"}, "prompt"),
        ("/images/generations", {"model": "dall-e-2"}, "prompt"),
        ("/moderations", {}, "input"),
    ],
)
def test_missing_required(instant: FakeProvider, path: str, body: dict, param: str | None) -> None:
    err = _assert_openai_error(post_raw(instant, path, body), 400)
    assert err["param"] == param
    if param is None:
        assert err["message"] == "you must provide a model parameter"
    else:
        assert err["code"] == "missing_required_parameter"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o-mini", "messages": []},
        {"model": "gpt-4o-mini", "messages": "hi"},
        {"model": "gpt-4o-mini", "messages": MSGS, "n": 0},
        {"model": "gpt-4o-mini", "messages": MSGS, "max_tokens": "ten"},
        {"model": "gpt-4o-mini", "messages": MSGS, "stop": [1]},
        {"model": 5, "messages": MSGS},
        {"model": "gpt-4o-mini", "messages": MSGS, "tools": [{"type": "function", "function": {}}]},
        {
            "model": "gpt-4o-mini",
            "messages": MSGS,
            "tools": [],
            "tool_choice": {"type": "function", "function": {"name": "x"}},
        },
    ],
)
def test_invalid_params(instant: FakeProvider, body: dict) -> None:
    _assert_openai_error(post_raw(instant, "/chat/completions", body), 400)


def test_wrong_content_type_and_paths(instant: FakeProvider) -> None:
    err = _assert_openai_error(
        post_raw(instant, "/chat/completions", "hello", {"content-type": "text/plain"}), 400
    )
    assert "Content-Type" in err["message"]
    r = HTTP.post(instant.base_url + "/audio/transcriptions", json={"model": "whisper-1"})
    _assert_openai_error(r, 400)
    r = HTTP.post(
        instant.base_url + "/audio/transcriptions", data={"model": "whisper-1"}, files={"x": ("a", b"1")}
    )
    assert _assert_openai_error(r, 400)["param"] == "file"
    r = HTTP.post(
        instant.base_url + "/audio/transcriptions",
        data={"model": "whisper-1", "response_format": "mp3"},
        files={"file": ("a.wav", wav_bytes(0.2))},
    )
    _assert_openai_error(r, 400)
    err = _assert_openai_error(post_raw(instant, "/nope", CHAT), 404)
    assert err["message"] == "Invalid URL (POST /v1/nope)"
    # OpenAI answers a wrong method like an unknown path (404 "Invalid URL"), not 405.
    err = _assert_openai_error(HTTP.get(instant.base_url + "/chat/completions"), 404)
    assert err["message"] == "Invalid URL (GET /v1/chat/completions)"
    _assert_openai_error(HTTP.get(instant.url + "/"), 404)
    _assert_openai_error(
        post_raw(instant, "/embeddings", {"model": "m", "input": "x", "encoding_format": "hex"}), 400
    )
    _assert_openai_error(post_raw(instant, "/embeddings", {"model": "m", "input": [""]}), 400)
    _assert_openai_error(
        post_raw(instant, "/embeddings", {"model": "m", "input": "x", "dimensions": 99999}), 400
    )
    _assert_openai_error(post_raw(instant, "/chat/completions", CHAT, {"x-fake-ttft-ms": "soon"}), 400)
    _assert_openai_error(post_raw(instant, "/chat/completions", CHAT, {"x-fake-error": "418"}), 400)
    assert post_raw(instant, "/chat/completions", CHAT).status_code == 200  # still serving


def test_require_key() -> None:
    with FakeProvider.running("instant", require_key=True) as fp:
        r = HTTP.post(fp.base_url + "/chat/completions", json=CHAT)
        assert _assert_openai_error(r, 401)["message"].startswith("You didn't provide an API key")
        assert (
            HTTP.post(
                fp.base_url + "/chat/completions", json=CHAT, headers={"authorization": "Basic k"}
            ).status_code
            == 401
        )
        assert (
            HTTP.post(
                fp.base_url + "/chat/completions", json=CHAT, headers={"authorization": "Bearer k"}
            ).status_code
            == 200
        )
        with pytest.raises(openai.AuthenticationError):
            client_for(fp, default_headers={"Authorization": "Basic k"}).models.list()
    with FakeProvider.running("instant") as fp:
        assert HTTP.post(fp.base_url + "/chat/completions", json=CHAT).status_code == 200  # no key needed


def test_401_quotes_the_presented_key(instant: FakeProvider) -> None:
    """Kind 401 echoes the key in full, from whichever header or query parameter carried it."""
    key = "sk-fake-echo-0123456789abcdef"
    r = post_raw(
        instant, "/chat/completions", CHAT, {"x-fake-error": "401", "authorization": f"Bearer {key}"}
    )
    err = _assert_openai_error(r, 401)
    assert err["code"] == "invalid_api_key" and f"Incorrect API key provided: {key}." in err["message"]
    for headers, query in (({"api-key": key}, ""), ({"x-api-key": key}, ""), ({}, f"?key={key}")):
        r = HTTP.post(
            f"{instant.base_url}/embeddings{query}",
            json={"model": "m", "input": "x"},
            headers={"x-fake-error": "401", **headers},
        )
        assert key in _assert_openai_error(r, 401)["message"], (headers, query)
    with FakeProvider.running("instant", error_schedule="401@2") as fp:
        c = client_for(fp)
        c.models.list()
        with pytest.raises(openai.AuthenticationError, match="sk-test"):
            c.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices
