"""Optional redaction of message content before it is stored: regex rules and a hook.

A :class:`Redactor` is built from regex rules (a TOML file, and/or built-in rules enabled by
name) and an optional Python hook. :meth:`Redactor.apply_row` rewrites the content columns
of one ``exchanges`` row (``request_body``, ``request_raw``, ``response_body``,
``response_raw``, ``response_raw_bytes``, ``error_message``) and sets ``redactions`` and
``request_redactions``. It runs where rows are built (the writer process or thread, the
importer), so nothing unredacted reaches a segment or a spill file.

Rules file::

    builtin = ["email", "phone"]          # optional: built-in rules to enable
    [[rule]]
    name = "customer_id"                  # letters, digits, _ . -
    pattern = 'CUST-\\d{6}'               # Python regex
    replacement = "[REDACTED:customer]"   # optional, default "[REDACTED:<name>]"

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

import hashlib
import importlib
import importlib.util
import json
import json.scanner
import logging
import os
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from parity.wire.reassemble import dumps

log = logging.getLogger("parity.redact")

HOOK_ERROR = "[REDACTED:hook-error]"
WITHHELD = "[REDACTED:redaction-error]"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Keys whose string values a stream spells out piece by piece, one piece per event.
STREAM_TEXT_KEYS = frozenset({"content", "refusal", "arguments", "text", "delta", "reasoning_content"})
# Keys whose string values in a response or stream event are only ever identifiers or enums the
# API defines, never content: not searched (a chat id is not a phone number, and skipping them
# halves the cost on streams). In a request only "model" is skipped: requests carry user-chosen
# keys (metadata), and a model name is no content.
SKIP_KEYS = frozenset(
    {"id", "object", "model", "role", "type", "finish_reason", "system_fingerprint", "status", "service_tier"}
)
REQUEST_SKIP_KEYS = frozenset({"model"})
# Top-level fields of a Responses/transcription event that tell its pieces apart.
_EVENT_KEYS = ("type", "item_id", "output_index", "content_index", "summary_index")


class RedactionError(Exception):
    """The redaction rules cannot be used (bad file, bad regex, unknown built-in, missing hook)."""


def luhn(digits: str) -> bool:
    """Luhn checksum of the digits in ``digits`` (card numbers)."""
    nums = [int(c) for c in digits if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(nums)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return len(nums) >= 13 and total % 10 == 0


def ipv4(text: str) -> bool:
    """Four octets of 0..255 without leading zeros."""
    return all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in text.split("."))


_CHECKS: dict[str, Callable[[str], bool]] = {"luhn": luhn, "ipv4": ipv4}
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class Rule:
    """One regex rule; ``check`` names a validator a match must pass (``luhn``).

    ``hint`` (built-ins) is a literal every match contains, or ``\\d`` for "a digit": a text
    without it is not searched at all.
    """

    name: str
    pattern: str
    replacement: str = ""
    check: str | None = None
    builtin: bool = False
    hint: str | None = None

    def public(self) -> dict:
        out = {"name": self.name, "pattern": self.pattern, "replacement": self.replacement}
        if self.check:
            out["check"] = self.check
        if self.builtin:
            out["builtin"] = True
        return out


# A match may only start where a token starts (the look-behinds): without that, a long run of
# letters (a base64 image) costs quadratic time. The look-behind comes after the first character,
# so that the regex engine can skip to candidate first characters instead of trying every position
# (five to eight times faster on prose).
BUILTIN: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "email",
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            builtin=True,
            hint="@",
        ),
        Rule(
            "phone",  # +CC, (area) or digits first; 8+ digits in groups of 2-4
            r"[+(\d](?<![\w+.,/-][+(\d])"
            r"(?:(?<=\+)\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?\d{3,4}|\d{2,4}[ .-]?\d{3,4})"
            r"|(?<=\()\d{1,4}\)[ .-]?\d{3,4}|(?<=\d)\d{1,3}[ .-]?\d{3,4})"
            r"[ .-]?\d{3,4}(?!\w|[.,]\d)",
            builtin=True,
            hint="\\d",
        ),
        Rule(
            "credit_card",
            r"\d(?<![\d-]\d)(?:[ -]?\d){12,18}(?!\d)",
            check="luhn",
            builtin=True,
            hint="\\d",
        ),
        Rule(
            "ipv4",
            r"\d(?<![\d.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\d|\.\d)",
            check="ipv4",
            builtin=True,
            hint="\\d",
        ),
        Rule("openai_key", r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}", builtin=True, hint="sk-"),
    )
}


@dataclass(frozen=True)
class RedactionSpec:
    """What a Redactor is built from; picklable, so the writer process rebuilds the same one."""

    rules: tuple[Rule, ...] = ()
    hook: str | None = None  # module:function or /abs/path/file.py:function
    rules_file: str | None = None  # where the file rules came from (for the record)


def load_rules_file(path: str | os.PathLike) -> tuple[list[Rule], list[str]]:
    """Rules and built-in names of a TOML rules file; RedactionError naming the problem."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise RedactionError(f"redaction rules {p}: cannot read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RedactionError(f"redaction rules {p}: not valid TOML ({e})") from None
    unknown = set(doc) - {"rule", "builtin"}
    if unknown:
        raise RedactionError(
            f"redaction rules {p}: unknown key(s) {sorted(unknown)}; use [[rule]] and builtin"
        )
    builtin = doc.get("builtin", [])
    if not isinstance(builtin, list) or not all(isinstance(b, str) for b in builtin):
        raise RedactionError(f"redaction rules {p}: builtin must be a list of names")
    items = doc.get("rule", [])
    if not isinstance(items, list):
        raise RedactionError(f"redaction rules {p}: use [[rule]] tables")
    rules = []
    for i, item in enumerate(items, 1):
        where = f"redaction rules {p}, rule {i}"
        extra = set(item) - {"name", "pattern", "replacement"}
        if extra:
            raise RedactionError(f"{where}: unknown key(s) {sorted(extra)} (name, pattern, replacement)")
        name, pattern = item.get("name"), item.get("pattern")
        if not isinstance(name, str) or not isinstance(pattern, str) or not pattern:
            raise RedactionError(f"{where}: needs a name and a non-empty pattern (strings)")
        repl = item.get("replacement", "")
        if not isinstance(repl, str):
            raise RedactionError(f"{where} ({name}): replacement must be a string")
        rules.append(Rule(name, pattern, repl))
    return rules, builtin


