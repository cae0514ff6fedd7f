"""Optional redaction of message content before it is stored: regex rules and a hook.

A :class:`Redactor` is built from regex rules (a TOML file, and/or built-in rules enabled by
name) and an optional Python hook. :meth:`Redactor.apply_row` rewrites the content columns
of one ``exchanges`` row (``request_body``, ``request_raw``, ``response_body``,
``response_raw``, ``response_raw_bytes``, ``error_message``) and sets ``redactions`` and
``request_redactions``. It runs where rows are built (the writer process or thread, the
importer), so nothing unredacted reaches a segment or a spill file.

The rules file, the built-in rules and the hook are loaded and checked in
:mod:`parity.recorder.redaction_rules`; matching a text is :mod:`parity.recorder.redact_text`.

Where a rule applies:

- JSON bodies: every string value (never a key), so the JSON stays valid, except values of
  keys that only hold identifiers and enums (``SKIP_KEYS``; in requests only ``model``); an
  untouched body stays byte for byte as sent.
- SSE text (``response_raw`` of streams): each event's JSON is treated like a body, and the
  text a stream spells out piece by piece (``delta.content``, tool-call ``arguments``,
  Responses ``delta``...) is matched across events, so an e-mail split over three chunks is
  still found; the placeholder goes where the match starts.
- multipart (``request_raw`` of uploads): text fields and text-typed files; audio and image
  bytes are kept as they are.
- plain text bodies and error messages: the whole text.

All rules are matched against the original text and overlapping matches are merged, so the
order of rules does not matter. A rule's replacement may not be matched by any rule (checked
at start), which makes redacting twice the same as redacting once.

Hook contract: ``--redact-hook module:function`` or ``path/to/file.py:function``. The
function takes one ``str`` and returns a ``str``; it is called after the rules on every text
above (every JSON string value, each streamed channel's whole text), in the writer process,
so it must be pure, fast and idempotent. A stream channel the hook changes is stored whole in
its first event. If it raises or returns something else, that text is stored as
``[REDACTED:hook-error]`` (never the original), the row gets ``error_type =
'redaction_error'`` (or a note in ``error_message`` when it already had an error), and the
first failure is logged; the exception's message is never stored or logged (it may quote the
text).
"""

from __future__ import annotations

import json
import json.scanner
import logging
import os
import re
from collections.abc import Callable

from parity.recorder.redact_text import (
    HOOK_ERROR,
    JSON_DECODER,
    PASSES,
    REQUEST_SKIP_KEYS,
    SKIP_KEYS,
    RowTally,
    TextRedactor,
)
from parity.recorder.redaction_rules import spec_from_options
from parity.wire.reassemble import dumps

log = logging.getLogger("parity.redact")

WITHHELD = "[REDACTED:redaction-error]"
# Keys whose string values a stream spells out piece by piece, one piece per event.
STREAM_TEXT_KEYS = frozenset({"content", "refusal", "arguments", "text", "delta", "reasoning_content"})
# Top-level fields of a Responses/transcription event that tell its pieces apart.
_EVENT_KEYS = ("type", "item_id", "output_index", "content_index", "summary_index")


def build(
    rules_file: str | os.PathLike | None = None,
    builtin: str | list[str] | tuple[str, ...] | None = None,
    hook: str | None = None,
) -> Redactor | None:
    """A checked Redactor from the options, or None when no redaction was asked for."""
    spec = spec_from_options(rules_file, builtin, hook)
    return Redactor(spec) if spec else None


