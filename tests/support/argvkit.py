"""``parity replay``'s command line for tests: the store, the providers file and the run, then the rest.

Imported by name (``from argvkit import replay_argv``): tests/support is on pytest's pythonpath.
"""

from __future__ import annotations

from pathlib import Path


def replay_argv(db: Path | str, providers: Path | str, run: str, *more: str) -> list[str]:
    """``replay --db DB --providers FILE --run RUN`` followed by ``more``."""
    return ["replay", "--db", str(db), "--providers", str(providers), "--run", run, *more]
