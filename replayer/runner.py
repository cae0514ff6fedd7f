"""The sending side of a run: one asyncio loop that paces, limits, sends, stamps and journals.

Per cell the loop only: waits for the provider's slot and rpm/tpm budget, journals the
dispatch, sends (``parity.replayer.client``), journals the raw capture (which the post-processor
follows), then frees the slot. Summaries come back asynchronously and feed the
progress display and the spend count; a cell's cost estimate stays reserved until its
summary arrives, so ``--max-cost`` is never passed by more than the in-flight estimates.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

from parity.replayer.client import Capture, ProviderClient, close_clients, open_clients
from parity.replayer.config import Config
from parity.replayer.journal import Journal, Key
from parity.replayer.mapping import Prepared, prepare
from parity.replayer.pacing import Gate, Pacing, offsets
from parity.replayer.plan import Cell, Group
from parity.replayer.progress import Progress
from parity.replayer.worker import PostProcessor, WorkerInit


class Runner:
    """Sends a run's remaining groups."""

    def __init__(
        self,
        cfg: Config,
        pacing: Pacing,
        groups: list[Group],
        post: PostProcessor,
        init: WorkerInit,
        journal: Journal,
        progress: Progress,
        spent: float = 0.0,
        max_cost: float | None = None,
        awaiting: dict[Key, float] | None = None,
    ) -> None:
        self.cfg, self.pacing, self.groups = cfg, pacing, groups
        self.post, self.init, self.journal, self.progress = post, init, journal, progress
        self.post_stats: dict | None = None
        self.spent, self.max_cost = spent, max_cost
        self.awaiting: dict[Key, float] = dict(awaiting or {})  # completed, summary pending -> reserved USD
        self.reserved = sum(self.awaiting.values())
        self.stop_reason: str | None = None  # max_cost | interrupted | failed
        self.stop_note: str | None = None
        self.failed: str | None = None
        self.clients: dict[str, ProviderClient] = {}
        self.tasks: set[asyncio.Task] = set()
        self.lags: list[float] = []
        self.summaries: list[dict] = []
        self.sent = 0
        self._dispatcher: asyncio.Task | None = None
        self._hurry = False
        self.send_cpu_s: float | None = None  # this process's CPU while sending (bench figure)
        self._drained: asyncio.Event | None = None
        self._prepared: dict[tuple[str, str], Prepared] = {}
        limit = pacing.concurrency if not pacing.open_loop else None
        self.gates = {
            n: Gate(
                min(x for x in (limit, p.concurrency) if x) if (limit or p.concurrency) else None,
                p.rpm,
                p.tpm,
            )
            for n, p in cfg.providers.items()
        }

    async def open(self) -> dict[str, list[str] | None]:
        """One session per provider; returns each provider's listed models (None if listing failed)."""
        self.clients, listed = await open_clients(self.cfg.providers)
        return listed

    async def close(self) -> None:
        """Close every provider session."""
        await close_clients(self.clients)

    def on_summaries(self, batch: list[dict]) -> None:
        """Summaries from the post-processor (called on the loop)."""
        for s in batch:
            key = s["key"] = tuple(s["key"])
            self.reserved -= self.awaiting.pop(key, 0.0)
            self.spent += s.get("cost_usd") or 0.0
            self.summaries.append(s)
            with contextlib.suppress(Exception):  # display only: must never lose the drain signal
                self.progress.add(s)
        if not self.awaiting and self._drained is not None:
            self._drained.set()
        self.progress.tick()

    def on_death(self, message: str) -> None:
        """The post-processor died: stop sending (the journal keeps what was done)."""
        self.failed = message
        self.stop_reason = self.stop_reason or "failed"
        self.awaiting.clear()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        if self._drained is not None:
            self._drained.set()

    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: stop sending now; unfinished cells are resent by --resume."""
        if self.stop_reason == "interrupted":
            self._hurry = True  # a second Ctrl-C: do not wait for the post-processor either (--resume will)
            if self._drained is not None:
                self._drained.set()
            return
        self.stop_reason = "interrupted"
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for t in self.tasks:
            t.cancel()

    def _budget_allows(self, cell: Cell) -> bool:
        if self.max_cost is None:
            return True
        if self.spent + self.reserved + (cell.estimate or 0.0) <= self.max_cost:
            return True
        self.stop_reason = "max_cost"
        self.stop_note = (
            f"--max-cost ${self.max_cost:g} reached: spent ${self.spent:.4f}, in flight ${self.reserved:.4f}, "
            f"next request est. ${cell.estimate or 0:.4f}"
        )
        return False

    def _prepared_for(self, cell: Cell) -> Prepared:
        key = (cell.exchange.id, cell.provider)
        prep = self._prepared.get(key)
        if prep is None:
            if len(self._prepared) > 4096:
                self._prepared.clear()
            prep = self._prepared[key] = prepare(cell.exchange, self.cfg.providers[cell.provider])
        return prep

    async def _cell(self, cell: Cell, planned: float | None, have_slot: bool) -> None:
        loop = asyncio.get_running_loop()
        gate = self.gates[cell.provider]
        est = cell.estimate or 0.0
        completed = False
        try:
            if not have_slot:
                await gate.acquire()
                have_slot = True
            waited = await gate.throttle(cell.tokens)
            prep = self._prepared_for(cell)
            lag = None if planned is None else (loop.time() - planned) * 1000.0
            if lag is not None:
                self.lags.append(lag)
            key = cell.key
            self.journal.dispatched(key)
            cap = Capture(
                cell.exchange.id,
                cell.provider,
                cell.repeat,
                resent=cell.resent,
                schedule_lag_ms=None if lag is None else round(lag, 3),
                limiter_wait_ms=waited * 1000.0,
            )
            self.sent += 1
            await self.clients[cell.provider].send(prep, cap)
            self.awaiting[key] = est
            self.journal.completed(cap)
            completed = True
        finally:
            if not completed:
                self.reserved -= est
            if have_slot:
                gate.release()

    def _spawn(self, cell: Cell, planned: float | None, have_slot: bool) -> None:
        self.reserved += cell.estimate or 0.0
        t = asyncio.ensure_future(self._cell(cell, planned, have_slot))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _dispatch_groups(self) -> None:
        """Every group per the pacing; stops early on --max-cost, Ctrl-C or a dead post-processor."""
        loop = asyncio.get_running_loop()
        offs = offsets(self.pacing, [(g.exchange.recorded_at, g.repeat) for g in self.groups])
        if offs:
            base = min(offs)
            offs = [o - base for o in offs]
        start = loop.time()
        closed = not self.pacing.open_loop
        for i, g in enumerate(self.groups):
            if self.stop_reason:
                break
            planned = None
            if offs is not None:
                planned = start + offs[i]
                delay = planned - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            for cell in g.cells:
                if self.stop_reason or not self._budget_allows(cell):
                    break
                if closed:
                    await self.gates[cell.provider].acquire()
                    if self.stop_reason:
                        self.gates[cell.provider].release()
                        break
                self._spawn(cell, planned, have_slot=closed)

    async def run(self, on_open: Callable[[dict], None]) -> None:
        """Start the post-processor, send everything, wait for the in-flight cells and their rows."""
        loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.interrupt)
        ticker = asyncio.ensure_future(self._ticker())
        try:
            await self.post.start(self.init, self.on_summaries, self.on_death)
            on_open(await self.open())
            cpu0 = time.process_time()
            self._dispatcher = asyncio.ensure_future(self._dispatch_groups())
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            while self.tasks:
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
            self.send_cpu_s = time.process_time() - cpu0
            if self.awaiting and not self.failed:
                self._drained.clear()
                await self._drained.wait()
        finally:
            ticker.cancel()
            self.progress.tick(force=True)
            await self.close()
            self.post_stats = await self.post.close(
                self.journal.size(), timeout=5.0 if self._hurry else 3600.0
            )
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.progress.every_s)
            self.progress.tick()
