"""``parity check``: the rule language (parser, three-valued logic) and the gate's exit codes."""

from __future__ import annotations

import pytest
from reporthelpers import RUN

from parity.cli import main
from parity.evals import FIGURES
from parity.evals.api import evaluate
from parity.evals.gate import rules as chk
from parity.evals.summarise import rows


def test_parser_precedence_parentheses_and_values():
    r = chk.parse("ttft_p95_delta_pct > 20 or compat_failures >= 1 and significant_slower == TRUE")
    assert isinstance(r.root, chk.BoolOp) and r.root.op == "or"
    assert r.root.parts[1] == chk.BoolOp(
        "and", (chk.Compare("compat_failures", ">=", 1.0), chk.Compare("significant_slower", "==", True))
    )
    r = chk.parse("(error_rate>0.05 or rate_429 > 1e-2) and cost_delta_pct<-10")
    assert r.root.op == "and" and r.root.parts[0].op == "or"
    assert r.root.parts[1] == chk.Compare("cost_delta_pct", "<", -10.0)
    assert r.figures == ["error_rate", "rate_429", "cost_delta_pct"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "empty rule"),
        ("ttft_p95_delta_pct >", "expected a number"),
        ("ttft_p95_delta_pct 20", "expected an operator"),
        ("ttft_p95_delta_pct > 20 compat_failures > 0", "join conditions with and / or"),
        ("(ttft_p95_delta_pct > 20", "expected ')'"),
        ("significant_slower > 0", "true/false"),
        ("significant_slower >= true", "use == or !="),
        ("error_rate > true", "is a number"),
        ("ttft_test == 1", "is text"),
        ("__import__('os').system('x') > 1", "cannot read"),
        ("error_rate > 1; rm -rf /", "cannot read"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(rule, message):
    with pytest.raises(chk.RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chk.parse(rule)


def test_unknown_figure_suggests_close_names():
    with pytest.raises(chk.UnknownFigure) as e:
        chk.parse("ttft_p95_delta > 20")
    assert "ttft_p95_delta_pct" in e.value.suggestions
    assert "did you mean" in str(e.value)


def test_three_valued_logic():
    ev = chk.eval_rule

    def node(text: str) -> chk.Node:
        return chk.parse(text).root

    row = {"ttft_p95_delta_pct": None, "error_rate": 0.2, "compat_failures": 0}
    assert ev(node("ttft_p95_delta_pct > 20"), row) is None
    assert ev(node("ttft_p95_delta_pct > 20 or error_rate > 0.1"), row) is True
    assert ev(node("ttft_p95_delta_pct > 20 and compat_failures > 0"), row) is False
    assert ev(node("ttft_p95_delta_pct > 20 and error_rate > 0.1"), row) is None
    assert ev(node("error_rate == 0.2 and compat_failures != 1"), row) is True


def test_outcome_lines():
    summary = [
        {"provider": "fastco", "ttft_p95_delta_pct": 34.21, "compat_failures": 0, "error_rate": 0.0},
        {"provider": "nodata", "ttft_p95_delta_pct": None, "compat_failures": 2, "error_rate": 0.0},
    ]
    rules = [chk.parse("ttft_p95_delta_pct > 20"), chk.parse("compat_failures > 0 or error_rate > 0.01")]
    out = chk.check(rules, summary, ["fastco", "nodata"])
    lines = [o.line for o in out]
    assert lines[0] == "FAIL fastco: ttft_p95_delta_pct = 34.2 > 20"
    assert lines[1].startswith("ok   fastco: compat_failures = 0, error_rate = 0")
    assert lines[2] == "FAIL nodata: no data for ttft_p95_delta_pct (rule: ttft_p95_delta_pct > 20)"
    assert lines[3] == "FAIL nodata: compat_failures = 2 > 0"
    allowed = chk.check(rules[:1], summary, ["nodata"], allow_missing=True)
    assert not allowed[0].failed and "no data, allowed" in allowed[0].line


def test_every_figure_maps_to_the_question_that_computes_it(report_store):
    """Evaluating only the questions a rule needs gives the figure the value a full evaluation does."""
    full = {r["provider"]: r for r in rows(evaluate(report_store, RUN).summary)}
    by_question: dict[str | None, list[str]] = {}
    for f in FIGURES:
        by_question.setdefault(chk.question_of(f), []).append(f)
    assert set(by_question) <= {None, "latency", "cost", "quality", "compat", "judge"}
    for q, figs in by_question.items():
        if q == "judge":
            assert all(f.startswith("judge_") for f in figs)
            continue
        part = {
            r["provider"]: r for r in rows(evaluate(report_store, RUN, questions=(q,) if q else ()).summary)
        }
        for f in figs:
            for p, r in full.items():
                if r[f] is not None:
                    assert part[p][f] == pytest.approx(r[f]), (q, f, p)


def test_gate_fails_with_one_line_per_broken_rule(report_store, capsys):
    rc = main(
        [
            "check",
            "--db",
            str(report_store),
            "--run",
            RUN,
            "--fail-if",
            "ttft_p95_delta_pct > 20",
            "--fail-if",
            "compat_failures > 0",
        ]
    )
    out = capsys.readouterr()
    assert rc == 1
    lines = out.out.splitlines()
    assert len(lines) == 6  # 3 providers x 2 rules
    assert any(
        line.startswith("FAIL slowco: ttft_p95_delta_pct = ") and line.endswith(" > 20") for line in lines
    )
    assert "FAIL flatco: compat_failures = 1 > 0" in lines
    assert any(line.startswith("ok   fastco: ttft_p95_delta_pct = -") for line in lines)
    assert "checks failed" in out.err


def test_gate_passes_and_filters_providers(report_store, capsys):
    rc = main(
        [
            "check",
            "--db",
            str(report_store),
            "--run",
            RUN,
            "--provider",
            "fastco",
            "--fail-if",
            "significant_slower == true or error_rate > 0.01",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines() == [
        "ok   fastco: significant_slower = false, error_rate = 0 (rule: significant_slower == true or error_rate > 0.01)"
    ]


def test_gate_usage_errors_exit_2(report_store, capsys):
    db = str(report_store)
    assert main(["check", "--db", db, "--run", RUN, "--fail-if", "ttft_p95_delta > 20"]) == 2
    err = capsys.readouterr().err
    assert "unknown figure 'ttft_p95_delta'" in err and "ttft_p95_delta_pct" in err
    assert main(["check", "--db", db, "--run", RUN, "--provider", "nope", "--fail-if", "error_rate > 0"]) == 2
    assert "no provider 'nope'" in capsys.readouterr().err
    assert main(["check", "--db", db, "--run", "nope", "--fail-if", "error_rate > 0"]) == 2
    assert "no results for run 'nope'" in capsys.readouterr().err


def test_missing_figure_fails_unless_allowed(report_store, capsys):
    db = str(report_store)
    args = [
        "check",
        "--db",
        db,
        "--run",
        RUN,
        "--provider",
        "recorded",
        "--fail-if",
        "ttft_p95_delta_pct > 20",
    ]
    assert main(args) == 1
    assert "FAIL recorded: no data for ttft_p95_delta_pct" in capsys.readouterr().out
    assert main([*args, "--allow-missing"]) == 0
    assert "no data, allowed" in capsys.readouterr().out
