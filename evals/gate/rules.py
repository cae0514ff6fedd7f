"""``parity check``'s rule language: conditions over the summary figures that fail a CI build.

Grammar (keywords and ``true``/``false`` are case-insensitive)::

    rule       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := atom ("and" atom)*
    atom       := "(" or_expr ")" | comparison
    comparison := FIGURE OP VALUE
    OP         := ">" | ">=" | "<" | "<=" | "==" | "!="
    VALUE      := number (e.g. 20, -5, 0.05, 1e-3) | true | false

A FIGURE is a name of ``evals.FIGURES``. Numeric figures compare with numbers, boolean figures
(``is_baseline``, ``significant_slower``, ``significant_faster``) with ``true``/``false`` and
``==``/``!=`` only. A rule describes the failure: when it holds for a provider, the check fails.

A figure without a value (null: no data for that provider) makes its comparison unknown; ``and``
and ``or`` follow three-valued logic (false and unknown = false, true or unknown = true). A rule
whose outcome is unknown fails with "no data", unless missing data is allowed.

Parsing is a small recursive-descent parser over a tokenizer: nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
from dataclasses import dataclass

from parity.evals.errors import EvalError
from parity.evals.figures import BOOL_FIGURES, FIGURES, STR_FIGURES

OPS = (">=", "<=", "==", "!=", ">", "<")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])"
    r"|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<paren>[()])"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


class RuleError(EvalError):
    """A rule that cannot be parsed or refers to an unknown figure."""


class UnknownFigure(RuleError):
    """A rule names a figure that ``evals.FIGURES`` does not define."""

    def __init__(self, name: str, rule: str) -> None:
        self.name = name
        self.suggestions = difflib.get_close_matches(name, list(FIGURES), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"unknown figure {name!r} in rule {rule!r}{hint} (all names: parity check --list-figures)"
        )


@dataclass(frozen=True)
class Compare:
    """``figure op value``."""

    figure: str
    op: str
    value: float | bool


@dataclass(frozen=True)
class BoolOp:
    """``and`` / ``or`` over two or more parts."""

    op: str
    parts: tuple[Node, ...]


Node = Compare | BoolOp


@dataclass(frozen=True)
class Rule:
    """A parsed rule and its source text."""

    text: str
    root: Node

    @property
    def figures(self) -> list[str]:
        """Every figure the rule reads, in order of appearance."""
        out: list[str] = []

        def walk(n: Node) -> None:
            if isinstance(n, Compare):
                if n.figure not in out:
                    out.append(n.figure)
            else:
                for p in n.parts:
                    walk(p)

        walk(self.root)
        return out


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = text[pos:].strip()[:12]
            raise RuleError(f'cannot read {bad!r} in rule {text!r}; use e.g. "ttft_p95_delta_pct > 20"')
        kind = m.lastgroup or ""
        val = m.group(kind)
        if kind == "word" and val.lower() in ("and", "or", "true", "false"):
            kind, val = val.lower(), val.lower()
        out.append((kind, val))
        pos = m.end()
    return out


MAX_NESTING = 50  # parentheses; deeper rules are an error, not a RecursionError


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str, what: str) -> str:
        t = self.peek()
        if t is None or t[0] != kind:
            found = "the end of the rule" if t is None else repr(t[1])
            raise RuleError(f"expected {what} but found {found} in rule {self.text!r}")
        self.i += 1
        return t[1]

    def parse(self) -> Node:
        if not self.toks:
            raise RuleError('empty rule; use e.g. "ttft_p95_delta_pct > 20"')
        node = self.or_expr()
        if self.peek() is not None:
            raise RuleError(
                f"unexpected {self.peek()[1]!r} in rule {self.text!r} (join conditions with and / or)"
            )
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.peek() and self.peek()[0] == "or":
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Node:
        parts = [self.atom()]
        while self.peek() and self.peek()[0] == "and":
            self.i += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def atom(self) -> Node:
        t = self.peek()
        if t and t == ("paren", "("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise RuleError(f"rule nests parentheses deeper than {MAX_NESTING} levels")
            self.i += 1
            node = self.or_expr()
            self.take("paren", "')'")
            self.depth -= 1
            return node
        name = self.take("word", "a figure name")
        if name not in FIGURES:
            raise UnknownFigure(name, self.text)
        op = self.take("op", f"an operator ({' '.join(OPS)}) after {name}")
        t = self.peek()
        if t is None or t[0] not in ("num", "true", "false"):
            found = "the end of the rule" if t is None else repr(t[1])
            raise RuleError(f"expected a number, true or false after {name} {op} but found {found}")
        self.i += 1
        if name in STR_FIGURES:
            raise RuleError(f"figure {name!r} is text ({FIGURES[name]}); it cannot be compared")
        if name in BOOL_FIGURES:
            if t[0] == "num":
                raise RuleError(
                    f"figure {name!r} is true/false: compare it with true or false, e.g. {name} == true"
                )
            if op not in ("==", "!="):
                raise RuleError(f"figure {name!r} is true/false: use == or !=, not {op}")
            return Compare(name, op, t[0] == "true")
        if t[0] != "num":
            raise RuleError(f"figure {name!r} is a number: compare it with a number, not {t[1]}")
        return Compare(name, op, float(t[1]))


def parse(text: str) -> Rule:
    """Parse one rule; RuleError (UnknownFigure for a bad name) says what is wrong."""
    return Rule(text.strip(), _Parser(text).parse())


def _cmp(v: float | bool, op: str, ref: float | bool) -> bool:
    if op == ">":
        return v > ref
    if op == ">=":
        return v >= ref
    if op == "<":
        return v < ref
    if op == "<=":
        return v <= ref
    if op == "==":
        return v == ref
    return v != ref


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def eval_rule(node: Node, row: dict) -> bool | None:
    """True / False, or None when the outcome depends on a figure without a value."""
    if isinstance(node, Compare):
        v = row.get(node.figure)
        return None if _missing(v) else _cmp(v, node.op, node.value)
    vals = [eval_rule(p, row) for p in node.parts]
    if node.op == "and":
        if any(v is False for v in vals):
            return False
        return None if any(v is None for v in vals) else True
    if any(v is True for v in vals):
        return True
    return None if any(v is None for v in vals) else False


def fmt_value(v: object) -> str:
    """A figure's value as the check prints it: 34.2, 0.875, 3, true, no data."""
    if _missing(v):
        return "no data"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.3g}"
    return str(v)


