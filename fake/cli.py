"""``parity fake-provider``: the fake OpenAI-compatible server as a sub-command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from parity.fake.server import _parser

    sub.add_parser(
        "fake-provider",
        parents=[_parser()],
        add_help=False,
        help="run the fake OpenAI-compatible provider (dry runs, demos, tests)",
        description="Fake OpenAI-compatible provider with latency profiles, errors and quirks.",
    ).set_defaults(func=handler, _fake_parser=_parser)


def handler(args: argparse.Namespace) -> int:
    from parity.fake.server import main

    argv = ["--host", args.host, "--port", str(args.port), "--profile", args.profile]
    for s in args.sets:
        argv += ["--set", s]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.request_log is not None:
        argv += ["--request-log", str(args.request_log)]
    if args.list_profiles:
        argv.append("--list-profiles")
    if args.json:
        argv.append("--json")
    return main(argv)
