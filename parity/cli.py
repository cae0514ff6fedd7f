"""The ``parity`` command: one sub-command per job, each registered by the package that owns it."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module -> its ``register(subparsers)`` adds sub-commands with ``set_defaults(func=handler)``.
COMMAND_MODULES = (
    "recorder.cli",
    "recorder.export_cli",
    "replayer.cli",
    "replayer.fake.cli",
    "evals.cli",
    "evals.report_cli",
    "parity.demo",
)


def build_parser() -> argparse.ArgumentParser:
    from parity import __version__

    parser = argparse.ArgumentParser(
        prog="parity",
        description="Record OpenAI API traffic, replay it to other OpenAI-compatible providers, "
        "and compare latency, cost, quality and compatibility.",
    )
    parser.add_argument("--version", action="version", version=f"parity {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name.startswith(e.name or "\0"):
                continue  # a package that ships no commands yet
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
