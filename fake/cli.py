"""``parity fake-provider`` (and ``python -m parity.fake.server``): the fake OpenAI-compatible server's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .profiles import PROFILES, parse_set

if TYPE_CHECKING:
    from .server import FakeProvider

DESCRIPTION = """\
Run a fake OpenAI-compatible provider on 127.0.0.1: chat, completions, responses,
embeddings, images and audio, with a latency profile (fast, slow, flaky, cold-start...),
injected errors and wire-format quirks. Use it for a replay that costs nothing, to see how
parity reports a slow or non-compliant provider, and in tests. It prints its base URL
(ending in /v1) once it listens; Ctrl-C stops it."""

EXAMPLES = """\
examples:
  parity fake-provider --list-profiles
  parity fake-provider --profile slow --port 9001
  parity fake-provider --profile cold-start --set cold_start_ms=4000 --seed 1
  parity fake-provider --profile instant --slots 4 --service-ms 200 --port 9002   # 20 req/s capacity
      then, in providers.toml: base_url = "http://127.0.0.1:9001/v1"
"""


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "fake-provider",
        parents=[parser()],
        add_help=False,
        help="run the fake OpenAI-compatible provider (dry runs, demos, tests)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(func=cmd_fake_provider, _fake_parser=parser)


def cmd_fake_provider(args: argparse.Namespace) -> int:
    argv = ["--host", args.host, "--port", str(args.port), "--profile", args.profile]
    for s in args.sets:
        argv += ["--set", s]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.slots is not None:
        argv += ["--slots", str(args.slots)]
    if args.service_ms is not None:
        argv += ["--service-ms", str(args.service_ms)]
    if args.request_log is not None:
        argv += ["--request-log", str(args.request_log)]
    if args.list_profiles:
        argv.append("--list-profiles")
    if args.json:
        argv.append("--json")
    return main(argv)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="parity fake-provider",
        description="Fake OpenAI-compatible provider for parity tests and benchmarks.",
    )
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    ap.add_argument("--profile", default="openai-like", help=f"one of: {', '.join(PROFILES)}")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile option (repeatable)",
    )
    ap.add_argument(
        "--seed", type=int, default=None, help="content/timing/error seed (default: profile's, 0)"
    )
    ap.add_argument(
        "--slots",
        type=int,
        default=None,
        help="capacity model: serve N requests at once; the others queue, and the wait is part of TTFT",
    )
    ap.add_argument(
        "--service-ms",
        type=float,
        default=None,
        help="capacity model: each request holds its slot exactly MS (capacity = slots / service time)",
    )
    ap.add_argument(
        "--request-log", type=Path, default=None, help="append every request as JSONL to this file"
    )
    ap.add_argument(
        "--list-profiles", action="store_true", help="print each profile with a one-line description and exit"
    )
    ap.add_argument(
        "--json", action="store_true", help="with --list-profiles: every option of every profile as JSON"
    )
    return ap


async def _serve(fp: FakeProvider) -> int:
    try:
        await fp.start()
    except OSError as exc:
        print(f"fake-provider: cannot listen on {fp.host}:{fp.port}: {exc}", file=sys.stderr)
        return 1
    cap = fp.profile.capacity_rps
    extra = f", capacity {fp.profile.slots} slots = {cap:g} req/s" if cap else ""
    print(f"fake-provider listening on {fp.base_url} (profile {fp.profile.name}{extra})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fp.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (`parity fake-provider`); returns the exit code."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.list_profiles:
        if args.json:
            print(json.dumps({name: p.describe() for name, p in PROFILES.items()}, indent=2))
        else:
            width = max(map(len, PROFILES))
            print("\n".join(f"{name:<{width}}  {p.description}" for name, p in PROFILES.items()))
        return 0
    from parity.fake.server import FakeProvider  # the server (aiohttp) only when one is started

    try:
        sets: dict[str, object] = dict(parse_set(args.sets))
        if args.slots is not None:
            sets["slots"] = args.slots
        if args.service_ms is not None:
            sets["service_ms"] = args.service_ms
        fp = FakeProvider(
            args.profile,
            host=args.host,
            port=args.port,
            seed=args.seed,
            request_log=args.request_log,
            record_requests=False,  # a long-running server must not grow a list forever
            **sets,
        )
    except (ValueError, TypeError) as exc:
        ap.error(str(exc))
    return asyncio.run(_serve(fp))
