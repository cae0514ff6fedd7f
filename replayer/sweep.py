"""Capacity sweeps: the steps of a load sweep, the cycled requests of each step, and the auto policy.

A sweep offers the selected recorded mix to every provider at a series of loads, one *step* each:
open-loop rates (``--sweep 5,10,20``, Poisson or constant arrivals) or closed-loop concurrencies
(``--sweep-concurrency 1,4,16``), each for ``--step-seconds``. A step that needs more requests than the
selection holds cycles it from the start; each request of step ``s`` that is the k-th use of its exchange
in that step is stored with ``repeat = s * STRIDE + k``, so the step of every results row is
``repeat // STRIDE`` and its reuse ``repeat % STRIDE`` (no new column; the run config says so under
``sweep``). Steps run one after the other; a step ends when its last request has answered, so a
saturated provider's backlog is counted in that step and never spills into the next.

``auto`` grows the load geometrically from ``start`` until a provider stops meeting the target
(goodput below it, errors past the limit, or achieved rate not keeping up with the offered rate);
that provider then leaves the growth, and once none is left each provider's bracket between its last
good and first bad load is halved ``refine`` times. Everything here is pure; the sending is
``parity.replayer.sweep_runner``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from parity.replayer.errors import ReplayError
from parity.replayer.plan import Cell, Group
from parity.replayer.progress import percentile

STRIDE = 100_000  # repeat = step * STRIDE + reuse: a step may cycle its selection up to STRIDE times
KEEP_UP = 0.9  # an open-loop step keeps up when achieved >= KEEP_UP x offered
CLIENT_LAG_MS = 50.0  # schedule lag p99 above this: the client, not the provider, set the pace
SLO_KEYS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "e2e_ms", "itl": "itl_mean_ms"}


def parse_slos(spec: str | dict | None) -> dict[str, float]:
    """``"ttft=300ms,e2e=2s"`` (or ``{"ttft": "300ms"}``) -> ``{"ttft_ms": 300.0, "e2e_ms": 2000.0}``;
    a number without a unit is milliseconds. The one reading of ``--slo`` (``parity eval`` reads it too)."""
    if not spec:
        return {}
    items = (
        spec.items()
        if isinstance(spec, dict)
        else (p.partition("=")[::2] for p in spec.split(",") if p.strip())
    )
    out: dict[str, float] = {}
    for key, value in items:
        part = f"{key}={value}"
        key = str(key).strip().lower().removesuffix("_ms")
        if key not in SLO_KEYS or value in ("", None):
            raise ReplayError(f"--slo {part!r}: use e.g. ttft=300ms,e2e=2s (keys: {', '.join(SLO_KEYS)})")
        out[SLO_KEYS[key]] = _duration_ms(value, part)
    return out


def _duration_ms(value: str | float, part: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    v, scale = value.strip().lower(), 1.0
    for unit, f in (("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if v.endswith(unit):
            v, scale = v[: -len(unit)], f
            break
    try:
        return float(v) * scale
    except ValueError:
        raise ReplayError(
            f"--slo {part!r}: bad SLO duration: {value!r} is not a duration like 300ms or 2s"
        ) from None


@dataclass
class Sweep:
    """What ``--sweep`` / ``--sweep-concurrency`` asked for."""

    by: str = "rate"  # rate (open loop, req/s) | concurrency (closed loop, in flight per provider)
    values: tuple[float, ...] = ()  # empty: auto
    step_seconds: float = 30.0
    arrival: str = "poisson"
    seed: int = 0
    slos: dict[str, float] = field(default_factory=dict)
    target: float = 0.95  # goodput a good step keeps (share of requests ok and within the SLOs)
    max_error_rate: float = 0.05
    start: float | None = None  # auto: first load (default 1 req/s or concurrency 1)
    factor: float = 2.0  # auto: growth per step
    limit: float | None = None  # auto: never offer more than this
    max_steps: int = 12  # auto: growth steps at most
    refine: int = 2  # auto: halvings of each provider's bracket

    @property
    def auto(self) -> bool:
        """True for ``--sweep auto``."""
        return not self.values

    def check(self) -> None:
        """ReplayError for values that cannot make a sweep."""
        if self.by not in ("rate", "concurrency"):
            raise ReplayError(f"sweep by {self.by!r}: rate or concurrency")
        if self.step_seconds <= 0:
            raise ReplayError("--step-seconds must be > 0")
        if any(v <= 0 or not math.isfinite(v) for v in self.values):
            raise ReplayError("sweep loads must be > 0")
        if self.by == "concurrency" and any(v != int(v) for v in self.values):
            raise ReplayError("--sweep-concurrency takes whole numbers, e.g. 1,2,4,8")
        if not 0 < self.target <= 1:
            raise ReplayError("--goodput-target must be within (0, 1]")
        if not 0 <= self.max_error_rate <= 1:
            raise ReplayError("--max-error-rate must be within [0, 1]")
        if self.factor <= 1:
            raise ReplayError("--sweep-factor must be > 1")
        if self.start is not None and self.start <= 0:
            raise ReplayError("--sweep-start must be > 0")
        if len(set(self.values)) != len(self.values):
            raise ReplayError("sweep loads must differ")
        if self.max_steps > STRIDE // 10:  # never near the stride: the step must stay derivable from repeat
            raise ReplayError("too many steps")

    def first(self) -> float:
        """The first load of an auto sweep."""
        return self.start or 1.0

    def public(self) -> dict:
        """The sweep as stored in the run config (evals read ``stride`` and ``steps``)."""
        return {
            "by": self.by,
            "values": list(self.values) or "auto",
            "step_seconds": self.step_seconds,
            "arrival": self.arrival if self.by == "rate" else None,
            "seed": self.seed,
            "slos": self.slos,
            "target": self.target,
            "max_error_rate": self.max_error_rate,
            "keep_up": KEEP_UP,
            "stride": STRIDE,
        }


def parse_values(text: str, by: str) -> tuple[float, ...]:
    """``"5,10,20"`` -> (5.0, 10.0, 20.0), sorted; ``"auto"`` -> ()."""
    if text.strip().lower() == "auto":
        return ()
    flag = "--sweep" if by == "rate" else "--sweep-concurrency"
    try:
        values = tuple(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise ReplayError(f"{flag} {text!r}: a comma list of loads like 5,10,20, or auto") from None
    if not values:
        raise ReplayError(f"{flag} needs loads, e.g. 5,10,20, or auto")
    return values


def arrivals(rate: float, seconds: float, arrival: str, seed: int, step: int) -> list[float]:
    """Send times (s from the step's start) of an open-loop step: ``round(rate x seconds)`` of them.

    Poisson arrivals are drawn conditioned on that count (uniform times, sorted: a Poisson process
    given its number of events), so a step offers exactly its rate, with Poisson's bursts; unconditioned
    draws offer +-1/sqrt(rate x seconds) off the rate, which blurs a short step's verdict. Seeded per step.
    """
    n = max(1, round(rate * seconds))
    if arrival == "constant":
        return [i / rate for i in range(n)]
    rng = random.Random(f"{seed}:sweep:{step}")
    return sorted(rng.uniform(0.0, seconds) for _ in range(n))


def step_cell(base: list[Group], step: int, position: int, provider: str) -> Cell | None:
    """The cell at ``position`` of a step for one provider (the selection cycled), or None if the
    provider skips that exchange."""
    g = base[position % len(base)]
    cycle = position // len(base)
    for c in g.cells:
        if c.provider == provider:
            return Cell(c.exchange, provider, step * STRIDE + cycle, c.estimate, c.tokens)
    return None


def step_group(base: list[Group], step: int, position: int, providers: list[str]) -> Group:
    """One open-loop arrival: the cycled recorded request to every provider still in the sweep."""
    g = base[position % len(base)]
    cycle = position // len(base)
    cells = [Cell(c.exchange, c.provider, step * STRIDE + cycle, c.estimate, c.tokens) for c in g.cells]
    return Group(g.exchange, step * STRIDE + cycle, [c for c in cells if c.provider in providers])


def step_of(repeat: int) -> tuple[int, int]:
    """(step, reuse) of a sweep run's ``repeat``."""
    return repeat // STRIDE, repeat % STRIDE


def mean_cost(base: list[Group]) -> dict[str, float | None]:
    """Average estimated USD per request per provider over the selection (None when unpriced)."""
    sums: dict[str, list[float]] = {}
    unpriced: set[str] = set()
    for g in base:
        for c in g.cells:
            if c.estimate is None:
                unpriced.add(c.provider)
            else:
                sums.setdefault(c.provider, []).append(c.estimate)
    names = {c.provider for g in base for c in g.cells}
    return {n: (None if n in unpriced or n not in sums else sum(sums[n]) / len(sums[n])) for n in names}


def step_stats(summaries: list[dict], ends: dict, seconds: float, slos: dict[str, float]) -> dict:
    """Live figures of one provider's step from the post-processor's summaries (the auto decision's
    input; ``parity eval`` recomputes the stored figures from the results rows)."""
    n = len(summaries)
    ok = [s for s in summaries if _ok(s)]
    good = [s for s in ok if meets(s, slos)]
    end_times = sorted(ends[s["key"]] for s in ok if s["key"] in ends)
    span = (end_times[-1] - end_times[0]) if len(end_times) > 1 else 0.0
    achieved = len(ok) / max(seconds, span) if ok else 0.0
    return {
        "requests": n,
        "ok": len(ok),
        "errors": n - len(ok),
        "n429": sum(1 for s in summaries if s.get("n429")),
        "error_rate": (n - len(ok)) / n if n else None,
        "goodput_rate": len(good) / n if n else None,
        "achieved_rate": round(achieved, 3),
        "ttft_p50_ms": percentile([s["ttft_ms"] for s in ok if s.get("ttft_ms") is not None], 50),
        "e2e_p50_ms": percentile([s["latency_ms"] for s in ok if s.get("latency_ms") is not None], 50),
    }


def _ok(s: dict) -> bool:
    status = s.get("status")
    return status is not None and 200 <= status < 300 and not s.get("error_type")


def meets(s: dict, slos: dict[str, float]) -> bool:
    """Whether one finished request is within every SLO (a missing figure does not count against it)."""
    tpot = None
    if (
        s.get("latency_ms") is not None
        and s.get("ttft_ms") is not None
        and (s.get("completion_tokens") or 0) > 1
    ):
        tpot = (s["latency_ms"] - s["ttft_ms"]) / (s["completion_tokens"] - 1)
    got = {"ttft_ms": s.get("ttft_ms"), "e2e_ms": s.get("latency_ms"), "itl_mean_ms": s.get("itl_mean_ms")}
    got["tpot_ms"] = tpot
    return all(got.get(k) is None or got[k] <= limit for k, limit in slos.items())


def passes(
    stats: dict, sweep: Sweep, offered: float | None, previous: dict | None = None
) -> tuple[bool, str]:
    """Whether a provider met the target at a step, and why not."""
    if not stats["requests"]:
        return False, "no requests finished"
    if stats["error_rate"] > sweep.max_error_rate:
        return False, f"errors {stats['error_rate']:.0%} > {sweep.max_error_rate:.0%}"
    if stats["goodput_rate"] < sweep.target:
        return False, f"goodput {stats['goodput_rate']:.0%} < {sweep.target:.0%}"
    if offered and stats["achieved_rate"] < KEEP_UP * offered:
        return False, f"achieved {stats['achieved_rate']:.2f} req/s < {KEEP_UP:.0%} of offered {offered:.2f}"
    if sweep.by == "concurrency" and previous and previous.get("achieved_rate"):
        if stats["achieved_rate"] < 1.1 * previous["achieved_rate"]:  # more in flight, no more throughput
            return False, f"throughput flat ({stats['achieved_rate']:.2f} req/s)"
    return True, "ok"


@dataclass
class AutoState:
    """Each provider's bracket in an auto sweep: its last good load and its first bad one."""

    sweep: Sweep
    providers: list[str]
    good: dict[str, float] = field(default_factory=dict)
    bad: dict[str, float] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    growing: list[str] = field(default_factory=list)
    load: float = 0.0
    grown: int = 0
    refined: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.growing = list(self.providers)
        self.load = self.sweep.first()

    def record(self, provider: str, load: float, ok: bool, why: str) -> None:
        """One provider's verdict at a load."""
        if ok:
            self.good[provider] = max(self.good.get(provider, 0.0), load)
        else:
            self.bad[provider] = min(self.bad.get(provider, math.inf), load)
            self.why[provider] = why
            if provider in self.growing:
                self.growing.remove(provider)

    def next_steps(self) -> list[tuple[float, list[str]]]:
        """The next step(s): (load, providers). Growth first, then one refinement round; [] when done."""
        sw = self.sweep
        if self.growing and self.grown < sw.max_steps:
            load = self.load
            if self.grown:
                load = self.load * sw.factor
                if sw.by == "concurrency":
                    load = float(max(int(self.load) + 1, round(load)))
            elif sw.by == "concurrency":
                load = float(max(1, round(load)))
            if sw.limit is None or load <= sw.limit:
                self.load, self.grown = load, self.grown + 1
                return [(load, list(self.growing))]
        self.growing = []
        by_load: dict[float, list[str]] = {}
        for p in self.providers:
            if p not in self.bad or self.refined.get(p, 0) >= sw.refine:
                continue
            lo, hi = self.good.get(p, 0.0), self.bad[p]
            mid = (lo + hi) / 2
            if sw.by == "concurrency":
                mid = float(math.floor(mid))
                if mid <= lo or mid >= hi:
                    continue
            self.refined[p] = self.refined.get(p, 0) + 1
            by_load.setdefault(round(mid, 3), []).append(p)
        return sorted(by_load.items())
