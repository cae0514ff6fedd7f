"""The post-processor: a separate, lower-priority process that turns captures into stored rows.

Why a process: building rows (SSE parsing, SDK validation) and writing Parquet
(``pyarrow`` converting Python rows holds the GIL for tens of ms) would stall the
sender's event loop and delay the timestamps of every other stream. In its own process
none of that touches the timing path. It runs at idle priority (``SCHED_IDLE``, else
nice 19), so under full load it falls behind and catches up when the sender and the
providers idle, instead of taking their CPU. It owns a ``BatchWriter`` on the same segment root (segments allow any number of
writers) and answers each capture with a one-line summary (for progress and spend).

Transport: ``python -m parity.replayer.worker IN_FD OUT_FD`` (not ``multiprocessing``, whose
spawn mode re-imports the caller's ``__main__`` and breaks scripts and notebooks). The
sender writes one length-prefixed pickle (the run's :class:`WorkerInit`) to the pipe;
after that the worker *follows the sender's journal file* (``parity.replayer.journal``), which
already holds every dispatch and every raw capture, so the sender does no extra work per
request and a lagging worker's backlog waits in the page cache, not in the sender's
memory. The worker answers with JSON-line summaries. ``close`` carries the journal's final
size; when the sender dies instead (even by SIGKILL) the pipe reaches end-of-file and the
worker processes what the journal holds, flushes and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from parity.replayer.client import Capture
from parity.replayer.config import PricingTable, ProviderConfig
from parity.replayer.errors import ReplayError
from parity.replayer.journal import decode_capture
from parity.replayer.mapping import Prepared, prepare
from parity.replayer.select import Exchange
from parity.store.writer import BatchWriter

log = logging.getLogger("parity.replay")
_LEN = struct.Struct("<Q")
SUMMARY_EVERY_S = 0.05  # summaries go back in batches at most this often


@dataclass
class WorkerInit:
    """Everything the post-processor needs, sent once at start."""

    run_id: str
    root: str
    exchanges: dict[str, Exchange]
    providers: dict[str, ProviderConfig]
    recorded_pricing: PricingTable
    recorded_ids: list[str] = field(default_factory=list)  # exchanges that still need a recorded row
    captures: list[str] = field(default_factory=list)  # journaled captures whose rows are not stored yet
    journal: str = ""  # the sender's journal file, which this process follows
    flush_interval: float = 0.5
    idle_priority: bool = True


class _Context:
    def __init__(self, init: WorkerInit) -> None:
        self.init = init
        self._prep: dict[tuple[str, str], Prepared] = {}

    def prepared(self, xid: str, provider: str) -> Prepared:
        """The request sent for (exchange, provider), rebuilt exactly as the sender built it."""
        key = (xid, provider)
        prep = self._prep.get(key)
        if prep is None:
            if len(self._prep) > 4096:
                self._prep.clear()
            prep = self._prep[key] = prepare(self.init.exchanges[xid], self.init.providers[provider])
        return prep

    def process(self, cap: Capture) -> tuple[dict, list[dict], dict]:
        """One capture -> (results row, attempts rows, summary); never raises."""
        from parity.replayer.results import build_result  # the SDK is heavy: only the worker imports it

        x = self.init.exchanges[cap.exchange_id]
        p = self.init.providers[cap.provider]
        prep = self.prepared(cap.exchange_id, cap.provider)
        try:
            return build_result(self.init.run_id, cap, x, prep, p.pricing)
        except Exception as e:  # a bug here must cost one row, not the run
            log.error(
                "post-processing %s failed: %s", (cap.exchange_id, cap.provider), traceback.format_exc()
            )
            row = {
                "run_id": self.init.run_id,
                "exchange_id": cap.exchange_id,
                "provider": cap.provider,
                "repeat": cap.repeat,
                "endpoint": x.endpoint,
                "model": prep.model,
                "stream": prep.stream,
                "attempts": len(cap.attempts),
                "resent": cap.resent,
                "status": cap.attempts[-1].status if cap.attempts else None,
                "error_type": "replayer_error",
                "error_message": f"{type(e).__name__}: {e}"[:2000],
                "sent_body": prep.sent_json,
                "changes": "[]",
            }
            summary = {
                "key": (cap.exchange_id, cap.provider, cap.repeat),
                "status": row["status"],
                "error_type": "replayer_error",
                "resent": cap.resent,
            }
            return row, [], summary


def lower_priority() -> None:
    """Run only on CPU nobody else wants: SCHED_IDLE where available (Linux), else nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)


