"""The notebooks run top to bottom against a store (so they never rot) and are committed clean."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from reporthelpers import RUN

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))
NAMES = ["01_explore_recordings.ipynb", "02_compare_providers.ipynb", "03_cost_projection.ipynb"]


def test_notebooks_are_committed_without_outputs_and_parameterised():
    assert [p.name for p in NOTEBOOKS] == NAMES
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        first = code[0]
        assert "parameters" in first.metadata.get("tags", [])
        assert 'DB = os.environ.get("PARITY_DB", "parity.duckdb")' in first.source
        assert 'RUN = os.environ.get("PARITY_RUN")' in first.source


def test_generator_reproduces_the_committed_notebooks(tmp_path):
    sys.path.insert(0, str(REPO / "notebooks"))
    try:
        import build
    finally:
        sys.path.pop(0)
    for path in build.build(tmp_path):
        assert path.read_text() == (REPO / "notebooks" / path.name).read_text(), (
            f"{path.name} differs from notebooks/build.py's output: run python notebooks/build.py"
        )


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs this interpreter (the venv's), whatever kernels are installed."""
    spec = tmp_path / "jupyter" / "kernels" / "parity-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "parity test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend makes the PNGs
    return "parity-test"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_against_a_store(name, report_store, kernel_name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("PARITY_DB", str(report_store))
    if name == "03_cost_projection.ipynb":
        monkeypatch.delenv("PARITY_RUN", raising=False)  # None: the newest run
    else:
        monkeypatch.setenv("PARITY_RUN", RUN)
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, name
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Traceback" not in streams
