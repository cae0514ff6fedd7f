"""``parity replay``: send recorded requests to other OpenAI-compatible providers and store the results."""

from __future__ import annotations

import argparse
import sys

from parity.replayer.errors import ReplayError
from parity.replayer.pacing import Pacing
from parity.replayer.run import RunOptions, replay
from parity.replayer.select import Selection
from parity.replayer.sweep import Sweep, parse_slos, parse_values
from parity.store.cli import add_command, add_db_option

DESCRIPTION = """\
Send the recorded requests to every provider of a providers file (any OpenAI-compatible
base_url), with each provider's model names, and store their answers, timings, tokens and
cost as a run named by --run. The recorded production answers are the run's baseline.
Try --dry-run first: it prints the plan, the estimated cost and the preflight check of every
provider (parity providers check), and replays nothing."""

EXAMPLE = """\
examples:
  parity replay --db parity.duckdb --providers providers.toml --run cmp-1 --dry-run
  parity replay --db parity.duckdb --providers providers.toml --run cmp-1 --sample 500 --seed 1 --concurrency 16
  parity replay --db parity.duckdb --providers providers.toml --run cmp-1 --resume
  parity replay --db parity.duckdb --providers providers.toml --run cap-1 --sweep 5,10,20,40 --step-seconds 30
  parity replay --db parity.duckdb --providers providers.toml --run cap-2 --sweep auto --slo ttft=300ms,e2e=5s

At the end, each provider's failures are printed with their top reasons (e.g. "dead: 27/27 failed:
connection refused at 127.0.0.1:9999"), and endpoints a provider answers only with 404/405 are
listed apart as unsupported_endpoint, with the endpoints = [...] line that skips them.

exit codes:
  0    the run finished (or stopped at --max-cost) and every provider answered
  1    the run stopped with requests left (resume with --resume), or its post-processor failed
  2    bad arguments, providers file, selection or --run NAME, or a provider failed the preflight
       (its FAIL line names the problem; --no-preflight skips the check); nothing was sent
  3    a provider answered none of its requests (named on stderr); the results are stored,
       so parity eval/report work on the run
  130  interrupted (Ctrl-C); resume with --resume
"""


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


