"""Early, clear answers to a new user's mistakes (issue #18, item 1): a typo'd ``--db`` on a
command that reads, a taken port for ``parity record``, the base URL apps should use, each log
line once, and a reader that closes the pipe early. Real processes, a real socket holding the
port, the real fake provider, real store files."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from parity.cli import build_parser, main
from parity.fake.server import FakeProvider
from parity.store.cli import DEFAULT_DB

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

CLI = [sys.executable, "-m", "parity.cli"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def tree(root: Path) -> set[str]:
    """Every file and folder under ``root``: what a command left behind."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def reading_commands(typo: Path, providers: Path, out: Path) -> dict[str, list[str]]:
    """Every command that reads a store, pointed at ``typo``."""
    db = ["--db", str(typo)]
    return {
        "ls": ["ls", *db],
        "stats": ["stats", *db],
        "export": ["export", *db, "--out", str(out)],
        "compact": ["compact", *db],
        "eval": ["eval", *db],
        "report": ["report", *db, "--out", str(out / "r.html")],
        "check": ["check", *db],
        "replay": ["replay", *db, "--providers", str(providers), "--run", "r1"],
        "replay --dry-run": ["replay", *db, "--providers", str(providers), "--run", "r1", "--dry-run"],
    }


@pytest.mark.parametrize(
    "command", ["ls", "stats", "export", "compact", "eval", "report", "check", "replay", "replay --dry-run"]
)
def test_a_reading_command_on_a_typo_says_no_store_and_creates_nothing(
    command: str, migrated_store: Path, capsys
) -> None:
    folder = migrated_store.parent
    providers = folder / "providers.toml"
    providers.write_text('[fastco]\nbase_url = "http://127.0.0.1:9/v1"\n')
    typo = folder / "parity.duckbd"
    before = tree(folder)
    argv = reading_commands(typo, providers, folder / "out")[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"no store at {typo} (did you mean --db {migrated_store}?)" in err, err
    assert err.startswith(f"parity {argv[0]}: ")
    assert tree(folder) == before  # no parity.duckbd, no parity.duckbd.d/, no out/


def test_no_store_in_the_folder_names_the_path_only(tmp_path: Path, monkeypatch, capsys) -> None:
    """No suggestion without a store beside it; the default path is the one named."""
    monkeypatch.chdir(tmp_path)
    assert main(["ls"]) == 2
    assert capsys.readouterr().err.strip() == f"parity ls: no store at {DEFAULT_DB}"
    assert tree(tmp_path) == set()


def test_notebooks_connect_refuses_a_missing_store(tmp_path: Path) -> None:
    from parity.store.store import NoStoreError, connect

    with pytest.raises(NoStoreError, match="no store at"):
        connect(tmp_path / "nope.duckdb")
    assert tree(tmp_path) == set()


def _db_options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command, its --db action) for every command and sub-command."""
    for action in parser._actions:
        if "--db" in action.option_strings:
            yield " ".join(path), action
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _db_options(child, (*path, name))


# ``providers check`` reads the store only to learn which models to probe, and works without one;
# ``demo`` keeps its store in its --out folder unless --db names another (and its help says so).
OPTIONAL_DB = {"providers check", "demo"}


def test_db_is_one_rule_on_every_command() -> None:
    found = dict(_db_options(build_parser()))
    assert {"record", "import", "ls", "export", "compact", "replay", "eval", "report", "check"} <= set(found)
    for command, action in found.items():
        if command in OPTIONAL_DB:
            assert action.default is None and "default:" in action.help, command
            continue
        assert action.default == DEFAULT_DB and not action.required, command
        assert f"default: {DEFAULT_DB} in the current folder" in action.help, command


def test_record_on_a_taken_port_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = subprocess.run(
            [*CLI, "record", "--upstream", "http://127.0.0.1:9", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env={**ENV, "XDG_STATE_HOME": str(tmp_path / "state")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == (
        f"parity record: --listen 127.0.0.1:{port} is in use; choose another with --listen HOST:PORT\n"
    )
    assert tree(tmp_path) == set()  # no parity.duckdb, no parity.duckdb.d/, no spill folder


def test_record_prints_the_base_url_apps_use_and_each_log_line_once(tmp_path: Path, proc_kit) -> None:
    port = proc_kit.free_port()
    with FakeProvider.running("instant") as fp:
        proc = subprocess.Popen(
            [*CLI, "record", "--upstream", fp.url, "--listen", f"127.0.0.1:{port}", "--db", "rec.duckdb"],
            cwd=tmp_path,
            env={**ENV, "XDG_STATE_HOME": str(tmp_path / "state")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            proc_kit.wait_port(port, proc=proc)
            first, second = proc.stdout.readline(), proc.stdout.readline()
            assert first.startswith(f"parity record: listening on http://127.0.0.1:{port} "), first
            base_url = f"http://127.0.0.1:{port}/v1"
            assert second.strip() == f"parity record: apps: base_url={base_url} (OPENAI_BASE_URL={base_url})"
            # the printed base_url is the one that works
            client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=20)
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content
        finally:
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert rest == ""
    lines = [re.sub(r"^\[[\d:.]+\]", "", line) for line in err.splitlines()]  # drop the time
    assert lines, err
    assert len(lines) == len(set(lines)), f"a log line printed twice:\n{err}"
    assert sum("recording into rec.duckdb.d" in line for line in lines) == 1, err
    assert sum("wrote 1 exchanges" in line for line in lines) == 1, err


@pytest.mark.parametrize("command", [["fake-provider", "--list-profiles"], ["ls"]])
def test_a_closed_pipe_ends_quietly(command: list[str], migrated_store: Path) -> None:
    """``parity ls | head -1``: the reader goes away before parity writes; no traceback, exit 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: EPIPE, every time
    try:
        out = subprocess.run(
            [*CLI, *command],
            cwd=migrated_store.parent,
            env=ENV,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert out.returncode == 1
    assert out.stderr == ""
