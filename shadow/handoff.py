"""The proxy's side of shadowing: a bounded queue and a sender thread feeding the shadow process.

As with the writer process (``parity.recorder.writer_proc``), the proxy's event loop does one deque
append per mirrored exchange; a sender thread pickles batches onto a pipe to the shadow process
(``python -m parity.shadow.process``), which does everything else. Nothing here ever blocks the
loop: when the queue holds ``bound`` exchanges (the shadow process is behind, or gone), the next ones
are dropped and counted (``queue_full``). Protocol, parent -> child, length-prefixed pickles:
``("init", ShadowInit)``, then ``("caps", [capture, ...], counts)`` and finally ``("close", counts)``,
where counts are what the proxy's counters (seen, sampled, queue_full, shadow_down) grew by since the
last message; end of file instead of ``close`` means the recorder died (the child then stops at once:
see ``parity.shadow.process``). A shadow process that dies is replaced (at most every ``respawn_s``);
the new one continues the run like a restart.
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
    respawn_s: float = 30.0  # a shadow process that died is replaced at most this often (recorder side)
    journal_max_bytes: int = 64 << 20  # a continuous run's journal starts afresh past this size
    nice: int = 19  # 19: SCHED_IDLE, the shadow process takes only CPU nothing else wants (docs/shadow.md)


def journal_writers(root: str | os.PathLike, run_id: str) -> list[int]:
    """Pids of the live processes (other than this one) holding a journal of ``run_id``.

    Journals are ``<root>/journal/<run_id>.<pid>-<random>.jsonl`` (``parity.replayer.journal``, not
    imported here: it would load the HTTP client into the proxy process).
    """
    d = Path(root) / "journal"
    pids = set()
    for path in d.glob(f"{run_id}.*.jsonl") if d.is_dir() else []:
        head = path.name[len(run_id) + 1 :].split("-", 1)[0]
        if head.isdigit() and int(head) != os.getpid():
            pids.add(int(head))
    return sorted(p for p in pids if _alive(p))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_writers(root: str | os.PathLike, run_id: str, timeout: float) -> list[int]:
    """Wait up to ``timeout`` s for other processes still writing the run's journals; those left."""
    deadline = time.monotonic() + timeout
    while True:
        left = journal_writers(root, run_id)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


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
        # this recorder's totals; each message carries what they grew by since the last one delivered
        self.counts = {"seen": 0, "sampled": 0, "queue_full": 0, "shadow_down": 0}
        self._delivered = dict(self.counts)
        self._q: deque = deque()
        self._wake = threading.Event()
        self._stop = False
        self._fd: int | None = None
        self._down_until = 0.0  # the shadow process died: mirrors are dropped until a new one may start
        self._spawned = 0.0
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the shadow process and the sender thread (returns at once)."""
        self._spawn()
        self._thread = threading.Thread(target=self._run, name="parity-shadow-sender", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
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
        self._spawned = time.monotonic()
        write_msg(w, ("init", self.init))
        log.info("parity: shadow process %d mirroring run %r", self.proc.pid, self.init.run_id)

    def offer(self, cap) -> None:
        """Queue one finished exchange for mirroring, or drop and count it; never blocks."""
        if self._down_until:
            self.counts["shadow_down"] += 1
        elif len(self._q) >= self.bound:
            self.counts["queue_full"] += 1
        else:
            self._q.append(cap)
            if len(self._q) >= SEND_BATCH:
                self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(SEND_EVERY_S)
            self._wake.clear()
            try:
                if self._down_until and time.monotonic() >= self._down_until:
                    self._spawn()  # it continues the run: what the dead one had in flight is counted lost
                    self._down_until = 0.0
                if not self._down_until and (self._q or self.counts != self._delivered):
                    self._send_queued()
            except BaseException:  # the sender must outlive any bug
                log.exception("parity shadow: hand-off failed")

    def _deltas(self) -> dict:
        now = dict(self.counts)
        return {k: now[k] - self._delivered[k] for k in now}, now

    def _send_queued(self) -> None:
        while True:
            items = [self._q.popleft() for _ in range(min(len(self._q), SEND_BATCH))]
            deltas, now = self._deltas()
            try:
                write_msg(self._fd, ("caps", items, deltas))
            except OSError as e:  # the shadow process died: recording goes on, mirrors are counted
                self.counts["shadow_down"] += len(items) + len(self._q)
                self._q.clear()
                self._went_down(e)
                return
            self._delivered = now
            if not self._q:
                return

    def _went_down(self, e: Exception) -> None:
        os.close(self._fd)
        self._fd = None
        if self.proc is not None:
            self.proc.poll()
        self._down_until = max(time.monotonic(), self._spawned + self.init.respawn_s)
        log.error(
            "parity shadow: the shadow process is gone (%s, exit %s); mirrors dropped until another starts "
            "(in %.0f s); recording goes on",
            e,
            self.proc.returncode if self.proc else None,
            self._down_until - time.monotonic(),
        )

    def close(self, timeout: float = 60.0) -> int | None:
        """Hand over what is queued, tell the shadow process to finish, wait for it; its exit code."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._fd is not None:
            try:
                self._send_queued()
                if self._fd is not None:
                    write_msg(self._fd, ("close", self._deltas()[0]))
            except OSError:
                pass
            if self._fd is not None:
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
