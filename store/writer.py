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
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from parity.store import objstore
from parity.store.objstore import S3Path
from parity.store.segments import as_root, import_spill, remove_stale_temps, rows_to_table, write_segment

log = logging.getLogger("parity.writer")
SLICE = 64  # rows per Arrow conversion call (see BatchWriter._to_arrow)
# One row per recorder start: written and spilled like any row, but left out of the row counters,
# which the recorder reports as exchanges.
UNCOUNTED = frozenset({"recordings"})


def default_spill_dir(root) -> Path:
    """A spill folder outside the store folder, so a read-only store can still spill (for a
    bucket store, the only place its writers write on local disk)."""
    root = as_root(root)
    if isinstance(root, S3Path):
        safe = "s3_" + root.fs_path.replace("/", "_")
    else:
        safe = str(root.resolve()).strip("/").replace("/", "_")
    return objstore.local_state_dir() / "spill" / safe


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


def _spilled_rows(spill_dir: Path, tables) -> int:
    """Rows of these tables waiting in the spill folder."""
    n = 0
    for table in tables:
        for seg in (spill_dir / table).glob("seg-*.parquet"):
            try:
                n += pq.ParquetFile(seg).metadata.num_rows
            except Exception:  # unreadable: import_spill sets it aside without counting it
                pass
    return n


def sanitized(table: str, row: dict) -> dict:
    """``row`` with text made valid UTF-8 and values of the wrong type dropped (noted in error_type)."""
    from parity.store.schema import TABLES

    types = {f.name: f.type for f in TABLES[table]}
    out: dict = {}
    dropped = []
    for k, v in row.items():
        if isinstance(v, str):
            v = v.encode("utf-8", "replace").decode("utf-8")
        try:
            if k in types:
                pa.array([v], type=types[k])
            out[k] = v
        except Exception:
            dropped.append(k)
    if dropped and "error_type" in types:
        out["error_type"] = out.get("error_type") or "recorder_error"
        out["error_message"] = (out.get("error_message") or "") + f" [recorder dropped: {', '.join(dropped)}]"
    return out


class RowRedactor(Protocol):
    """What the writer needs of a redactor (the recorder's ``Redactor``): one ``exchanges`` row rewritten."""

    def apply_row(self, row: dict) -> dict: ...


def withhold(row: dict, err: BaseException) -> dict:
    """``row`` with every content column dropped: for when redaction itself failed."""
    for col in ("request_body", "request_raw", "response_body", "response_raw", "response_raw_bytes"):
        row[col] = None
    row["error_type"] = "redaction_error"
    row["error_message"] = f"redaction failed ({type(err).__name__}); content withheld"
    row["redactions"] = row["request_redactions"] = 1
    return row


