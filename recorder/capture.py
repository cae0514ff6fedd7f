"""From what the proxy saw to one ``exchanges`` row (no mitmproxy here: also used by importers).

The addon fills a :class:`Capture` on the event loop with references only (headers,
raw bytes, timestamps); :meth:`Capture.__call__` runs on the writer thread and does all
the work: decoding, SSE parsing, reassembly, secret stripping.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from recorder.endpoints import classify
from recorder.reassemble import dumps, extract_usage, finish_reason, reassemble
from recorder.sse import parse_all

# Headers worth keeping. Everything else, credentials above all, never reaches disk.
REQUEST_HEADERS_KEPT = (
    "content-type",
    "content-length",
    "content-encoding",
    "accept",
    "accept-encoding",
    "user-agent",
    "openai-beta",
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-os",
    "x-stainless-arch",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
    "x-stainless-async",
    "x-stainless-raw-response",
    "x-stainless-helper-method",
)
RESPONSE_HEADERS_KEPT = (
    "content-type",
    "content-encoding",
    "content-length",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
    "openai-model",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "server",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)
SECRET_HEADERS = (
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "set-cookie",
    "openai-organization",
    "openai-project",
    "proxy-authorization",
    "x-goog-api-key",
)
SECRET_QUERY = {"key", "api_key", "api-key", "apikey", "access_token", "token", "sig", "signature"}


def fingerprint(headers: dict[str, str], salt: bytes) -> str | None:
    """Salted hash prefix of the API key, to group traffic by key without storing it."""
    for name in ("authorization", "api-key", "x-api-key", "x-goog-api-key"):
        v = headers.get(name)
        if v:
            key = v.split(" ", 1)[1] if v.lower().startswith("bearer ") else v
            return hashlib.sha256(salt + key.strip().encode()).hexdigest()[:16]
    return None


def clean_query(query: str) -> str | None:
    """The query string without parameters that carry credentials."""
    if not query:
        return None
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() not in SECRET_QUERY]
    return urlencode(kept) or None


def decode_body(raw: bytes, encoding: str | None) -> tuple[bytes, str | None]:
    """Undo content-encoding (gzip, deflate, br, zstd); returns (bytes, error or None)."""
    enc = (encoding or "").strip().lower()
    if not raw or enc in ("", "identity"):
        return raw, None
    try:
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(raw), None
        if enc == "deflate":
            try:
                return zlib.decompress(raw), None
            except zlib.error:
                return zlib.decompress(raw, -zlib.MAX_WBITS), None
        if enc == "br":
            import brotli

            return brotli.decompress(raw), None
        if enc == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj().decompress(raw), None
    except Exception as e:  # corrupt or truncated compressed body: keep the raw bytes
        return raw, f"undecodable {enc} body: {e}"
    return raw, f"unknown content-encoding {enc}"


def _json_or_none(data: bytes) -> tuple[object | None, str | None]:
    """Parse JSON strictly (no NaN/Infinity, which DuckDB's JSON type rejects)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        return json.loads(text, parse_constant=_reject), None
    except (ValueError, RecursionError):
        return None, "invalid_json"


def _reject(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def _error_type(status: int | None, body: object) -> str | None:
    if status is None or status < 400:
        return None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for k in ("type", "code"):
                v = err.get(k)
                if v not in (None, ""):
                    return str(v)
    return f"http_{status}"


@dataclass
class Capture:
    """Everything the proxy saw of one exchange, timestamps in ``perf_counter`` seconds."""

    wall_start: float  # time.time() at request start
    t_start: float  # perf_counter at request start
    method: str
    path: str  # path with query
    host: str
    request_headers: dict[str, str]
    request_raw: bytes | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    t_headers: float | None = None
    t_end: float | None = None
    body: bytes | None = None  # buffered response body (on the wire, maybe compressed)
    chunks: list[tuple[float, bytes]] | None = None  # streamed reads with arrival times
    streamed_bytes: int = 0
    truncated: bool = False
    request_truncated: bool = False
    error: str | None = None  # mitmproxy error message, if the flow ended in error
    client_disconnected: bool = False
    tag: str | None = None
    recorder_id: str | None = None
    salt: bytes = b""
    source: str = "proxy"
    id: str = ""

    def __call__(self) -> dict:
        return build_row(self)

    def fallback(self, err: Exception) -> dict:
        """A minimal row for an exchange whose full row could not be built."""
        return {
            "id": self.id,
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
    """Turn a capture into an ``exchanges`` row (see recorder/schema.py)."""
    path, _, query = c.path.partition("?")
    endpoint = classify(c.method, path)
    req_ct = c.request_headers.get("content-type", "")
    row: dict = {
        "id": c.id,
        "recorded_at": datetime.fromtimestamp(c.wall_start, UTC),
        "endpoint": endpoint,
        "method": c.method,
        "path": path,
        "query": clean_query(query),
        "status": c.status,
        "request_content_type": req_ct or None,
        "upstream_host": c.host,
        "tag": c.tag,
        "recorder_id": c.recorder_id,
        "source": c.source,
        "client_disconnected": c.client_disconnected,
        "truncated": c.truncated or c.request_truncated,
        "api_key_fingerprint": fingerprint(c.request_headers, c.salt),
        "request_headers": dumps({k: v for k, v in c.request_headers.items() if k in REQUEST_HEADERS_KEPT}),
        "response_headers": dumps(
            {k: v for k, v in c.response_headers.items() if k in RESPONSE_HEADERS_KEPT}
        ),
        "response_content_type": c.response_headers.get("content-type"),
        "request_id": c.response_headers.get("x-request-id") or c.response_headers.get("request-id"),
        "user_agent": c.request_headers.get("user-agent"),
        "ttfb_ms": _ms(c.t_headers, c.t_start),
        "latency_ms": _ms(c.t_end, c.t_start),
    }
    try:
        row["sdk_retry_count"] = int(c.request_headers.get("x-stainless-retry-count", ""))
    except ValueError:
        pass
    errors: list[tuple[str, str]] = []

    # Request
    raw_req, err = decode_body(c.request_raw or b"", c.request_headers.get("content-encoding"))
    if err:
        errors.append(("request_decode_error", err))
    row["request_bytes"] = len(raw_req)
    req_json = None
    if raw_req and "multipart/" not in req_ct and not c.request_truncated:
        req_json, jerr = _json_or_none(raw_req)
        if jerr and "json" in req_ct:
            errors.append((f"request_{jerr}", f"request body is not valid JSON ({len(raw_req)} bytes)"))
    if isinstance(req_json, (dict, list)):
        row["request_body"] = raw_req.decode("utf-8")
        if isinstance(req_json, dict):
            m = req_json.get("model")
            row["model"] = m if isinstance(m, str) else None
            row["stream"] = bool(req_json.get("stream"))
    elif raw_req:
        row["request_raw"] = raw_req
        if "multipart/" in req_ct:
            row["model"] = _multipart_field(raw_req, req_ct, "model")
            row["stream"] = (_multipart_field(raw_req, req_ct, "stream") or "").lower() == "true"
    row.setdefault("stream", False)

    # Response
    resp_ct = (c.response_headers.get("content-type") or "").lower()
    enc = c.response_headers.get("content-encoding")
    is_sse = "text/event-stream" in resp_ct
    body_bytes = b""
    if c.chunks is not None and is_sse:
        if enc and enc.lower() not in ("identity", ""):
            body_bytes, err = decode_body(b"".join(d for _, d in c.chunks), enc)
            chunks = [(c.chunks[-1][0] if c.chunks else c.t_start, body_bytes)]
            if err:
                errors.append(("response_decode_error", err))
        else:
            chunks = c.chunks
            body_bytes = b"".join(d for _, d in chunks)
        _stream_fields(row, endpoint, chunks, c, errors)
        row["stream"] = True
    else:
        raw = c.body if c.body is not None else b"".join(d for _, d in (c.chunks or []))
        body_bytes, err = decode_body(raw, enc)
        if err:
            errors.append(("response_decode_error", err))
        if body_bytes:
            parsed, jerr = (None, "truncated") if c.truncated else _json_or_none(body_bytes)
            if isinstance(parsed, (dict, list)):
                row["response_body"] = body_bytes.decode("utf-8")
                u = extract_usage(parsed if isinstance(parsed, dict) else None)
                row.update(
                    prompt_tokens=u.prompt,
                    completion_tokens=u.completion,
                    cached_tokens=u.cached,
                    reasoning_tokens=u.reasoning,
                    finish_reason=finish_reason(parsed if isinstance(parsed, dict) else None),
                )
                et = _error_type(c.status, parsed)
                if et:
                    errors.insert(0, (et, _error_message(parsed)))
            else:
                try:
                    row["response_raw"] = body_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    row["response_raw_bytes"] = body_bytes
                if c.status is not None and c.status >= 400:
                    errors.insert(
                        0, (f"http_{c.status}", row.get("response_raw", "")[:300] or "non-text error body")
                    )
                elif jerr and "json" in resp_ct:
                    errors.append(
                        (f"response_{jerr}", f"response body is not valid JSON ({len(body_bytes)} bytes)")
                    )
    row["response_bytes"] = len(body_bytes) if body_bytes else c.streamed_bytes
    if c.truncated:
        errors.append(("truncated", "a body exceeded the size limit and was truncated"))
    if c.error:
        kind = "client_disconnected" if c.client_disconnected else "upstream_error"
        if not (c.client_disconnected and row.get("stream_complete")):
            errors.insert(0, (kind, c.error))
    if errors:
        row["error_type"], row["error_message"] = errors[0]
    return row


def _error_message(body: object) -> str | None:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message") is not None:
            return str(err.get("message"))[:2000]
    return None


def _stream_fields(row: dict, endpoint: str, chunks, c: Capture, errors: list) -> None:
    events, parser = parse_all(chunks)
    ep = endpoint if endpoint in ("responses", "completions") else "chat.completions"
    res = reassemble(ep, events)
    raw = b"".join(d for _, d in chunks)
    row["response_raw"] = raw.decode("utf-8", errors="replace")
    row["response_body"] = dumps(res.body) if res.body is not None else None
    row["chunk_offsets_ms"] = [_ms(t, c.t_start) for t in res.event_times]
    row["n_events"] = len(events)
    if res.content_times:
        row["ttft_ms"] = _ms(res.content_times[0], c.t_start)
    if res.event_times:
        row["latency_ms"] = _ms(res.event_times[-1], c.t_start)
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
        errors.insert(0, ("stream_error", json.dumps(res.error)[:2000]))
    elif not res.complete and c.status is not None and c.status < 400:
        errors.append(("stream_truncated", "stream ended without [DONE] or a terminal event"))
    if parser.incomplete:
        errors.append(("stream_truncated", "stream ended inside an event"))


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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
