"""Redaction rules: the rules file, the built-in rules, the spec a Redactor is built from, the hook.

Rules file::

    builtin = ["email", "phone"]          # optional: built-in rules to enable
    [[rule]]
    name = "customer_id"                  # letters, digits, _ . -
    pattern = 'CUST-\\d{6}'               # Python regex
    replacement = "[REDACTED:customer]"   # optional, default "[REDACTED:<name>]"

Everything here is checked when the recorder starts: a bad file, an unknown built-in or a hook
that cannot be imported is one :class:`RedactionError` naming the problem. Where the rules apply
is told in :mod:`parity.recorder.redact`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from parity.wire.errors import ParityError


class RedactionError(ParityError):
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


CHECKS: dict[str, Callable[[str], bool]] = {"luhn": luhn, "ipv4": ipv4}


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


def _normalise_hook(hook: str) -> str:
    target, sep, fn = hook.rpartition(":")
    if not sep or not target or not fn:
        raise RedactionError(f"redaction hook {hook!r}: use module:function or path/to/file.py:function")
    if target.endswith(".py") or "/" in target:
        return f"{Path(target).resolve()}:{fn}"
    return hook


def load_hook(hook: str) -> tuple[Callable[[str], str], str | None]:
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
