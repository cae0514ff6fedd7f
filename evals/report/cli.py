"""``parity report``: the HTML / Markdown / JSON report of a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parity.evals.arguments import add_run_arguments
from parity.evals.errors import EvalError
from parity.store.cli import add_command

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


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``parity report``."""
    add_run_arguments(p)
    p.add_argument("--out", help="output file; '-' for stdout (default: report.html, or stdout for md/json)")
    p.add_argument(
        "--format",
        choices=("html", "md", "json"),
        help="html (default), md or json; guessed from --out's suffix when omitted",
    )
    p.add_argument(
        "--worst", type=int, default=3, help="worst answer disagreements shown per provider (default 3)"
    )


REPORT_HELP = "write the HTML / Markdown / JSON report of a run"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command to the ``parity`` command."""
    p = add_command(subparsers, "report", cmd_report, REPORT_HELP, REPORT_DESCRIPTION, REPORT_EXAMPLES)
    add_report_arguments(p)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.out).suffix.lower() if args.out and args.out != "-" else ""
    return {".md": "md", ".markdown": "md", ".json": "json"}.get(suffix, "html")


def cmd_report(args: argparse.Namespace) -> int:
    """Build and write the report; errors become one line on stderr and exit code 2."""
    from parity.evals.report import page as report

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
            since=args.since,
            until=args.until,
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
