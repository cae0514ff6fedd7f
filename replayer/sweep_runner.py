"""Sending a capacity sweep: the steps one after the other, each drained before the next, on the
``Runner``'s loop, client, journal, limits and ``--max-cost`` (the plan and the policy: ``sweep.py``)."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from parity.replayer.config import Config
from parity.replayer.journal import Journal
from parity.replayer.pacing import Pacing
from parity.replayer.plan import Cell, Group
from parity.replayer.progress import Progress, percentile
from parity.replayer.runner import Runner
from parity.replayer.sweep import (
    CLIENT_LAG_MS,
    AutoState,
    Sweep,
    arrivals,
    passes,
    step_cell,
    step_group,
    step_stats,
)
from parity.replayer.worker import PostProcessor, WorkerInit


class SweepRunner(Runner):
    """Sends the steps of a sweep; ``steps`` describes each one as it ends (stored in the run config)."""

    def __init__(
        self,
        cfg: Config,
        sweep: Sweep,
        base: list[Group],
        post: PostProcessor,
        init: WorkerInit,
        journal: Journal,
        progress: Progress,
        max_cost: float | None = None,
        err: TextIO | None = None,
    ) -> None:
        # open-loop pacing: the gates hold only each provider's own concurrency/rpm/tpm limits
        super().__init__(
            cfg, Pacing(mode="rate", rate=1.0), [], post, init, journal, progress, max_cost=max_cost
        )
        self.sweep, self.base = sweep, base
        self.providers = list(dict.fromkeys(c.provider for g in base for c in g.cells))
        self.steps: list[dict] = []
        self.ends: dict[tuple, float] = {}  # cell key -> loop time its answer ended
        self.err = err or sys.stderr

    async def _cell(self, cell: Cell, planned: float | None, have_slot: bool) -> None:
        await super()._cell(cell, planned, have_slot)
        self.ends[cell.key] = asyncio.get_running_loop().time()

    def _spawn(self, cell: Cell, planned: float | None, have_slot: bool) -> None:
        self.progress.stats[cell.provider].total += 1
        super()._spawn(cell, planned, have_slot)

    async def _dispatch_groups(self) -> None:
        """Every step of the sweep, fixed or auto, until done, --max-cost or Ctrl-C."""
        sw = self.sweep
        if not sw.auto:
            for i, load in enumerate(sw.values):
                if self.stop_reason:
                    return
                await self._step(i, load, self.providers)
            return
        state = AutoState(sw, self.providers)
        last: dict[str, dict] = {}
        while not self.stop_reason and (todo := state.next_steps()):
            for load, provs in todo:
                if self.stop_reason:
                    return
                refining = bool(state.bad) and not state.growing
                step = await self._step(len(self.steps), load, provs)
                verdicts = {}
                for p in provs:
                    stats = step["live"][p]
                    prev = None if refining else last.get(p)
                    ok, why = passes(stats, sw, step.get("offered_rate"), prev)
                    state.record(p, load, ok, why)
                    verdicts[p] = why
                    last[p] = stats
                step["verdicts"] = verdicts
                step["phase"] = "refine" if refining else "grow"
                left = [p for p in provs if p not in state.growing and not refining]
                if left:
                    step["left"] = left
                    self._say(f"  leaving the sweep: {', '.join(f'{p} ({verdicts[p]})' for p in left)}")

    async def _step(self, index: int, load: float, providers: list[str]) -> dict:
        loop = asyncio.get_running_loop()
        sw = self.sweep
        lag0, sum0 = len(self.lags), len(self.summaries)
        cpu0, t0, wall0 = time.process_time(), loop.time(), time.time()
        what = f"{load:g} req/s" if sw.by == "rate" else f"concurrency {load:g}"
        self._say(f"sweep step {index}: {what} for {sw.step_seconds:g} s to {', '.join(providers)}")
        if sw.by == "rate":
            scheduled = await self._open_loop(index, load, providers)
        else:
            scheduled = await self._closed_loop(index, int(load), providers)
        dispatch_s = loop.time() - t0
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.awaiting and not self.failed and self._drained is not None:
            self._drained.clear()
            await self._drained.wait()
        lags = self.lags[lag0:]
        cpu = time.process_time() - cpu0
        wall = loop.time() - t0
        mine = self.summaries[sum0:]
        live = {
            p: step_stats([s for s in mine if s["key"][1] == p], self.ends, sw.step_seconds, sw.slos)
            for p in providers
        }
        lag_p99 = percentile(lags, 99)
        overran = sw.by == "rate" and dispatch_s > 1.1 * sw.step_seconds
        step = {
            "step": index,
            "load": load,
            "by": sw.by,
            "providers": providers,
            "started_at": datetime.fromtimestamp(wall0, UTC).isoformat(),
            "seconds": sw.step_seconds,
            "dispatch_s": round(dispatch_s, 3),
            "drained_s": round(wall, 3),
            "scheduled": scheduled,
            "offered_rate": round(scheduled / sw.step_seconds, 3) if sw.by == "rate" else None,
            "reused": max(0, scheduled - len(self.base)) if sw.by == "rate" else None,
            "lag_p50_ms": percentile(lags, 50),
            "lag_p99_ms": lag_p99,
            "client_cpu_share": round(cpu / wall, 3) if wall > 0 else None,
            "client_bound": bool((lag_p99 is not None and lag_p99 > CLIENT_LAG_MS) or overran),
            "live": live,
        }
        self.steps.append(step)
        for p in providers:
            st = live[p]
            self._say(
                f"  {p:<14} {st['requests']:>5} requests, ok {st['ok']}, goodput "
                f"{_pct(st['goodput_rate'])}, achieved {st['achieved_rate']:.2f} req/s, "
                f"TTFT p50 {_ms(st['ttft_p50_ms'])}, e2e p50 {_ms(st['e2e_p50_ms'])}"
            )
        if step["client_bound"]:
            self._say(
                f"  warning: the client could not keep this step's schedule (lag p99 {lag_p99 or 0:.0f} ms, "
                f"sending took {dispatch_s:.1f} s of {sw.step_seconds:g} s): the load offered was lower "
                "than asked; treat this step's figures as the client's limit, not the provider's"
            )
        return step

    async def _open_loop(self, index: int, rate: float, providers: list[str]) -> int:
        loop = asyncio.get_running_loop()
        sw = self.sweep
        offs = arrivals(rate, sw.step_seconds, sw.arrival, sw.seed, index)
        start = loop.time()
        for j, off in enumerate(offs):
            if self.stop_reason:
                return j
            planned = start + off
            delay = planned - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for cell in step_group(self.base, index, j, providers).cells:
                if self.stop_reason or not self._budget_allows(cell):
                    return j
                self._spawn(cell, planned, have_slot=False)
        return len(offs)

    async def _closed_loop(self, index: int, concurrency: int, providers: list[str]) -> int:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.sweep.step_seconds
        positions = {p: itertools.count() for p in providers}
        n = len(self.base)
        sent = [0]

        async def worker(p: str) -> None:
            misses = 0
            while not self.stop_reason and loop.time() < end and misses < n:
                cell = step_cell(self.base, index, next(positions[p]), p)
                if cell is None:  # this provider skips that exchange
                    misses += 1
                    continue
                misses = 0
                if not self._budget_allows(cell):
                    return
                self.progress.stats[p].total += 1
                self.reserved += cell.estimate or 0.0
                sent[0] += 1
                await self._cell(cell, None, have_slot=False)

        await asyncio.gather(*(worker(p) for p in providers for _ in range(concurrency)))
        return sent[0]

    def _say(self, line: str) -> None:
        try:
            self.err.write(line + "\n")
            self.err.flush()
        except (OSError, ValueError):
            pass


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} ms"
