"""The built wheel installs one name, ``parity``, with the layers under it and their data files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("wire", "store", "recorder", "replayer", "fake", "shadow", "evals")
# what a build does not need (and must not write into: setuptools builds in the source tree)
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "*.egg-info", "__pycache__", "artifacts", "demo-out", ".*cache"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from the checkout, offline, with this environment's setuptools."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: cannot build the wheel offline")
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=NOT_SOURCE)  # the layer links stay links
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    wheels = list(out.glob("parity-*.whl"))
    shutil.rmtree(src)
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"cannot build the wheel here: {proc.stderr.strip()[-300:]}")
    return wheels[0]


def test_the_only_top_level_name_is_parity(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"parity"}
    for layer in LAYERS:
        assert f"parity/{layer}/__init__.py" in names, layer


def test_the_wheel_ships_presets_and_templates_and_they_load(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "parity/replayer/presets/openai.toml" in names
    assert "parity/evals/report/templates/report.html.j2" in names
    zipfile.ZipFile(wheel).extractall(tmp_path)
    # Run from the unpacked wheel (sys.path comes before the editable install's finder).
    code = (
        "import parity, parity.replayer.config as c, parity.evals.report.page as r\n"
        f"assert parity.__file__.startswith({str(tmp_path)!r}), parity.__file__\n"
        "assert 'openai' in c.list_presets()\n"
        "assert (r.TEMPLATES / 'report.html.j2').is_file()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
