"""What a sweep will do (``--dry-run``: steps, requests, estimated cost per provider) and what it did
(the per-step table printed when it ends)."""

from __future__ import annotations

from parity.replayer.plan import Plan
from parity.replayer.progress import percentile
from parity.replayer.sweep import Sweep, mean_cost


def _money(v: float | None) -> str:
    if v is None:
        return "unknown"
    return f"${v:,.4f}" if v >= 0.01 or v == 0 else f"${v:.6f}"


def _loads(sw: Sweep) -> list[float]:
    """The loads a fixed sweep runs; for auto, the growth steps at most (refinements come on top)."""
    if not sw.auto:
        return list(sw.values)
    out, load = [], sw.first()
    for _ in range(sw.max_steps):
        if sw.limit is not None and load > sw.limit:
            break
        out.append(load)
        load = load * sw.factor if sw.by == "rate" else float(max(int(load) + 1, round(load * sw.factor)))
    return out


def format_sweep(sw: Sweep, plan: Plan, max_cost: float | None) -> str:
    """The sweep part of ``--dry-run``."""
    n = len(plan.groups)
    per_request = mean_cost(plan.groups)
    names = [p for p in plan.providers if p in per_request]
    lat = percentile([x.latency_ms for x in plan.replayable if x.latency_ms], 50)
    loads = _loads(sw)
    if sw.by == "rate":
        what = f"open loop, {sw.arrival} arrivals"
    else:
        what = "closed loop; requests estimated from the recorded median latency" + (
            f" ({lat:,.0f} ms)" if lat else " (unknown: no recorded latency)"
        )
    head = (
        f"Sweep by {sw.by} ({what}), {sw.step_seconds:g} s a step; the {n} replayable requests are "
        "cycled, each step from the first, each reuse counted."
    )
    if sw.auto:
        head += (
            f"\n  auto: from {sw.first():g}, x{sw.factor:g} a step until a provider drops below goodput "
            f"{sw.target:.0%} (errors > {sw.max_error_rate:.0%}, or "
            + (
                "achieved < 90% of offered"
                if sw.by == "rate"
                else "throughput up < 10% for the added concurrency"
            )
            + "), then "
            f"{sw.refine} halvings of its bracket; a saturated provider leaves. Below: the growth steps at "
            "most (every provider in every step), an upper bound."
        )
    if sw.slos:
        head += "\n  SLOs: " + ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in sw.slos.items())
    unit = "req/s" if sw.by == "rate" else "in flight"
    lines = [
        head,
        "",
        f"  {'step':>4} {'load':>14} {'requests':>9} {'reused':>7}  " + "  ".join(f"{p:>14}" for p in names),
    ]
    totals = dict.fromkeys(names, 0.0)
    unknown: set[str] = set()
    stop_at = None
    spent = 0.0
    for i, load in enumerate(loads):
        if sw.by == "rate":
            requests: float | None = round(load * sw.step_seconds)
        else:
            requests = round(load * sw.step_seconds / (lat / 1000.0)) if lat else None
        costs = []
        for p in names:
            c = per_request[p]
            if c is None or requests is None:
                unknown.add(p)
                costs.append("unknown")
                continue
            totals[p] += c * requests
            spent += c * requests
            costs.append(_money(c * requests))
        if max_cost is not None and stop_at is None and spent > max_cost:
            stop_at = i
        reqs = "?" if requests is None else f"{'~' if sw.by != 'rate' else ''}{requests:,}"
        reused = "?" if requests is None else f"{max(0, requests - n):,}"
        lines.append(
            f"  {i:>4} {f'{load:g} {unit}':>14} {reqs:>9} {reused:>7}  "
            + "  ".join(f"{c:>14}" for c in costs)
        )
    lines.append(
        f"  {'total':>4} {'':>14} {'':>9} {'':>7}  "
        + "  ".join(f"{'unknown' if p in unknown else _money(totals[p]):>14}" for p in names)
    )
    if max_cost is not None:
        lines.append(
            f"  --max-cost ${max_cost:g}: "
            + (
                f"the sweep would stop in step {stop_at} (estimated)"
                if stop_at is not None
                else "not reached"
            )
        )
    return "\n".join(lines)


def format_steps(steps: list[dict]) -> str:
    """The table printed when a sweep ends: one line per step and provider (live figures)."""
    lines = [
        "Sweep (live figures; parity eval --slo ... gives the stored ones with percentiles and capacity):",
        f"  {'step':>4} {'load':>10} {'provider':<14} {'requests':>8} {'offered':>8} {'achieved':>8} "
        f"{'goodput':>7} {'errors':>6} {'TTFT p50':>9} {'e2e p50':>9} {'lag p99':>8}  note",
    ]
    for st in steps:
        offered = st.get("offered_rate")
        for p, lv in st["live"].items():
            notes = []
            if st.get("client_bound"):
                notes.append("CLIENT-BOUND")
            if p in st.get("left", []):
                notes.append(f"left: {st['verdicts'][p]}")
            lines.append(
                f"  {st['step']:>4} {st['load']:>10g} {p:<14} {lv['requests']:>8} "
                f"{'-' if offered is None else f'{offered:.2f}':>8} {lv['achieved_rate']:>8.2f} "
                f"{_pct(lv['goodput_rate']):>7} {_pct(lv['error_rate']):>6} {_ms(lv['ttft_p50_ms']):>9} "
                f"{_ms(lv['e2e_p50_ms']):>9} {_ms(st.get('lag_p99_ms')):>8}  {'; '.join(notes)}"
            )
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}ms" if v >= 100 else f"{v:.1f}ms"
