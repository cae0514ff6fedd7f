"""The shadow process's loop: turn each finished production exchange into mirrors, never wait for room.

Per exchange: build its ``exchanges`` row as the recorder's writer does (same code, same redaction),
decide per provider with the replayer's rules (side effects and non-replayable endpoints are never
mirrored, the providers file's models, endpoints and declared changes apply), then send with the
replayer's client, retries and key handling. Where the replayer *waits* (a provider's concurrency
slot, its rpm/tpm budget), the shadow *drops and counts*: live traffic does not queue up behind a
slow candidate. Spend: a mirror's estimate is reserved until its row is built, so the cap is passed
by at most the estimates in flight; once reached, mirroring stops for good (recording goes on).
Each mirror is journaled (``parity.replayer.journal``): dispatched before it is sent, its raw capture
when complete, which is what a restart after ``kill -9`` reads back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Callable

from parity.recorder.capture import Capture as RecCapture
from parity.recorder.capture import build_row
from parity.replayer.client import Capture, ProviderClient, close_clients, open_clients
from parity.replayer.config import Config
from parity.replayer.journal import Journal
from parity.replayer.mapping import exchange_skip_reason, prepare, provider_skip_reason
from parity.replayer.pacing import Bucket, Gate
from parity.replayer.plan import estimate_cost, expected_tokens
from parity.replayer.select import Exchange, redacted_rules
from parity.shadow import builder
from parity.shadow.status import CAPPED, Counters, short_reason

log = logging.getLogger("parity.shadow")
DEFAULT_CONCURRENCY = 2048  # mirrors in flight per provider when the providers file sets no concurrency
_FIELDS = tuple(f.name for f in dataclasses.fields(Exchange))


def exchange_of(row: dict) -> Exchange:
    """The replayer's view of an ``exchanges`` row."""
    return Exchange(**{k: row.get(k) for k in _FIELDS if k in row})


def _take(bucket: Bucket | None, amount: float) -> bool:
    """Take ``amount`` from the bucket if it has it now; never wait (put it back otherwise)."""
    if bucket is None:
        return True
    if bucket.reserve(amount) > 0:
        bucket.level += amount
        return False
    return True


