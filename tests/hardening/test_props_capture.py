"""Properties of ``build_row`` (recorder/capture.py): what the proxy saw -> one ``exchanges`` row.

For every generated exchange the row must

* be built without raising (the writer would otherwise store only a ``recorder_error`` stub),
* fit the ``exchanges`` Arrow schema (``rows_to_table`` does not raise),
* hold strict JSON in every JSON column, text that DuckDB's ``CAST(... AS JSON)`` accepts (the
  store's views cast them: one bad cell makes ``SELECT *`` fail for the whole store),
* carry an ``error_type`` exactly when something went wrong, the specific one when a single fault
  was injected, and never lose or alter what was recorded (bodies, model, event count).

Faults injected one at a time (``cases``) or at random (``arbitrary_captures``): invalid UTF-8,
malformed JSON, 100k-deep nesting, NaN/Infinity, corrupt and truncated gzip/deflate/br/zstd bodies,
HTTP errors, SSE error events mid-stream, cut streams, non-JSON events, bodies over
max_body_bytes, upstream errors and client disconnects; hostile JSON shapes and lone surrogates.

Found by these properties and fixed since in recorder/ (each test below names its own): lone
surrogate escapes stored as is (DuckDB rejects them: SELECT * failed for the whole store), a
truncated zstd body stored empty with no error, a 4xx/5xx event stream with no error type,
int32 overflow of sdk_retry_count/status, RecursionError out of build_row for near-limit
nesting, ill-typed JSON crashing reassembly. Still open: concatenated gzip members / zstd frames
in a stream (``test_concatenated_frames_decode_whole``).
"""

from __future__ import annotations

import gzip
import json
import sys
import zlib

import brotli
import duckdb
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parity.recorder.capture import Capture, build_row
from parity.recorder.content_encoding import decode_body, decode_chunks
from parity.store.schema import JSON_COLUMNS
from parity.store.segments import rows_to_table
from parity.wire.endpoints import ENDPOINTS
from parity.wire.reassemble import output_text
from parity.wire.sse import parse_all

_DUCK = duckdb.connect()
WALL = 1_767_225_600.0  # 2026-01-01
GARBAGE = b"\xff\xfe\xfd\xfcNOT-COMPRESSED-AT-ALL"  # rejected by every decoder at its first bytes
ENCODINGS = ["gzip", "deflate", "br", "zstd"]


def _reject(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def compress(data: bytes, enc: str) -> bytes:
    if enc == "gzip":
        return gzip.compress(data)
    if enc == "deflate":
        return zlib.compress(data)
    if enc == "br":
        return brotli.compress(data, quality=5)
    return zstandard.ZstdCompressor().compress(data)


_PICKS: dict[tuple, st.SearchStrategy] = {}


def pick(draw, options):
    """``draw(st.sampled_from(options))`` with the strategy built once (building one per draw is
    what made these composites slow)."""
    key = tuple(options)
    s = _PICKS.get(key)
    if s is None:
        s = _PICKS[key] = st.sampled_from(key)
    return draw(s)


def assert_storable(row: dict) -> None:
    """The row fits the schema and every JSON column is strict JSON that DuckDB accepts."""
    rows_to_table("exchanges", [row])
    cols = [c for c in JSON_COLUMNS["exchanges"] if row.get(c) is not None]
    for c in cols:
        json.loads(row[c], parse_constant=_reject)
    if cols:
        try:
            _DUCK.execute("SELECT " + ", ".join("CAST(? AS JSON)" for _ in cols), [row[c] for c in cols])
        except duckdb.Error as e:
            raise AssertionError(f"a JSON column is not DuckDB JSON: {e}") from None
    assert row["endpoint"] in ENDPOINTS


# ---------------------------------------------------------------- generated exchanges

safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=16
)
model_names = st.sampled_from(["gpt-4o-mini", "gpt-4.1", "o3", "m/ü-1"]) | safe_text.filter(bool)
PATHS = {
    "chat.completions": ["/v1/chat/completions", "/openai/deployments/x/chat/completions"],
    "responses": ["/v1/responses", "/api/v1/responses"],
    "completions": ["/v1/completions"],
    "embeddings": ["/v1/embeddings"],
}

