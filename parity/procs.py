"""Ports and stopping for the processes parity starts (the demo), shared by the tests and benches."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (small race: bind soon after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(
    port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0, host: str = "127.0.0.1"
) -> None:
    """Block until something accepts connections on ``port``; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            args = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
            raise RuntimeError(f"{args} exited with {proc.returncode} before listening on {host}:{port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


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
