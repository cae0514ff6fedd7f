"""The request's own credentials in its row: a salted fingerprint of the key, and every echo scrubbed.

The headers and query parameters that carry secrets are listed in :mod:`parity.wire.credentials`;
here the values one request carried are found and replaced wherever the row repeats them (an
error body quoting the key, a URL echoed back...).
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

from parity.wire.credentials import REDACTED, SECRET_HEADERS, SECRET_QUERY


def fingerprint(headers: dict[str, str], salt: bytes) -> str | None:
    """Salted hash prefix of the API key, to group traffic by key without storing it."""
    for name in ("authorization", "api-key", "x-api-key", "x-goog-api-key"):
        v = headers.get(name)
        if v:
            key = v.split(" ", 1)[1] if v.lower().startswith("bearer ") else v
            return hashlib.sha256(salt + key.strip().encode()).hexdigest()[:16]
    return None


_SCRUBBED = (
    "query",
    "request_body",
    "request_headers",
    "response_body",
    "response_raw",
    "response_headers",
    "error_message",
    "request_raw",
    "response_raw_bytes",
)


def credential_values(headers: dict[str, str], query: str) -> list[str]:
    """The secrets this request carried (keys, tokens), so that echoes of them can be scrubbed."""
    vals = []
    for name in SECRET_HEADERS:
        v = headers.get(name)
        if v and name not in ("cookie", "set-cookie"):
            vals.append(v.split(" ", 1)[1] if v.lower().startswith(("bearer ", "basic ")) else v)
    if query:
        vals += [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in SECRET_QUERY]
    # Short values would scrub ordinary text; real keys are long.
    return sorted({v.strip() for v in vals if len(v.strip()) >= 8}, key=len, reverse=True)


def scrub(row: dict, secrets: list[str]) -> None:
    """Replace every echo of the request's own credentials (an error body quoting the key...) in ``row``."""
    for k in _SCRUBBED:
        v = row.get(k)
        if not v:
            continue
        for sec in secrets:
            if isinstance(v, str):
                if sec in v:
                    v = v.replace(sec, REDACTED)
            elif isinstance(v, (bytes, bytearray)):
                b = sec.encode()
                if b in v:
                    v = v.replace(b, REDACTED.encode())
        row[k] = v
