"""The proxy's side of shadowing: a bounded queue and a sender thread feeding the shadow process.

As with the writer process (``parity.recorder.writer_proc``), the proxy's event loop does one deque
append per mirrored exchange; a sender thread pickles batches onto a pipe to the shadow process
(``python -m parity.shadow.process``), which does everything else. Nothing here ever blocks the
loop: when the queue holds ``bound`` exchanges (the shadow process is behind, or gone), the next ones
are dropped and counted (``queue_full``). Protocol, parent -> child, length-prefixed pickles:
``("init", ShadowInit)``, then ``("caps", [capture, ...], counters)`` and finally ``("close", counters)``;
end of file instead of ``close`` means the recorder died (the child then stops at once: see
``parity.shadow.process``).
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("parity.shadow")
LEN = struct.Struct("<Q")
SEND_BATCH = 64  # exchanges per pickle: one dumps() holds the GIL, keep it short
SEND_EVERY_S = 0.02  # a mirror waits at most about this long in the proxy process


@dataclass
class ShadowInit:
    """Everything the shadow process needs, sent once at start (never a key: it reads its environment)."""

    db: str
    root: str
    providers: str  # the providers file (the replay one)
    run_id: str
    sample: float = 1.0
    max_cost: float | None = None
    redactor: object | None = None  # the recorder's Redactor (pickled as its spec)
    drain_s: float = 10.0  # at a clean stop, how long mirrors in flight may still finish
    status_s: float = 10.0  # how often the run's counters are stored while they change
    journal_max_bytes: int = 64 << 20  # a continuous run's journal starts afresh past this size
    nice: int = 19  # the shadow process takes only CPU the proxy and the app leave (docs/shadow.md)


def write_msg(fd: int, msg: tuple) -> None:
    """One length-prefixed pickle onto ``fd`` (blocking: called on the sender thread only)."""
    blob = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(LEN.pack(len(blob)) + blob)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_msg(fh) -> tuple | None:
    """The next message from a binary file, None at end of file (or a torn message)."""
    head = fh.read(LEN.size)
    if len(head) < LEN.size:
        return None
    blob = fh.read(LEN.unpack(head)[0])
    try:
        return pickle.loads(blob)
    except Exception:  # noqa: BLE001 (torn by the parent's death)
        return None


class ShadowHandle:
    """The recorder process's handle on the shadow process."""

    def __init__(self, init: ShadowInit, bound: int = 1000) -> None:
        self.init, self.bound = init, bound
        self.counts = {"seen": 0, "sampled": 0, "queue_full": 0}
        self._q: deque = deque()
        self._wake = threading.Event()
        self._stop = False
        self._fd: int | None = None
        self._gone = False
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the shadow process and the sender thread (returns at once)."""
        r, w = os.pipe()
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1])  # the checkout holding ``parity``, when not installed
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parity.shadow.process", str(r)],
            pass_fds=(r,),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(r)
        self._fd = w
        write_msg(w, ("init", self.init))
        self._thread = threading.Thread(target=self._run, name="parity-shadow-sender", daemon=True)
        self._thread.start()
        log.info("parity: shadow process %d mirroring run %r", self.proc.pid, self.init.run_id)

    def offer(self, cap) -> None:
        """Queue one finished exchange for mirroring, or drop and count it; never blocks."""
        if len(self._q) >= self.bound or self._gone:
            self.counts["queue_full"] += 1
            return
        self._q.append(cap)
        if len(self._q) >= SEND_BATCH:
            self._wake.set()

    def _run(self) -> None:
        last_counts: dict = {}
        while not self._stop:
            self._wake.wait(SEND_EVERY_S)
            self._wake.clear()
            try:
                if self._q or self.counts != last_counts:
                    last_counts = dict(self.counts)
                    self._send_queued()
            except BaseException:  # the sender must outlive any bug
                log.exception("parity shadow: hand-off failed")

    def _send_queued(self) -> None:
        while True:
            n = min(len(self._q), SEND_BATCH)
            items = [self._q.popleft() for _ in range(n)]
            if self._gone:
                self.counts["queue_full"] += len(items)
                return
            try:
                write_msg(self._fd, ("caps", items, dict(self.counts)))
            except OSError as e:  # the shadow process died: recording goes on, mirrors are counted
                self._gone = True
                self.counts["queue_full"] += len(items)
                log.error("parity shadow: the shadow process is gone (%s); mirroring stopped", e)
                return
            if not self._q:
                return

    def close(self, timeout: float = 60.0) -> int | None:
        """Hand over what is queued, tell the shadow process to finish, wait for it; its exit code."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._fd is not None:
            try:
                if not self._gone:
                    self._send_queued()
                    write_msg(self._fd, ("close", dict(self.counts)))
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        if self.proc is None:
            return None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            log.error("parity shadow: the shadow process did not finish within %.0f s; killing it", timeout)
            self.proc.kill()
            self.proc.wait(5)
        return self.proc.returncode