REQUEST_FAULTS = ["req_invalid_utf8", "req_malformed", "req_deep", "req_nan", "req_decode"]
RESPONSE_FAULTS = [
    "resp_http_error",
    "resp_http_empty",
    "resp_http_text",
    "resp_invalid_utf8",
    "resp_malformed",
    "resp_deep",
    "resp_nan",
    "resp_decode_garbage",
    "resp_decode_truncated",
]
STREAM_FAULTS = [
    "sse_error_event",
    "sse_cut",
    "sse_bad_event",
    "sse_invalid_utf8",
    "sse_decode_garbage",
]
FLAG_FAULTS = ["over_limit", "upstream_error", "client_gone_mid_stream", "client_gone_after_done"]
ALL_FAULTS = ["none", "none", *REQUEST_FAULTS, *RESPONSE_FAULTS, *STREAM_FAULTS, *FLAG_FAULTS]


class Case:
    """One generated exchange and what its row must say (a plain class: its repr stays short)."""

    def __init__(self, fault: str, request_text: str | None, model: str | None) -> None:
        self.capture: Capture | None = None
        self.fault = fault
        self.expect: set[str | None] = {None}  # allowed error_type values
        self.request_text = request_text  # valid JSON request text, stored as request_body
        self.model = model
        self.response_text: str | None = None  # valid JSON response text, stored as response_body
        self.sse: bytes | None = None  # decoded stream, stored as response_raw
        self.content: str | None = None  # reassembled text of a complete stream
        self.error_message: str | None = None

    def __repr__(self) -> str:  # bodies can be megabytes: show their heads only
        c = self.capture

        def short(v) -> str:
            r = repr(v)
            return r if len(r) <= 300 else f"{r[:300]}...<{len(r)} chars>"

        fields = ", ".join(
            f"{k}={short(getattr(c, k))}"
            for k in ("method", "path", "request_headers", "request_raw", "status", "response_headers",
                      "body", "chunks", "max_body_bytes", "error", "client_disconnected")
        )  # fmt: skip
        return f"Case(fault={self.fault!r}, expect={self.expect!r}, Capture({fields}))"


