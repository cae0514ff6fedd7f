"""Waiting on a condition instead of sleeping a fixed time (tests import it as ``waitkit``:
pyproject's pytest ``pythonpath`` puts tests/support on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], timeout: float = 10.0, every: float = 0.05) -> bool:
    """Poll ``cond`` until it is truthy or ``timeout`` s have passed; True if it held (use with assert)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())
