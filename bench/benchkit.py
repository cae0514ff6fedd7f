"""Process and port helpers the bench scripts share (run them as ``python bench/NAME.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")


def stop_proc(proc: subprocess.Popen | None, timeout: float = 60.0) -> int | None:
    """SIGTERM ``proc`` (only it), wait, SIGKILL if it will not go; returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK
