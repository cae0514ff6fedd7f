"""``parity check``: the CI gate, rules over the summary figures that fail a build."""

from __future__ import annotations

import argparse
import sys

from parity.evals.arguments import add_run_arguments
from parity.evals.errors import EvalError
from parity.store.cli import add_command

CHECK_DESCRIPTION = """\
Fail a CI build when a provider's figures break a rule. A rule is '<figure> <op> <value>':
op is one of > >= < <= == !=, value a number or true/false; rules join with and / or and
parentheses. The figures a rule can name: parity check --list-figures (with what each one
means), including one per compatibility check, e.g. compat.retry_after_429.

Without --fail-if, the default gates apply: 'error_rate >= 1' (a provider that answered
nothing) and 'compat_failures > 0'. A figure without data fails its rule unless
--allow-missing.

exit codes: 0 every rule holds (ok lines), 1 a rule broke (one FAIL line each), 2 a bad
rule, run or store."""

CHECK_EXAMPLES = """\
examples:
  parity check --list-figures
  parity check --db parity.duckdb                           the default gates, newest run
  parity check --db parity.duckdb --run cmp-1 --fail-if 'ttft_p95_delta_pct > 20' --fail-if 'compat_failures > 0'
  parity check --db parity.duckdb --provider fastco --fail-if 'cost_delta_pct > -10 or error_rate > 0.01'
  parity check --db parity.duckdb --format md > check.md     the same verdicts as a table"""


# The gates `parity check` applies when no --fail-if is given: a provider that answered nothing, and
# one whose answers break the SDKs or common app code.
DEFAULT_GATES = (
    ("error_rate >= 1", "the provider answered no request successfully"),
    ("compat_failures > 0", "a compatibility check failed: some answer breaks the SDKs or app code"),
)


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``parity check``."""
    add_run_arguments(p)
    p.add_argument(
        "--fail-if",
        action="append",
        metavar="RULE",
        help="rule that fails the check when it holds (repeatable); without any, the default gates: "
        + "; ".join(f"{r!r} ({why})" for r, why in DEFAULT_GATES),
    )
    p.add_argument(
        "--list-figures",
        action="store_true",
        help="list every figure a rule can name, with its definition, and exit",
    )
    p.add_argument(
        "--provider",
        action="append",
        metavar="NAME",
        help="check only this provider (repeatable; default: every provider but the baseline)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="a rule whose figures have no data passes instead of failing",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "md", "csv"),
        default="text",
        help="text (default: one ok / FAIL line per rule and provider), json, md (a table for a "
        "pull-request comment) or csv; the exit code is the same in every format",
    )


CHECK_HELP = "CI gate: exit 1 when a provider's figures break a rule"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` sub-command to the ``parity`` command."""
    c = add_command(subparsers, "check", cmd_check, CHECK_HELP, CHECK_DESCRIPTION, CHECK_EXAMPLES)
    add_check_arguments(c)


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate the run, apply the rules; 0 all ok, 1 a rule failed, 2 a usage or store error."""
    from parity.evals.api import evaluate
    from parity.evals.figures import FIGURES
    from parity.evals.gate import rules as check
    from parity.evals.summarise import rows

    if args.list_figures:
        width = max(map(len, FIGURES))
        for name, what in FIGURES.items():
            print(f"{name:<{width}}  {what}")
        return 0
    if not args.fail_if:
        print("parity check: no --fail-if given: applying the default gates", file=sys.stderr)
    try:
        rules = [check.parse(r) for r in (args.fail_if or [r for r, _ in DEFAULT_GATES])]
    except check.RuleError as e:
        print(f"parity check: error: {e}", file=sys.stderr)
        return 2
    questions, needs_judge = check.questions_for(rules)
    if needs_judge and not args.judge:
        print(
            "parity check: note: judge_* figures need --judge; without it they have no data", file=sys.stderr
        )
    try:
        ev = evaluate(
            args.db,
            args.run,
            args.baseline,
            args.slo,
            questions=tuple(q for q in ("latency", "cost", "quality", "compat") if q in questions),
            judge=args.judge if needs_judge else None,
            providers=args.providers,
            idle_s=args.idle_gap,
            monthly_requests=args.monthly_requests,
            since=args.since,
            until=args.until,
        )
    except (EvalError, OSError) as e:
        print(f"parity check: error: {e}", file=sys.stderr)
        return 2
    summary = rows(ev.summary)
    arms = [r["provider"] for r in summary]
    if args.provider:
        unknown = [p for p in args.provider if p not in arms]
        if unknown:
            print(
                f"parity check: error: no provider {', '.join(map(repr, unknown))} in run {ev.run!r}; "
                f"providers: {', '.join(arms)}",
                file=sys.stderr,
            )
            return 2
        providers = list(dict.fromkeys(args.provider))
    else:
        providers = [p for p in arms if p != ev.baseline]
    if not providers:
        print(
            f"parity check: error: run {ev.run!r} has no provider besides the baseline {ev.baseline!r}",
            file=sys.stderr,
        )
        return 2
    outcomes = check.check(rules, summary, providers, allow_missing=args.allow_missing)
    sys.stdout.write(check.render(outcomes, args.format, ev.run, ev.baseline))
    failed = sum(o.failed for o in outcomes)
    if failed:
        print(
            f"{failed} of {len(outcomes)} checks failed (run {ev.run}, baseline {ev.baseline})",
            file=sys.stderr,
        )
    return 1 if failed else 0
