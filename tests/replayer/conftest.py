"""Fixtures for replayer tests: a store path and fake-provider processes (helpers in replayhelpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from replayhelpers import FakeProc


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of a fresh store (created on first use)."""
    return tmp_path / "parity.duckdb"


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator:
    """Factory: ``fakes("slow", profile="instant", ttft_ms=100)`` starts a fake-provider process."""
    started: list[FakeProc] = []

    def start(name: str, profile: str = "instant", **sets) -> FakeProc:
        fp = FakeProc(tmp_path, name, profile, **sets)
        started.append(fp)
        return fp

    yield start
    for fp in started:
        fp.stop()
