"""Fixtures for evals tests (factories live in evalhelpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of an empty store; tests write segments into it with evalhelpers.write_run."""
    return tmp_path / "parity.duckdb"
