"""The capacity sweep's curves for the report: latency vs offered load and goodput vs load, per provider,
with the SLO (or goodput target) line and each provider's capacity marked. Inline SVG, as ``charts``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from markupsafe import Markup

from parity.evals.report.charts import Scale, Svg, _axes, _legend, _num, axis_ms, dashes

SLO_COLOUR = "#c62828"


def _x(row: dict) -> float | None:
    """A step's position on the load axis: the offered rate, or the concurrency in closed loop."""
    v = row.get("offered_rate") if row.get("by") == "rate" else row.get("load")
    return float(v) if v is not None and math.isfinite(v) else None


def _rate_label(by: str) -> str:
    return "offered load (requests/s)" if by == "rate" else "requests in flight (closed loop)"


def _series(rows: Sequence[dict], metric: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for r in sorted(rows, key=lambda r: (r["provider"], _x(r) or 0.0)):
        x, y = _x(r), r.get(metric)
        if x is not None and y is not None and math.isfinite(y):
            out.setdefault(r["provider"], []).append((x, float(y)))
    return out


def _plot(
    rows: Sequence[dict],
    capacity: Sequence[dict],
    metric: str,
    colour: dict[str, str],
    title: str,
    ylabel: str,
    yfmt,
    guide: tuple[float, str] | None,
    log_y: bool,
    width: int,
    height: int,
) -> Markup | None:
    series = _series(rows, metric)
    if not series:
        return None
    by = rows[0].get("by") or "rate"
    xs_all = np.array([x for pts in series.values() for x, _ in pts])
    ys_all = np.array([y for pts in series.values() for _, y in pts] + ([guide[0]] if guide else []))
    svg = Svg(width, height, title)
    names = list(series)
    dash = dashes(names)
    legend_bottom = _legend(svg, [(k, colour.get(k, "#333")) for k in names], 66, 16, width - 10, dash)
    xs = Scale(0.0, float(xs_all.max()) * 1.05, 66, width - 24)
    positive = ys_all[ys_all > 0]
    log = log_y and len(positive) and positive.max() / positive.min() > 30
    lo = float(positive.min()) * 0.7 if log else 0.0
    ys = Scale(lo, float(ys_all.max()) * 1.1, height - 44, legend_bottom + 8, log=bool(log))
    _axes(svg, xs, ys, lambda t: f"{t:g}", yfmt, _rate_label(by), ylabel)
    if guide is not None:
        value, label = guide
        svg.line(
            xs.a, ys(value), xs.b, ys(value), stroke=SLO_COLOUR, stroke_dasharray="6 4", stroke_width=1.5
        )
        near_top = ys(value) - ys.b < 18  # no room above the line: label it below
        y = ys(value) + (14 if near_top else -5)
        svg.text(xs.b - 4, y, label, fill=SLO_COLOUR, font_size=11, text_anchor="end")
    for c in capacity:
        cap = c.get("max_rate") if by == "rate" else c.get("max_load")
        if cap and c["provider"] in series:
            px = xs(float(cap))
            svg.line(px, ys.a, px, ys.b, stroke=colour.get(c["provider"], "#333"), stroke_dasharray="2 3")
    for k, pts in series.items():
        d = "M" + "L".join(f"{_num(xs(x))},{_num(ys(y))}" for x, y in pts)
        svg.path(
            d, fill="none", stroke=colour.get(k, "#333"), stroke_width=2, stroke_dasharray=dash[k] or None
        )
        g = Svg(0, 0, "")
        for x, y in pts:
            g.circle(xs(x), ys(y), 3)
        svg.group(g, fill=colour.get(k, "#333"))
    return svg.markup()


def latency_vs_load(
    rows: Sequence[dict],
    capacity: Sequence[dict],
    colour: dict[str, str],
    slos: dict[str, float],
    width: int = 560,
    height: int = 330,
) -> Markup | None:
    """p99 of the SLO's metric (e2e unless only a TTFT SLO is set) per step, the SLO as a red line,
    each provider's capacity as a dotted vertical in its colour."""
    metric, name = (
        ("ttft_p99_ms", "ttft") if "ttft_ms" in slos and "e2e_ms" not in slos else ("e2e_p99_ms", "e2e")
    )
    limit = slos.get(f"{name}_ms")
    guide = (limit, f"SLO {name} {axis_ms(limit)}") if limit else None
    return _plot(
        rows,
        capacity,
        metric,
        colour,
        f"{name} p99 vs load",
        f"{name} p99",
        axis_ms,
        guide,
        True,
        width,
        height,
    )


def goodput_vs_load(
    rows: Sequence[dict],
    capacity: Sequence[dict],
    colour: dict[str, str],
    target: float,
    width: int = 560,
    height: int = 330,
) -> Markup | None:
    """Share of each step's requests within the SLOs, with the target line."""
    guide = (target, f"target {target:.0%}")
    return _plot(
        rows,
        capacity,
        "goodput_rate",
        colour,
        "goodput vs load",
        "goodput",
        lambda t: f"{t:.0%}",
        guide,
        False,
        width,
        height,
    )


def section(ev, colour: dict[str, str]) -> dict | None:
    """The report's capacity section for a sweep run (None otherwise): both curves and, per provider,
    the capacity, its bracket, the knee and the cost at the capacity."""
    if ev.sweep is None or ev.sweep.is_empty():
        return None
    rows, caps = ev.sweep.to_dicts(), ev.capacity.to_dicts() if ev.capacity is not None else []
    sw = (ev.config or {}).get("sweep") or {}
    slos = ev.slos or sw.get("slos") or {}
    target = float(sw.get("target") or 0.95)
    by = rows[0].get("by") or "rate"
    unit = "req/s" if by == "rate" else "in flight"
    table = []
    for c in caps:
        bracket = (
            f"[{c['max_rate']:.3g}, {c['first_bad_rate']:.3g}) req/s"
            if c.get("first_bad_rate") is not None
            else (
                "above the sweep"
                if not c.get("bounded")
                else f"at {c.get('first_bad_load'):g} {unit}: {c['first_bad_why']}"
            )
        )
        table.append(
            {
                "provider": c["provider"],
                "max_rate": f"{c['max_rate']:.3g} req/s" if c.get("max_rate") is not None else "-",
                "bracket": bracket,
                "why": c.get("first_bad_why") or "no step missed the target",
                "knee": f"{c['knee_rate']:.3g}" if c.get("knee_rate") is not None else "-",
                "peak": f"{c['peak_achieved_rate']:.3g} req/s",
                "cost_1k": "-"
                if c.get("cost_per_1k_at_max_usd") is None
                else f"${c['cost_per_1k_at_max_usd']:,.4f}",
                "cost_hour": "-"
                if c.get("cost_per_hour_at_max_usd") is None
                else f"${c['cost_per_hour_at_max_usd']:,.2f}",
                "client_bound": c.get("client_bound_steps") or 0,
            }
        )
    return {
        "latency": latency_vs_load(rows, caps, colour, slos),
        "goodput": goodput_vs_load(rows, caps, colour, target),
        "capacity": table,
        "target": target,
        "slos": ", ".join(f"{k.removesuffix('_ms')} ≤ {axis_ms(v)}" for k, v in slos.items())
        or "none (goodput = success)",
        "by": by,
    }