def explain(node: Node, row: dict) -> str:
    """Why ``node`` holds for ``row``: the comparisons that made it true, with their values."""
    if isinstance(node, Compare):
        return f"{node.figure} = {fmt_value(row.get(node.figure))} {node.op} {fmt_value(node.value)}"
    if node.op == "and":
        return " and ".join(_wrap(explain(p, row), p) for p in node.parts)
    return " or ".join(_wrap(explain(p, row), p) for p in node.parts if eval_rule(p, row) is True)


def _wrap(text: str, node: Node) -> str:
    return f"({text})" if isinstance(node, BoolOp) and node.op == "or" else text


@dataclass
class RuleOutcome:
    """One rule on one provider."""

    provider: str
    rule: Rule
    failed: bool
    line: str


def check(
    rules: list[Rule], summary: list[dict], providers: list[str], allow_missing: bool = False
) -> list[RuleOutcome]:
    """Apply every rule to every provider's summary row; one RuleOutcome (with its printed line) each."""
    rows = {r["provider"]: r for r in summary}
    out = []
    for p in providers:
        row = rows[p]
        for rule in rules:
            v = eval_rule(rule.root, row)
            values = ", ".join(f"{f} = {fmt_value(row.get(f))}" for f in rule.figures)
            if v is True:
                out.append(RuleOutcome(p, rule, True, f"FAIL {p}: {explain(rule.root, row)}"))
            elif v is None and not allow_missing:
                missing = [f for f in rule.figures if _missing(row.get(f))]
                out.append(
                    RuleOutcome(
                        p, rule, True, f"FAIL {p}: no data for {', '.join(missing)} (rule: {rule.text})"
                    )
                )
            elif v is None:
                out.append(
                    RuleOutcome(p, rule, False, f"ok   {p}: no data, allowed ({values}; rule: {rule.text})")
                )
            else:
                out.append(RuleOutcome(p, rule, False, f"ok   {p}: {values} (rule: {rule.text})"))
    return out


def render(outcomes: list[RuleOutcome], fmt: str = "text", run: str = "", baseline: str = "") -> str:
    """The outcomes as ``parity check --format`` prints them: text lines, json, md or csv."""
    rows = [
        {
            "provider": o.provider,
            "rule": o.rule.text,
            "result": "fail" if o.failed else "ok",
            "detail": o.line.split(": ", 1)[1],
        }
        for o in outcomes
    ]
    if fmt == "json":
        failed = sum(o.failed for o in outcomes)
        doc = {"run": run, "baseline": baseline, "failed": failed, "checks": rows}
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["provider", "rule", "result", "detail"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        esc = lambda t: t.replace("|", "\\|")  # noqa: E731
        lines = ["| result | provider | rule | detail |", "|---|---|---|---|"]
        lines += [
            f"| {'**FAIL**' if r['result'] == 'fail' else 'ok'} | {esc(r['provider'])} | `{esc(r['rule'])}` "
            f"| {esc(r['detail'])} |"
            for r in rows
        ]
        return "\n".join(lines) + "\n"
    return "".join(o.line + "\n" for o in outcomes)


# Which evaluate() question produces a figure; figures not listed come with every evaluation.
_QUESTION_PREFIXES = (
    ("latency", ("ttft_", "itl_", "tpot_", "e2e_", "output_tps_", "significant_")),
    ("cost", ("cost_", "breakeven_")),
    ("compat", ("compat_", "compat.")),
    ("judge", ("judge_",)),
)
_QUALITY = {
    "quality_score", "exact_match_rate", "length_ratio_median", "finish_reason_agreement", "refusal_rate",
    "new_refusal_rate", "json_valid_rate", "json_schema_valid_rate", "tool_call_valid_rate", "tool_call_agreement",
    "tool_names_agreement", "embedding_cosine_mean", "embedding_structure_spearman",
}  # fmt: skip


def question_of(figure: str) -> str | None:
    """The evaluation question that computes ``figure`` (None: reliability, always computed)."""
    if figure in _QUALITY or figure.startswith("text_similarity"):
        return "quality"
    if figure.startswith("cold_start_"):
        return None
    for q, prefixes in _QUESTION_PREFIXES:
        if figure.startswith(prefixes):
            return q
    return None


def questions_for(rules: list[Rule]) -> tuple[set[str], bool]:
    """The evaluate() questions the rules need, and whether they need the judge."""
    qs = {question_of(f) for r in rules for f in r.figures} - {None}
    judge = "judge" in qs
    return {q for q in qs if q != "judge"}, judge
