"""Property-based hardening tests: hypothesis profiles and the per-property example counter.

Profiles: ``parity-ci`` (loaded when ``CI=true``) derandomizes every property so a CI run is
reproducible and keeps no example database; locally hypothesis' defaults apply (random search,
examples database), which is what finds new failures. A profile is process-wide: when the whole
suite runs, the other packages' hypothesis tests get it too (derandomized in CI, which is the point).

Every property calls the session fixture ``prop_count`` once per example it runs. The counts are
printed in the terminal summary (``pytest -q`` and ``-q -s`` alike) and written to
``artifacts/property_counts.json`` (gitignored).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[2]
COUNTS_FILE = REPO / "artifacts" / "property_counts.json"

settings.register_profile(
    "parity-ci",
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("parity-dev", print_blob=True)
settings.load_profile(
    "parity-ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "parity-dev"
)

_COUNTS: Counter[str] = Counter()


def _current_test() -> str:
    """``module::test`` of the test running now (pytest keeps it in PYTEST_CURRENT_TEST)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "unknown (call)")
    nodeid = current.rsplit(" ", 1)[0]
    return nodeid.split("tests/hardening/", 1)[-1]


class _PropCount:
    """``prop_count()`` inside a property body counts one example for the running test."""

    def __call__(self, name: str | None = None) -> None:
        _COUNTS[name or _current_test()] += 1

    def get(self, name: str | None = None) -> int:
        return _COUNTS[name or _current_test()]


@pytest.fixture(scope="session")
def prop_count() -> _PropCount:
    return _PropCount()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _COUNTS:
        return
    tr = terminalreporter
    tr.section("hardening: examples run per property")
    width = max(len(k) for k in _COUNTS)
    for name in sorted(_COUNTS):
        tr.write_line(f"{name:<{width}}  {_COUNTS[name]:>6}")
    tr.write_line(f"{'total':<{width}}  {sum(_COUNTS.values()):>6}")
    try:
        COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        COUNTS_FILE.write_text(json.dumps(dict(sorted(_COUNTS.items())), indent=2) + "\n")
        tr.write_line(f"(written to {COUNTS_FILE.relative_to(REPO)})")
    except OSError as e:
        tr.write_line(f"(could not write {COUNTS_FILE}: {e})")
