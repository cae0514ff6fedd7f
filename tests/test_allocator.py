"""The batch commands configure polars' allocator before polars loads, and never over the user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from parity import allocator

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str, env_extra: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter (polars not loaded) and return the JSON it prints."""
    env = {k: v for k, v in os.environ.items() if k != allocator.ENV} | (env_extra or {})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = (
    "import json, os; from parity.allocator import tune_for_batch, ENV; {pre}"
    "got = tune_for_batch(); print(json.dumps({{'got': got, 'env': os.environ.get(ENV)}}))"
)


def test_set_before_polars_loads():
    r = _fresh(PROBE.format(pre=""))
    assert r["got"] == r["env"] == allocator.batch_setting()
    assert "dirty_decay_ms:10000" in r["env"] and "narenas:" in r["env"]


def test_user_setting_wins():
    r = _fresh(PROBE.format(pre=""), {allocator.ENV: "narenas:4"})
    assert r == {"got": None, "env": "narenas:4"}


def test_not_set_once_polars_is_loaded():
    """polars' jemalloc reads its configuration when it loads (polars writes its own into the
    variable then): setting it later would claim a setting that is not in force."""
    r = _fresh(PROBE.format(pre="import polars; "))
    assert r["got"] is None
    assert "narenas" not in r["env"]


def test_parity_eval_runs_with_the_batch_setting(tmp_path):
    """``parity eval`` sets it before its module imports polars (the command then fails on the
    missing store, after the allocator was configured)."""
    code = (
        "import json, os, sys; from parity.cli import main; from parity.allocator import ENV\n"
        f"rc = main(['eval', '--db', {str(tmp_path / 'none.duckdb')!r}, '--run', 'x'])\n"
        "print(json.dumps({'env': os.environ.get(ENV), 'polars': 'polars' in sys.modules}))"
    )
    r = _fresh(code)
    assert r["polars"]
    # polars prepends its own settings; jemalloc applies them in order, so the batch ones win
    assert r["env"].endswith("," + allocator.batch_setting())
