"""Live progress per provider on stderr, and the one-screen summary at the end."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``, None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100.0 * (len(s) - 1))))
    return s[k]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}ms" if v >= 100 else f"{v:.1f}ms"


def _usd(v: float | None) -> str:
    if v is None:
        return "-"
    return f"${v:,.4f}" if v >= 0.01 or v == 0 else f"${v:.6f}"


@dataclass
class ProviderStats:
    """Running counters of one provider (or of the recorded arm)."""

    total: int = 0
    done: int = 0
    errors: int = 0
    n429: int = 0
    resent: int = 0
    sdk_invalid: int = 0
    unpriced: int = 0
    spend: float = 0.0
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0

    def add(self, s: dict) -> None:
        """Count one finished request."""
        self.done += 1
        if (
            s.get("error_type")
            or (s.get("status") is not None and s["status"] >= 400)
            or s.get("status") is None
        ):
            self.errors += 1
        self.n429 += s.get("n429") or 0
        self.resent += 1 if s.get("resent") else 0
        self.sdk_invalid += 1 if s.get("sdk_valid") is False else 0
        if s.get("cost_usd") is None:
            self.unpriced += 1
        else:
            self.spend += s["cost_usd"]
        for attr, name in (("ttft", "ttft_ms"), ("latency", "latency_ms"), ("itl", "itl_mean_ms")):
            if s.get(name) is not None:
                getattr(self, attr).append(s[name])
        self.tokens += s.get("completion_tokens") or 0


class Progress:
    """Redraws per-provider lines on a TTY; otherwise prints one line every few seconds."""

    def __init__(
        self, totals: dict[str, int], stream: TextIO | None = None, every_s: float = 5.0, enabled: bool = True
    ) -> None:
        self.stats = {name: ProviderStats(total=n) for name, n in totals.items()}
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = 0.25 if self.tty else every_s
        self.enabled = enabled
        self._drawn = 0
        self._last = 0.0
        self.t0 = time.monotonic()

    def add(self, summary: dict) -> None:
        """Count one finished request (from its summary)."""
        self.stats[summary["key"][1]].add(summary)

    def line(self, name: str) -> str:
        """One provider's progress line."""
        s = self.stats[name]
        return (
            f"{name:<14} {s.done:>6}/{s.total:<6} err {s.errors:<4} 429s {s.n429:<4} "
            f"ttft p50 {_ms(percentile(s.ttft, 50)):>8}  spent {_usd(s.spend)}"
        )

    def tick(self, force: bool = False) -> None:
        """Draw if it is time (cheap to call often)."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self.every_s):
            return
        self._last = now
        try:
            self._draw(now)
        except (OSError, ValueError):  # a closed or broken stderr must never stop a run
            self.enabled = False

    def _draw(self, now: float) -> None:
        if self.tty:
            out = f"\x1b[{self._drawn}F" if self._drawn else ""
            out += "".join(f"\x1b[2K{self.line(n)}\n" for n in self.stats)
            self._drawn = len(self.stats)
            self.stream.write(out)
        else:
            parts = [
                f"{n} {s.done}/{s.total} err {s.errors} 429s {s.n429} ttft p50 {_ms(percentile(s.ttft, 50))} "
                f"{_usd(s.spend)}"
                for n, s in self.stats.items()
            ]
            self.stream.write(f"[{now - self.t0:6.1f}s] " + " | ".join(parts) + "\n")
        self.stream.flush()


def summary_table(
    run_id: str,
    state: str,
    note: str | None,
    elapsed_s: float,
    stats: dict[str, ProviderStats],
    recorded: ProviderStats | None,
    skipped: dict[str, int],
    lag: list[float],
) -> str:
    """The end-of-run summary (fits one screen)."""
    head = f"Run {run_id}: {state} after {elapsed_s:.1f} s" + (f" ({note})" if note else "")
    cols = (
        f"  {'provider':<14} {'done':>11} {'errors':>6} {'429s':>5} {'resent':>6} {'TTFT p50':>9} {'TTFT p95':>9} "
        f"{'lat p50':>9} {'ITL mean':>9} {'SDK bad':>7} {'spend':>11}"
    )
    lines = [head, "", cols]
    rows = list(stats.items()) + ([("recorded", recorded)] if recorded else [])
    for name, s in rows:
        spend = _usd(s.spend) + ("*" if s.unpriced else "")
        lines.append(
            f"  {name:<14} {f'{s.done}/{s.total}':>11} {s.errors:>6} {s.n429:>5} {s.resent:>6} "
            f"{_ms(percentile(s.ttft, 50)):>9} {_ms(percentile(s.ttft, 95)):>9} {_ms(percentile(s.latency, 50)):>9} "
            f"{_ms(sum(s.itl) / len(s.itl) if s.itl else None):>9} {s.sdk_invalid:>7} {spend:>11}"
        )
    if any(s.unpriced for _, s in rows):
        lines.append(
            "  * some requests have no price (model not in the pricing table, or a placeholder price)"
        )
    if skipped:
        lines += ["", "Skipped:"] + [
            f"  {n:>6}  {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1])
        ]
    if lag:
        lines += [
            "",
            f"Schedule lag: p50 {percentile(lag, 50):.2f} ms, p99 {percentile(lag, 99):.2f} ms, "
            f"max {max(lag):.2f} ms",
        ]
    return "\n".join(lines)