def _follow(path: str, inbox: queue.SimpleQueue, end: list[int | None], poll_s: float = 0.02) -> None:
    """Feed the journal's complete lines to ``inbox`` as they are written, until ``end[0]`` bytes are read."""
    rest = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if chunk:
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if line:
                        inbox.put(line)
                continue
            if end[0] is not None and fh.tell() >= end[0]:
                break
            time.sleep(poll_s)
    inbox.put(None)


def _control(fh, end: list[int | None], journal: str) -> None:
    """Wait for the sender's ``close`` (with the journal's final size) or its death (end of file)."""
    size = None
    for line in fh:
        msg = json.loads(line)
        if msg.get("k") == "close":
            size = int(msg["size"])
            break
    if size is None:  # the sender died: what is in its journal now is all there will be
        size = os.path.getsize(journal)
    end[0] = size


def worker_main(fd_in: int, fd_out: int) -> None:
    """Post-processor process entry point."""
    import parity.replayer.results  # noqa: F401  (load the SDK before saying ready)

    fin = os.fdopen(fd_in, "rb")
    fout = os.fdopen(fd_out, "wb")
    head = fin.read(_LEN.size)
    if len(head) < _LEN.size:
        return
    init: WorkerInit = pickle.loads(fin.read(_LEN.unpack(head)[0]))
    if init.idle_priority:
        lower_priority()
    root = Path(init.root)
    writer = BatchWriter(root, interval=init.flush_interval, writer_id=f"replay{os.getpid()}")
    writer.start()
    ctx = _Context(init)
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    for line in init.captures:
        inbox.put(line)
    end: list[int | None] = [None]
    threading.Thread(target=_follow, args=(init.journal, inbox, end), daemon=True).start()
    threading.Thread(target=_control, args=(fin, end, init.journal), daemon=True).start()
    fout.write(b'{"k":"ready"}\n')
    fout.flush()
    pending = list(reversed(init.recorded_ids))  # production-arm rows, made whenever the inbox is idle

    def recorded_batch(n: int) -> None:
        """Write up to ``n`` production-arm rows."""
        from parity.replayer.results import recorded_result

        for _ in range(min(n, len(pending))):
            x = init.exchanges[pending.pop()]
            writer.put("results", recorded_result(init.run_id, x, init.recorded_pricing))

    out: list[bytes] = []
    last_flush = time.monotonic()

    def flush() -> None:
        """Send the pending summaries (batched: each batch wakes the sender once)."""
        nonlocal last_flush
        if out:
            fout.write(b"".join(out))
            fout.flush()
            out.clear()
        last_flush = time.monotonic()

    try:
        while True:
            try:
                if pending:
                    line = inbox.get_nowait()
                elif out:
                    line = inbox.get(timeout=max(0.0, last_flush + SUMMARY_EVERY_S - time.monotonic()))
                else:
                    line = inbox.get()
            except queue.Empty:
                if out and time.monotonic() - last_flush >= SUMMARY_EVERY_S:
                    flush()
                recorded_batch(16)
                continue
            if line is None:
                recorded_batch(len(pending))
                break
            try:
                rec = json.loads(line)
            except ValueError:  # a line torn by a kill of the sender
                continue
            kind = rec.get("k")
            if kind == "c":
                row, attempts, summary = ctx.process(decode_capture(rec))
                writer.put("results", row)
                for a in attempts:
                    writer.put("attempts", a)
                out.append(json.dumps({"k": "sum", **summary}).encode() + b"\n")
                if len(out) >= 64:
                    flush()
            elif kind == "d":
                writer.put(
                    "dispatches",
                    {
                        "run_id": init.run_id,
                        "exchange_id": rec["x"],
                        "provider": rec["p"],
                        "repeat": rec["r"],
                        "at": datetime.fromtimestamp(rec["t"], UTC),
                    },
                )
    finally:
        stats = writer.close()
        with contextlib.suppress(OSError):
            out.append(
                json.dumps(
                    {
                        "k": "closed",
                        "written": stats.written,
                        "spilled": stats.spilled,
                        "lost": stats.lost,
                        "failures": stats.failures,
                        "last_error": stats.last_error,
                    }
                ).encode()
                + b"\n"
            )
            flush()


