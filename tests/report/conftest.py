"""Fixtures for the report tests: the synthetic store of reporthelpers.py, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from reporthelpers import RUN, build_store


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic store (run ``r1``), written once per test session."""
    return build_store(tmp_path_factory.mktemp("report-store") / "parity.duckdb")


@pytest.fixture(scope="session")
def built_report(report_store: Path):
    """``parity.evals.report.page.build`` of the synthetic run."""
    from parity.evals.report import page as report

    return report.build(report_store, RUN)


@pytest.fixture(scope="session")
def report_html(built_report) -> str:
    from parity.evals.report import page as report

    return report.render_html(built_report)
