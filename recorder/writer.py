"""Background batch writer: hooks enqueue rows, a thread writes Parquet segments.

Nothing here runs on the proxy's event loop except ``put`` (a deque append). A failed
write never raises into the caller: the batch goes to the spill folder, counters say
so, and the spill is moved into the store as soon as the store is writable again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recorder.segments import import_spill, rows_to_table, write_segment

log = logging.getLogger("parity.writer")


def default_spill_dir(root: Path) -> Path:
    """A spill folder outside the store folder, so a read-only store can still spill."""
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    safe = str(root.resolve()).strip("/").replace("/", "_")
    return base / "parity" / "spill" / safe


@dataclass
class WriterStats:
    """Counters a writer keeps; ``lost`` must stay 0."""

    queued: int = 0
    written: int = 0
    spilled: int = 0
    reimported: int = 0
    lost: int = 0
    failures: int = 0
    segments: int = 0
    last_error: str | None = None
    flush_ms: list[float] = field(default_factory=list)


class BatchWriter:
    """Collects rows per table and flushes them every ``interval`` seconds."""

    def __init__(
        self,
        root: Path,
        spill_dir: Path | None = None,
        interval: float = 0.5,
        max_batch: int = 5000,
        writer_id: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.spill_dir = Path(spill_dir) if spill_dir else default_spill_dir(self.root)
        self.interval = interval
        self.max_batch = max_batch
        self.writer_id = writer_id or f"{os.getpid()}{uuid.uuid4().hex[:6]}"
        self.stats = WriterStats()
        self._q: deque[tuple[str, dict]] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._spill_pending = False

    def start(self) -> None:
        try:
            n = import_spill(self.spill_dir, self.root)
            if n:
                self.stats.reimported += n
                log.warning("re-imported %d spilled rows from %s", n, self.spill_dir)
        except OSError as e:
            self._spill_pending = True
            log.error("could not re-import spill %s: %s", self.spill_dir, e)
        self._thread = threading.Thread(target=self._run, name="parity-writer", daemon=True)
        self._thread.start()

    def put(self, table: str, row: dict | Callable[[], dict]) -> None:
        """Queue one row (or a function building it, run on the writer thread); never blocks."""
        self._q.append((table, row))
        self.stats.queued += 1
        if len(self._q) >= self.max_batch:
            self._wake.set()

    def close(self, timeout: float = 30.0) -> WriterStats:
        """Flush everything and stop the thread."""
        self._stop = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._flush()
        return self.stats

    def flush_now(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._flush()

    def _drain(self) -> dict[str, list[dict]]:
        batches: dict[str, list[dict]] = defaultdict(list)
        while True:
            try:
                table, row = self._q.popleft()
            except IndexError:
                return batches
            if callable(row):
                try:
                    row = row()
                except Exception as e:  # never lose the exchange to a bug in row building
                    log.exception("building a %s row failed", table)
                    row = getattr(row, "fallback", lambda err: None)(e)
                    if row is None:
                        self.stats.lost += 1
                        continue
            batches[table].append(row)

    def _flush(self) -> None:
        batches = self._drain()
        for table, rows in batches.items():
            t0 = time.perf_counter()
            try:
                data = rows_to_table(table, rows)
            except Exception as e:  # a bad row must not take the batch down with it
                data = self._salvage(table, rows, e)
                if data is None:
                    continue
            try:
                write_segment(self.root, table, data, self.writer_id)
                self.stats.written += data.num_rows
                self.stats.segments += 1
                self.stats.flush_ms.append((time.perf_counter() - t0) * 1000)
                del self.stats.flush_ms[:-1000]
                if self._spill_pending:
                    self._reimport()
            except OSError as e:
                self._spill(table, data, e)

    def _salvage(self, table: str, rows: list[dict], err: Exception):
        good = []
        for r in rows:
            try:
                rows_to_table(table, [r])
                good.append(r)
            except Exception as e:
                self.stats.lost += 1
                log.error("dropping a %s row that does not fit the schema: %s (%s)", table, e, err)
        return rows_to_table(table, good) if good else None

    def _spill(self, table: str, data, err: OSError) -> None:
        self.stats.failures += 1
        self.stats.last_error = str(err)
        try:
            write_segment(self.spill_dir, table, data, self.writer_id)
            self.stats.spilled += data.num_rows
            self._spill_pending = True
            log.error(
                "STORE WRITE FAILED (%s): spilled %d %s rows to %s (total spilled %d); traffic unaffected",
                err,
                data.num_rows,
                table,
                self.spill_dir,
                self.stats.spilled,
            )
        except OSError as e2:
            # Nowhere to write: keep the rows queued and try again on the next flush.
            for row in data.to_pylist():
                self._q.append((table, row))
            log.error("STORE AND SPILL BOTH FAILED (%s; %s): %d rows held in memory", err, e2, data.num_rows)

    def _reimport(self) -> None:
        try:
            n = import_spill(self.spill_dir, self.root)
            self.stats.reimported += n
            self._spill_pending = False
            if n:
                log.warning("store writable again: re-imported %d spilled rows", n)
        except OSError as e:
            log.error("re-import of spill failed, will retry: %s", e)