REPLAY_HELP = "replay recorded requests to other providers and store the results"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` sub-command."""
    p = add_command(subparsers, "replay", cmd_replay, REPLAY_HELP, DESCRIPTION, EXAMPLE)
    add_db_option(p)
    p.add_argument("--providers", required=True, help="providers file (TOML)")
    p.add_argument(
        "--run",
        required=True,
        metavar="NAME",
        help="the run: a new name (letters, digits, . _ -), or the run to continue with --resume",
    )
    p.add_argument(
        "--provider", action="append", metavar="NAME", help="only these providers of the file (repeatable)"
    )
    s = p.add_argument_group("selection")
    s.add_argument(
        "--endpoint", action="append", help="endpoint(s), e.g. chat.completions (repeatable, comma list)"
    )
    s.add_argument("--model", action="append", help="recorded model(s) or glob, e.g. 'gpt-4o*' (repeatable)")
    s.add_argument("--tag", action="append", help="recorder tag(s) (repeatable)")
    s.add_argument("--since", help="recorded at or after (ISO date/time, UTC by default)")
    s.add_argument("--until", help="recorded before (ISO date/time)")
    s.add_argument(
        "--status",
        choices=("ok", "all"),
        default="all",
        help="recorded status: all (default: production's errors too, so each provider's error handling "
        "is compared with production's) or ok = 2xx only",
    )
    s.add_argument("--limit", type=int, help="at most N exchanges (oldest first)")
    s.add_argument("--sample", type=int, help="a random sample of N exchanges (reproducible with --seed)")
    s.add_argument(
        "--seed", type=int, default=0, help="seed for --sample, Poisson arrivals and provider order"
    )
    s.add_argument("--ids", metavar="FILE", help="file of exchange ids, one per line")
    red = s.add_mutually_exclusive_group()
    red.add_argument(
        "--allow-redacted",
        action="store_const",
        dest="redacted",
        const="allow",
        help="send exchanges recorded with redaction as they are, placeholders included",
    )
    red.add_argument(
        "--skip-redacted",
        action="store_const",
        dest="redacted",
        const="skip",
        help="leave exchanges recorded with redaction out (default: refuse to run if any is selected)",
    )
    pace = p.add_argument_group("pacing (choose one; default --concurrency 8)")
    mx = pace.add_mutually_exclusive_group()
    mx.add_argument("--concurrency", type=int, help="closed loop: at most N requests in flight per provider")
    mx.add_argument("--rate", type=float, help="open loop: R recorded requests per second")
    mx.add_argument("--as-recorded", action="store_true", help="reproduce the recorded inter-arrival times")
    pace.add_argument(
        "--arrival", choices=("constant", "poisson"), help="with --rate: inter-arrival distribution"
    )
    pace.add_argument("--speed", type=float, help="with --as-recorded: X times faster than recorded")
    sw = p.add_argument_group("capacity sweep (instead of one pacing; see docs/replay.md)")
    swx = sw.add_mutually_exclusive_group()
    swx.add_argument(
        "--sweep",
        metavar="RATES|auto",
        help="offer the selection at each rate in turn (req/s, e.g. 5,10,20,40; Poisson arrivals unless "
        "--arrival constant), or auto: grow until a provider stops meeting --slo, then refine",
    )
    swx.add_argument(
        "--sweep-concurrency",
        metavar="N,N|auto",
        help="closed-loop sweep: N requests in flight per provider at each step (e.g. 1,4,16,64), or auto",
    )
    sw.add_argument("--step-seconds", type=float, default=30.0, help="length of a sweep step (default 30)")
    sw.add_argument(
        "--slo",
        help="with a sweep: the SLOs a good request meets, e.g. ttft=300ms,e2e=5s (keys: ttft, tpot, e2e, itl)",
    )
    sw.add_argument(
        "--goodput-target",
        type=float,
        default=0.95,
        help="share of a step's requests within the SLOs that keeps a provider in (default 0.95)",
    )
    sw.add_argument(
        "--max-error-rate",
        type=float,
        default=0.05,
        help="auto sweep: errors past this share end a provider's growth",
    )
    sw.add_argument("--sweep-start", type=float, help="auto sweep: the first load (default 1)")
    sw.add_argument("--sweep-factor", type=float, default=2.0, help="auto sweep: growth per step (default 2)")
    sw.add_argument("--sweep-max", type=float, help="auto sweep: never offer more than this load")
    sw.add_argument(
        "--sweep-steps", type=int, default=12, help="auto sweep: growth steps at most (default 12)"
    )
    r = p.add_argument_group("run")
    r.add_argument("--repeat", type=int, default=1, help="send each request K times per provider (default 1)")
    r.add_argument(
        "--max-cost", type=float, metavar="USD", help="stop before the estimated spend would pass USD"
    )
    r.add_argument(
        "--dry-run", action="store_true", help="print the plan, estimated cost and preflight; replay nothing"
    )
    r.add_argument(
        "--resume", action="store_true", help="continue a stopped or killed run; nothing is sent twice"
    )
    r.add_argument("--no-progress", action="store_true", help="no live progress on stderr")
    r.add_argument(
        "--no-compact",
        action="store_true",
        help="leave the run's results in per-flush segments (default: merge them when the run finishes)",
    )
    r.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the preflight check of keys, base_urls, models and endpoints (see parity providers check)",
    )
    register_providers(subparsers)


def options(args: argparse.Namespace) -> RunOptions:
    """Command-line arguments -> RunOptions (ReplayError for bad combinations)."""
    sweep = _sweep(args)
    if args.arrival and args.rate is None and (sweep is None or sweep.by != "rate"):
        raise ReplayError("--arrival only goes with --rate or --sweep")
    if args.speed is not None and not args.as_recorded:
        raise ReplayError("--speed only goes with --as-recorded")
    if args.speed is not None and args.speed <= 0:
        raise ReplayError("--speed must be > 0")
    if args.concurrency is not None and args.concurrency < 1:
        raise ReplayError("--concurrency must be >= 1")
    if args.rate is not None and args.rate <= 0:
        raise ReplayError("--rate must be > 0")
    if args.max_cost is not None and args.max_cost < 0:
        raise ReplayError("--max-cost must be >= 0")
    if args.as_recorded:
        pacing = Pacing(mode="as-recorded", speed=args.speed or 1.0, seed=args.seed)
    elif args.rate is not None:
        pacing = Pacing(mode="rate", rate=args.rate, arrival=args.arrival or "constant", seed=args.seed)
    else:
        pacing = Pacing(mode="concurrency", concurrency=args.concurrency or 8, seed=args.seed)
    sel = Selection(
        endpoints=_split(args.endpoint),
        models=_split(args.model),
        tags=_split(args.tag),
        since=args.since,
        until=args.until,
        status=args.status,
        limit=args.limit,
        sample=args.sample,
        seed=args.seed,
        ids_file=args.ids,
        redacted=args.redacted or "refuse",
    )
    return RunOptions(
        db=args.db,
        providers=args.providers,
        run_id=args.run,
        selection=sel,
        pacing=pacing,
        repeat=args.repeat,
        max_cost=args.max_cost,
        dry_run=args.dry_run,
        resume=args.resume,
        only=_split(args.provider) or None,
        progress=not args.no_progress,
        compact=not args.no_compact,
        preflight=not args.no_preflight,
        sweep=sweep,
    )


def _sweep(args: argparse.Namespace) -> Sweep | None:
    """The --sweep / --sweep-concurrency options as a Sweep, or None."""
    text, by = (args.sweep, "rate") if args.sweep else (args.sweep_concurrency, "concurrency")
    sweep_only = ("slo", "sweep_start", "sweep_max")
    if not text:
        named = [f"--{a.replace('_', '-')}" for a in sweep_only if getattr(args, a) is not None]
        if named:
            raise ReplayError(f"{', '.join(named)} only go with --sweep or --sweep-concurrency")
        return None
    clash = [f for f, v in (("--rate", args.rate), ("--concurrency", args.concurrency)) if v is not None]
    if args.as_recorded:
        clash.append("--as-recorded")
    if args.repeat != 1:
        clash.append("--repeat")
    if args.resume:
        clash.append("--resume")
    if clash:
        raise ReplayError(f"a sweep sets its own loads: drop {', '.join(clash)}")
    sweep = Sweep(
        by=by,
        values=parse_values(text, by),
        step_seconds=args.step_seconds,
        arrival=args.arrival or "poisson",
        seed=args.seed,
        slos=parse_slos(args.slo),
        target=args.goodput_target,
        max_error_rate=args.max_error_rate,
        start=args.sweep_start,
        factor=args.sweep_factor,
        limit=args.sweep_max,
        max_steps=args.sweep_steps,
    )
    sweep.check()
    return sweep


def cmd_replay(args: argparse.Namespace) -> int:
    """Run the sub-command; a ReplayError becomes one line on stderr and exit code 2."""
    try:
        return replay(options(args)).exit_code
    except ReplayError as e:
        print(f"parity replay: error: {e}", file=sys.stderr)
        return 2


PROVIDERS_EXAMPLE = """\
examples:
  parity providers check --providers providers.toml --db parity.duckdb
  parity providers check --providers providers.toml --provider fastco

Each provider gets one line, "ok   NAME: ..." or one "FAIL NAME: problem" per problem. What it sends:
GET {base_url}/models (free; a model it does not list: GET /models/ID), and, for each endpoint family
the store's requests would use, a POST with the empty JSON object {} that a compatible server answers
with 400 and a server without the path with 404: no model runs, no tokens. Families named in the
provider's endpoints = [...] are taken as declared. Only where GET /models is not served does it send
ONE one-token request per model (max_tokens=1; responses: max_output_tokens=16), costing almost nothing.
No side-effect endpoint is ever called. parity replay runs the same check before sending anything.

exit codes:
  0    every provider passed
  1    a provider failed a check (named on stdout and stderr)
  2    bad input: a missing or invalid providers file, an unknown --provider, no store at --db
"""


def register_providers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``providers`` command group (``providers check``)."""
    p = subparsers.add_parser(
        "providers",
        help="check the providers of a providers file before replaying to them",
        description="Commands about the providers of a providers file (the file parity replay reads).",
        epilog="examples:\n  parity providers check --providers providers.toml --db parity.duckdb",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="providers_command", metavar="COMMAND")
    c = add_command(
        sub,
        "check",
        cmd_providers_check,
        "check each provider's key, base_url, models and endpoints",
        "Check, for each provider, that its API key is set, its base_url answers, the models\n"
        "the store's requests map to exist, and the endpoint families a replay would send are served.",
        PROVIDERS_EXAMPLE,
    )
    c.add_argument("--providers", required=True, help="providers file (TOML)")
    c.add_argument(
        "--db",
        metavar="PATH",
        help="the store whose recorded models and endpoints are checked (must exist; default: parity.duckdb "
        "in the current folder if there is one, else only keys, base_urls and the models the mapping names)",
    )
    c.add_argument(
        "--provider", action="append", metavar="NAME", help="only these providers of the file (repeatable)"
    )
    p.set_defaults(func=lambda args: _no_subcommand(p))


def _no_subcommand(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def cmd_providers_check(args: argparse.Namespace) -> int:
    """``parity providers check``: print the preflight lines; exit 1 on a failure, 2 on bad input."""
    from parity.replayer import preflight
    from parity.replayer.config import load_config
    from parity.store.cli import DEFAULT_DB
    from parity.store.store import StoreError, store_exists

    db = args.db or (DEFAULT_DB if store_exists(DEFAULT_DB) else None)
    try:
        cfg = load_config(args.providers, _split(args.provider) or None)
        if db:
            needs = preflight.needs_for(cfg, preflight.store_pairs(db))
        else:
            needs = preflight.needs_without_store(cfg)
    except (ReplayError, StoreError) as e:
        print(f"parity providers check: error: {e}", file=sys.stderr)
        return 2
    reports = preflight.check(cfg, needs)
    for r in reports:
        for line in r.lines():
            print(line)
    bad = [r.name for r in reports if not r.ok]
    if bad:
        print(
            f"parity providers check: {len(bad)} of {len(reports)} failed: {', '.join(bad)}", file=sys.stderr
        )
        return 1
    return 0
