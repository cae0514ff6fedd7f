"""When requests are sent: closed loop, open loop at a rate, or as recorded; plus provider limits.

- ``--concurrency N`` (closed loop): each provider has at most N requests in flight;
  a new request goes out as soon as one finishes.
- ``--rate R`` (open loop): R recorded requests per second start, whatever the
  providers' speed, with constant or Poisson (exponential) inter-arrival times.
- ``--as-recorded [--speed X]``: the recorded inter-arrival times, X times faster.

In every mode a recorded request is a *group*: it goes to every provider at (nearly) the
same moment, in a seeded random order, so drift over the day cannot favour one of them.
The per-provider ``concurrency``, ``rpm`` and ``tpm`` limits of the providers file always
apply on top; time spent waiting on rpm/tpm is reported in ``rate_limit_wait_ms``.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Pacing:
    """The pacing chosen on the command line."""

    mode: str = "concurrency"  # concurrency | rate | as-recorded
    concurrency: int = 8
    rate: float | None = None
    arrival: str = "constant"  # constant | poisson
    speed: float = 1.0
    seed: int = 0

    def public(self) -> dict:
        """The pacing as stored in a run's config."""
        if self.mode == "concurrency":
            return {"mode": self.mode, "concurrency": self.concurrency}
        if self.mode == "rate":
            return {"mode": self.mode, "rate": self.rate, "arrival": self.arrival, "seed": self.seed}
        return {"mode": self.mode, "speed": self.speed}

    @property
    def open_loop(self) -> bool:
        """True when send times do not wait for answers (--rate, --as-recorded)."""
        return self.mode != "concurrency"


def offsets(pacing: Pacing, starts: list[tuple[datetime | None, int]]) -> list[float] | None:
    """Planned send time (s from start) of each group given its (recorded_at, repeat); None = closed loop."""
    n = len(starts)
    if pacing.mode == "concurrency":
        return None
    if pacing.mode == "rate":
        if not pacing.rate or pacing.rate <= 0:
            raise ValueError("--rate must be > 0")
        if pacing.arrival == "poisson":
            rng = random.Random(pacing.seed)
            out, t = [], 0.0
            for _ in range(n):
                out.append(t)
                t += rng.expovariate(pacing.rate)
            return out
        return [i / pacing.rate for i in range(n)]
    stamps = [s.timestamp() if s is not None else None for s, _ in starts]
    known = [t for t in stamps if t is not None]
    t0 = min(known) if known else 0.0
    span = (max(known) - t0) if known else 0.0
    cycle = span + (span / max(len(set(known)) - 1, 1) if span else 0.0)
    speed = pacing.speed if pacing.speed > 0 else 1.0
    return [
        (((t if t is not None else t0) - t0) + rep * cycle) / speed
        for t, (_, rep) in zip(stamps, starts, strict=True)
    ]


class Bucket:
    """A token bucket refilled continuously (``per_minute / 60`` per second, one second of burst)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.t = time.monotonic()

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now and return how long to wait before using it (the level may go negative)."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate


class Gate:
    """One provider's limits: a concurrency slot and rpm/tpm buckets."""

    def __init__(self, concurrency: int | None, rpm: float | None, tpm: float | None) -> None:
        self.limit = concurrency
        self.sem = asyncio.Semaphore(concurrency) if concurrency else None
        self.rpm = Bucket(rpm) if rpm else None
        self.tpm = Bucket(tpm) if tpm else None
        self.in_flight = 0

    async def acquire(self) -> None:
        """Wait for a free concurrency slot."""
        if self.sem is not None:
            await self.sem.acquire()
        self.in_flight += 1

    def release(self) -> None:
        """Free a concurrency slot."""
        self.in_flight -= 1
        if self.sem is not None:
            self.sem.release()

    async def throttle(self, tokens: int) -> float:
        """Wait for the rpm/tpm budget; returns the seconds waited."""
        wait = 0.0
        if self.rpm is not None:
            wait = max(wait, self.rpm.reserve(1))
        if self.tpm is not None:
            wait = max(wait, self.tpm.reserve(max(tokens, 1)))
        if wait > 0:
            await asyncio.sleep(wait)
        return wait
