"""Multipart bodies (audio uploads): read one text field, or rewrite it byte-exactly.

Only the value bytes of the named field change; the boundary, part headers, file
bytes and every CRLF stay exactly as recorded.
"""

from __future__ import annotations

import re

_NAME = re.compile(rb'\bname\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)


def boundary_of(content_type: str | None) -> str | None:
    """The boundary parameter of a multipart content-type, None when absent."""
    for part in (content_type or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k.strip().lower() == "boundary" and v.strip():
            return v.strip().strip('"')
    return None


def _field_span(raw: bytes, boundary: str, name: str) -> tuple[int, int] | None:
    """Start and end offsets of the value of text field ``name``, None when it is not there."""
    try:
        delim = b"--" + boundary.encode("latin-1")
    except UnicodeEncodeError:  # not a boundary that can occur in the bytes
        return None
    pos = raw.find(delim)
    while pos != -1:
        head_start = pos + len(delim)
        if raw[head_start : head_start + 2] == b"--":
            return None  # closing delimiter
        head_end = raw.find(b"\r\n\r\n", head_start)
        if head_end == -1:
            return None
        nxt = raw.find(b"\r\n" + delim, head_end + 4)
        if nxt == -1:
            return None
        head = raw[head_start:head_end]
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition:") and b"filename" not in line.lower():
                m = _NAME.search(line)
                if m and (m.group(1) or m.group(2) or b"").decode("utf-8", "replace") == name:
                    return head_end + 4, nxt
        pos = nxt + 2
    return None


def field_value(raw: bytes, content_type: str | None, name: str) -> str | None:
    """The value of text field ``name``."""
    boundary = boundary_of(content_type)
    span = _field_span(raw, boundary, name) if boundary else None
    return raw[span[0] : span[1]].decode("utf-8", "replace") if span else None


def replace_field(raw: bytes, content_type: str | None, name: str, value: str) -> tuple[bytes, str | None]:
    """``raw`` with field ``name`` set to ``value``; returns (new bytes, old value or None if absent)."""
    boundary = boundary_of(content_type)
    span = _field_span(raw, boundary, name) if boundary else None
    if span is None:
        return raw, None
    old = raw[span[0] : span[1]].decode("utf-8", "replace")
    return raw[: span[0]] + value.encode("utf-8") + raw[span[1] :], old
