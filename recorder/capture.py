"""From what the proxy saw to one ``exchanges`` row (no mitmproxy here: also used by importers).

The addon fills a :class:`Capture` on the event loop with references only (headers,
raw bytes, timestamps); :meth:`Capture.__call__` runs on the writer thread and does all
the work: decoding (``content_encoding.py``), SSE parsing, reassembly, JSON the store takes
(``json_body.py``), scrubbing the request's own credentials (``scrub.py``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from parity.recorder.content_encoding import decode_body, decode_chunks
from parity.recorder.json_body import error_message_of, error_type_of, json_or_none, storable_json
from parity.recorder.scrub import credential_values, fingerprint, scrub
from parity.wire.credentials import REQUEST_HEADERS_KEPT, RESPONSE_HEADERS_KEPT, clean_query
from parity.wire.endpoints import classify
from parity.wire.reassemble import dumps, extract_usage, finish_reason, reassemble
from parity.wire.sse import parse_all


def header_dict(headers: Any) -> dict[str, str]:
    """Lower-cased ``{name: value}`` from a dict, a list of pairs or a mitmproxy ``Headers``.

    The addon hands over mitmproxy's ``Headers`` object itself (no copy on the event loop);
    its raw byte fields are converted here, on the writer thread. Repeated names are joined
    with ", " as HTTP allows.
    """
    if not headers:
        return {}
    fields = getattr(headers, "fields", None)
    if fields is not None:
        pairs = fields
    elif isinstance(headers, dict):
        pairs = headers.items()
    else:
        pairs = headers
    pairs = [
        (k.decode("latin-1"), v.decode("utf-8", "replace")) if isinstance(k, bytes) else (k, v)
        for k, v in pairs
    ]
    out: dict[str, str] = {}
    for k, v in pairs:
        k = str(k).lower()
        out[k] = f"{out[k]}, {v}" if k in out else str(v)
    return out


@dataclass
class Capture:
    """Everything the proxy saw of one exchange, timestamps in ``perf_counter`` seconds.

    The addon fills it on the event loop with references only; nothing is copied, decoded
    or cut there. Calling it (on the writer thread) builds the ``exchanges`` row.
    """

    wall_start: float  # time.time() at request start
    t_start: float  # perf_counter at request start
    method: str
    path: str  # path with query
    host: str
    request_headers: Any  # dict, list of pairs or mitmproxy Headers (see header_dict)
    request_raw: bytes | None
    status: int | None = None
    response_headers: Any = None
    t_headers: float | None = None
    t_end: float | None = None
    body: bytes | None = None  # buffered response body (on the wire, maybe compressed)
    chunks: list[tuple[float, bytes]] | None = None  # streamed reads with arrival times
    streamed_bytes: int = 0
    max_body_bytes: int | None = None  # bodies above this are cut (on the writer thread)
    truncated: bool = False  # the stream tee stopped keeping reads at max_body_bytes
    request_truncated: bool = False
    error: str | None = None  # mitmproxy error message, if the flow ended in error
    error_kind: str | None = None  # error_type for ``error`` (default: client_disconnected/upstream_error)
    client_disconnected: bool = False
    tag: str | None = None
    recorder_id: str | None = None
    salt: bytes = b""
    source: str = "proxy"
    id: str = ""  # assigned on the writer thread when empty
    timed: bool = True  # chunk times are real arrivals (False for imports: no per-event times)
    decoded: bool = False  # bodies are already content-decoded (HAR text)

    def __call__(self) -> dict:
        return build_row(self)

    def __getstate__(self) -> dict:
        # Pickled to the writer process: send mitmproxy Headers as their raw (name, value) pairs.
        state = self.__dict__.copy()
        for k in ("request_headers", "response_headers"):
            fields = getattr(state[k], "fields", None)
            if fields is not None:
                state[k] = tuple(fields)
        return state

    def fallback(self, err: Exception) -> dict:
        """A minimal row for an exchange whose full row could not be built."""
        return {
            "id": self.id or uuid.uuid4().hex,
            "recorded_at": datetime.fromtimestamp(self.wall_start, UTC),
            "method": self.method,
            "path": self.path.split("?", 1)[0],
            "endpoint": classify(self.method, self.path),
            "status": self.status,
            "error_type": "recorder_error",
            "error_message": f"{type(err).__name__}: {err}",
            "upstream_host": self.host,
            "tag": self.tag,
            "recorder_id": self.recorder_id,
            "source": self.source,
        }


def _ms(t: float | None, t0: float) -> float | None:
    return None if t is None else round((t - t0) * 1000.0, 3)


def build_row(c: Capture) -> dict:
    """Turn a capture into an ``exchanges`` row (see store/schema.py)."""
    if not c.id:
        c.id = uuid.uuid4().hex
    req_h = header_dict(c.request_headers)
    resp_h = header_dict(c.response_headers)
    path, _, query = c.path.partition("?")
    endpoint = classify(c.method, path)
    req_ct = req_h.get("content-type", "")  # as sent (kept); compared lower-cased: media types ignore case
    limit = c.max_body_bytes
    row: dict = {
        "id": c.id,
        "recorded_at": datetime.fromtimestamp(c.wall_start, UTC),
        "endpoint": endpoint,
        "method": c.method,
        "path": path,
        "query": clean_query(query),
        "status": c.status if isinstance(c.status, int) and 0 <= c.status < 2**31 else None,
        "request_content_type": req_ct or None,
        "upstream_host": c.host,
        "tag": c.tag,
        "recorder_id": c.recorder_id,
        "source": c.source,
        "client_disconnected": c.client_disconnected,
        "api_key_fingerprint": fingerprint(req_h, c.salt),
        "request_headers": dumps({k: v for k, v in req_h.items() if k in REQUEST_HEADERS_KEPT}),
        "response_headers": dumps({k: v for k, v in resp_h.items() if k in RESPONSE_HEADERS_KEPT}),
        "response_content_type": resp_h.get("content-type"),
        "request_id": resp_h.get("x-request-id") or resp_h.get("request-id"),
        "user_agent": req_h.get("user-agent"),
        "ttfb_ms": _ms(c.t_headers, c.t_start),
        "latency_ms": _ms(c.t_end, c.t_start),
    }
    try:
        retries = int(req_h.get("x-stainless-retry-count", ""))
        if 0 <= retries < 2**31:  # an int32 column: a silly header value must not sink the row
            row["sdk_retry_count"] = retries
    except ValueError:
        pass
    errors: list[tuple[str, str]] = []
    if c.status is not None and row["status"] is None:
        errors.append(("invalid_status", f"status {c.status!r} is not an HTTP status"))
    req_cut = _request_fields(row, c, req_h, req_ct, limit, errors)
    resp_cut = _response_fields(row, c, endpoint, resp_h, limit, errors)
    row["truncated"] = req_cut or resp_cut
    if row["truncated"]:
        errors.append(("truncated", f"a body exceeded max_body_bytes={limit} and was truncated"))
    if c.error:
        kind = c.error_kind or ("client_disconnected" if c.client_disconnected else "upstream_error")
        if c.client_disconnected and (
            row.get("stream_complete") or (errors and errors[0][0] == "in_stream_error")
        ):
            pass  # the client closed after [DONE] (as the SDK does) or because of the stream's own error
        else:
            errors.insert(0, (kind, c.error))
    if errors:
        row["error_type"], row["error_message"] = errors[0]
    secrets = credential_values(req_h, query)
    if secrets:
        scrub(row, secrets)
    for k, v in row.items():  # small text taken from parsed JSON may hold lone surrogates
        if type(v) is str and k not in _BIG_TEXT and not v.isascii():
            row[k] = _valid_text(v)
    return row


_BIG_TEXT = frozenset({"request_body", "response_body", "response_raw"})  # valid UTF-8 by construction


def _valid_text(s: str) -> str:
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def _request_fields(row: dict, c: Capture, req_h: dict, req_ct: str, limit: int | None, errors: list) -> bool:
    """Request body, model and stream flag; returns True when the body was cut."""
    raw_req = c.request_raw or b""
    if not c.decoded:
        raw_req, err = decode_body(raw_req, req_h.get("content-encoding"))
        if err:
            errors.append(("request_decode_error", err))
    row["request_bytes"] = len(raw_req)
    cut = c.request_truncated
    if limit is not None and len(raw_req) > limit:
        raw_req, cut = raw_req[:limit], True
    req_json = None
    ct = req_ct.lower()
    if raw_req and "multipart/" not in ct and not cut:
        req_json, jerr = json_or_none(raw_req)
        if jerr and "json" in ct:
            errors.append((f"request_{jerr}", f"request body is not valid JSON ({len(raw_req)} bytes)"))
    if isinstance(req_json, (dict, list)):
        row["request_body"], altered = storable_json(raw_req.decode("utf-8"), req_json)
        if altered:  # the exact bytes stay available for a byte-exact replay
            row["request_raw"] = raw_req
        if isinstance(req_json, dict):
            m = req_json.get("model")
            row["model"] = m if isinstance(m, str) else None
            row["stream"] = bool(req_json.get("stream"))
    elif raw_req:
        row["request_raw"] = raw_req
        if "multipart/" in ct:
            row["model"] = _multipart_field(raw_req, req_ct, "model")
            row["stream"] = (_multipart_field(raw_req, req_ct, "stream") or "").lower() == "true"
    row.setdefault("stream", False)
    return cut


def _cut_chunks(chunks: list[tuple[float, bytes]], limit: int) -> list[tuple[float, bytes]]:
    out, n = [], 0
    for t, d in chunks:
        if n + len(d) > limit:
            if limit > n:
                out.append((t, d[: limit - n]))
            break
        out.append((t, d))
        n += len(d)
    return out


def _response_fields(
    row: dict, c: Capture, endpoint: str, resp_h: dict, limit: int | None, errors: list
) -> bool:
    """Response body, stream fields, usage and error; returns True when the body was cut."""
    resp_ct = (resp_h.get("content-type") or "").lower()
    enc = None if c.decoded else resp_h.get("content-encoding")
    cut = c.truncated
    if "text/event-stream" in resp_ct:
        if c.chunks is not None:
            chunks = c.chunks
        else:  # buffered (imports, or a proxy that did not stream): one read at the end
            chunks = [(c.t_end if c.t_end is not None else c.t_start, c.body)] if c.body else []
        chunks, err = decode_chunks(chunks, enc)
        unfinished = bool(err) and err.endswith("before its end marker")
        if err and not unfinished:
            errors.append(("response_decode_error", err))
        size = sum(len(d) for _, d in chunks)
        if limit is not None and size > limit:
            chunks, cut = _cut_chunks(chunks, limit), True
        row["response_bytes"] = max(size, c.streamed_bytes) if cut else size
        _stream_fields(row, endpoint, chunks, c, errors)
        row["stream"] = True
        # A client that closes at [DONE] never sees the compressor's end marker: not an error then.
        if unfinished and not row.get("stream_complete"):
            errors.append(("response_decode_error", err))
        return cut
    raw = c.body if c.body is not None else b"".join(d for _, d in (c.chunks or []))
    body_bytes, err = decode_body(raw, enc)
    if err:
        errors.append(("response_decode_error", err))
    row["response_bytes"] = max(len(body_bytes), c.streamed_bytes) if cut else len(body_bytes)
    if limit is not None and len(body_bytes) > limit:
        body_bytes, cut = body_bytes[:limit], True
    if not body_bytes:
        if row["status"] is not None and row["status"] >= 400:
            errors.insert(0, (f"http_{row['status']}", "empty error body"))
        return cut
    parsed, jerr = (None, "truncated") if cut else json_or_none(body_bytes)
    if isinstance(parsed, (dict, list)):
        row["response_body"], altered = storable_json(body_bytes.decode("utf-8"), parsed)
        if altered:
            row["response_raw_bytes"] = body_bytes
        body = parsed if isinstance(parsed, dict) else None
        u = extract_usage(body)
        row.update(
            prompt_tokens=u.prompt,
            completion_tokens=u.completion,
            cached_tokens=u.cached,
            reasoning_tokens=u.reasoning,
            finish_reason=finish_reason(body),
        )
        et = error_type_of(row["status"], parsed)
        if et:
            errors.insert(0, (et, error_message_of(parsed)))
        return cut
    try:
        row["response_raw"] = body_bytes.decode("utf-8")
    except UnicodeDecodeError:
        row["response_raw_bytes"] = body_bytes
    if row["status"] is not None and row["status"] >= 400:
        errors.insert(
            0, (f"http_{row['status']}", row.get("response_raw", "")[:300] or "non-text error body")
        )
    elif jerr and jerr != "truncated" and "json" in resp_ct:
        errors.append((f"response_{jerr}", f"response body is not valid JSON ({len(body_bytes)} bytes)"))
    return cut


def _stream_family(endpoint: str, events: list) -> str | None:
    """Which reassembler fits a stream; for unknown paths, guess from the first JSON event."""
    if endpoint in ("chat.completions", "responses", "completions"):
        return endpoint
    if endpoint in ("audio.transcriptions", "audio.translations"):
        return "audio.transcriptions"
    for ev in events[:3]:
        obj = ev.json()
        if obj is None:
            continue
        if obj.get("object") == "chat.completion.chunk":
            return "chat.completions"
        if obj.get("object") == "text_completion":
            return "completions"
        if str(obj.get("type", "")).startswith("response."):
            return "responses"
        if str(obj.get("type", "")).startswith("transcript."):
            return "audio.transcriptions"
    return None


def _stream_fields(row: dict, endpoint: str, chunks, c: Capture, errors: list) -> None:
    events, parser = parse_all(chunks)
    raw = b"".join(d for _, d in chunks)
    try:
        row["response_raw"] = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        row["response_raw"] = raw.decode("utf-8", errors="replace")
        row["response_raw_bytes"] = raw
        if e.reason != "unexpected end of data":  # a stream cut mid-character is a cut stream, said below
            errors.append(("response_invalid_utf8", "stream is not valid UTF-8 (raw bytes kept)"))
    row["n_events"] = len(events)
    family = _stream_family(endpoint, events)
    res = reassemble(family, events) if family else None
    if c.timed:
        row["chunk_offsets_ms"] = [_ms(ev.t, c.t_start) for ev in events]
        if res is not None and res.content_times:
            row["ttft_ms"] = _ms(res.content_times[0], c.t_start)
        if events:
            row["latency_ms"] = _ms(events[-1].t, c.t_start)
    if res is None:
        row["stream_complete"] = any(ev.is_done for ev in events)
        _http_error_of_stream(row, c, events, errors)
        return
    try:
        row["response_body"] = dumps(res.body) if res.body is not None else None
    except ValueError as e:  # nested deeper than JSON encoding allows
        errors.append(("response_invalid_json", f"reassembled body not storable: {e}"))
    row["stream_complete"] = res.complete
    u = extract_usage(res.body)
    row.update(
        prompt_tokens=u.prompt,
        completion_tokens=u.completion,
        cached_tokens=u.cached,
        reasoning_tokens=u.reasoning,
        finish_reason=finish_reason(res.body),
    )
    if res.error is not None:
        msg = res.error.get("message") if isinstance(res.error, dict) else None
        errors.insert(0, ("in_stream_error", str(msg) if msg else json.dumps(res.error)[:2000]))
    elif not res.complete and row["status"] is not None and row["status"] < 400:
        why = "inside an event" if parser.ended_inside_event else "without [DONE] or a terminal event"
        errors.append(("stream_broken", f"stream ended {why}"))
    if res.bad_events:
        errors.append(("stream_invalid_json", f"{res.bad_events} events whose data is not JSON"))
    _http_error_of_stream(row, c, events, errors)


def _http_error_of_stream(row: dict, c: Capture, events: list, errors: list) -> None:
    """An error status answered as an event stream is still an HTTP error (unless it said why)."""
    if row["status"] is None or row["status"] < 400 or (errors and errors[0][0] == "in_stream_error"):
        return
    msg = next((ev.data for ev in events if ev.data.strip()), None) or (row.get("response_raw") or "")
    errors.insert(0, (f"http_{row['status']}", msg[:300] or "empty error body"))


def _multipart_field(raw: bytes, content_type: str, name: str) -> str | None:
    """Value of one small text field of a multipart body (for model/stream), None if absent."""
    boundary = None
    for part in content_type.split(";"):
        k, _, v = part.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"')
    if not boundary:
        return None
    needle = f'name="{name}"'.encode()
    for part in raw.split(b"--" + boundary.encode()):
        head, sep, value = part.partition(b"\r\n\r\n")
        if sep and needle in head and b"filename=" not in head:
            return value.rstrip(b"\r\n").decode("utf-8", errors="replace")[:256]
    return None
