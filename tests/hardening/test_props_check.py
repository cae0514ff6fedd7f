"""Properties of the CI gate's rule language (evals/gate/rules.py).

* any string -> a ``Rule`` or a ``RuleError`` with a message, never another exception and never
  ``eval``/``exec`` (both are replaced by tripwires while parsing);
* rules generated from the grammar parse to the tree they were built from (round trip), whatever
  the spacing and keyword case;
* ``eval_rule`` / ``explain`` / ``check`` on any summary row (numbers, None, NaN, inf, bools) never
  raise and follow three-valued logic.
"""

from __future__ import annotations

import builtins
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parity.evals.figures import BOOL_FIGURES, FIGURES, STR_FIGURES
from parity.evals.gate.rules import OPS, BoolOp, Compare, Rule, RuleError, check, eval_rule, explain, parse

NUM_FIGURES = sorted(set(FIGURES) - BOOL_FIGURES - STR_FIGURES)
TOKENS = [*OPS, "(", ")", "and", "or", "AND", "Or", "true", "FALSE", "1", "-5", "0.05", "1e-3", ".5", "+2",
          "1e999", "nan", "inf", "ttft_p95_ms", "is_baseline", "ttft_test", "__import__('os')", "eval", ";",
          "!", "=", "&&", "||", "-", ".", "1.2.3", "1e", "é", "\x00", "\n", " "]  # fmt: skip


def parse_or_error(text: str) -> Rule | None:
    real_eval, real_exec = builtins.eval, builtins.exec

    def tripwire(*a, **k):
        raise AssertionError("the rule parser called eval/exec")

    builtins.eval = builtins.exec = tripwire
    try:
        return parse(text)
    except RuleError as e:
        assert str(e).strip()
        return None
    finally:
        builtins.eval, builtins.exec = real_eval, real_exec


rule_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=14).map("".join),
)


@settings(max_examples=600, deadline=None)
@given(text=rule_texts)
@example(text="ttft_p95_ms > 20 and")
@example(text="(((ttft_p95_ms > 1))")
@example(text="is_baseline > true")
@example(text="ttft_test == 1")
def test_any_string_is_a_rule_or_a_rule_error(prop_count, text: str) -> None:
    prop_count()
    rule = parse_or_error(text)
    if rule is not None:
        assert rule.figures and all(f in FIGURES for f in rule.figures)


@settings(max_examples=20, deadline=None)
@given(depth=st.integers(1_000, 50_000), closed=st.booleans())
@example(depth=5_000, closed=False)
def test_deep_parentheses_are_a_rule_error(prop_count, depth: int, closed: bool) -> None:
    prop_count()
    text = "(" * depth + "ttft_p95_ms > 1" + (")" * depth if closed else "")
    parse_or_error(text)


# ---------------------------------------------------------------- round trip


_NUM = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-(10**6), 10**6).map(float)
_NUM_FORM = st.sampled_from([repr, "{:g}".format, "{:e}".format])
_BOOL_FIG = st.sampled_from(sorted(BOOL_FIGURES))
_NUM_FIG = st.sampled_from(NUM_FIGURES)
_EQ = st.sampled_from(["==", "!="])
_OP = st.sampled_from(OPS)
_TRUE = st.sampled_from(["true", "True", "TRUE"])
_FALSE = st.sampled_from(["false", "False", "FALSE"])
_SP = st.sampled_from(["", " ", "  ", "\t"])
_ANDOR = st.sampled_from(["and", "or"])
_CASE = st.sampled_from([str.lower, str.upper, str.title])


@st.composite
def comparisons(draw):
    if draw(st.integers(0, 3)) == 0:
        fig, op, val = draw(_BOOL_FIG), draw(_EQ), draw(st.booleans())
        word = draw(_TRUE if val else _FALSE)
        return f"{fig}{draw(_SP)}{op} {word}", Compare(fig, op, val)
    fig, op = draw(_NUM_FIG), draw(_OP)
    text = draw(_NUM_FORM)(draw(_NUM))
    sp = draw(_SP)
    return f"{fig}{sp}{op}{sp}{text}", Compare(fig, op, float(text))


@st.composite
def groups(draw, kids):
    op = draw(_ANDOR)
    parts = draw(st.lists(kids, min_size=2, max_size=3))
    word = draw(_CASE)(op)
    # a nested and/or group is always parenthesised ("a and b and c" parses flat)
    texts = [f"({t})" if isinstance(n, BoolOp) else t for t, n in parts]
    return f" {word} ".join(texts), BoolOp(op, tuple(n for _, n in parts))


rule_trees = st.recursive(comparisons(), groups, max_leaves=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=rule_trees, outer=st.booleans())
def test_generated_rules_round_trip(prop_count, case, outer: bool) -> None:
    prop_count()
    text, tree = case
    if outer:
        text = f"  ( {text} )  "
    rule = parse_or_error(text)
    assert rule is not None, text
    assert rule.root == tree
    assert rule.text == text.strip()


# ---------------------------------------------------------------- evaluation

values = st.none() | st.floats() | st.integers(-(10**9), 10**9) | st.booleans()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=rule_trees, data=st.data())
def test_evaluate_explain_and_check_never_raise(prop_count, case, data) -> None:
    prop_count()
    _, tree = case
    full = {"provider": "p"}
    for f in Rule("r", tree).figures:
        full[f] = data.draw(st.none() | st.booleans() if f in BOOL_FIGURES else values, label=f)
    v = eval_rule(tree, full)
    assert v in (True, False, None)
    if isinstance(tree, Compare):
        x = full.get(tree.figure)
        missing = x is None or (isinstance(x, float) and not math.isfinite(x))
        assert (v is None) == missing
    if v is True:
        assert explain(tree, full)
    rule = Rule("r", tree)
    for allow in (False, True):
        [out] = check([rule], [full], ["p"], allow_missing=allow)
        assert out.failed == (v is True or (v is None and not allow))
        assert out.line.startswith("FAIL" if out.failed else "ok")
