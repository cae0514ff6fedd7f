"""The one exception evals raises; the CLI turns it into one line and exit code 2."""

from __future__ import annotations


class EvalError(Exception):
    """An evaluation cannot be computed (no such store or run, bad option, unreachable judge)."""
