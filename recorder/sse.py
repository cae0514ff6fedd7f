"""Incremental Server-Sent Events parser (the only owner of SSE framing).

Follows the WHATWG event-stream rules: lines end in ``\\r\\n``, ``\\n`` or ``\\r``;
``:`` starts a comment (keep-alives such as ``: PROCESSING``); ``data`` lines of one
event are joined by ``\\n``; a blank line dispatches. Chunk boundaries are arbitrary:
an event may be split across reads or several may share one, so each event is stamped
with the arrival time of the read that completed it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


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
        try:
            v = json.loads(self.data)
        except ValueError:
            return None
        return v if isinstance(v, dict) else None


class SSEParser:
    """Feed bytes as they arrive; get complete events back."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_pending_cr", "comments", "bytes_seen")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._pending_cr = False
        self.comments = 0
        self.bytes_seen = 0

    def feed(self, chunk: bytes, t: float) -> list[SSEEvent]:
        """Parse ``chunk`` (arrived at ``t``) and return the events it completed."""
        self.bytes_seen += len(chunk)
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
    """Parse a whole recorded stream of ``(arrival time, bytes)`` reads."""
    p = SSEParser()
    events: list[SSEEvent] = []
    for t, data in chunks:
        events.extend(p.feed(data, t))
    if chunks:
        events.extend(p.close(chunks[-1][0]))
    return events, p