class Mirror:
    """Sends the mirrors of one shadow run from one asyncio loop."""

    def __init__(
        self,
        cfg: Config,
        counters: Counters,
        journal: Journal,
        pool: concurrent.futures.Executor,
        redactor=None,
        max_cost: float | None = None,
        on_change: Callable[[], None] = lambda: None,
        new_pool: Callable[[], concurrent.futures.Executor] | None = None,
    ) -> None:
        self.cfg, self.c, self.journal, self.pool = cfg, counters, journal, pool
        self.new_pool = new_pool or (lambda: pool)
        self.redactor, self.max_cost, self.on_change = redactor, max_cost, on_change
        self.clients: dict[str, ProviderClient] = {}
        self.gates = {
            n: Gate(p.concurrency or DEFAULT_CONCURRENCY, p.rpm, p.tpm) for n, p in cfg.providers.items()
        }
        self.reserved = 0.0
        self.in_flight: set[tuple[str, str, int]] = set()  # journaled as dispatched, not yet completed
        self.tasks: set[asyncio.Task] = set()
        self.building: set[asyncio.Future] = set()
        self.accepting = True
        self.cap_note: str | None = None

    async def open(self) -> dict[str, list[str] | None]:
        """One session per provider; each provider's listed models (None when listing failed)."""
        self.clients, listed = await open_clients(self.cfg.providers)
        return listed

    async def close(self) -> None:
        """Close every provider session."""
        await close_clients(self.clients)

    # --- intake ---
    def proxy_counts(self, deltas: dict) -> None:
        """Add what the proxy's counters grew by since its last message."""
        for k, n in deltas.items():
            if n <= 0:
                continue
            if k in ("queue_full", "shadow_down"):
                self.c.add("dropped", k, n)
            elif k in ("seen", "sampled"):
                setattr(self.c, k, getattr(self.c, k) + n)

    def accept(self, caps: list[RecCapture], proxy: dict) -> None:
        """A batch from the proxy (called on the loop)."""
        self.proxy_counts(proxy)
        for cap in caps:
            self.c.received += 1
            if not self.accepting:
                self.c.add("dropped", "stopping")
                continue
            try:
                self._accept(cap)
            except Exception:  # one strange exchange must not stop the shadow run
                log.exception("parity shadow: exchange %s not mirrored", getattr(cap, "id", "?"))
                self.c.add("skipped", "shadow_error")
        self.on_change()

    def _accept(self, cap: RecCapture) -> None:
        row = build_row(cap)
        if self.redactor is not None:
            row = self.redactor.apply_row(row)
        x = exchange_of(row)
        why = exchange_skip_reason(x)
        if why is None and redacted_rules(x) is not None:
            why = "request redacted (the candidates would get the placeholders)"
        if why:
            self.c.add("skipped", short_reason(why))
            return
        sends = []
        for name, p in self.cfg.providers.items():
            why = provider_skip_reason(x, p)
            if why:
                self.c.add("skipped", f"{name}: {short_reason(why)}")
                continue
            if self.cap_note is not None:
                self.c.add("dropped", "max_cost")
                continue
            gate = self.gates[name]
            if gate.in_flight >= gate.limit:
                self.c.add("dropped", f"{name}: concurrency")
                continue
            est = estimate_cost(x, p) or 0.0
            if self.max_cost is not None and self.c.spent_usd + self.reserved + est > self.max_cost:
                self._cap(est)
                self.c.add("dropped", "max_cost")
                continue
            prompt, completion, _, _ = expected_tokens(x)
            if not _take(gate.rpm, 1):
                self.c.add("dropped", f"{name}: rpm")
                continue
            if not _take(gate.tpm, max(prompt + completion, 1)):
                if gate.rpm is not None:
                    gate.rpm.level += 1
                self.c.add("dropped", f"{name}: tpm")
                continue
            sends.append((name, est))
        if not sends:
            return
        self.building.add(self._submit(builder.recorded, x))
        for name, est in sends:
            self.gates[name].in_flight += 1  # held from here: a burst in one batch sees its own sends
            self.reserved += est
            t = asyncio.ensure_future(self._send(x, name, est))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    def _cap(self, est: float) -> None:
        self.cap_note = (
            f"--shadow-max-cost ${self.max_cost:g} reached: spent ${self.c.spent_usd:.4f}, in flight "
            f"${self.reserved:.4f}, next mirror est. ${est:.4f}; mirroring stopped, recording goes on"
        )
        self.c.state = CAPPED
        log.warning("parity shadow: %s", self.cap_note)

    # --- sending ---
    async def _send(self, x: Exchange, name: str, est: float) -> None:
        key = (x.id, name, 0)
        sent = False
        try:
            prep = prepare(x, self.cfg.providers[name])
            self.journal.dispatched(key)
            self.in_flight.add(key)
            self.c.add("mirrored", name)
            cap = Capture(x.id, name, 0)
            await self.clients[name].send(prep, cap)
            self.journal.completed(cap)
            self.in_flight.discard(key)
            sent = True
            fut = self._submit(builder.build, cap, x)
            fut.add_done_callback(lambda f: self._built(f, name, est))
            self.building.add(fut)
        except asyncio.CancelledError:
            self.c.add("dropped", f"{name}: lost_in_flight")
            raise
        except Exception:  # a bug must cost one mirror, not the run
            log.exception("parity shadow: mirror of %s to %s failed", x.id, name)
            self.c.add("failed", name)
        finally:
            self.gates[name].in_flight -= 1
            if not sent:
                self.reserved -= est

    def _submit(self, fn, *args) -> asyncio.Future:
        try:
            cf = self.pool.submit(fn, *args)
        except (
            concurrent.futures.BrokenExecutor
        ):  # the builder died (OOM?): a new one; the journal has the rest
            log.error("parity shadow: the row builder process died; starting another")
            self.pool = self.new_pool()
            cf = self.pool.submit(fn, *args)
        fut = asyncio.wrap_future(cf)
        fut.add_done_callback(self.building.discard)
        return fut

    async def rotate(self, new: Journal) -> None:
        """Continue in journal ``new``; drop the old one once every row it holds is written.

        The mirrors in flight are journaled as dispatched again in the new file, so a crash still
        counts them; every capture the old file holds was handed to the builder before, so its flush
        (in order) writes them all.
        """
        old, self.journal = self.journal, new
        for key in list(self.in_flight):
            new.dispatched(key)
        await self._submit(builder.flush)
        old.close()
        old.path.unlink(missing_ok=True)

    def _built(self, fut: asyncio.Future, name: str, est: float) -> None:
        self.reserved -= est
        if fut.cancelled() or fut.exception() is not None:
            self.c.add("failed", name)
            if not fut.cancelled():
                log.error("parity shadow: building a %s row failed: %s", name, fut.exception())
            return
        s = fut.result()
        self.c.spent_usd += s.get("cost_usd") or 0.0
        status = s.get("status")
        good = s.get("error_type") is None and status is not None and 200 <= status < 300
        self.c.add("ok" if good else "failed", name)
        self.on_change()

    async def drain(self, timeout: float) -> None:
        """Stop taking exchanges; wait up to ``timeout`` s for the mirrors in flight, cancel the rest."""
        self.accepting = False
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
        if self.building:
            await asyncio.gather(*list(self.building), return_exceptions=True)
