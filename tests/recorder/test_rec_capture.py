"""build_row: from what the proxy saw to one ``exchanges`` row (no proxy, no store)."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pyarrow as pa
import pytest
import zstandard
from mitmproxy.http import Headers

from parity.recorder.capture import Capture, build_row, header_dict
from parity.recorder.content_encoding import decode_chunks
from parity.store.schema import EXCHANGES
from parity.wire.credentials import clean_query

SECRET = "sk-DISTINCTIVE-secret-4242"
CHAT_REQ = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CHAT_RESP = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def sse(*objs) -> bytes:
    return b"".join(
        b"data: " + (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n\n" for o in objs
    )


def chunk(content=None, finish=None, usage=None):
    ch = (
        []
        if content is None and finish is None
        else [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]
    )
    return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": ch, "usage": usage}


def make_capture(**kw) -> Capture:
    base = dict(
        wall_start=1_700_000_000.0,
        t_start=100.0,
        method="POST",
        path="/v1/chat/completions",
        host="api.example",
        request_headers={"content-type": "application/json", "authorization": f"Bearer {SECRET}"},
        request_raw=json.dumps(CHAT_REQ).encode(),
        status=200,
        response_headers={"content-type": "application/json", "x-request-id": "req_1"},
        t_headers=100.05,
        t_end=100.2,
        body=json.dumps(CHAT_RESP).encode(),
    )
    base.update(kw)
    return Capture(**base)


def fits_schema(row: dict) -> None:
    pa.Table.from_pylist([row], schema=EXCHANGES)  # raises if a value has the wrong type
    assert set(row) <= set(EXCHANGES.names)


def test_plain_chat_row() -> None:
    row = build_row(make_capture())
    fits_schema(row)
    assert row["endpoint"] == "chat.completions" and row["model"] == "gpt-4o-mini" and row["stream"] is False
    assert json.loads(row["response_body"]) == CHAT_RESP
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (9, 1, 4)
    assert row["finish_reason"] == "stop" and row.get("error_type") is None
    assert row["ttfb_ms"] == pytest.approx(50.0) and row["latency_ms"] == pytest.approx(200.0)
    assert row["request_id"] == "req_1" and len(row["id"]) == 32
    assert row["api_key_fingerprint"] and SECRET not in json.dumps(row, default=str)


def test_secrets_never_in_the_row() -> None:
    headers = {
        "authorization": f"Bearer {SECRET}",
        "api-key": SECRET,
        "x-api-key": SECRET,
        "cookie": f"session={SECRET}",
        "openai-organization": SECRET,
        "openai-project": SECRET,
        "proxy-authorization": SECRET,
        "content-type": "application/json",
    }
    row = build_row(
        make_capture(
            path=f"/v1/chat/completions?key={SECRET}&api-version=2024&token={SECRET}",
            request_headers=headers,
            response_headers={"content-type": "application/json", "set-cookie": f"s={SECRET}"},
        )
    )
    assert SECRET not in repr(row)
    assert row["query"] == "api-version=2024"
    assert json.loads(row["request_headers"]) == {"content-type": "application/json"}


def test_fingerprint_is_salted_and_stable() -> None:
    a = build_row(make_capture(salt=b"s1"))["api_key_fingerprint"]
    assert a == build_row(make_capture(salt=b"s1"))["api_key_fingerprint"]
    assert a != build_row(make_capture(salt=b"s2"))["api_key_fingerprint"]
    assert build_row(make_capture(request_headers={}))["api_key_fingerprint"] is None


def test_clean_query() -> None:
    assert clean_query("") is None
    assert clean_query("Key=1") is None
    assert clean_query("a=1&sig=x&b=2") == "a=1&b=2"


def test_mitmproxy_headers_object_is_converted_on_the_writer_side() -> None:
    h = Headers(
        [
            (b"Content-Type", b"application/json"),
            (b"X-Stainless-Retry-Count", b"2"),
            (b"Authorization", SECRET.encode()),
        ]
    )
    row = build_row(make_capture(request_headers=h))
    assert row["sdk_retry_count"] == 2 and row["request_content_type"] == "application/json"
    assert SECRET not in repr(row)
    assert header_dict([("A", "1"), ("a", "2")]) == {"a": "1, 2"}


@pytest.mark.parametrize("enc", ["gzip", "br", "zstd", "deflate"])
def test_compressed_json_response_is_stored_decoded(enc: str) -> None:
    raw = json.dumps(CHAT_RESP).encode()
    data = {
        "gzip": gzip.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "deflate": zlib.compress,
    }[enc](raw)
    row = build_row(
        make_capture(
            body=data, response_headers={"content-type": "application/json", "content-encoding": enc}
        )
    )
    assert json.loads(row["response_body"]) == CHAT_RESP
    assert row["response_bytes"] == len(raw) and "error_type" not in row


def test_compressed_stream_keeps_per_read_times() -> None:
    events = [sse(chunk("a")), sse(chunk("b")), sse(chunk(None, "stop")), b"data: [DONE]\n\n"]
    comp = zlib.compressobj(wbits=31)
    chunks = [
        (100.1 + i * 0.1, comp.compress(e) + comp.flush(zlib.Z_SYNC_FLUSH)) for i, e in enumerate(events)
    ]
    chunks[-1] = (chunks[-1][0], chunks[-1][1] + comp.flush())
    decoded, err = decode_chunks(chunks, "gzip")
    assert err is None and b"".join(d for _, d in decoded) == b"".join(events)
    row = build_row(
        make_capture(
            body=None,
            chunks=chunks,
            response_headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
        )
    )
    assert row["chunk_offsets_ms"] == pytest.approx([100.0, 200.0, 300.0, 400.0])
    assert row["ttft_ms"] == pytest.approx(100.0)
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "ab"


def test_stream_row() -> None:
    body = sse(
        chunk("Hel"),
        chunk("lo"),
        chunk(None, "stop"),
        chunk(usage={"prompt_tokens": 3, "completion_tokens": 2}),
        b"[DONE]",
    )
    cut = [body[:40], body[40:200], body[200:]]
    chunks = [(100.1, cut[0]), (100.15, cut[1]), (100.3, cut[2])]
    row = build_row(
        make_capture(
            request_raw=json.dumps({**CHAT_REQ, "stream": True}).encode(),
            response_headers={"content-type": "text/event-stream; charset=utf-8"},
            body=None,
            chunks=chunks,
        )
    )
    fits_schema(row)
    assert row["stream"] and row["stream_complete"] and row["n_events"] == 5
    assert row["response_raw"] == body.decode()
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "Hello"
    assert row["completion_tokens"] == 2 and row["finish_reason"] == "stop"
    assert row["ttft_ms"] == pytest.approx(150.0)  # the read that completed the first content event
    assert row["latency_ms"] == pytest.approx(300.0)
    assert len(row["chunk_offsets_ms"]) == 5


def test_untimed_stream_from_an_import_has_no_offsets() -> None:
    row = build_row(
        make_capture(
            response_headers={"content-type": "text/event-stream"},
            body=sse(chunk("x"), b"[DONE]"),
            timed=False,
            t_end=100.4,
        )
    )
    assert row.get("chunk_offsets_ms") is None and row.get("ttft_ms") is None
    assert row["latency_ms"] == pytest.approx(400.0) and row["n_events"] == 2 and row["stream_complete"]


def test_client_closed_after_done_is_not_an_error() -> None:
    row = build_row(
        make_capture(
            response_headers={"content-type": "text/event-stream"},
            body=None,
            chunks=[(100.1, sse(chunk("x"), b"[DONE]"))],
            error="Client disconnected.",
            client_disconnected=True,
        )
    )
    assert row["client_disconnected"] and row["stream_complete"] and "error_type" not in row


def test_upstream_reset_mid_stream() -> None:
    row = build_row(
        make_capture(
            response_headers={"content-type": "text/event-stream"},
            body=None,
            chunks=[(100.1, sse(chunk("x")) + b'data: {"id": "c", "cho')],
            error="peer closed connection without sending complete message body",
        )
    )
    assert row["error_type"] == "upstream_error" and not row["stream_complete"]
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "x"


def test_error_event_in_stream_wins_over_the_disconnect_it_caused() -> None:
    row = build_row(
        make_capture(
            response_headers={"content-type": "text/event-stream"},
            body=None,
            chunks=[(100.1, sse(chunk("x"), {"error": {"message": "overloaded", "type": "server_error"}}))],
            error="Client disconnected.",
            client_disconnected=True,
        )
    )
    assert (row["error_type"], row["error_message"]) == ("in_stream_error", "overloaded")


def test_http_errors() -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    row = build_row(make_capture(status=429, body=json.dumps(body).encode()))
    assert (row["status"], row["error_type"], row["error_message"]) == (429, "requests", "Rate limit reached")
    row = build_row(
        make_capture(
            status=502, body=b"<html>bad gateway</html>", response_headers={"content-type": "text/html"}
        )
    )
    assert row["error_type"] == "http_502" and row["response_raw"] == "<html>bad gateway</html>"
    row = build_row(make_capture(status=None, body=None, response_headers=None, error="Connection refused"))
    assert row["status"] is None and row["error_type"] == "upstream_error"


def test_non_utf8_and_malformed_json_are_kept_raw_with_an_error() -> None:
    row = build_row(make_capture(body=b'\xff\xfe{"a":1}'))
    assert row["response_raw_bytes"] == b'\xff\xfe{"a":1}' and row["error_type"] == "response_invalid_utf8"
    row = build_row(make_capture(body=b'{"a": [1,'))
    assert row["response_raw"] == '{"a": [1,' and row["error_type"] == "response_invalid_json"
    row = build_row(make_capture(body=b'{"a": NaN}'))  # DuckDB's JSON type rejects NaN
    assert row["error_type"] == "response_invalid_json"
    row = build_row(make_capture(request_raw=b'{"model": "x",'))
    assert row["request_raw"] == b'{"model": "x",' and row["error_type"] == "request_invalid_json"
    assert "request_body" not in row


def test_bodies_above_the_limit_are_truncated_with_a_flag() -> None:
    big = json.dumps({**CHAT_RESP, "pad": "x" * 5000}).encode()
    row = build_row(make_capture(body=big, max_body_bytes=1000))
    assert row["truncated"] and row["error_type"] == "truncated"
    assert len(row["response_raw"]) == 1000 and row["response_bytes"] == len(big)
    row = build_row(
        make_capture(request_raw=json.dumps({**CHAT_REQ, "pad": "y" * 5000}).encode(), max_body_bytes=1000)
    )
    assert row["truncated"] and len(row["request_raw"]) == 1000 and row["request_bytes"] > 5000


MULTIPART = (
    b"--BOUND\r\n"
    b'Content-Disposition: form-data; name="model"\r\n\r\n'
    b"whisper-1\r\n"
    b"--BOUND\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n"
    b"RIFF\x00\x01\xff\xfe binary\r\n"
    b"--BOUND--\r\n"
)


def test_multipart_audio_kept_byte_exact() -> None:
    ct = "multipart/form-data; boundary=BOUND"
    row = build_row(
        make_capture(
            path="/v1/audio/transcriptions",
            request_headers={"content-type": ct},
            request_raw=MULTIPART,
            body=b'{"text": "hello"}',
        )
    )
    assert row["endpoint"] == "audio.transcriptions" and row["model"] == "whisper-1"
    assert row["request_raw"] == MULTIPART and row["request_content_type"] == ct
    assert "request_body" not in row and json.loads(row["response_body"]) == {"text": "hello"}


def test_fallback_row_when_building_fails() -> None:
    cap = make_capture()
    row = cap.fallback(RuntimeError("bug"))
    fits_schema(row)
    assert row["error_type"] == "recorder_error" and "bug" in row["error_message"]


def test_every_json_cell_is_one_duckdb_accepts(tmp_path) -> None:
    """A lone surrogate escape is valid for Python but not for DuckDB: one such cell would break
    every query on the column, so it is re-encoded (U+FFFD) and the exact bytes kept aside."""
    import duckdb

    req = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800 and \\ud83d\\ude00"}]}'
    row = build_row(make_capture(request_raw=req, body=b'{"choices": [], "x": "\\udfff"}'))
    fits_schema(row)
    con = duckdb.connect()
    for col in ("request_body", "response_body"):
        con.execute("SELECT CAST(? AS JSON)", [row[col]])
    assert (
        row["request_raw"] == req
        and "\ufffd and \U0001f600" in json.loads(row["request_body"])["messages"][0]["content"]
    )
    plain = build_row(make_capture())
    assert "request_raw" not in plain  # ordinary bodies are stored exactly as sent, once


def test_int32_columns_and_odd_values_never_sink_the_row() -> None:
    row = build_row(make_capture(request_headers={"x-stainless-retry-count": "99999999999"}, status=2**40))
    fits_schema(row)
    assert row["status"] is None and row["error_type"] == "invalid_status" and "sdk_retry_count" not in row


def test_error_status_answered_as_an_event_stream() -> None:
    row = build_row(
        make_capture(status=503, response_headers={"content-type": "text/event-stream"}, body=b"")
    )
    assert row["error_type"] == "http_503"


@pytest.mark.parametrize("enc", ["zstd", "gzip", "br"])
def test_truncated_compressed_body_is_a_decode_error(enc: str) -> None:
    raw = json.dumps(CHAT_RESP).encode()
    data = {"gzip": gzip.compress, "br": brotli.compress, "zstd": zstandard.ZstdCompressor().compress}[enc](
        raw
    )
    row = build_row(
        make_capture(
            body=data[: len(data) // 2],
            response_headers={"content-type": "application/json", "content-encoding": enc},
        )
    )
    assert row["error_type"] == "response_decode_error"


def test_client_closing_a_compressed_stream_at_done_is_not_an_error() -> None:
    comp = zlib.compressobj(wbits=31)
    data = comp.compress(sse(chunk("x"), b"[DONE]")) + comp.flush(zlib.Z_SYNC_FLUSH)  # no gzip trailer yet
    row = build_row(
        make_capture(
            body=None,
            chunks=[(100.1, data)],
            response_headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
            error="Client disconnected.",
            client_disconnected=True,
        )
    )
    assert row["stream_complete"] and "error_type" not in row
