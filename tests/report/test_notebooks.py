"""The notebooks run top to bottom against a store (so they never rot) and are committed clean; each
says which run it reads and refuses one that did not finish."""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from evalhelpers import T0
from reporthelpers import RUN, _config, build_store

from parity.store.segments import segment_root, write_segment

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

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
        default = "all" if path.name.startswith("01") else "latest"
        assert f'RUN = os.environ.get("PARITY_RUN", "{default}")' in first.source
        assert 'os.environ.get("PARITY_ALLOW_INCOMPLETE") == "1"' in first.source


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


def execute(name: str, kernel_name: str, folder: Path):
    """Run notebook ``name`` top to bottom; returns it with its outputs (CellExecutionError on a cell error)."""
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": str(folder)}}
    ).execute()
    return nb


def refusal(e: pytest.ExceptionInfo) -> str:
    """The error a notebook stopped on, without the terminal colours of its traceback."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(e.value))


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def first_line(nb) -> str:
    """The first line the notebook prints."""
    return next(o.text for o in outputs(nb) if o.output_type == "stream").splitlines()[0]


# What each notebook says first, run as test_notebook_runs_against_a_store runs it.
FIRST_LINES = {
    "01_explore_recordings.ipynb": "every recorded exchange of ",  # default: all, not one run
    "02_compare_providers.ipynb": f"run {RUN}: finished 2026-",  # PARITY_RUN set
    "03_cost_projection.ipynb": f"run {RUN}: finished 2026-",  # default: latest
}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_against_a_store(name, report_store, kernel_name, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_DB", str(report_store))
    monkeypatch.delenv("PARITY_ALLOW_INCOMPLETE", raising=False)
    if name == "02_compare_providers.ipynb":
        monkeypatch.setenv("PARITY_RUN", RUN)
    else:
        monkeypatch.delenv("PARITY_RUN", raising=False)  # the default: all (01), latest (03)
    nb = execute(name, kernel_name, tmp_path)
    assert first_line(nb).startswith(FIRST_LINES[name]), first_line(nb)
    if name != "01_explore_recordings.ipynb":
        assert first_line(nb).endswith(f"3 providers (store {report_store})")
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(images) >= 2, name
    streams = "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream")
    assert "Traceback" not in streams


FAILED_NOTE = "fastco: 27/27 failed: connection refused at 127.0.0.1:9999; resume with --resume"


@pytest.fixture(scope="module")
def failed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic store, re-priced without a default price for the recorded arm, then a newer run
    ``r2`` that failed (its run_events only, as a run that died before any answer)."""
    db = build_store(tmp_path_factory.mktemp("failed-store") / "parity.duckdb")
    config = _config()
    config["recorded"]["pricing"] = {"default": None, "gpt-unused": {"input_per_1m": 1.0}}
    later = T0 + timedelta(days=10)
    events = [
        {
            "run_id": RUN,
            "at": T0 + timedelta(days=1),
            "state": "finished",
            "config": json.dumps(config),
            "note": None,
        },
        {"run_id": "r2", "at": later, "state": "started", "config": json.dumps(config), "note": None},
        {
            "run_id": "r2",
            "at": later + timedelta(minutes=1),
            "state": "failed",
            "config": None,
            "note": FAILED_NOTE,
        },
    ]
    write_segment(segment_root(db), "run_events", events, "test")
    return db


@pytest.mark.parametrize("name", NAMES)
def test_notebook_refuses_a_failed_run(name, failed_store, kernel_name, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("PARITY_DB", str(failed_store))
    monkeypatch.setenv("PARITY_RUN", "latest")  # the newest run is r2, which failed
    monkeypatch.delenv("PARITY_ALLOW_INCOMPLETE", raising=False)
    with pytest.raises(CellExecutionError) as e:
        execute(name, kernel_name, tmp_path)
    message = refusal(e)
    assert (
        f"RunRefused: run r2 failed ({FAILED_NOTE}). Resume it with parity replay --run r2 --resume"
        in message
    )
    assert f"set PARITY_RUN to a finished run ({RUN})" in message
    assert "PARITY_ALLOW_INCOMPLETE=1" in message


def test_notebook_refuses_a_run_not_in_the_store(failed_store, kernel_name, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("PARITY_DB", str(failed_store))
    monkeypatch.setenv("PARITY_RUN", "typo")
    with pytest.raises(CellExecutionError) as e:
        execute("02_compare_providers.ipynb", kernel_name, tmp_path)
    assert f"RunRefused: no run 'typo' in {failed_store}; its runs, newest first: r2, {RUN}" in refusal(e)


def test_cost_notebook_lists_an_arm_without_a_price(failed_store, kernel_name, tmp_path, monkeypatch):
    """The recorded arm has no price for its model and no default: listed as "no price", not left out."""
    monkeypatch.setenv("PARITY_DB", str(failed_store))
    monkeypatch.setenv("PARITY_RUN", RUN)  # the finished run of that store
    nb = execute("03_cost_projection.ipynb", kernel_name, tmp_path)
    assert first_line(nb).startswith(f"run {RUN}: finished 2026-")
    tables = [o["data"]["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {})]
    whatif = next(t for t in tables if "cost_selection_usd" in t)
    rows = {
        re.sub(r"<[^>]+>|&quot;", "", cells[0]): [re.sub(r"<[^>]+>|&quot;", "", c) for c in cells[1:]]
        for row in re.findall(r"<tr>(.*?)</tr>", whatif, re.S)
        if (cells := re.findall(r"<td>(.*?)</td>", row, re.S)) and "&quot;" in cells[0]  # not the dtype row
    }
    assert set(rows) == {"recorded", "fastco", "slowco", "flatco"}
    assert rows["recorded"][0] == "no price" and rows["recorded"][-1] == "null", rows["recorded"]
    for arm in ("fastco", "slowco", "flatco"):
        assert rows[arm][0] == "100% of requests priced" and float(rows[arm][-1]) > 0, rows[arm]
    streams = "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream")
    assert "not drawn (no price): recorded" in streams
