"""``parity report`` (HTML / Markdown / JSON report of a run) and ``parity check`` (the CI gate)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parity.evals.errors import EvalError
from parity.store.cli import add_db_option

REPORT_DESCRIPTION = """\
Write the report of a replay run: a verdict per provider (latency deltas with confidence
intervals, cost projection, quality and compatibility, coloured by significance), charts,
the compatibility scorecard with example exchanges and the worst answer disagreements.
html is one self-contained file (no network, printable); md is a pull-request comment;
json holds every figure."""

REPORT_EXAMPLES = """\
examples:
  parity report --db parity.duckdb                          report.html of the newest run
  parity report --db parity.duckdb --run cmp-1 --out cmp-1.html
  parity report --db parity.duckdb --format md --out comment.md
  parity report --db parity.duckdb --format json | jq '.summary'"""

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


def monthly_requests(text: str) -> float:
    """``--monthly-requests``: a positive request count (1000000, 1e6 or 1_000_000)."""
    try:
        n = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        n = float("nan")
    if not n > 0 or n == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of requests per month, not {text!r}")
    return n


def add_monthly_requests(p: argparse.ArgumentParser) -> None:
    """``--monthly-requests N``, shared by eval, report and check."""
    p.add_argument(
        "--monthly-requests",
        type=monthly_requests,
        metavar="N",
        help="requests per month, for cost_month_usd (N x the mean cost per recorded request, the mix "
        "as recorded); without it $/month needs a recording spanning at least 24 h",
    )


def _common(p: argparse.ArgumentParser) -> None:
    add_db_option(p)
    p.add_argument(
        "--run", default="latest", metavar="NAME", help="the run (default: latest, the newest run)"
    )
    p.add_argument(
        "--baseline", default="recorded", help="arm every provider is compared with (default: recorded)"
    )
    p.add_argument(
        "--slo", help="SLOs for goodput_rate, e.g. ttft=500ms,e2e=10s (keys: ttft, tpot, e2e, itl)"
    )
    p.add_argument(
        "--idle-gap",
        type=float,
        default=60.0,
        help="seconds of silence before a request counts as cold (default 60)",
    )
    p.add_argument(
        "--judge",
        metavar="PROVIDER[:MODEL]",
        help="include LLM-judge win/tie/loss rates (verdicts are cached in the store)",
    )
    p.add_argument(
        "--providers", type=Path, help="providers TOML to find the judge (default: the run config)"
    )
    add_monthly_requests(p)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``parity report``."""
    _common(p)
    p.add_argument("--out", help="output file; '-' for stdout (default: report.html, or stdout for md/json)")
    p.add_argument(
        "--format",
        choices=("html", "md", "json"),
        help="html (default), md or json; guessed from --out's suffix when omitted",
    )
    p.add_argument(
        "--worst", type=int, default=3, help="worst answer disagreements shown per provider (default 3)"
    )


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``parity check``."""
    _common(p)
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` and ``check`` sub-commands to the ``parity`` command."""
    p = subparsers.add_parser(
        "report",
        help="write the HTML / Markdown / JSON report of a run",
        description=REPORT_DESCRIPTION,
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(p)
    p.set_defaults(func=cmd_report)
    c = subparsers.add_parser(
        "check",
        help="CI gate: exit 1 when a provider's figures break a rule",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_check_arguments(c)
    c.set_defaults(func=cmd_check)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.out).suffix.lower() if args.out and args.out != "-" else ""
    return {".md": "md", ".markdown": "md", ".json": "json"}.get(suffix, "html")


def cmd_report(args: argparse.Namespace) -> int:
    """Build and write the report; errors become one line on stderr and exit code 2."""
    from parity.evals import report

    fmt = _format(args)
    out = args.out or ("report.html" if fmt == "html" else "-")
    try:
        rep = report.build(
            args.db,
            args.run,
            args.baseline,
            args.slo,
            idle_s=args.idle_gap,
            worst=args.worst,
            judge=args.judge,
            providers=args.providers,
            monthly_requests=args.monthly_requests,
        )
        if out == "-":
            sys.stdout.write(report.render(rep, fmt))
            return 0
        path = report.write(rep, out, fmt)
    except BrokenPipeError:
        raise  # stdout's reader went away: parity.cli.main ends quietly
    except (EvalError, OSError) as e:
        print(f"parity report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KiB, {fmt})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate the run, apply the rules; 0 all ok, 1 a rule failed, 2 a usage or store error."""
    from parity.evals import check
    from parity.evals.api import evaluate
    from parity.evals.figures import FIGURES
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
