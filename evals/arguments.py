"""The command-line options ``parity eval``, ``report`` and ``check`` share."""

from __future__ import annotations

import argparse
from pathlib import Path

from parity.store.cli import add_db_option


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


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options every reading command shares: the store, the run, the baseline, SLOs, the judge."""
    add_db_option(p)
    p.add_argument(
        "--run", default="latest", metavar="NAME", help="the run (default: latest, the newest run)"
    )
    p.add_argument(
        "--baseline",
        default="recorded",
        help="arm every provider is compared with: recorded (default) or a provider name",
    )
    p.add_argument(
        "--slo",
        help="service-level objectives for goodput_rate, e.g. ttft=500ms,e2e=10s (keys: ttft, tpot, e2e, itl)",
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
        help="also judge answers pairwise with this provider's model: win/tie/loss rates (verdicts are cached "
        "in the store)",
    )
    p.add_argument(
        "--providers",
        type=Path,
        help="providers TOML to find the judge's base_url and api_key_env (default: the run config)",
    )
    add_monthly_requests(p)
    add_window(p)


def add_window(p: argparse.ArgumentParser) -> None:
    """``--since`` / ``--until``: only the exchanges production recorded in that window."""
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only exchanges recorded at or after WHEN: an ISO time (2026-12-07T10:00, UTC) or a "
        "duration back from now (30m, 1h, 7d); e.g. the last hour of a shadow run",
    )
    p.add_argument("--until", metavar="WHEN", help="only exchanges recorded before WHEN (as --since)")
