"""Every ``parity`` command exists, has help text, and answers ``--help``."""

from __future__ import annotations

import pytest

from parity.cli import COMMANDS, build_parser, main


def test_every_command_has_help_text():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(COMMANDS)
    for name, text in helps.items():
        assert text and len(text) > 10, f"parity {name} has no help text"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: parity" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
