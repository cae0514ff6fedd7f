"""The layers of docs/architecture.md, checked on every import (function-level ones too).

Bottom to top: wire < store < (recorder, replayer, fake) < shadow < evals < the app (parity/*.py). A module
may import its own package and any layer below its own; the recorder, the replayer and the fake
provider are one layer and never import each other (what they share lives in wire or store).
Nothing anywhere imports the folders by their bare names (``import recorder``): only ``parity.*``
is installed, and a bare name would load a second copy of a module from the checkout.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RANK = {"wire": 0, "store": 1, "recorder": 2, "replayer": 2, "fake": 2, "shadow": 3, "evals": 4}
APP = 5  # parity/__init__.py, cli.py, demo.py, workload.py, procs.py
BARE = frozenset(RANK)  # the folders' own names, never imported as top-level modules
ELSEWHERE = ("tests", "bench", "notebooks")  # code that may import any layer, but only as parity.*


def unit_of(module: str) -> str:
    """The package a ``parity.*`` module belongs to: ``wire`` ... ``evals``, or ``parity`` (the app)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "parity"


def rank_of(unit: str) -> int:
    return RANK.get(unit, APP)


def module_name(path: Path) -> str:
    """``parity.<folder>.<...>`` for a file of a layer folder or of parity/."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "parity" else ["parity", *parts])


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``tree``; ``from X import y`` counts as ``X.y``
    when y is a layer (``from parity import evals``), else as ``X``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            if base == "parity":
                out += [(node.lineno, f"parity.{a.name}" if a.name in RANK else "parity") for a in node.names]
            else:
                out.append((node.lineno, base))
    return out


def violations(source: str, path: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``source`` that points up a layer or sideways within the middle one."""
    here = unit_of(module)
    found = []
    for line, target in imported(ast.parse(source), module, is_package):
        top = target.split(".")[0]
        if top in BARE:
            found.append(f"{path}:{line}: imports {target} (bare name; use parity.{target})")
            continue
        if top != "parity" or here == "parity":
            continue
        there = unit_of(target)
        if there == here:
            continue
        if rank_of(there) >= rank_of(here):
            way = "sideways" if rank_of(there) == rank_of(here) else "up"
            found.append(f"{path}:{line}: {here} imports {target} ({way}: {there} is not below {here})")
    return found


def layer_files() -> list[Path]:
    files = [p for p in (REPO / "parity").glob("*.py")]
    for folder in RANK:
        files += sorted((REPO / folder).rglob("*.py"))
    return files


def test_the_layer_folders_are_what_parity_installs() -> None:
    for folder in RANK:
        link = REPO / "parity" / folder
        assert link.is_symlink() and link.resolve() == (REPO / folder).resolve(), link


def test_no_import_points_up_or_sideways() -> None:
    found = []
    for path in layer_files():
        rel = path.relative_to(REPO)
        found += violations(path.read_text(), str(rel), module_name(path), path.name == "__init__.py")
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_tests_benches_and_notebooks_import_parity_names_only() -> None:
    found = []
    for folder in ELSEWHERE:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            rel = str(path.relative_to(REPO))
            for line, target in imported(ast.parse(path.read_text()), "tests.x", False):
                if target.split(".")[0] in BARE:
                    found.append(f"{rel}:{line}: imports {target} (bare name; use parity.{target})")
    assert not found, "\n".join(found)


# "file | its source | what the message says" (ALLOWED: no message)
AGAINST = [
    "store/x.py | from parity.replayer.config import load_config | up",
    "wire/x.py | def f():\n    from parity.store.store import connect | up",
    "replayer/x.py | from parity.recorder.capture import REDACTED | sideways",
    "fake/x.py | from parity.replayer import config | sideways",
    "evals/x.py | from parity import __version__ | up",
    "replayer/x.py | import recorder.store | bare name",
    "recorder/x.py | from parity.shadow.addon import Shadow | up",
    "shadow/x.py | from parity.evals import cli | up",
]
ALLOWED = [
    "evals/x.py | from parity.replayer.facts import COLUMNS\nfrom parity.store.store import connect",
    "replayer/x.py | from parity.wire.sse import parse_all\nfrom parity.replayer import journal",
    "fake/x.py | from . import content\nfrom .base import Ctx",
    "parity/cli.py | from parity.evals import cli\nfrom parity import __version__",
    "shadow/x.py | from parity.replayer.client import ProviderClient\nfrom parity.recorder.capture import build_row",
]


def case(line: str) -> tuple[str, str, str, str]:
    """(path, module, source, rest) of one ``AGAINST`` / ``ALLOWED`` line."""
    path, source, *rest = line.split(" | ")
    module = "parity." + path.removesuffix(".py").replace("/", ".").removeprefix("parity.")
    return path, module, source, "".join(rest)


@pytest.mark.parametrize("line", AGAINST)
def test_the_check_names_the_file_and_the_import(line: str) -> None:
    path, module, source, expected = case(line)
    (found,) = violations(source, path, module)
    assert found.startswith(f"{path}:") and expected in found


@pytest.mark.parametrize("line", ALLOWED)
def test_imports_down_and_within_a_package_pass(line: str) -> None:
    path, module, source, _ = case(line)
    assert violations(source, path, module) == []
