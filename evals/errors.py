"""The one exception evals raises; the CLI turns it into one line and exit code 2."""

from __future__ import annotations

from parity.wire.errors import ParityError


class EvalError(ParityError):
    """An evaluation cannot be computed (no such store or run, bad option, unreachable judge)."""
