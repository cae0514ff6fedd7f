"""``parity fake-provider``: the fake OpenAI-compatible server as a sub-command."""

from __future__ import annotations

import argparse

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
      then, in providers.toml: base_url = "http://127.0.0.1:9001/v1"
"""


def register(sub: argparse._SubParsersAction) -> None:
    from parity.fake.server import _parser

    sub.add_parser(
        "fake-provider",
        parents=[_parser()],
        add_help=False,
        help="run the fake OpenAI-compatible provider (dry runs, demos, tests)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