class _Lines(asyncio.Protocol):
    """Reads the worker's JSON lines on the sender's loop."""

    def __init__(self, handle: Callable[[dict], None], lost: Callable[[], None]) -> None:
        self.buf = b""
        self.handle, self.lost = handle, lost

    def data_received(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line:
                self.handle(json.loads(line))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost()


class PostProcessor:
    """The sender's handle on the post-processor process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stats: dict | None = None
        self._fds: tuple[int, int] | None = None
        self._write: asyncio.WriteTransport | None = None
        self._read: asyncio.BaseTransport | None = None
        self._ready: asyncio.Future | None = None
        self._closed: asyncio.Future | None = None
        self._on_summaries: Callable[[list[dict]], None] = lambda batch: None
        self._on_death: Callable[[str], None] = lambda msg: None
        self._batch: list[dict] = []

    def launch(self, hide_env: tuple[str, ...] = ()) -> None:
        """Start the process early (it loads its imports while the sender plans); ``hide_env``: key variables."""
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in hide_env}  # it never needs the API keys
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parity.replayer.worker", str(to_r), str(from_w)],
            pass_fds=(to_r, from_w),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self._fds = (to_w, from_r)

    async def start(
        self,
        init: WorkerInit,
        on_summaries: Callable[[list[dict]], None],
        on_death: Callable[[str], None],
        timeout: float = 120.0,
    ) -> None:
        """Connect the pipes to the running loop, hand over the run, wait until ready."""
        if self.proc is None:
            self.launch()
        assert self._fds is not None
        loop = asyncio.get_running_loop()
        self._on_summaries, self._on_death = on_summaries, on_death
        self._ready, self._closed = loop.create_future(), loop.create_future()
        self._write, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(self._fds[0], "wb", 0))
        self._read, _ = await loop.connect_read_pipe(
            lambda: _Lines(self._handle, self._lost), os.fdopen(self._fds[1], "rb", 0)
        )
        blob = pickle.dumps(init, protocol=pickle.HIGHEST_PROTOCOL)
        self._write.write(_LEN.pack(len(blob)) + blob)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            raise ReplayError(f"the post-processor process did not start within {timeout:g} s") from None

    def _handle(self, msg: dict) -> None:
        kind = msg.pop("k", None)
        if kind == "sum":
            self._batch.append(msg)
            if len(self._batch) == 1:
                asyncio.get_running_loop().call_soon(self._deliver)
        elif kind == "ready" and not self._ready.done():
            self._ready.set_result(True)
        elif kind == "closed":
            self.stats = msg

    def _deliver(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._on_summaries(batch)

    def _lost(self) -> None:
        self._deliver()
        if self.stats is None:
            code = self.proc.poll() if self.proc else None
            message = f"the post-processor process died (exit code {code})"
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(ReplayError(message))
            self._on_death(message)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(True)

    async def close(self, journal_size: int, timeout: float = 600.0) -> dict | None:
        """Let the worker process the journal up to ``journal_size`` bytes, flush and exit; returns its counters."""
        if self._write is not None and not self._write.is_closing():
            self._write.write(json.dumps({"k": "close", "size": journal_size}).encode() + b"\n")
            self._write.close()
        if self._closed is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), timeout)
            except TimeoutError:  # its captures are in the journal: --resume processes them
                log.warning("post-processor did not finish within %g s; stopping it", timeout)
                if self.proc is not None:
                    self.proc.kill()
        if self._read is not None:
            self._read.close()
        self.abort()
        return self.stats

    def abort(self) -> None:
        """Make sure the process is gone (it exits by itself once its input closes)."""
        if self.proc is None:
            return
        if self._write is None:  # never given a run: nothing to flush, do not wait for its imports
            if self._fds is not None:
                for fd in self._fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._fds = None
            self.proc.kill()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