def spec_from_options(
    rules_file: str | os.PathLike | None = None,
    builtin: str | list[str] | tuple[str, ...] | None = None,
    hook: str | None = None,
) -> RedactionSpec | None:
    """The spec the options ask for (None when they ask for no redaction); RedactionError if invalid."""
    names = [b.strip() for b in (builtin.split(",") if isinstance(builtin, str) else builtin or ())]
    names = [b for b in names if b]
    rules: list[Rule] = []
    source = None
    if rules_file:
        source = str(Path(rules_file).resolve())
        file_rules, file_builtin = load_rules_file(rules_file)
        rules += file_rules
        names += file_builtin
    for n in names:
        if n not in BUILTIN:
            raise RedactionError(f"unknown built-in redaction rule {n!r}; choose from {', '.join(BUILTIN)}")
    rules = [BUILTIN[n] for n in dict.fromkeys(names)] + rules
    hook = (hook or "").strip() or None
    if hook:
        hook = _normalise_hook(hook)
    if not rules and not hook:
        return None
    return RedactionSpec(tuple(rules), hook, source)


def build(
    rules_file: str | os.PathLike | None = None,
    builtin: str | list[str] | tuple[str, ...] | None = None,
    hook: str | None = None,
) -> Redactor | None:
    """A checked Redactor from the options, or None when no redaction was asked for."""
    spec = spec_from_options(rules_file, builtin, hook)
    return Redactor(spec) if spec else None


def _normalise_hook(hook: str) -> str:
    target, sep, fn = hook.rpartition(":")
    if not sep or not target or not fn:
        raise RedactionError(f"redaction hook {hook!r}: use module:function or path/to/file.py:function")
    if target.endswith(".py") or "/" in target:
        return f"{Path(target).resolve()}:{fn}"
    return hook


