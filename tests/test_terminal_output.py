"""What a user sees in the terminal: ``parity eval``'s verdict fits 120 columns, the full tables and
the machine forms are one option away, and no library log line or warning reaches the user.

The nine-provider run (``trial``: a control, six deviating gateways, broken streams and a dead
provider) is the crowded case; ``parity demo`` the first one a user meets.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_trial import DEVIATIONS, RUN

from parity.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
MISSING = re.compile(r"\b(null|NaN|None)\b")


def _eval(trial: dict, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["eval", "--db", str(trial["db"]), "--run", RUN, *extra]) == 0
    return capsys.readouterr().out


def _fits(text: str, width: int = 120) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, "\n".join(too_long)


def test_the_default_verdict_of_nine_providers_fits_120_columns(trial, capsys):
    out = _eval(trial, capsys)
    _fits(out)
    assert len(out.splitlines()) <= 45, out  # about a screen
    assert not MISSING.search(out), out
    providers = ["control", "breaks", "dead", *DEVIATIONS]
    lines = out.splitlines()
    for p in providers:
        assert sum(line.startswith(f"{p} ") for line in lines) == 2, p  # one row in each table
        assert any(line.startswith(f"{p}: ") for line in lines), p  # and its line in words
    assert any(line.startswith("dead: answered none of its") for line in lines)
    # the failing checks are named (the compatibility column or the provider's line)
    for p, checks in DEVIATIONS.items():
        mine = "\n".join(line for line in lines if line.startswith((f"{p} ", f"{p}: ")))
        assert all(c in mine for c in checks), (p, mine)
    assert "== latency" not in out


def test_detail_and_the_machine_forms(trial, capsys):
    detail = _eval(trial, capsys, "--detail")
    for title in (
        "== summary ==",
        "== latency",
        "== reliability ==",
        "== cost (USD) ==",
        "== compatibility ==",
    ):
        assert title in detail
    assert not MISSING.search(detail)
    assert re.search(r"\| p(=[0-9.]+|<0\.001) ", detail)  # p-values in the one notation

    as_json = json.loads(_eval(trial, capsys, "--format", "json"))
    assert as_json == json.loads(_eval(trial, capsys, "--json"))  # the documented alias
    table = list(csv.DictReader(io.StringIO(_eval(trial, capsys, "--format", "csv"))))
    assert {r["provider"] for r in table} == set(as_json["providers"])
    dead = next(r for r in table if r["provider"] == "dead")
    assert float(dead["error_rate"]) == 1 and dead["compat_failures"] == ""
    md = _eval(trial, capsys, "--format", "md")
    assert md.startswith("### run t: ") and "| dead |" in md and "\n- dead: answered none" in md


def test_check_formats_keep_the_exit_code(trial, capsys):
    capsys.readouterr()
    rc = main(["check", "--db", str(trial["db"]), "--run", RUN, "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["failed"] > 0
    assert {"provider": "dead", "rule": "error_rate >= 1", "result": "fail"}.items() <= next(
        c for c in doc["checks"] if c["provider"] == "dead" and c["rule"] == "error_rate >= 1"
    ).items()
    assert main(["check", "--db", str(trial["db"]), "--run", RUN, "--format", "csv"]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(doc["checks"]) and {r["result"] for r in rows} == {"ok", "fail"}
    assert main(["check", "--db", str(trial["db"]), "--run", RUN, "--format", "md"]) == 1
    assert "| **FAIL** | dead | `error_rate >= 1` |" in capsys.readouterr().out


def _parity(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``parity ...`` in a fresh interpreter that turns any RuntimeWarning into an error."""
    return subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "parity.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=240,
    )


def test_eval_report_and_check_emit_no_warning(trial, tmp_path):
    db = str(trial["db"])
    for args, rc in (
        (("eval", "--db", db, "--run", RUN), 0),
        (("report", "--db", db, "--run", RUN, "--out", str(tmp_path / "r.html")), 0),
        (("check", "--db", db, "--run", RUN), 1),
    ):
        p = _parity(*args, cwd=tmp_path)
        assert p.returncode == rc, p.stderr
        assert "Warning" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_the_demo_shows_no_library_lines_and_its_verdict_fits(tmp_path):
    p = _parity("demo", "--out", str(tmp_path / "demo"), "--requests", "30", cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "httpx" not in p.stderr and "Warning" not in p.stderr, p.stderr
    verdict = p.stdout.split("[3/4] evaluating", 1)[1].split("[4/4]", 1)[0]
    assert "fastco: " in verdict and "slowco: " in verdict
    _fits(verdict)
    assert not MISSING.search(verdict)
