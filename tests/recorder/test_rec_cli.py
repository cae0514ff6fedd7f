"""The recorder's commands: help for each, clear one-line errors, ``ls`` on a store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parity.cli import COMMAND_MODULES
from parity.recorder import cli
from parity.store.segments import segment_root, write_segment

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    return dict(sub.choices)


def test_every_command_and_option_has_help() -> None:
    cmds = subcommands()
    assert set(cmds) == {"record", "import", "ls", "stats"}
    assert "parity.recorder.cli" in COMMAND_MODULES
    for name, p in cmds.items():
        assert p.description or p.format_usage(), name
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0.0.0.0:8080", "--upstream", "http://x"], "not a loopback address"),
        (["--listen", "127.0.0.1:nope", "--upstream", "http://x"], "expected HOST:PORT"),
        (["--mode", "reverse"], "needs --upstream"),
        (["--upstream", "api.openai.com"], "must start with http"),
        (["--mode", "socks9"], "unknown --mode"),
        (["--upstream", "http://x", "--flush-interval", "5"], "(0, 1]"),
    ],
)
def test_record_refuses_bad_arguments_with_one_line(args, message, tmp_path: Path, capsys) -> None:
    assert cli.main(["record", "--db", str(tmp_path / "x.duckdb"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


def test_ls_with_tag_filter(migrated_store: Path, capsys) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "id": "a",
            "recorded_at": now,
            "endpoint": "chat.completions",
            "model": "m1",
            "status": 200,
            "tag": "x",
        },
        {
            "id": "b",
            "recorded_at": now,
            "endpoint": "embeddings",
            "model": "e",
            "status": 429,
            "tag": "y",
            "error_type": "requests",
        },
    ]
    write_segment(segment_root(migrated_store), "exchanges", rows, "w")
    assert cli.main(["ls", "--db", str(migrated_store), "--tag", "y"]) == 0
    out = capsys.readouterr().out
    assert "1 exchanges, 0 streamed, 1 with errors" in out and "embeddings" in out
    assert "chat.completions" not in out and "errors: requests 1" in out
    assert cli.main(["stats", "--db", str(migrated_store)]) == 0
    assert "2 exchanges" in capsys.readouterr().out


def test_ls_on_an_empty_store(migrated_store: Path, capsys) -> None:
    assert cli.main(["ls", "--db", str(migrated_store)]) == 0
    assert "0 exchanges" in capsys.readouterr().out
