"""The batch writer in a child process, so the proxy's interpreter only pickles captures.

mitmproxy forwards every byte on one event loop in one interpreter. A writer *thread* shares
that interpreter's GIL: building rows (JSON parsing, SSE reassembly) and converting them to
Arrow is Python, or C that holds the GIL, and each millisecond of it is a millisecond the
event loop waits. In a child process the same work runs beside the proxy instead of inside
it. The proxy process keeps what the thread design had on its loop (a deque append per
exchange) plus one ``pickle.dumps`` per batch on a sender thread (~12 us per streamed exchange,
against ~200 us to build its row).

Protocol on one duplex pipe, pickled tuples: parent -> child ``("rows", [(table, item), ...])``
and ``("close", None)``; child -> parent ``("ready", stats)`` after its start-up spill import and
``("closed", stats)`` after the last write. The child ignores SIGINT/SIGTERM (the parent decides
when to stop) and, if the parent dies, writes everything it was sent and exits on end of file:
a ``kill -9`` of the proxy loses only what was still queued in the proxy process (at most one
flush interval). If the child dies, the parent starts another and resends the batch; if that
fails too, it falls back to an in-process :class:`~parity.store.writer.BatchWriter` thread.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from parity.recorder.redact import Redactor
from parity.store.segments import as_root
from parity.store.writer import BatchWriter, WriterStats, default_spill_dir

log = logging.getLogger("parity.writer")
SEND_BATCH = 64  # items per pickle: one dumps() call holds the GIL, keep it short
_COUNTERS = ("written", "spilled", "reimported", "lost", "failures", "segments")


class ProcessWriter:
    """Same interface as BatchWriter (start, put, close, stats); the work runs in a child."""

    def __init__(
        self,
        root: Path,
        spill_dir: Path | None = None,
        interval: float = 0.5,
        writer_id: str | None = None,
        retry_interval: float = 2.0,
        start_timeout: float = 30.0,
        redactor: Redactor | None = None,
    ) -> None:
        self.root = as_root(root)  # a folder or an s3:// prefix
        self.spill_dir = Path(spill_dir) if spill_dir else default_spill_dir(self.root)
        self.interval = interval
        self.writer_id = writer_id
        self.retry_interval = retry_interval
        self.start_timeout = start_timeout
        self.redactor = redactor  # pickled as its spec: the child rebuilds it (and its hook)
        self.stats = WriterStats()
        self._error_level = logging.ERROR
        self._q: deque[tuple[str, object]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._proc = None
        self._conn = None
        self._done: WriterStats = WriterStats()  # totals of children that already exited
        self._child_ready: dict = {}  # the live child's counters at start (already in _done)
        self._fallback: BatchWriter | None = None

    # --- the BatchWriter interface ---
    @property
    def error_level(self) -> int:
        """Level of the loud lines logged in the proxy process (see BatchWriter.error_level)."""
        return self._error_level

    @error_level.setter
    def error_level(self, level: int) -> None:
        self._error_level = level
        if self._fallback is not None:
            self._fallback.error_level = level

    def start(self) -> None:
        """Start the sender thread; it starts the child (which imports any earlier spill first).

        Returns at once: the proxy can serve while the child imports pyarrow; exchanges wait
        in the queue until it is ready.
        """
        self._thread = threading.Thread(target=self._run, name="parity-sender", daemon=True)
        self._thread.start()

    def put(self, table: str, row: dict | Callable[[], dict]) -> None:
        """Queue one row or capture; never blocks."""
        self._q.append((table, row))
        self.stats.queued += 1
        if len(self._q) >= 5000:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._q) + (self._fallback.pending if self._fallback else 0)

    def close(self, timeout: float = 30.0) -> WriterStats:
        """Hand over everything queued, let the child write it, and collect its counters."""
        self._stop = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._send_queued()
        if self._conn is not None:
            try:
                self._conn.send_bytes(pickle.dumps(("close", None)))
                if self._conn.poll(timeout):
                    kind, stats = pickle.loads(self._conn.recv_bytes())
                    # The child's counters are cumulative: its start-up import is already counted.
                    ready = self._child_ready
                    self._add(
                        self._done, {**stats, **{k: stats.get(k, 0) - ready.get(k, 0) for k in _COUNTERS}}
                    )
                else:
                    log.log(self.error_level, "parity writer process did not finish within %.0f s", timeout)
            except (OSError, EOFError) as e:
                log.log(self.error_level, "parity writer process lost at shutdown: %s", e)
            self._reap()
        if self._fallback is not None:
            self._add(self._done, dataclasses.asdict(self._fallback.close(timeout)))
        for name in _COUNTERS:
            setattr(self.stats, name, getattr(self._done, name))
        self.stats.last_error = self._done.last_error
        return self.stats

    # --- parent side ---
    def _run(self) -> None:
        if not self._spawn():
            self._use_fallback("the writer process did not start")
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._send_queued()
            except BaseException:  # the sender must outlive any bug
                log.log(self.error_level, "parity writer: hand-off failed; will retry", exc_info=True)

    def _send_queued(self) -> None:
        with self._lock:
            n = len(self._q)
            while n > 0:
                items = [self._q.popleft() for _ in range(min(n, SEND_BATCH))]
                n -= len(items)
                if self._fallback is not None:
                    for table, item in items:
                        self._fallback.put(table, item)
                    continue
                self._send(items)

    def _send(self, items: list) -> None:
        try:
            payload = pickle.dumps(("rows", items), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # something unpicklable: build those rows here rather than lose them
            payload = pickle.dumps(("rows", [self._picklable(t, i) for t, i in items]))
        for attempt in (1, 2):
            try:
                self._conn.send_bytes(payload)
                return
            except (OSError, EOFError, ValueError, AttributeError) as e:
                log.log(
                    self.error_level, "parity writer process gone (%s); starting another (try %d)", e, attempt
                )
                self._reap()
                if not self._spawn():
                    break
        self._use_fallback("the writer process keeps failing")
        for table, item in items:
            self._fallback.put(table, item)

    def _picklable(self, table: str, item):
        try:
            pickle.dumps(item)
            return table, item
        except Exception:
            try:
                return table, item() if callable(item) else dict(item)
            except Exception as e:
                return table, item.fallback(e) if hasattr(item, "fallback") else {}

    def _spawn(self) -> bool:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=child_main,
            args=(
                child,
                str(self.root),
                str(self.spill_dir),
                self.writer_id,
                self.retry_interval,
                self.redactor,
            ),
            name="parity-writer",
            daemon=False,
        )
        try:
            proc.start()
        except Exception as e:
            log.log(self.error_level, "cannot start the parity writer process: %s", e)
            return False
        child.close()
        if not parent.poll(self.start_timeout):
            proc.kill()
            proc.join(5)
            return False
        try:
            kind, stats = pickle.loads(parent.recv_bytes())
        except (EOFError, OSError):
            proc.join(5)
            return False
        self._add(self._done, stats)  # the start-up spill import
        self._child_ready = stats
        self._proc, self._conn = proc, parent
        log.info("parity: writer process %d started", proc.pid)
        return True

    def _reap(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._proc = self._conn = None

    def _use_fallback(self, why: str) -> None:
        if self._fallback is None:
            log.log(self.error_level, "parity writer: %s; writing from a thread in the proxy process", why)
            self._fallback = BatchWriter(
                self.root,
                self.spill_dir,
                interval=self.interval,
                writer_id=self.writer_id,
                redactor=self.redactor,
            )
            self._fallback.error_level = self.error_level
            self._fallback.start()

    @staticmethod
    def _add(total: WriterStats, stats: dict) -> None:
        for name in _COUNTERS:
            setattr(total, name, getattr(total, name) + stats.get(name, 0))
        total.last_error = stats.get("last_error") or total.last_error


def child_main(
    conn, root: str, spill_dir: str, writer_id: str | None, retry_interval: float, redactor=None
) -> None:
    """The writer process: receive batches, write segments, spill on failure, exit on close or EOF.

    ``redactor`` arrives rebuilt from its spec by unpickling; if that fails (a hook that imports
    in the proxy but not here), the process dies before "ready" and the proxy writes from a
    thread with its own redactor: nothing is ever written unredacted.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    w = BatchWriter(
        as_root(root), Path(spill_dir), writer_id=writer_id, retry_interval=retry_interval, redactor=redactor
    )
    w.start(background=False)
    conn.send_bytes(pickle.dumps(("ready", dataclasses.asdict(w.stats))))
    while True:
        kind = "idle"
        try:
            if conn.poll(retry_interval):  # wake up now and then to retry a failing store
                # Take every batch already waiting (up to ~0.2 s worth), then write one segment.
                deadline = time.monotonic() + 0.2
                while True:
                    kind, items = pickle.loads(conn.recv_bytes())
                    if kind == "rows":
                        for table, item in items:
                            w.put(table, item)
                    if kind != "rows" or time.monotonic() > deadline or not conn.poll(0):
                        break
        except (EOFError, OSError):
            kind = "eof"  # the proxy process is gone: write what we have and leave
        w.flush()
        if kind in ("close", "eof"):
            stats = w.close()
            if kind == "close":
                conn.send_bytes(pickle.dumps(("closed", dataclasses.asdict(stats))))
            return