class BatchWriter:
    """Collects rows per table and flushes them every ``interval`` seconds."""

    def __init__(
        self,
        root: Path,
        spill_dir: Path | None = None,
        interval: float = 0.5,
        max_batch: int = 5000,
        writer_id: str | None = None,
        retry_interval: float = 2.0,
        redactor: RowRedactor | None = None,
    ) -> None:
        self.root = as_root(root)  # a folder, or an s3:// prefix (segments then go to the bucket)
        self.spill_dir = Path(spill_dir) if spill_dir else default_spill_dir(self.root)
        self.interval = interval
        self.max_batch = max_batch
        self.retry_interval = retry_interval  # how often a spill is offered back to a failing store
        self.writer_id = writer_id or f"{os.getpid()}{uuid.uuid4().hex[:6]}"
        if isinstance(self.root, S3Path):  # names unique across the bucket's writers, spilled ones too
            self.writer_id = f"{objstore.writer_tag()}-{self.writer_id}"
        self.redactor = redactor  # applied to every exchanges row before it is written or spilled
        self.stats = WriterStats()
        self._q: deque[tuple[str, dict | Callable[[], dict]]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread, or close() after a timeout)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._spill_pending = False
        self._last_retry = 0.0
        # Level of the loud lines. mitmproxy exits if anything logs an ERROR before the proxy is up
        # (its errorcheck addon), so the addon lowers this until its running() hook.
        self.error_level = logging.ERROR

    def start(self, background: bool = True) -> None:
        """Re-import any earlier spill, then start the writer thread (or not: call flush() yourself)."""
        try:
            remove_stale_temps(self.root)
        except OSError:
            pass
        self._spill_pending = True
        self._reimport()
        if background:
            self._thread = threading.Thread(target=self._run, name="parity-writer", daemon=True)
            self._thread.start()

    def flush(self) -> None:
        """Write everything queued now, on the calling thread (retries a pending spill import too)."""
        self._flush()

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
            if self._thread.is_alive():
                log.error(
                    "parity writer: still flushing after %.0f s; %d rows not written", timeout, self.pending
                )
                return self.stats
        self._flush()
        if self._spill_pending:  # the store may be writable again: offer the spill back before exiting
            with self._lock:
                self._reimport()
        if self._q:  # store and spill both failed: say how much is lost
            self.stats.lost += len(self._q)
            log.error("parity writer: %d rows could not be written or spilled and are lost", len(self._q))
        return self.stats

    @property
    def pending(self) -> int:
        """Rows queued and not yet written or spilled."""
        return len(self._q)

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._flush()
            except BaseException:  # the thread must outlive any bug, or everything after is lost
                self.stats.failures += 1
                log.log(self.error_level, "parity writer: flush failed; will retry", exc_info=True)

    def _drain(self, n: int) -> dict[str, list[dict]]:
        batches: dict[str, list[dict]] = defaultdict(list)
        for _ in range(n):
            try:
                table, item = self._q.popleft()
            except IndexError:
                break
            row = self._build(table, item)
            if row is not None:
                batches[table].append(row)
        return batches

    def _build(self, table: str, item) -> dict | None:
        row = self._build_row(table, item)
        # Rows built elsewhere (a capture the sender could not pickle) arrive without "redactions";
        # rows put back after a failed spill already went through here and have it.
        if (
            row is not None
            and self.redactor is not None
            and table == "exchanges"
            and row.get("redactions") is None
        ):
            try:
                row = self.redactor.apply_row(row)
            except Exception as e:  # apply_row does not raise; if it ever did, store no content
                row = withhold(row, e)
        return row

    def _build_row(self, table: str, item) -> dict | None:
        if not callable(item):
            return item
        try:
            return item()
        except Exception as e:  # never lose the exchange to a bug in row building
            log.log(self.error_level, "building a %s row failed", table, exc_info=True)
            try:
                row = item.fallback(e) if hasattr(item, "fallback") else None
            except Exception:
                log.log(self.error_level, "the fallback row failed too", exc_info=True)
                row = None
            if row is None:
                self.stats.lost += 1
            return row

    def _flush(self) -> None:
        with self._lock:
            wrote = False
            # Only what is queued now: rows put back after a double failure wait for the next flush.
            pending = len(self._q)
            while pending > 0:
                n = min(pending, self.max_batch)
                pending -= n
                for table, rows in self._drain(n).items():
                    wrote |= self._write(table, rows)
            if self._spill_pending and (wrote or time.monotonic() - self._last_retry >= self.retry_interval):
                self._reimport()

    def _write(self, table: str, rows: list[dict]) -> bool:
        t0 = time.perf_counter()
        data = self._to_arrow(table, rows)
        if data is None:
            return False
        try:
            write_segment(self.root, table, data, self.writer_id)  # Parquet encoding releases the GIL
        except Exception as e:  # OSError above all (read-only, ENOSPC, a file where a folder was)
            self._spill(table, data, e)
            return False
        if table not in UNCOUNTED:
            self.stats.written += data.num_rows
        self.stats.segments += 1
        self.stats.flush_ms.append((time.perf_counter() - t0) * 1000)
        del self.stats.flush_ms[:-1000]
        return True

    def _to_arrow(self, table: str, rows: list[dict]) -> pa.Table | None:
        """Rows to Arrow in small slices: the conversion holds the GIL, and the proxy's event
        loop shares it, so no single call may run long (64 rows take well under a millisecond)."""
        parts = []
        for i in range(0, len(rows), SLICE):
            part = rows[i : i + SLICE]
            try:
                parts.append(rows_to_table(table, part))
            except Exception as e:  # a bad row must not take the batch down with it
                salvaged = self._salvage(table, part, e)
                if salvaged is not None:
                    parts.append(salvaged)
            time.sleep(0)  # let the event loop take the GIL between slices
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _salvage(self, table: str, rows: list[dict], err: Exception):
        good = []
        for r in rows:
            for candidate in (r, sanitized(table, r)):
                try:
                    rows_to_table(table, [candidate])
                    good.append(candidate)
                    break
                except Exception as e:
                    last = e
            else:
                self.stats.lost += 1
                log.log(
                    self.error_level,
                    "dropping a %s row that does not fit the schema: %s (%s)",
                    table,
                    last,
                    err,
                )
        return rows_to_table(table, good) if good else None

    def _spill(self, table: str, data, err: Exception) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(err).__name__}: {err}"
        self._last_retry = time.monotonic()
        try:
            write_segment(self.spill_dir, table, data, self.writer_id)
        except Exception as e2:
            # Nowhere to write: keep the rows queued and try again on the next flush.
            for row in data.to_pylist():
                self._q.append((table, row))
            log.log(
                self.error_level,
                "STORE AND SPILL BOTH FAILED (%s; %s): %d %s rows held in memory, retrying",
                err,
                e2,
                data.num_rows,
                table,
            )
            return
        if table not in UNCOUNTED:
            self.stats.spilled += data.num_rows
        self._spill_pending = True
        log.log(
            self.error_level,
            "STORE WRITE FAILED (%s): spilled %d %s rows to %s (total spilled %d); traffic unaffected",
            self.stats.last_error,
            data.num_rows,
            table,
            self.spill_dir,
            self.stats.spilled,
        )

    def _reimport(self) -> None:
        self._last_retry = time.monotonic()
        try:
            uncounted = _spilled_rows(self.spill_dir, UNCOUNTED)
            n = import_spill(self.spill_dir, self.root) - uncounted
        except OSError as e:
            log.warning("spill in %s not re-imported yet (%s); will retry", self.spill_dir, e)
            return
        self._spill_pending = False
        if n:
            self.stats.reimported += n
            log.warning(
                "store %s writable: re-imported %d spilled rows from %s", self.root, n, self.spill_dir
            )