def _load_hook(hook: str) -> tuple[Callable[[str], str], str | None]:
    """The hook function and a hash of its source file (None when unknown)."""
    target, _, fn_name = hook.rpartition(":")
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.is_file():
                raise RedactionError(f"redaction hook {hook!r}: no file {path}")
            name = "parity_redact_hook_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:  # `parity record` is a console script: cwd is not on the path
                sys.path.append(os.getcwd())
            module = importlib.import_module(target)
    except RedactionError:
        raise
    except Exception as e:
        raise RedactionError(
            f"redaction hook {hook!r}: cannot import {target} ({type(e).__name__}: {e})"
        ) from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise RedactionError(f"redaction hook {hook!r}: {target} has no function {fn_name}")
    try:
        src = Path(getattr(module, "__file__", "") or "")
        digest = hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file() else None
    except OSError:
        digest = None
    return fn, digest


@dataclass
class _Row:
    """Counters for one row."""

    n: int = 0
    hook_failures: list[str] = field(default_factory=list)


class Redactor:
    """Applies the rules and the hook to text, JSON, SSE and multipart; built and checked from a spec."""

    def __init__(self, spec: RedactionSpec) -> None:
        self.spec = spec
        self.rules: list[tuple[re.Pattern, str, Callable[[str], bool] | None, Rule]] = []
        seen = set()
        for r in spec.rules:
            if not _NAME.match(r.name):
                raise RedactionError(f"redaction rule name {r.name!r}: use letters, digits, _ . - (max 64)")
            if r.name in seen:
                raise RedactionError(f"redaction rule {r.name!r} is given twice")
            seen.add(r.name)
            try:
                rx = re.compile(r.pattern)
            except re.error as e:
                raise RedactionError(f"redaction rule {r.name!r}: bad regex {r.pattern!r}: {e}") from None
            if rx.fullmatch(""):
                raise RedactionError(f"redaction rule {r.name!r}: pattern {r.pattern!r} matches empty text")
            check = _CHECKS.get(r.check) if r.check else None
            self.rules.append((rx, r.replacement or f"[REDACTED:{r.name}]", check, r))
        for _, repl, _, r in self.rules:  # redacting twice must equal redacting once
            hit = next((o.name for rx, _, _, o in self.rules if rx.search(repl)), None)
            if hit:
                raise RedactionError(
                    f"redaction rule {r.name!r}: its replacement {repl!r} is matched by rule {hit!r}; "
                    "choose a replacement no rule matches"
                )
        self.hook: Callable[[str], str] | None = None
        self.hook_sha256: str | None = None
        if spec.hook:
            self.hook, self.hook_sha256 = _load_hook(spec.hook)
            try:
                ok = isinstance(self.hook("parity redaction self-test"), str)
            except Exception as e:
                raise RedactionError(
                    f"redaction hook {spec.hook!r} failed on a test string ({type(e).__name__})"
                ) from None
            if not ok:
                raise RedactionError(f"redaction hook {spec.hook!r} must return a str")
        self.hook_errors = 0

    def __reduce__(self):  # the hook may not pickle: rebuild from the spec in the other process
        return (Redactor, (self.spec,))

    def describe(self) -> dict:
        """The rule set as stored in ``recordings.options`` (names, patterns, hook; a hash of all)."""
        out = {
            "rules": [{**r.public(), "replacement": repl} for _, repl, _, r in self.rules],
            "hook": self.spec.hook,
            "hook_sha256": self.hook_sha256,
        }
        out["hash"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
        return {**out, "rules_file": self.spec.rules_file}

    # --- text ---
    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Matches of every rule in ``text``, overlapping ones merged: (start, end, replacement)."""
        found = []
        digits = None
        for rx, repl, check, rule in self.rules:
            if rule.hint is not None:
                if rule.hint == "\\d":
                    if digits is None:
                        digits = _DIGIT.search(text) is not None
                    if not digits:
                        continue
                elif rule.hint not in text:
                    continue
            for m in rx.finditer(text):
                if m.end() > m.start() and (check is None or check(m.group())):
                    found.append((m.start(), m.end(), repl))
        if not found:
            return found
        found.sort(key=lambda s: (s[0], -s[1]))
        merged = [found[0]]
        for s, e, repl in found[1:]:
            ms, me, mrepl = merged[-1]
            if s < me:
                merged[-1] = (ms, max(me, e), mrepl)
            else:
                merged.append((s, e, repl))
        return merged

    def text(self, s: str, st: _Row | None = None) -> str:
        """``s`` with every match replaced, then passed through the hook."""
        st = st if st is not None else _Row()
        for _ in range(_PASSES):
            spans = self.spans(s)
            if not spans:
                break
            s = _replace(s, spans)
            st.n += len(spans)
        return self._hook(s, st) if self.hook else s

    def _hook(self, s: str, st: _Row) -> str:
        try:
            out = self.hook(s)
            if not isinstance(out, str):
                raise TypeError(f"returned {type(out).__name__}, not str")
        except Exception as e:
            self.hook_errors += 1
            st.hook_failures.append(type(e).__name__)
            st.n += 1
            if self.hook_errors == 1:
                log.warning(
                    "parity redaction: hook %s raised %s; such texts are stored as %s (logged once, counted after)",
                    self.spec.hook,
                    type(e).__name__,
                    HOOK_ERROR,
                )
            return HOOK_ERROR
        if out != s:
            st.n += 1
        return out

    # --- JSON ---
    def json_text(self, text: str, st: _Row, skip: frozenset = SKIP_KEYS) -> str | None:
        """A JSON document with its string values redacted; the same text when nothing changed."""
        try:
            doc = _DECODER.decode(text)
        except (ValueError, RecursionError):
            st.n += 1  # cannot see inside: do not keep it
            return None
        before = st.n
        doc = self._walk(doc, st, skip)
        if st.n == before:
            return text
        try:
            return dumps(doc)
        except ValueError:
            return None

    def _walk(self, doc, st: _Row, skip: frozenset):
        if isinstance(doc, str):
            return self.text(doc, st)
        if not isinstance(doc, (dict, list)):
            return doc
        stack = [doc]
        while stack:  # iterative: request bodies may nest deeper than Python's recursion limit
            node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in list(items):
                if isinstance(v, str):
                    if k not in skip:
                        new = self.text(v, st)
                        if new is not v:
                            node[k] = new
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        return doc

    # --- SSE ---
    def sse(self, text: str, st: _Row) -> str:
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
            for _ in range(_PASSES):
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

    def _event(self, doc, i: int, channels: dict, st: _Row) -> None:
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
    def raw_bytes(self, raw: bytes, st: _Row) -> bytes:
        """A non-JSON body: redacted as text, undecodable bytes kept as they are."""
        s = raw.decode("utf-8", "surrogateescape")
        new = self.text(s, st)
        if new == s:
            return raw
        try:
            return new.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return new.encode("utf-8", "replace")

    def multipart(self, raw: bytes, content_type: str, st: _Row) -> bytes:
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

    def _part(self, head: bytes, value: bytes, st: _Row) -> bytes:
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
        st = _Row()
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

    def _guard(self, row: dict, col: str, st: _Row, fn: Callable) -> None:
        v = row.get(col)
        if not v:
            return
        try:
            row[col] = fn(v)
        except Exception as e:  # a bug here must not store the original: withhold the column
            log.warning("parity redaction: %s withheld (%s)", col, type(e).__name__)
            row[col] = WITHHELD if col == "error_message" else None
            st.n += 1


def _reject(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject)
_SCAN = json.scanner.make_scanner(_DECODER)  # the C scanner: json.loads costs ~3 us per event more


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
# Matching again after a replacement finds what a match's end hid from a rule's look-behind
# ("a@b.coma@b.co"); replacements are never matched themselves, so this ends, and redacting
# the result again changes nothing. The bound only matters for rules that match across a
# placeholder's edge.
_PASSES = 8


def _replace(s: str, spans: list[tuple[int, int, str]]) -> str:
    out, cur = [], 0
    for a, b, repl in spans:
        out += [s[cur:a], repl]
        cur = b
    out.append(s[cur:])
    return "".join(out)


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