class Redactor(TextRedactor):
    """Applies the rules and the hook to the texts of a row: JSON, SSE, multipart, plain text."""

    # --- SSE ---
    def sse(self, text: str, st: RowTally) -> str:
        """An event stream's text: each event's JSON redacted, streamed text matched across events."""
        parts = _LINE_END.split(text)
        lines = parts[0::2]
        docs: dict[int, tuple[str, object, bool]] = {}
        channels: dict[tuple, list[tuple[int, object, object]]] = {}
        before = st.n
        for i, line in enumerate(lines):
            if not line:
                continue
            fname, sep, value = line.partition(":")
            lead = " " if value.startswith(" ") else ""
            value = value[len(lead) :]
            if fname == "data" and value[:1] in ("{", "["):
                try:
                    doc = _event_json(value)
                except (ValueError, RecursionError):
                    doc = None
                if isinstance(doc, (dict, list)):
                    n0 = st.n
                    self._event(doc, i, channels, st)
                    docs[i] = (f"{fname}:{lead}", doc, st.n != n0)
                    continue
            if sep:
                new = self.text(value, st)
                if new != value:
                    lines[i] = f"{fname}:{lead}{new}"
            else:
                lines[i] = self.text(line, st)
        dirty = {i for i, (_, _, changed) in docs.items() if changed}
        for refs in channels.values():
            pieces = [c[k] for _, c, k in refs]
            new = pieces
            for _ in range(PASSES):
                whole = "".join(new)
                spans = self.spans(whole)
                if not spans:
                    break
                new = _split_replace(whole, new, spans)
                st.n += len(spans)
            if self.hook:
                joined = "".join(new)
                hooked = self._hook(joined, st)
                if hooked != joined:
                    new = [hooked] + [""] * (len(new) - 1)
            for (i, c, k), old, piece in zip(refs, pieces, new, strict=True):
                if piece != old:
                    c[k] = piece
                    dirty.add(i)
        for i in dirty:
            prefix, doc, _ = docs[i]
            lines[i] = prefix + dumps(doc)
        if st.n == before:
            return text
        parts[0::2] = lines
        return "".join(parts)

    def _event(self, doc, i: int, channels: dict, st: RowTally) -> None:
        """Redact one event's JSON now, except streamed text pieces, which go to their channel."""
        head = ()
        if type(doc) is dict and "type" in doc:  # Responses / transcription events
            head = tuple((k, doc[k]) for k in _EVENT_KEYS if type(doc.get(k)) in (str, int))
        # Runs for every event of every stream: plain loops and type() checks, no helpers.
        stack = [(doc, ())]
        while stack:
            node, path = stack.pop()
            is_list = type(node) is list
            for k, v in enumerate(node) if is_list else node.items():
                t = type(v)
                if t is str:
                    if k in SKIP_KEYS:
                        continue
                    if k in STREAM_TEXT_KEYS:
                        channels.setdefault((head, path, k), []).append((i, node, k))
                    else:
                        new = self.text(v, st)
                        if new is not v:
                            node[k] = new  # a value of an existing key: safe while iterating
                elif t is dict or t is list:
                    # list items are told apart by their "index" field (choices, tool calls), not position
                    step = k
                    if is_list and t is dict:
                        idx = v.get("index")
                        if type(idx) in (int, str):
                            step = idx
                    stack.append((v, (*path, step)))

    # --- bytes and multipart ---
    def raw_bytes(self, raw: bytes, st: RowTally) -> bytes:
        """A non-JSON body: redacted as text, undecodable bytes kept as they are."""
        s = raw.decode("utf-8", "surrogateescape")
        new = self.text(s, st)
        if new == s:
            return raw
        try:
            return new.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return new.encode("utf-8", "replace")

    def multipart(self, raw: bytes, content_type: str, st: RowTally) -> bytes:
        """Text fields and text-typed files of a multipart body; other parts byte for byte."""
        boundary = None
        for part in content_type.split(";"):
            k, _, v = part.strip().partition("=")
            if k.strip().lower() == "boundary" and v.strip():
                boundary = v.strip().strip('"')
        if not boundary:
            return self.raw_bytes(raw, st)
        delim = b"--" + boundary.encode("latin-1", "replace")
        out, pos = [], raw.find(delim)
        if pos == -1:
            return self.raw_bytes(raw, st)
        out.append(self.raw_bytes(raw[:pos], st))  # preamble (should be empty)
        while pos != -1:
            head_start = pos + len(delim)
            head_end = raw.find(b"\r\n\r\n", head_start)
            if raw[head_start : head_start + 2] == b"--" or head_end == -1:  # the end, or a cut body
                out += [delim, self.raw_bytes(raw[head_start:], st)]
                break
            nxt = raw.find(b"\r\n" + delim, head_end + 4)
            end = len(raw) if nxt == -1 else nxt
            head, value = raw[head_start : head_end + 4], raw[head_end + 4 : end]
            out += [delim, head, self._part(head, value, st)]
            pos = -1 if nxt == -1 else nxt + 2
            if nxt != -1:
                out.append(b"\r\n")
        return b"".join(out)

    def _part(self, head: bytes, value: bytes, st: RowTally) -> bytes:
        h = head.lower()
        ctype = re.search(rb"content-type:\s*([^\r\n;]+)", h)
        kind = ctype.group(1).strip() if ctype else b""
        if b"filename" in h and not (kind.startswith(b"text/") or b"json" in kind or b"xml" in kind):
            return value  # audio, images: bytes we cannot read
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return value if b"filename" in h else self.raw_bytes(value, st)
        if b"json" in kind:
            lines = text.split("\n")  # JSON or JSON Lines (batch input files)
            out = []
            for line in lines:
                body = line.rstrip("\r")
                new = self.json_text(body, st, REQUEST_SKIP_KEYS) if body.strip()[:1] in ("{", "[") else None
                out.append(self.text(line, st) if new is None else new + line[len(body) :])
            return "\n".join(out).encode("utf-8")
        return self.text(text, st).encode("utf-8")

    # --- rows ---
    def apply_row(self, row: dict) -> dict:
        """Redact the content columns of an ``exchanges`` row in place; never raises."""
        st = RowTally()
        had_body = row.get("request_body") is not None
        self._guard(row, "request_body", st, lambda v: self.json_text(v, st, REQUEST_SKIP_KEYS))
        if row.get("request_raw"):
            ct = row.get("request_content_type") or ""
            if had_body:  # the exact bytes of the JSON body (kept when it had to be re-encoded)
                if st.n:
                    row["request_raw"] = None
            elif "multipart/" in ct.lower():
                self._guard(row, "request_raw", st, lambda v: self.multipart(v, ct, st))
            else:
                self._guard(row, "request_raw", st, lambda v: self.raw_bytes(v, st))
        req = st.n
        self._guard(row, "response_body", st, lambda v: self.json_text(v, st))
        sse = "text/event-stream" in (row.get("response_content_type") or "").lower()
        self._guard(row, "response_raw", st, lambda v: self.sse(v, st) if sse else self.text(v, st))
        if row.get("response_raw_bytes"):
            if row.get("response_body") is not None or row.get("response_raw") is not None:
                if st.n > req:  # the exact bytes of a text just changed
                    row["response_raw_bytes"] = None
            else:
                self._guard(row, "response_raw_bytes", st, lambda v: self.raw_bytes(v, st))
        self._guard(row, "error_message", st, lambda v: self.text(v, st))
        row["redactions"] = min(st.n, 2**31 - 1)
        row["request_redactions"] = min(req, 2**31 - 1)
        if st.hook_failures:
            kinds = ", ".join(sorted(set(st.hook_failures)))
            note = (
                f"redaction hook {self.spec.hook} failed on {len(st.hook_failures)} texts ({kinds}); "
                f"they are stored as {HOOK_ERROR}"
            )
            if row.get("error_type") is None:
                row["error_type"], row["error_message"] = "redaction_error", note
            else:
                row["error_message"] = f"{row.get('error_message') or ''} [{note}]"
        return row

    def _guard(self, row: dict, col: str, st: RowTally, fn: Callable) -> None:
        v = row.get(col)
        if not v:
            return
        try:
            row[col] = fn(v)
        except Exception as e:  # a bug here must not store the original: withhold the column
            log.warning("parity redaction: %s withheld (%s)", col, type(e).__name__)
            row[col] = WITHHELD if col == "error_message" else None
            st.n += 1


_SCAN = json.scanner.make_scanner(JSON_DECODER)  # the C scanner: json.loads costs ~3 us per event more


def _event_json(value: str):
    """An event's data as JSON (strict), or ValueError."""
    try:
        doc, end = _SCAN(value, 0)
    except StopIteration as e:
        raise ValueError("not JSON") from e
    if end != len(value) and value[end:].strip():
        raise ValueError("extra data")
    return doc


_LINE_END = re.compile(r"(\r\n|\r|\n)")


def _split_replace(whole: str, pieces: list[str], spans: list[tuple[int, int, str]]) -> list[str]:
    """Apply ``spans`` of ``whole`` to the pieces it was joined from; a placeholder goes where its match starts."""
    out, pos, si = [], 0, 0
    for p in pieces:
        a, b = pos, pos + len(p)
        while si < len(spans) and spans[si][1] <= a:
            si += 1
        buf, cur, j = [], a, si
        while j < len(spans) and spans[j][0] < b:
            s, e, repl = spans[j]
            if s >= a:
                buf += [whole[cur:s], repl]
            cur = max(cur, min(e, b))
            j += 1
        buf.append(whole[cur:b])
        out.append("".join(buf))
        pos = b
    return out
