"""The official ``openai`` npm package through a real ``parity record`` (skipped without node/npm)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

JS = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed")
    if not (JS / "node_modules" / "openai" / "package.json").exists():
        try:
            out = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=240,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install timed out")
        if out.returncode != 0:
            pytest.skip(f"npm install failed: {out.stderr.strip()[-300:]}")
    return Path(node)


def test_node_openai_sdk_through_the_recorder(node_sdk: Path, run_recorder) -> None:
    from parity.fake.server import FakeProvider

    with FakeProvider.running(profile="instant", port=0) as fp:
        rec = run_recorder(fp.url, "--flush-interval", "0.2")
        out = subprocess.run(
            [str(node_sdk), "sdk_check.mjs"],
            cwd=JS,
            env={**os.environ, "BASE_URL": rec.base_url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert rec.stop() == 0  # writes everything
    con = connect(rec.db)
    cur = con.execute("SELECT * FROM exchanges ORDER BY recorded_at")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert [(r["endpoint"], r["stream"], r["status"]) for r in rows] == [
        ("chat.completions", False, 200),
        ("chat.completions", True, 200),
        ("responses", True, 200),
        ("chat.completions", False, 429),
    ]
    plain, stream, responses, limited = rows
    assert all(r["user_agent"].startswith("OpenAI/JS") for r in rows)
    assert json.loads(plain["response_body"])["choices"][0]["message"]["content"] == got["plain"]
    assert json.loads(stream["response_body"])["choices"][0]["message"]["content"] == got["stream"]
    assert stream["stream_complete"] and stream["completion_tokens"]
    assert responses["stream_complete"] and responses["n_events"] == got["responses_events"]
    assert got["error_status"] == 429 and limited["error_type"] == "requests"
