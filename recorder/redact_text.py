"""The matching engine of content redaction: the rules and the hook applied to a text or a JSON document.

A :class:`TextRedactor` compiles and checks the rules of a :class:`RedactionSpec` and loads its
hook. :meth:`TextRedactor.text` replaces every match (overlapping matches merged, so the order
of rules does not matter) and then calls the hook; :meth:`TextRedactor.json_text` does so for
every string value of a JSON document. Where these texts are found in a row (bodies, streams,
multipart uploads) is :class:`parity.recorder.redact.Redactor`'s part.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from parity.recorder.redaction_rules import CHECKS, RedactionError, RedactionSpec, Rule, load_hook
from parity.wire.reassemble import dumps

log = logging.getLogger("parity.redact")

HOOK_ERROR = "[REDACTED:hook-error]"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Keys whose string values in a response or stream event are only ever identifiers or enums the
# API defines, never content: not searched (a chat id is not a phone number, and skipping them
# halves the cost on streams). In a request only "model" is skipped: requests carry user-chosen
# keys (metadata), and a model name is no content.
SKIP_KEYS = frozenset(
    {"id", "object", "model", "role", "type", "finish_reason", "system_fingerprint", "status", "service_tier"}
)
REQUEST_SKIP_KEYS = frozenset({"model"})
_DIGIT = re.compile(r"\d")


@dataclass
class RowTally:
    """Counters for one row."""

    n: int = 0
    hook_failures: list[str] = field(default_factory=list)


class TextRedactor:
    """The rules and the hook of a spec, compiled and checked, applied to texts and JSON documents."""

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
            check = CHECKS.get(r.check) if r.check else None
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
            self.hook, self.hook_sha256 = load_hook(spec.hook)
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
        return (type(self), (self.spec,))

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

    def text(self, s: str, st: RowTally | None = None) -> str:
        """``s`` with every match replaced, then passed through the hook."""
        st = st if st is not None else RowTally()
        for _ in range(PASSES):
            spans = self.spans(s)
            if not spans:
                break
            s = _replace(s, spans)
            st.n += len(spans)
        return self._hook(s, st) if self.hook else s

    def _hook(self, s: str, st: RowTally) -> str:
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
    def json_text(self, text: str, st: RowTally, skip: frozenset = SKIP_KEYS) -> str | None:
        """A JSON document with its string values redacted; the same text when nothing changed."""
        try:
            doc = JSON_DECODER.decode(text)
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

    def _walk(self, doc, st: RowTally, skip: frozenset):
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


def _reject(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


JSON_DECODER = json.JSONDecoder(parse_constant=_reject)


# Matching again after a replacement finds what a match's end hid from a rule's look-behind
# ("a@b.coma@b.co"); replacements are never matched themselves, so this ends, and redacting
# the result again changes nothing. The bound only matters for rules that match across a
# placeholder's edge.
PASSES = 8


def _replace(s: str, spans: list[tuple[int, int, str]]) -> str:
    out, cur = [], 0
    for a, b, repl in spans:
        out += [s[cur:a], repl]
        cur = b
    out.append(s[cur:])
    return "".join(out)