def chat_body(text: str, model: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def response_body(endpoint: str, text: str, model: str) -> dict:
    if endpoint == "responses":
        return {
            "id": "resp_1",
            "object": "response",
            "status": "completed",
            "model": model,
            "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}],
            "usage": {"input_tokens": 3, "output_tokens": 4},
        }
    if endpoint == "completions":
        return {"id": "cmpl", "object": "text_completion", "choices": [{"index": 0, "text": text}]}
    if endpoint == "embeddings":
        return {"object": "list", "data": [{"embedding": [0.1, -2.5e-7]}], "usage": {"prompt_tokens": 2}}
    return chat_body(text, model)


def stream_events(endpoint: str, parts: list[str], model: str) -> list[tuple[str | None, dict | str]]:
    """(event name, data) of a complete stream for ``endpoint`` carrying ``parts``."""
    if endpoint == "responses":
        full = "".join(parts)
        final = response_body("responses", full, model)
        return [
            (
                "response.created",
                {"type": "response.created", "response": {**final, "status": "in_progress"}},
            ),
            *[
                ("response.output_text.delta", {"type": "response.output_text.delta", "delta": p})
                for p in parts
            ],
            ("response.completed", {"type": "response.completed", "response": final}),
        ]
    if endpoint == "completions":
        evs: list = [
            (None, {"object": "text_completion", "choices": [{"index": 0, "text": p}]}) for p in parts
        ]
        return [*evs, (None, "[DONE]")]
    head = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": model}
    evs = [(None, {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    evs += [(None, {**head, "choices": [{"index": 0, "delta": {"content": p}}]}) for p in parts]
    evs.append((None, {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    evs.append((None, {**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}))
    return [*evs, (None, "[DONE]")]


@st.composite
def sse_bytes(draw, events: list[tuple[str | None, dict | str]]) -> tuple[bytes, list[int]]:
    """Serialise events with any line ends, keep-alives and comments; returns bytes and the
    offset where each event starts."""
    out = b""
    starts = []
    for name, data in events:
        nl = pick(draw, ([b"\n", b"\r\n", b"\r"]))
        if draw(st.integers(0, 3)) == 0:
            out += pick(draw, ([b": PROCESSING", b":", b": keep-alive"])) + nl + nl
        starts.append(len(out))
        if name is not None:
            out += b"event: " + name.encode() + nl
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=draw(st.booleans()))
        out += b"data: " + text.encode() + nl + nl
    return out, starts


def chunked(draw, data: bytes, t0: float = 0.01) -> list[tuple[float, bytes]]:
    """``data`` as timestamped reads cut anywhere (no empty reads: the addon's tee drops them)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(len(data) - 1, 1)), max_size=8))))
    bounds = [0, *(c for c in cuts if 0 < c < len(data)), len(data)]
    out = [(t0 + 0.001 * i, data[a:b]) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    return [(t, d) for t, d in out if d]


def headers(draw, pairs: dict[str, str]):
    """The same headers as a dict, a list of str pairs or mitmproxy-style raw byte fields."""
    form = pick(draw, (["dict", "pairs", "bytes"]))
    if form == "dict":
        return dict(pairs)
    if form == "pairs":
        return [(k.title(), v) for k, v in pairs.items()]
    return tuple((k.encode(), v.encode()) for k, v in pairs.items())


@st.composite
def cases(draw, faults: list[str] = ALL_FAULTS) -> Case:
    fault = pick(draw, (faults))
    endpoint = pick(draw, (list(PATHS)))
    if fault.startswith(("sse_", "client_gone")):
        endpoint = pick(draw, (["chat.completions", "responses", "completions"]))
    stream = fault.startswith(("sse_", "client_gone")) or (
        endpoint != "embeddings" and not fault.startswith("resp_") and draw(st.booleans())
    )
    model = draw(model_names)
    text = draw(safe_text)
    if draw(st.integers(0, 15)) == 0:  # a huge string
        text = pick(draw, (["x", "é", '"\\'])) * pick(draw, ([100_000, 1_000_000]))
    req = {
        "model": model,
        "stream": stream,
        ("input" if endpoint != "chat.completions" else "messages"): text,
    }
    req_text = json.dumps(req, ensure_ascii=draw(st.booleans()))
    req_raw = req_text.encode()
    req_headers = {
        "content-type": "application/json",
        "authorization": "Bearer sk-secret",
        "user-agent": "ua",
    }
    case = Case(fault, req_text, model)

    # ---- request faults
    if fault == "req_invalid_utf8":
        req_raw = req_raw[:1] + b"\xff\xc3(" + req_raw[1:]
        case.expect, case.request_text, case.model = {"request_invalid_utf8"}, None, None
    elif fault == "req_malformed":
        cut = draw(st.integers(1, len(req_raw) - 1))
        req_raw = req_raw[:cut]
        case.request_text = case.model = None
        case.expect = {"request_invalid_json", "request_invalid_utf8"}  # a cut inside a UTF-8 sequence
    elif fault == "req_deep":
        req_raw = b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        case.expect, case.request_text, case.model = {"request_invalid_json"}, None, None
    elif fault == "req_nan":
        req_raw = req_raw[:-1] + draw(
            st.sampled_from([b', "t": NaN}', b', "t": Infinity}', b', "t": -Infinity}'])
        )
        case.expect, case.request_text, case.model = {"request_invalid_json"}, None, None
    elif fault == "req_decode":
        enc = pick(draw, (ENCODINGS))
        req_headers["content-encoding"] = enc
        req_raw = GARBAGE + draw(st.binary(max_size=8))
        case.expect, case.request_text, case.model = {"request_decode_error"}, None, None
    elif draw(st.integers(0, 4)) == 0:  # a correctly compressed request
        enc = pick(draw, (ENCODINGS))
        req_headers["content-encoding"] = enc
        req_raw = compress(req_raw, enc)

    status = 200
    resp_headers = {"x-request-id": "req_1", "openai-processing-ms": "12", "set-cookie": "secret=1"}
    body: bytes | None = None
    chunks: list[tuple[float, bytes]] | None = None
    limit = draw(st.none() | st.just(50_000_000))
    t_end = 0.5

    if stream:
        resp_headers["content-type"] = draw(
            st.sampled_from(["text/event-stream", "text/event-stream; charset=utf-8", "Text/Event-Stream"])
        )
        parts = draw(st.lists(safe_text, max_size=5))
        evs = stream_events(endpoint, parts, model)
        full = "".join(parts)
        if fault == "sse_error_event":
            msg = draw(safe_text.filter(lambda s: s.strip()))
            err = {"message": msg, "type": "server_error", "code": None}
            at = draw(st.integers(0, len(evs) - 1))
            err_ev = (
                ("error", {"type": "error", "code": "server_error", "message": msg, "param": None})
                if endpoint == "responses"
                else (None, {"error": err})
            )
            evs = evs[:at] + [err_ev] + (evs[at:] if draw(st.booleans()) else [])
            case.expect, case.error_message = {"in_stream_error"}, msg
        elif fault == "sse_bad_event":
            at = draw(st.integers(0, len(evs) - 1))
            evs = evs[:at] + [(None, pick(draw, (["{oops", "NaN", '{"a": NaN}', "[" * 100_000])))] + evs[at:]
            case.expect = {"stream_invalid_json"}
        sse, starts = draw(sse_bytes(evs))
        if fault == "sse_cut":
            sse = sse[: draw(st.integers(0, starts[-1]))]  # before the terminal event begins
            case.expect = {"stream_broken", "response_invalid_utf8"}  # maybe cut inside a character
        elif fault == "sse_invalid_utf8":
            sse = b": \xff\xfe\xc3(\n" + sse
            case.expect = {"response_invalid_utf8"}
        case.sse = sse
        case.content = full if fault in ("none", "sse_invalid_utf8", "client_gone_after_done") else None
        wire = sse
        if fault == "sse_decode_garbage":
            resp_headers["content-encoding"] = pick(draw, (ENCODINGS))
            wire = GARBAGE + sse
            # nothing decodes, so the stream also looks cut: either names the problem
            case.expect, case.sse, case.content = {"response_decode_error", "stream_broken"}, None, None
        elif draw(st.integers(0, 4)) == 0:
            enc = pick(draw, (ENCODINGS))
            resp_headers["content-encoding"] = enc
            wire = compress(sse, enc)
        chunks = chunked(draw, wire)
        if draw(st.integers(0, 5)) == 0:  # buffered stream (imports, or a proxy that did not stream)
            body, chunks = wire, None
    else:
        resp_headers["content-type"] = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8"])
        )
        resp_json = response_body(endpoint, text, model)
        resp_text = json.dumps(resp_json, ensure_ascii=draw(st.booleans()))
        body = resp_text.encode()
        case.response_text = resp_text
        if fault == "resp_http_error":
            status = pick(draw, ([400, 401, 404, 429, 500, 503]))
            etype = pick(draw, (["invalid_request_error", "rate_limit_exceeded", None]))
            code = pick(draw, (["model_not_found", None, ""]))
            msg = draw(safe_text)
            err = {"error": {"message": msg, "type": etype, "code": code}}
            case.response_text = json.dumps(err)
            body = case.response_text.encode()
            case.expect = {etype or code or f"http_{status}"}
            case.error_message = msg
        elif fault == "resp_http_empty":
            status, body, case.response_text = pick(draw, ([500, 502, 503])), b"", None
            case.expect = {f"http_{status}"}
        elif fault == "resp_http_text":
            status = pick(draw, ([500, 502]))
            resp_headers["content-type"] = "text/html"
            body, case.response_text = b"<html>upstream exploded</html>", None
            case.expect = {f"http_{status}"}
        elif fault == "resp_invalid_utf8":
            body, case.response_text = b"\xff" + body, None
            case.expect = {"response_invalid_utf8"}
        elif fault == "resp_malformed":
            body, case.response_text = body[: draw(st.integers(1, len(body) - 1))], None
            case.expect = {"response_invalid_json", "response_invalid_utf8"}
        elif fault == "resp_deep":
            body, case.response_text = b"[" * 100_000 + b"]" * 100_000, None
            case.expect = {"response_invalid_json"}
        elif fault == "resp_nan":
            body, case.response_text = body[:-1] + b', "x": NaN}', None
            case.expect = {"response_invalid_json"}
        if fault == "resp_decode_garbage":
            resp_headers["content-encoding"] = pick(draw, (ENCODINGS))
            body, case.response_text = GARBAGE + body, None
            case.expect = {"response_decode_error"}
        elif fault == "resp_decode_truncated":
            enc = pick(draw, (ENCODINGS))
            resp_headers["content-encoding"] = enc
            full_c = compress(body, enc)
            body, case.response_text = full_c[: draw(st.integers(1, len(full_c) - 1))], None
            case.expect = {"response_decode_error"}
        elif draw(st.integers(0, 4)) == 0:
            enc = pick(draw, (ENCODINGS))
            resp_headers["content-encoding"] = enc
            body = compress(body, enc)
        if draw(st.integers(0, 5)) == 0:  # streamed through the tee although not SSE
            chunks, body = chunked(draw, body), None

    # ---- flags
    error = None
    client_disconnected = False
    if fault == "over_limit":
        sizes = [len(req_text.encode())]
        if case.sse is not None:
            sizes.append(len(case.sse))
        elif case.response_text is not None:
            sizes.append(len(case.response_text.encode()))
        limit = draw(st.integers(0, max(sizes) - 1))
        over_req = len(req_text.encode()) > limit
        case.expect = {"truncated", "stream_broken"} if stream else {"truncated"}
        if over_req:
            case.request_text = case.model = None
        if not stream and case.response_text is not None and len(case.response_text.encode()) > limit:
            case.response_text = None
        case.sse = case.content = None
    elif fault == "upstream_error":
        error = pick(draw, (["peer closed connection", "Connection reset by peer"]))
        case.expect = {"upstream_error"}
    elif fault == "client_gone_mid_stream":
        assert case.sse is not None
        cut = draw(st.integers(0, len(case.sse)))
        keep = case.sse[:cut]
        complete = any(
            e.is_done or (e.json() or {}).get("type") == "response.completed"
            for e in parse_all([(0.0, keep)])[0]
        )
        chunks, body = [(0.01, keep)] if keep else [], None
        resp_headers.pop("content-encoding", None)
        case.sse, case.content = keep, None
        error, client_disconnected = "Client disconnected.", True
        case.expect = {None} if complete else {"client_disconnected"}
    elif fault == "client_gone_after_done":
        error, client_disconnected = "Client disconnected.", True

    cap = Capture(
        wall_start=WALL,
        t_start=0.0,
        method="POST",
        path=pick(draw, (PATHS[endpoint])) + pick(draw, (["", "?api-version=1&key=secret"])),
        host="api.example.com",
        request_headers=headers(draw, req_headers),
        request_raw=req_raw,
        status=status,
        response_headers=headers(draw, resp_headers),
        t_headers=0.005,
        t_end=t_end,
        body=body,
        chunks=chunks,
        max_body_bytes=limit,
        error=error,
        client_disconnected=client_disconnected,
        salt=b"salt",
    )
    case.capture = cap
    return case


def check_case(case: Case) -> dict:
    row = build_row(case.capture)
    assert_storable(row)
    got = row.get("error_type")
    assert got in case.expect, (got, row.get("error_message"), case.fault)
    if case.error_message is not None:
        assert row.get("error_message") == case.error_message
    if case.request_text is not None:
        assert row.get("request_body") == case.request_text
        assert row.get("model") == case.model
    if case.response_text is not None:
        assert row.get("response_body") == case.response_text
    if case.sse is not None:
        events, _ = parse_all([(0.0, case.sse)]) if case.sse else ([], None)
        assert row.get("n_events") == len(events)
        try:
            assert row.get("response_raw") == case.sse.decode("utf-8")
        except UnicodeDecodeError:
            assert row.get("response_raw_bytes") == case.sse
    if case.content is not None:
        assert row.get("stream_complete") is True
        assert output_text(json.loads(row["response_body"])) == case.content
    secret_free = json.dumps({k: v for k, v in row.items() if isinstance(v, str)})
    assert (
        "sk-secret" not in secret_free and "secret=1" not in secret_free and "key=secret" not in secret_free
    )
    return row


# ---------------------------------------------------------------- properties


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(case=cases())
def test_one_fault_gives_its_error_type_and_keeps_the_rest(prop_count, case: Case) -> None:
    prop_count()
    check_case(case)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(["resp_decode_truncated"]))
def test_truncated_compressed_body_is_a_decode_error(prop_count, case: Case) -> None:
    """Found by this suite: a cut zstd body decoded to b'' with no error (decompressobj() does not
    complain about a missing frame end); fixed in recorder/content_encoding.py decode_body since."""
    prop_count()
    check_case(case)


def test_truncated_zstd_body_example(prop_count) -> None:
    """The example that failed before the fix, spelled out."""
    prop_count()
    body = zstandard.ZstdCompressor().compress(json.dumps(chat_body("hello", "m")).encode())
    cap = Capture(
        wall_start=WALL,
        t_start=0.0,
        method="POST",
        path="/v1/chat/completions",
        host="h",
        request_headers={"content-type": "application/json"},
        request_raw=b'{"model": "m"}',
        status=200,
        response_headers={"content-type": "application/json", "content-encoding": "zstd"},
        body=body[: len(body) // 2],
    )
    row = build_row(cap)
    assert row.get("error_type") == "response_decode_error", (
        row.get("error_type"),
        row.get("response_bytes"),
    )


# ---- compressed bodies and streams made of several frames / members


@st.composite
def framed(draw):
    """(encoding, payload pieces, encoded bytes): gzip members and zstd frames may be concatenated
    (RFC 1952 2.2, RFC 8878 3); brotli and deflate streams are one unit."""
    enc = draw(st.sampled_from(ENCODINGS))
    pieces = draw(st.lists(st.binary(max_size=60), min_size=1, max_size=4 if enc in ("gzip", "zstd") else 1))
    return enc, pieces, b"".join(compress(p, enc) for p in pieces)


@settings(max_examples=150, deadline=None)
@given(case=framed(), data=st.data())
@example(case=("zstd", [b"data: 1\n\n", b"data: [DONE]\n\n"], None), data=None)
@example(case=("gzip", [b"data: 1\n\n", b"data: [DONE]\n\n"], None), data=None)
def test_concatenated_frames_decode_whole(prop_count, case, data) -> None:
    prop_count()
    enc, pieces, wire = case
    if wire is None:  # explicit examples: one frame per read
        wire = b"".join(compress(p, enc) for p in pieces)
        reads = [(0.01 * i, compress(p, enc)) for i, p in enumerate(pieces)]
    else:
        reads = chunked(data.draw, wire)
    body, err = decode_body(wire, enc)
    assert (body, err) == (b"".join(pieces), None)
    out, err = decode_chunks(reads, enc)
    assert err is None and b"".join(d for _, d in out) == b"".join(pieces)


# ---- arbitrary bytes everywhere

ctypes = st.sampled_from(
    [
        "application/json",
        "text/event-stream",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        "application/x-ndjson",
    ]
)


_ARB_BODY = st.none() | st.binary(max_size=300)
_ARB_CHUNKS = st.lists(st.binary(max_size=80), max_size=6)
_ARB_HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "content-encoding", "x-stainless-retry-count", "user-agent"]),
    st.text(max_size=20) | st.integers().map(str),
    max_size=4,
)
_ARB_TIME = st.none() | st.floats(0, 10)


@st.composite
def arbitrary_captures(draw) -> Capture:
    chunks = None
    body = draw(_ARB_BODY)
    if draw(st.booleans()):
        chunks = [(0.01 * (i + 1), b) for i, b in enumerate(draw(_ARB_CHUNKS))]
    enc = pick(draw, ["", "gzip", "deflate", "br", "zstd", "identity", "compress", " GZIP "])
    resp_h = {"content-type": draw(ctypes)}
    if enc:
        resp_h["content-encoding"] = enc
    return Capture(
        wall_start=draw(st.floats(0, 4e9)),
        t_start=0.0,
        method=pick(draw, ["POST", "GET", "DELETE", "post"]),
        path=pick(draw, ["/v1/chat/completions", "/v1/responses", "/v1/completions", "/x", "/"])
        + pick(draw, ["", "?", "?a=1&token=t", "?%ff=%fe"]),
        host=pick(draw, ["api.openai.com", "", "h:1", "ü"]),
        request_headers=draw(_ARB_HEADERS),
        request_raw=draw(_ARB_BODY),
        status=pick(draw, [None, 100, 200, 204, 301, 400, 429, 500, 599]),
        response_headers=resp_h,
        t_headers=draw(_ARB_TIME),
        t_end=draw(_ARB_TIME),
        body=body,
        chunks=chunks,
        streamed_bytes=draw(st.integers(0, 10_000)),
        max_body_bytes=draw(st.none() | st.integers(0, 400)),
        truncated=draw(st.booleans()),
        request_truncated=draw(st.booleans()),
        error=pick(draw, [None, "", "peer closed", "Client disconnected."]),
        client_disconnected=draw(st.booleans()),
        timed=draw(st.booleans()),
        decoded=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(cap=arbitrary_captures())
def test_arbitrary_bytes_never_crash_and_fit_the_schema(prop_count, cap: Capture) -> None:
    prop_count()
    row = build_row(cap)
    assert_storable(row)
    if cap.status is not None and cap.status >= 400:
        assert row.get("error_type") is not None
    if cap.error and not cap.client_disconnected:
        assert row.get("error_type") is not None


@settings(max_examples=100, deadline=None)
@given(
    status=st.sampled_from([400, 401, 429, 500, 503]),
    body=st.sampled_from([None, b"", b'data: {"choices": []}\n\n', b"data: [DONE]\n\n", b": PROCESSING\n\n"]),
    endpoint=st.sampled_from(["chat.completions", "responses", "completions", "embeddings"]),
)
@example(status=429, body=b"", endpoint="chat.completions")
def test_error_status_with_an_event_stream_has_an_error_type(prop_count, status, body, endpoint) -> None:
    """Found by this suite: a 4xx/5xx answered as text/event-stream with no error event had
    error_type null (any other content type gets http_<status>); fixed in capture.py since."""
    prop_count()
    cap = _capture_for(endpoint, True, b'{"model": "m", "stream": true}', body or b"", status)
    cap.chunks = [(0.1, body)] if body else []
    row = build_row(cap)
    assert_storable(row)
    assert row.get("error_type") is not None


@settings(max_examples=100, deadline=None)
@given(
    retry=st.none() | st.integers(2**31, 10**30).map(str) | st.integers(max_value=-(2**31) - 1).map(str),
    status=st.sampled_from([200, 2**31, 2**40]),
)
@example(retry="99999999999", status=200)
@example(retry=None, status=2**40)
def test_int32_columns_never_overflow(prop_count, retry: str | None, status: int) -> None:
    """Found by this suite: x-stainless-retry-count '99999999999' or a HAR status of 2**40 made
    the row not fit its int32 columns (ArrowInvalid, which also escaped import_files); fixed since."""
    prop_count()
    cap = _capture_for("chat.completions", False, b'{"model": "m"}', b"{}", status)
    if retry is not None:
        cap.request_headers = {"x-stainless-retry-count": retry}
    assert_storable(build_row(cap))


# ---- hostile JSON: ill-typed shapes and lone surrogates

KEYS = ["choices", "delta", "index", "tool_calls", "function", "arguments", "content", "usage", "error",
        "response", "text", "finish_reason", "message", "object", "type", "output", "status", "model"]  # fmt: skip
hostile_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(["\ud800", "\udfff", "a\udc80b"])  # lone surrogates, as JSON escapes on the wire
)
hostile = st.recursive(
    hostile_leaf,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(KEYS), kids, max_size=4),
    max_leaves=12,
)


def _capture_for(endpoint: str, stream: bool, req: bytes, resp: bytes, status: int = 200) -> Capture:
    return Capture(
        wall_start=WALL,
        t_start=0.0,
        method="POST",
        path=PATHS[endpoint][0],
        host="h",
        request_headers={"content-type": "application/json"},
        request_raw=req,
        status=status,
        response_headers={"content-type": "text/event-stream" if stream else "application/json"},
        t_end=0.5,
        body=resp if not stream else None,
        chunks=[(0.1, resp)] if stream else None,
    )


SURROGATE_REQ = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=st.sampled_from(["chat.completions", "responses", "completions"]),
    stream=st.booleans(),
    req=hostile.map(lambda v: json.dumps({"model": "m", "x": v}).encode()),
    resp=st.lists(hostile, max_size=4),
    status=st.sampled_from([200, 400, 500]),
)
@example(endpoint="chat.completions", stream=False, req=SURROGATE_REQ, resp=[{}], status=200)
@example(
    endpoint="chat.completions",
    stream=False,
    req=b"{}",
    resp=[{"choices": [{"message": "\ud800"}]}],
    status=200,
)
@example(
    endpoint="chat.completions",
    stream=True,
    req=b"{}",
    resp=[{"choices": [{"delta": {"content": "\ud800"}}]}],
    status=200,
)
@example(
    endpoint="chat.completions",
    stream=False,
    req=b"{}",
    resp=[{"choices": [{"finish_reason": 5}]}],
    status=200,
)
@example(endpoint="chat.completions", stream=True, req=b"{}", resp=[{"choices": [None]}], status=200)
def test_hostile_json_is_stored_queryable(prop_count, endpoint, stream, req, resp, status) -> None:
    """Found by this suite: JSON text with a lone surrogate escape (valid for Python) was stored
    as is, and dumps() re-escaped lone surrogates; DuckDB's JSON type rejects both, so the view's
    CAST made every SELECT of that column fail for the whole store. Ill-typed shapes crashed
    reassembly and finish_reason (see test_props_reassemble.py). Fixed since."""
    prop_count()
    if stream:
        wire = b"".join(b"data: " + json.dumps(v).encode() + b"\n\n" for v in resp) + b"data: [DONE]\n\n"
    else:
        wire = json.dumps(resp[0] if resp else {}).encode()
    row = build_row(_capture_for(endpoint, stream, req, wire, status))
    assert_storable(row)


def test_lone_surrogate_request_keeps_select_star_working(prop_count, tmp_path) -> None:
    """The consequence of the bug above, end to end: one such exchange made ``SELECT *`` fail."""
    prop_count()
    from parity.store.segments import segment_root, write_segment
    from parity.store.store import connect, init_catalog

    db = tmp_path / "p.duckdb"
    init_catalog(db)
    row = build_row(_capture_for("chat.completions", False, SURROGATE_REQ, b'{"choices": []}'))
    write_segment(segment_root(db), "exchanges", [row], "t")
    con = connect(db)
    try:
        assert len(con.execute("SELECT * FROM exchanges").fetchall()) == 1
    finally:
        con.close()


def _parse_limit() -> int:
    """The deepest nesting json.loads can parse from this point of the stack."""
    lo, hi = 1, sys.getrecursionlimit() + 10
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            json.loads("[" * mid + "]" * mid)
            lo = mid
        except RecursionError:
            hi = mid - 1
    return lo


@settings(max_examples=3, deadline=None)
@given(key=st.sampled_from(["usage", "id", "model"]))
@example(key="usage")
def test_near_limit_nesting_in_a_stream_is_an_error_type(prop_count, key: str) -> None:
    """Found by this suite: an event nested just below the parser's recursion limit parsed, then
    dumps(res.body) (one level deeper) raised RecursionError out of build_row, leaving only a
    recorder_error stub. Every depth around the limit (as seen from inside build_row) is tried."""
    prop_count()
    top = _parse_limit()
    for depth in range(top - 60, top + 3):
        deep = "[" * depth + "]" * depth
        sse = f'data: {{"choices": [], "{key}": {deep}}}\n\ndata: [DONE]\n\n'.encode()
        row = build_row(_capture_for("chat.completions", True, b'{"model": "m", "stream": true}', sse))
        assert_storable(row)
