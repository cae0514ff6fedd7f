"""Wire cases through a real ``parity record``: compression, disconnects, resets, odd bodies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from rec_upstreams import BINARY_OTHER, WORDS, WireUpstream

from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

TEXT = "".join(WORDS)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture(scope="module")
def wire(module_recorders):
    up = WireUpstream()
    with up.running():
        rec = module_recorders(up.url, "--flush-interval", "0.2")
        small = module_recorders(up.url, "--max-body-bytes", "1000", "--flush-interval", "0.2")
        skip = module_recorders(up.url, "--skip-other", "--flush-interval", "0.2")
        yield up, rec, small, skip


def last_row(db: Path, marker: str, timeout: float = 10.0) -> dict:
    """The row whose request body contains ``marker`` (each test sends its own)."""
    deadline = time.monotonic() + timeout
    while True:
        con = connect(db)
        cur = con.execute(
            "SELECT * FROM exchanges WHERE request_body LIKE ? OR path LIKE ?", [f"%{marker}%"] * 2
        )
        names = [d[0] for d in cur.description]
        found = cur.fetchall()
        con.close()
        if found:
            return dict(zip(names, found[-1], strict=True))
        if time.monotonic() > deadline:
            raise AssertionError(f"no row with {marker!r}")
        time.sleep(0.1)


def sdk(rec, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=rec.base_url, api_key="sk-wire", max_retries=0, **kw)


def chat(marker: str, **kw) -> dict:
    return {**CHAT, "messages": [{"role": "user", "content": marker}], **kw}


def test_sdk_closes_after_done_and_the_stream_is_still_recorded(wire) -> None:
    # Upstream sends [DONE] and keeps the response open 1.5 s; the SDK stops reading at [DONE] and
    # closes, so mitmproxy ends the flow in error() ("Client disconnected."), not response().
    _, rec, _, _ = wire
    t0 = time.perf_counter()
    stream = sdk(rec).chat.completions.create(
        **chat("m-linger"), stream=True, extra_headers={"x-wire": "linger"}
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    took = time.perf_counter() - t0
    assert text == TEXT and took < 1.4  # not held until upstream closed (1.5 s after [DONE])
    row = last_row(rec.db, "m-linger")
    assert row["stream_complete"] and row["client_disconnected"] and row["error_type"] is None
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == TEXT
    assert row["completion_tokens"] == 6 and row["n_events"] == 10


def test_upstream_reset_mid_stream(wire) -> None:
    _, rec, _, _ = wire
    with pytest.raises(Exception, match="peer closed|incomplete"):
        for _ in sdk(rec).chat.completions.create(
            **chat("m-reset"), stream=True, extra_headers={"x-wire": "reset"}
        ):
            pass
    row = last_row(rec.db, "m-reset")
    assert row["error_type"] == "upstream_error" and not row["stream_complete"]
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "Hello from"


def test_error_event_in_the_middle_of_a_stream(wire) -> None:
    _, rec, _, _ = wire
    with pytest.raises(openai.APIError, match="crashed mid-stream"):
        list(
            sdk(rec).chat.completions.create(
                **chat("m-miderr"), stream=True, extra_headers={"x-wire": "midstream-error"}
            )
        )
    row = last_row(rec.db, "m-miderr")
    assert (row["error_type"], row["error_message"]) == ("in_stream_error", "The model crashed mid-stream")


def test_client_disconnects_mid_stream(wire) -> None:
    _, rec, _, _ = wire
    with httpx.stream(
        "POST",
        rec.base_url + "/chat/completions",
        json=chat("m-gone", stream=True),
        headers={"x-wire": "slowstream"},
    ) as r:
        next(r.iter_raw())  # first event, then hang up
    row = last_row(rec.db, "m-gone")
    assert row["client_disconnected"] and row["error_type"] == "client_disconnected"
    assert not row["stream_complete"]


@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("stream", [False, True])
def test_compressed_responses_are_stored_decoded(wire, enc: str, stream: bool) -> None:
    _, rec, _, _ = wire
    marker = f"m-{enc}-{stream}"
    with httpx.Client(timeout=10) as c:  # httpx decodes gzip, br and zstd
        if stream:
            with c.stream(
                "POST",
                rec.base_url + "/chat/completions",
                json=chat(marker, stream=True),
                headers={"x-wire": enc},
            ) as r:
                assert r.headers["content-encoding"] == enc  # passed through untouched
                got = b"".join(r.iter_bytes())
            assert got.endswith(b"data: [DONE]\n\n")
        else:
            r = c.post(rec.base_url + "/chat/completions", json=chat(marker), headers={"x-wire": enc})
            assert (
                r.headers["content-encoding"] == enc and r.json()["choices"][0]["message"]["content"] == TEXT
            )
    row = last_row(rec.db, marker)
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == TEXT
    assert json.loads(row["response_headers"])["content-encoding"] == enc and row["error_type"] is None
    if stream:
        offsets = row["chunk_offsets_ms"]
        assert (
            row["stream_complete"] and len(offsets) == 10 and offsets[-1] - offsets[0] > 30
        )  # per-read times kept


@pytest.mark.parametrize(
    ("wire_kind", "error_type", "col", "value"),
    [
        ("nonutf8", "response_invalid_utf8", "response_raw_bytes", b'\xff\xfe{"broken": "\xc3\x28"}'),
        ("badjson", "response_invalid_json", "response_raw", '{"id": "chatcmpl-x", "choices": ['),
        ("error500text", "http_500", "response_raw", "upstream exploded"),
    ],
)
def test_bodies_that_are_not_json_are_kept_raw(
    wire, wire_kind: str, error_type: str, col: str, value
) -> None:
    _, rec, _, _ = wire
    marker = f"m-{wire_kind}"
    r = httpx.post(rec.base_url + "/chat/completions", json=chat(marker), headers={"x-wire": wire_kind})
    expected = value if isinstance(value, bytes) else value.encode()
    assert r.content == expected  # the client got exactly what upstream sent
    row = last_row(rec.db, marker)
    assert row["error_type"] == error_type and row[col] == value and row["response_body"] is None


def test_malformed_request_json_is_recorded_raw(wire) -> None:
    _, rec, _, _ = wire
    bad = b'{"model": "m-badreq", "messages": ['
    httpx.post(rec.base_url + "/chat/completions", content=bad, headers={"content-type": "application/json"})
    deadline = time.monotonic() + 10
    while not (
        found := connect(rec.db)
        .execute("SELECT error_type, request_raw FROM exchanges WHERE request_raw = ?", [bad])
        .fetchall()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert found == [("request_invalid_json", bad)]


def test_other_paths_pass_through_untouched(wire) -> None:
    _, rec, _, skip = wire
    for proxy in (rec, skip):
        r = httpx.get(proxy.url + "/other/m-other?x=1")
        assert r.content == BINARY_OTHER and r.headers["x-other"] == "1"
    row = last_row(rec.db, "m-other")
    assert (row["endpoint"], row["method"], row["status"]) == ("other", "GET", 200)
    assert row["response_raw_bytes"] == BINARY_OTHER and row["query"] == "x=1"
    skip_stats = (
        connect(skip.db).execute("SELECT count(*) FROM exchanges WHERE endpoint = 'other'").fetchall()
    )
    assert skip_stats == [(0,)]  # --skip-other: passed through, not recorded


def test_bodies_above_max_body_bytes_are_truncated_not_the_traffic(wire) -> None:
    _, _, small, _ = wire
    r = httpx.post(small.base_url + "/chat/completions", json=chat("m-big"), headers={"x-wire": "big"})
    assert len(r.json()["choices"][0]["message"]["content"]) == 200_000  # the client got all of it
    row = last_row(small.db, "m-big")
    assert row["truncated"] and row["error_type"] == "truncated"
    assert len(row["response_raw"]) == 1000 and row["response_bytes"] > 200_000
    long_req = chat("m-bigreq-" + "y" * 3000)
    httpx.post(small.base_url + "/chat/completions", json=long_req)
    deadline = time.monotonic() + 10
    while not (
        found := connect(small.db)
        .execute("SELECT request_raw, truncated, request_bytes FROM exchanges WHERE request_bytes > 3000")
        .fetchall()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    raw, truncated, n = found[0]
    assert truncated and len(raw) == 1000 and raw.startswith(b'{"model"') and n > 3000
