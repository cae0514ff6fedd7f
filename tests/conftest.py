"""Shared fixtures: free ports, a migrated temporary store, real ``parity record`` processes.

Kept generic on purpose: package-specific factories (``make_exchange``, fake providers with
a chosen profile) live in each package's own ``tests/<package>/conftest.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from parity.procs import free_port, wait_port

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent


@dataclass
class ProxyProcess:
    """A proxy started by a test (``parity record`` or ``mitmdump``), with its log file."""

    proc: subprocess.Popen
    port: int
    db: Path | None
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` (default SIGTERM) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(
                    f"proxy did not stop within {timeout} s:\n{self.log()[-3000:]}"
                ) from None
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: no flush, no cleanup."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_proxy(
    argv: Sequence[str],
    port: int,
    log_path: Path,
    db: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> ProxyProcess:
    """Start ``argv`` (which must listen on ``port``) and wait until it accepts connections."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, start_new_session=True
        )
    pp = ProxyProcess(proc, port, db, log_path, list(argv))
    try:
        wait_port(port, proc=proc)
    except Exception as e:
        pp.stop()
        raise RuntimeError(f"{' '.join(argv)} did not start: {e}\n{pp.log()[-3000:]}") from e
    return pp


def record_argv(
    upstream: str | None, db: Path, port: int, *extra: str, spill_dir: Path | None = None
) -> list[str]:
    """Command line of ``parity record`` on 127.0.0.1:``port`` (reverse mode when upstream is given).

    Runs ``python -m parity.recorder.cli record``: the same command as ``parity record`` without
    importing the replayer and evals packages, which takes seconds per start.
    """
    argv = [
        PYTHON,
        "-m",
        "parity.recorder.cli",
        "record",
        "--listen",
        f"127.0.0.1:{port}",
        "--db",
        str(db),
        "--quiet",
    ]
    if upstream:
        argv += ["--upstream", upstream]
    spill = spill_dir or db.parent / "spill"
    argv += ["--spill-dir", str(spill), "--confdir", str(spill.parent / "mitmconf")]
    return argv + list(extra)


RecorderFactory = Callable[..., ProxyProcess]


def _recorder_factory(base: Path, started: list[ProxyProcess]) -> RecorderFactory:
    def run(
        upstream: str | None = None,
        *extra: str,
        db: Path | None = None,
        env: dict[str, str] | None = None,
        spill_dir: Path | None = None,
    ) -> ProxyProcess:
        """Start ``parity record`` on a free port in front of ``upstream``; stopped at teardown."""
        port = free_port()
        dbp = db or base / f"rec{len(started)}" / "parity.duckdb"
        if db is None:
            dbp.parent.mkdir(parents=True, exist_ok=True)
        spill = spill_dir or base / f"spill{len(started)}"
        argv = record_argv(upstream, dbp, port, *extra, spill_dir=spill)
        env = {"XDG_STATE_HOME": str(base / "state"), **(env or {})}
        pp = start_proxy(argv, port, base / f"recorder-{port}.log", db=dbp, env=env)
        started.append(pp)
        return pp

    return run


@pytest.fixture
def run_recorder(tmp_path: Path) -> Iterator[RecorderFactory]:
    """Factory: ``run_recorder(upstream, *extra_args, db=None)`` starts a real ``parity record``."""
    started: list[ProxyProcess] = []
    yield _recorder_factory(tmp_path, started)
    for pp in started:
        pp.stop()


@pytest.fixture(scope="module")
def module_recorders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecorderFactory]:
    """Like ``run_recorder`` but shared by a test module (processes stop after the module)."""
    started: list[ProxyProcess] = []
    yield _recorder_factory(tmp_path_factory.mktemp("recorders"), started)
    for pp in started:
        pp.stop()


@pytest.fixture(scope="session")
def proc_kit() -> SimpleNamespace:
    """The process helpers of this conftest, for tests that start their own proxies.

    (Test modules should not ``import conftest``: several conftest.py files share that name.)
    """
    return SimpleNamespace(
        free_port=free_port,
        wait_port=wait_port,
        start_proxy=start_proxy,
        record_argv=record_argv,
        python=PYTHON,
        venv_bin=VENV_BIN,
        repo=REPO,
    )


@pytest.fixture
def migrated_store(tmp_path: Path) -> Path:
    """Path of a fresh store (``.duckdb`` catalog + segment folders) with all migrations applied."""
    from parity.store.store import init_catalog

    db = tmp_path / "store" / "parity.duckdb"
    db.parent.mkdir()
    init_catalog(db)
    return db


@pytest.fixture(scope="session")
def trial(tmp_path_factory: pytest.TempPathFactory, proc_kit: SimpleNamespace) -> Iterator[dict]:
    """The nine-provider run of ``gateway_trial.py`` (control, deviations, broken streams, a dead
    provider), recorded and replayed once per session: ``{"db", "replay_rc", "tmp", "dead_port"}``."""
    from gateway_trial import gateway_trial

    with gateway_trial(tmp_path_factory.mktemp("trial"), proc_kit) as t:
        yield t
