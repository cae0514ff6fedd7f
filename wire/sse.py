"""Incremental Server-Sent Events parser (the only owner of SSE framing).

Follows the WHATWG event-stream rules: lines end in ``\\r\\n``, ``\\n`` or ``\\r``;
``:`` starts a comment (keep-alives such as ``: PROCESSING``); ``data`` lines of one
event are joined by ``\\n``; a blank line dispatches. Chunk boundaries are arbitrary:
an event may be split across reads or several may share one, so each event is stamped
with the arrival time of the read that completed it.
"""

from __future__ import annotations

import json
import json.scanner
from dataclasses import dataclass


def _reject(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


# The C scanner behind json.loads, called directly: json.loads costs ~3 us of Python per call,
# and the recorder parses every event of every stream. NaN/Infinity are refused (DuckDB's JSON
# type rejects them, and so would the stored reassembled body).
_scan = json.scanner.make_scanner(json.JSONDecoder(parse_constant=_reject))
_JSON_SPACE = (" ", "\t", "\n", "\r")
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event; ``t`` is the arrival time of the bytes that completed it."""

    t: float
    data: str
    event: str | None = None
    id: str | None = None

    @property
    def is_done(self) -> bool:
        return self.data.strip() == "[DONE]"

    def json(self) -> dict | None:
        """The data as a JSON object, or None when it is not one."""
        s = self.data
        start = 0
        if s[:1] in _JSON_SPACE:  # the scanner does not skip leading whitespace (json.loads does)
            start = len(s) - len(s.lstrip(" \t\n\r"))
        try:
            v, end = _scan(s, start)
        except (StopIteration, ValueError, RecursionError):
            return None
        if end != len(s) and s[end:].strip():
            return None
        return v if isinstance(v, dict) else None


class SSEParser:
    """Feed bytes as they arrive; get complete events back."""

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "_id",
        "_pending_cr",
        "comments",
        "bytes_seen",
        "ended_inside_event",
        "_bom_done",
    )

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._pending_cr = False
        self.comments = 0
        self.bytes_seen = 0
        self.ended_inside_event = False  # set by close(): the stream stopped mid-event
        self._bom_done = False

    def feed(self, chunk: bytes, t: float) -> list[SSEEvent]:
        """Parse ``chunk`` (arrived at ``t``) and return the events it completed."""
        self.bytes_seen += len(chunk)
        if not chunk:
            return []
        if not self._bom_done:  # one leading U+FEFF is ignored (WHATWG), even split across reads
            head = self._buf + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._buf = head
                return []
            self._bom_done = True
            self._buf, chunk = b"", head[3:] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across reads
        self._pending_cr = False
        buf = self._buf + chunk
        out: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if nl == -1 and cr == -1:
                break
            if cr != -1 and (nl == -1 or cr < nl):
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
                else:
                    self._pending_cr = True
                    nxt = cr + 1
            else:
                end, nxt = nl, nl + 1
            self._line(buf[start:end], t, out)
            start = nxt
        self._buf = buf[start:]
        return out

    def close(self, t: float) -> list[SSEEvent]:
        """End of stream: a trailing event without its blank line is still returned."""
        out: list[SSEEvent] = []
        # Bytes held as a possible split byte order mark that never completed are data (an
        # unterminated line), as parse_all reads them.
        self.ended_inside_event = self.incomplete
        if self._buf:
            self._line(self._buf, t, out)
            self._buf = b""
        if self._data:
            out.append(SSEEvent(t, "\n".join(self._data), self._event, self._id))
            self._data, self._event = [], None
        return out

    @property
    def incomplete(self) -> bool:
        """True when bytes of an undispatched event are pending."""
        return bool(self._buf.strip() or self._data)

    def _line(self, raw: bytes, t: float, out: list[SSEEvent]) -> None:
        if not raw:
            if self._data:
                out.append(SSEEvent(t, "\n".join(self._data), self._event, self._id))
            self._data, self._event = [], None
            return
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            self.comments += 1
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value


def parse_all(chunks: list[tuple[float, bytes]]) -> tuple[list[SSEEvent], SSEParser]:
    """Parse a whole recorded stream of ``(arrival time, bytes)`` reads.

    Streams with ``\n`` line ends only (all OpenAI-style providers) take a fast path that
    splits whole reads; anything with ``\r`` goes through the incremental parser. Both give
    the same events with the same times.
    """
    p = SSEParser()
    if not chunks:
        return [], p
    chunks = _strip_bom(chunks)
    p._bom_done = True
    if any(b"\r" in d for _, d in chunks):
        events: list[SSEEvent] = []
        for t, data in chunks:
            events.extend(p.feed(data, t))
        events.extend(p.close(chunks[-1][0]))
        return events, p
    return _parse_lf(chunks, p), p


def _strip_bom(chunks: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """``chunks`` without one leading UTF-8 byte order mark (which may span the first reads)."""
    head = b""
    for _, d in chunks:  # the first three bytes, however many (empty) reads they span
        head += d[: 3 - len(head)]
        if len(head) == 3:
            break
    if head != _BOM:
        return chunks
    out, skip = [], 3
    for t, d in chunks:
        if skip:
            cut = min(skip, len(d))
            d, skip = d[cut:], skip - cut
        out.append((t, d))
    return out


def _parse_lf(chunks: list[tuple[float, bytes]], p: SSEParser) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    data: list[bytes] = []
    event: str | None = None
    ev_id: str | None = None
    rest = b""
    t = chunks[0][0]

    def line(raw: bytes) -> None:
        nonlocal data, event, ev_id
        if raw[:5] == b"data:":
            data.append(raw[6:] if raw[5:6] == b" " else raw[5:])
        elif raw[:1] == b":":
            p.comments += 1
        else:
            name, sep, value = raw.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"id":
                ev_id = value.decode("utf-8", "replace")

    for t, chunk in chunks:
        if not chunk:
            continue
        p.bytes_seen += len(chunk)
        lines = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = lines.pop()
        for raw in lines:
            if raw:
                line(raw)
            else:
                if data:
                    events.append(SSEEvent(t, b"\n".join(data).decode("utf-8", "replace"), event, ev_id))
                    data = []
                event = None
    p.ended_inside_event = bool(rest.strip() or data)
    t_last = chunks[-1][0]
    if rest:
        line(rest)
    if data:
        events.append(SSEEvent(t_last, b"\n".join(data).decode("utf-8", "replace"), event, ev_id))
    return events
