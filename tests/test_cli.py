"""Every ``parity`` command exists, teaches in its ``--help`` (a description and an example, plain
text), and answers ``--help``. The tests walk the parser tree, so a new command or sub-command is
covered the day it is added."""

from __future__ import annotations

import argparse
import re

import pytest

from parity.cli import COMMANDS, build_parser, main

# Sphinx/RST markup that argparse prints verbatim: ``literal``, :role:`x`, .. directive::
RST = re.compile(r"``|:[a-z]+:`|^\s*\.\. [a-z]+::", re.M)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser, help line, alias names) for every command and sub-command, depth first."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {a.dest: a.help for a in sub._choices_actions}
    seen: dict[int, list[str]] = {}
    for name, child in sub.choices.items():
        seen.setdefault(id(child), []).append(name)
    for names in seen.values():
        name, aliases = names[0], names[1:]
        child = sub.choices[name]
        yield (*path, name), child, helps.get(name), aliases
        yield from walk(child, (*path, name))


COMMAND_TREE = list(walk(build_parser()))
IDS = [" ".join(path) for path, *_ in COMMAND_TREE]


def test_the_tree_holds_every_registered_command():
    names = {path[0] for path, *_ in COMMAND_TREE} | {
        a for path, _, _, aliases in COMMAND_TREE if len(path) == 1 for a in aliases
    }
    assert names == set(COMMANDS)


@pytest.mark.parametrize(("path", "parser", "help_line", "aliases"), COMMAND_TREE, ids=IDS)
def test_every_command_teaches_in_its_help(path, parser, help_line, aliases):
    command = "parity " + " ".join(path)
    assert help_line and len(help_line) > 10, f"{command} has no one-line help in its parent's list"
    assert parser.description and len(parser.description) > 30, f"{command} has no description"
    epilog = parser.epilog or ""
    examples = [line.strip() for line in epilog.splitlines() if line.strip().startswith(command + " ")]
    assert "example" in epilog.lower() and examples, f"{command} --help shows no example ({command} ...)"
    # the example lines must reach the user as written, not re-wrapped into one paragraph
    assert issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter), command
    text = parser.format_help()
    assert all(e in text for e in examples), command
    assert not RST.search(text), f"{command} --help shows RST markup: {RST.search(text).group()!r}"
    for alias in aliases:  # argparse lists "ls (stats)" in the parent's help; the description says it
        assert f"parity {' '.join((*path[:-1], alias))} is an alias" in parser.description, command


def test_top_level_help_teaches():
    parser = build_parser()
    text = parser.format_help()
    assert not RST.search(text)
    assert "parity demo" in (parser.epilog or "")
    assert "ls (stats)" in text  # argparse lists the alias next to its command


def test_one_word_for_runs():
    """Every help text calls a run a run (``--run NAME``): never "run id" or "run name"."""
    for path, parser, help_line, _ in COMMAND_TREE:
        text = f"{help_line}\n{parser.format_help()}"
        assert not re.search(r"(?<!--)\brun[ _-]?(id|name)\b", text, re.I), " ".join(path)
        if any("--run" in a.option_strings for a in parser._actions):
            assert "--run NAME" in parser.format_help(), " ".join(path)


def test_stats_is_an_alias_of_ls(capsys):
    with pytest.raises(SystemExit):
        main(["stats", "--help"])
    stats = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["ls", "--help"])
    assert capsys.readouterr().out == stats


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: parity" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_every_error_parity_raises_is_a_parity_error():
    """One error base (parity.wire.errors): each package's errors derive from it, so the entry point
    can word any of them as one line with exit code 2."""
    from parity.evals.gate.rules import RuleError
    from parity.recorder.cli import RecordError
    from parity.recorder.importers import ImportError_
    from parity.recorder.redaction_rules import RedactionError
    from parity.replayer.errors import ConfigError, RunStateError, SelectionError
    from parity.replayer.preflight import PreflightError
    from parity.store.store import NoStoreError
    from parity.wire.errors import ParityError

    for cls in (RuleError, RecordError, ImportError_, RedactionError, ConfigError, RunStateError):
        assert issubclass(cls, ParityError), cls
    assert issubclass(SelectionError, ParityError) and issubclass(PreflightError, ParityError)
    assert issubclass(NoStoreError, ParityError)


def test_an_unworded_parity_error_is_one_line_and_exit_2(monkeypatch, capsys):
    from parity.evals import cli as eval_cli
    from parity.evals.errors import EvalError

    def boom(args):
        raise EvalError("the run has no cells")

    monkeypatch.setattr(eval_cli, "cmd_eval", boom)
    assert main(["eval", "--run", "x"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "parity eval: error: the run has no cells"
