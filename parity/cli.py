"""The ``parity`` command: one sub-command per job, each registered by the package that owns it."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from parity.wire.errors import EXIT_OK, EXIT_USAGE, ParityError

# command -> the module whose ``register(subparsers)`` adds it with ``set_defaults(func=cmd_<command>)`` (every handler is named so).
# Only the module of the command being run is imported, so ``parity record`` never pays for
# (or depends on) the evaluation stack.
COMMANDS = {
    "record": "parity.recorder.cli",
    "import": "parity.recorder.cli",
    "ls": "parity.recorder.cli",
    "stats": "parity.recorder.cli",
    "export": "parity.store.cli",
    "compact": "parity.store.cli",
    "upgrade": "parity.store.cli",
    "replay": "parity.replayer.cli",
    "fake-provider": "parity.fake.cli",
    "providers": "parity.replayer.cli",
    "eval": "parity.evals.cli",
    "report": "parity.evals.report.cli",
    "check": "parity.evals.gate.cli",
    "demo": "parity.demo",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))

EPILOG = """\
a first week, step by step (each command's --help has examples):
  parity demo                                    the whole path offline, in about a minute
  parity record --upstream https://api.openai.com --db parity.duckdb
                                                 then point the app at http://127.0.0.1:8080/v1
  parity ls --db parity.duckdb                   what was recorded
  parity providers check --providers providers.toml --db parity.duckdb
                                                 keys, base_urls, models and endpoints, before spending
  parity replay --db parity.duckdb --providers providers.toml --run cmp-1 --dry-run
  parity replay --db parity.duckdb --providers providers.toml --run cmp-1
  parity eval --db parity.duckdb --run cmp-1     the verdicts in the terminal
  parity report --db parity.duckdb --run cmp-1   report.html
  parity check --db parity.duckdb --run cmp-1    the CI gate

and then:
  parity record ... --shadow providers.toml --shadow-run staging
                                                 mirror live traffic to the providers (docs/shadow.md)
  parity replay ... --run cap-1 --sweep auto     capacity: how much load each provider takes
  parity eval --db s3://bucket/prefix --since 1h a store in a bucket; the last hour's exchanges

A run is one replay of the recorded traffic to the providers, named with --run NAME."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    from parity import __version__

    parser = argparse.ArgumentParser(
        prog="parity",
        description="Record OpenAI API traffic, replay it to other OpenAI-compatible providers,\n"
        "and compare latency, cost, quality and compatibility.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"parity {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a reader that closes stdout early (``parity ls | head -1``) ends it quietly.

    The standard way (Python docs, "Note on SIGPIPE"): stdout is pointed at /dev/null so the final
    flush cannot fail again, and the exit code is 1, as Python's own for EPIPE.
    """
    try:
        rc = _run(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a broken pipe cannot be caught
        return rc
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


# Libraries that log every HTTP request at INFO (the openai SDK's client in `parity demo`, the
# replayer's and the judge's clients): their lines are for debugging, shown only with `parity -v`.
CHATTY_LIBRARIES = ("httpx", "httpcore", "openai")


def quiet_libraries(verbose: bool) -> None:
    """Library loggers at WARNING unless ``-v``; parity's own lines keep the INFO level."""
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def _run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_libraries(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or EXIT_OK)
    except ParityError as e:  # what a handler did not word itself: still one line, never a traceback
        print(f"parity {command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
