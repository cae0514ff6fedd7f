"""Inline SVG charts for the report, drawn in Python: no JavaScript, no network, printable.

Every chart returns ``markupsafe.Markup`` built by ``Svg``, which escapes every text node and
attribute value it is given (provider and model names come from the store: untrusted). A chart
with nothing to draw returns None; the template then says so in words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from markupsafe import Markup, escape

# Okabe-Ito, colour-blind safe; the baseline is always drawn in dark grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D31", "#7F3C8D")
BASELINE_COLOUR = "#4a4a4a"
TONE_COLOUR = {"better": "#1a7f37", "worse": "#c62828", "same": "#6e7781", "na": "#9aa0a6"}
# Line styles by series (after the baseline's solid line): two lines with the same values stay
# visible as one dashed over the other instead of one hiding the other.
DASHES = ("", "8 4", "2 3", "10 3 2 3", "4 4", "1 5", "12 4 4 4", "6 2")
FONT = 12
CHAR_W = 6.6  # approximate width of one character at FONT px, for layout


def colours(providers: Sequence[str], baseline: str) -> dict[str, str]:
    """A stable colour per provider: the baseline grey, the others from PALETTE in order."""
    out, i = {}, 0
    for p in providers:
        if p == baseline:
            out[p] = BASELINE_COLOUR
        else:
            out[p] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


class Svg:
    """A tiny SVG writer; every attribute value and text node is escaped."""

    def __init__(self, width: int, height: int, title: str) -> None:
        self.w, self.h, self.title = width, height, title
        self.parts: list[str] = []

    def add(self, tag: str, text: str | None = None, **attrs: object) -> None:
        a = "".join(
            f' {k.rstrip("_").replace("_", "-")}="{escape(_num(v) if isinstance(v, float) else str(v))}"'
            for k, v in attrs.items()
            if v is not None
        )
        self.parts.append(f"<{tag}{a}/>" if text is None else f"<{tag}{a}>{escape(text)}</{tag}>")

    def line(self, x1: float, y1: float, x2: float, y2: float, **a: object) -> None:
        self.add("line", x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), **a)

    def text(self, x: float, y: float, s: str, **a: object) -> None:
        self.add("text", s, x=float(x), y=float(y), **a)

    def rect(self, x: float, y: float, w: float, h: float, **a: object) -> None:
        self.add("rect", x=float(x), y=float(y), width=float(max(w, 0.0)), height=float(max(h, 0.0)), **a)

    def circle(self, x: float, y: float, r: float, **a: object) -> None:
        self.add("circle", cx=float(x), cy=float(y), r=float(r), **a)

    def path(self, d: str, **a: object) -> None:
        self.add("path", d=d, **a)

    def group(self, inner: Svg, **attrs: object) -> None:
        a = "".join(f' {k.replace("_", "-")}="{escape(str(v))}"' for k, v in attrs.items())
        self.parts.append(f"<g{a}>{''.join(inner.parts)}</g>")

    def markup(self) -> Markup:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {self.w} {self.h}" '
            f'width="{self.w}" height="{self.h}" style="max-width: {self.w}px" font-size="{FONT}" '
            f'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif">'
            f"<title>{escape(self.title)}</title>"
        )
        return Markup(head + "".join(self.parts) + "</svg>")


class Scale:
    """Linear or log10 mapping of a data domain onto a pixel range."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        if log:
            lo, hi = max(lo, 1e-12), max(hi, 1e-12)
        if hi <= lo:
            pad = abs(lo) * 0.1 or 1.0
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.a, self.b, self.log = lo, hi, a, b, log

    def __call__(self, v: float) -> float:
        if self.log:
            t = (math.log10(max(v, self.lo)) - math.log10(self.lo)) / (
                math.log10(self.hi) - math.log10(self.lo)
            )
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.a + min(max(t, -0.02), 1.02) * (self.b - self.a)

    def ticks(self, n: int = 6) -> list[float]:
        """Round tick values inside the domain (1-2-5 steps; powers of ten on a log axis)."""
        if self.log:
            e0, e1 = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            mults = (1,) if e1 - e0 > 3 else (1, 2, 5)
            out = [m * 10.0**e for e in range(e0, e1 + 1) for m in mults]
            return [t for t in out if self.lo * 0.999 <= t <= self.hi * 1.001]
        return nice_ticks(self.lo, self.hi, n)


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round values (steps of 1, 2 or 5 x 10^k) covering [lo, hi]."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out, t = [], first
    while t <= hi + step * 1e-9:
        out.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return out


def axis_ms(v: float) -> str:
    """Axis label for a duration in ms: 250 ms, 1.5 s."""
    if abs(v) >= 1000:
        return f"{v / 1000:g} s"
    return f"{v:g} ms"


def axis_usd(v: float) -> str:
    """Axis label for a dollar amount, small amounts included."""
    if v == 0:
        return "$0"
    if abs(v) >= 1:
        return f"${v:,.0f}"
    if abs(v) >= 0.001:
        return "$" + f"{v:.3f}".rstrip("0").rstrip(".")
    return f"${v:.0e}"


def axis_tokens(v: float) -> str:
    """Axis label for a token count: 500, 2k, 1M."""
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def dashes(names: Sequence[str]) -> dict[str, str]:
    """A line style per series, in order: solid first, then distinct dash patterns."""
    return {k: DASHES[i % len(DASHES)] for i, k in enumerate(names)}


def _legend(
    svg: Svg,
    items: Sequence[tuple[str, str]],
    x: float,
    y: float,
    max_x: float,
    dash: dict[str, str] | None = None,
) -> float:
    """Swatches with names (a line sample in its dash style when ``dash`` is given), wrapped to
    ``max_x``; returns the y below the legend."""
    cx = x
    sample = 22 if dash is not None else 12
    for name, colour in items:
        w = sample + 6 + len(name) * CHAR_W + 14
        if cx + w > max_x and cx > x:
            cx, y = x, y + 16
        if dash is None:
            svg.rect(cx, y - 9, 12, 10, fill=colour, rx=2)
        else:
            style = dash.get(name.split(" (n=")[0]) or None
            svg.line(cx, y - 4, cx + sample, y - 4, stroke=colour, stroke_width=2.5, stroke_dasharray=style)
        svg.text(cx + sample + 4, y, name, fill="#333")
        cx += w
    return y + 10


def _axes(
    svg: Svg,
    xs: Scale,
    ys: Scale,
    xfmt: Callable[[float], str],
    yfmt: Callable[[float], str] | None,
    xlabel: str,
    ylabel: str = "",
) -> None:
    """Grid lines, tick labels and axis titles (no horizontal grid when ``yfmt`` is None)."""
    top, bottom = min(ys.a, ys.b), max(ys.a, ys.b)
    left, right = min(xs.a, xs.b), max(xs.a, xs.b)
    for t in ys.ticks(5) if yfmt is not None else []:
        y = ys(t)
        svg.line(left, y, right, y, stroke="#e6e6e6")
        svg.text(left - 6, y + 4, yfmt(t), text_anchor="end", fill="#555")
    for t in xs.ticks(6):
        x = xs(t)
        svg.line(x, top, x, bottom, stroke="#eeeeee")
        svg.text(x, bottom + 15, xfmt(t), text_anchor="middle", fill="#555")
    svg.line(left, bottom, right, bottom, stroke="#888")
    svg.line(left, top, left, bottom, stroke="#888")
    svg.text((left + right) / 2, bottom + 32, xlabel, text_anchor="middle", fill="#333")
    if ylabel:
        svg.text(
            14,
            (top + bottom) / 2,
            ylabel,
            text_anchor="middle",
            fill="#333",
            transform=f"rotate(-90 14 {_num((top + bottom) / 2)})",
        )


def _finite(v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a[np.isfinite(a)]


def _want_log(vals: np.ndarray) -> bool:
    pos = vals[vals > 0]
    return len(pos) > 0 and len(pos) == len(vals) and pos.max() / pos.min() > 30


def cdf(
    series: dict[str, Sequence[float]],
    colour: dict[str, str],
    title: str,
    xlabel: str,
    width: int = 560,
    height: int = 330,
    max_points: int = 300,
) -> Markup | None:
    """Empirical CDFs, one step line per series, with p50 / p95 guides; log x when the range is wide."""
    data = {k: np.sort(_finite(v)) for k, v in series.items()}
    data = {k: v for k, v in data.items() if len(v)}
    if not data:
        return None
    allv = np.concatenate(list(data.values()))
    log = _want_log(allv)
    lo = float(np.percentile(allv, 0.5)) if log else min(0.0, float(allv.min()))
    hi = float(allv.max())
    svg = Svg(width, height, title)
    dash = dashes(list(data))
    legend_bottom = _legend(
        svg, [(f"{k} (n={len(v)})", colour[k]) for k, v in data.items()], 56, 16, width - 10, dash
    )
    xs = Scale(lo, hi, 56, width - 34, log)
    ys = Scale(0, 1, height - 44, legend_bottom + 8)
    _axes(svg, xs, ys, axis_ms, lambda t: f"{t:.0%}", xlabel, "")
    for q, name in ((0.5, "p50"), (0.95, "p95")):
        svg.line(xs.a, ys(q), xs.b, ys(q), stroke="#999", stroke_dasharray="4 3")
        svg.text(xs.b + 3, ys(q) + 4, name, fill="#666", font_size=10)
    for k, v in data.items():
        n = len(v)
        idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
        d = [f"M{_num(xs(v[0]))},{_num(ys(0))}"]
        for i in idx:
            d.append(f"H{_num(xs(v[i]))}V{_num(ys((i + 1) / n))}")
        svg.path("".join(d), fill="none", stroke=colour[k], stroke_width=2, stroke_dasharray=dash[k] or None)
    return svg.markup()


def boxes(
    stats: dict[str, dict[str, float]],
    colour: dict[str, str],
    title: str,
    xlabel: str,
    xfmt: Callable[[float], str] = axis_ms,
    width: int = 560,
) -> Markup | None:
    """Horizontal box plots: whiskers p5-p95, box p25-p75, median bar, p99 tick; from precomputed stats."""
    rows = {k: s for k, s in stats.items() if s and s.get("p50") is not None}
    if not rows:
        return None
    label_w = 12 + max(len(k) for k in rows) * CHAR_W
    row_h = 30
    height = 40 + row_h * len(rows) + 44
    lo = min(s["p5"] for s in rows.values())
    hi = max(s["p99"] for s in rows.values())
    log = lo > 0 and hi / lo > 30
    svg = Svg(width, height, title)
    xs = Scale(lo if log else min(0.0, lo), hi, label_w, width - 96, log)
    top = 24
    ys = Scale(0, len(rows), top, top + row_h * len(rows))
    _axes(svg, xs, Scale(0, 1, ys.b, ys.a), xfmt, None, xlabel)
    for i, (k, s) in enumerate(rows.items()):
        y = ys(i + 0.5)
        c = colour[k]
        svg.text(label_w - 8, y + 4, k, text_anchor="end", fill="#222")
        svg.line(xs(s["p5"]), y, xs(s["p95"]), y, stroke=c, stroke_width=1.5)
        for e in ("p5", "p95"):
            svg.line(xs(s[e]), y - 6, xs(s[e]), y + 6, stroke=c, stroke_width=1.5)
        svg.rect(xs(s["p25"]), y - 9, xs(s["p75"]) - xs(s["p25"]), 18, fill=c, fill_opacity=0.25, stroke=c)
        svg.line(xs(s["p50"]), y - 9, xs(s["p50"]), y + 9, stroke=c, stroke_width=3)
        svg.circle(xs(s["p99"]), y, 2.5, fill=c)
        svg.text(width - 88, y + 4, f"p50 {xfmt(round(s['p50'], 1))}", fill="#333", font_size=11)
    svg.text(label_w, 14, "whiskers p5-p95 · box p25-p75 · bar median · dot p99", fill="#666", font_size=10)
    return svg.markup()


def box_stats(values: Sequence[float]) -> dict[str, float] | None:
    """The percentiles ``boxes`` draws, or None without data."""
    v = _finite(values)
    if not len(v):
        return None
    p = np.percentile(v, [5, 25, 50, 75, 95, 99])
    return dict(zip(("p5", "p25", "p50", "p75", "p95", "p99"), map(float, p), strict=True)) | {
        "n": float(len(v))
    }


def forest(
    rows: Sequence[tuple[str, float | None, float | None, float | None, str]],
    title: str,
    xlabel: str,
    width: int = 1120,
    xfmt: Callable[[float], str] = axis_ms,
) -> Markup | None:
    """Point estimates with 95% CIs around a zero line, coloured by tone; rows: (label, est, lo, hi, tone)."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None
    label_w = 12 + max(len(r[0]) for r in rows) * CHAR_W
    row_h = 28
    height = 30 + row_h * len(rows) + 44
    vals = [0.0] + [v for r in rows for v in r[1:4] if v is not None]
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.06 or 1.0
    svg = Svg(width, height, title)
    xs = Scale(lo - pad, hi + pad, label_w, width - 92)
    top = 20
    ys = Scale(0, len(rows), top, top + row_h * len(rows))
    _axes(svg, xs, Scale(0, 1, ys.b, ys.a), xfmt, None, xlabel)
    svg.line(xs(0), ys.a - 6, xs(0), ys.b, stroke="#333", stroke_width=1.2)
    svg.text(xs(0), 12, "baseline", text_anchor="middle", fill="#555", font_size=10)
    for i, (label, est, low, high, tone) in enumerate(rows):
        y = ys(i + 0.5)
        c = TONE_COLOUR.get(tone, TONE_COLOUR["na"])
        svg.text(label_w - 8, y + 4, label, text_anchor="end", fill="#222")
        if low is not None and high is not None:
            svg.line(xs(low), y, xs(high), y, stroke=c, stroke_width=2.5)
            for e in (low, high):
                svg.line(xs(e), y - 5, xs(e), y + 5, stroke=c, stroke_width=2)
        svg.circle(xs(est), y, 5, fill=c)
        sign = "+" if est > 0 else "−" if est < 0 else ""
        shown = round(abs(est)) if abs(est) >= 20 else round(abs(est), 1)
        svg.text(width - 86, y + 4, f"{sign}{xfmt(shown)}", fill=c, font_weight="600")
    return svg.markup()


def scatter_cost(
    points: dict[str, tuple[Sequence[float], Sequence[float]]],
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    marks: Sequence[tuple[float, str]],
    colour: dict[str, str],
    title: str,
    ylabel: str = "cost per 1,000 requests (log)",
    width: int = 1120,
    height: int = 380,
) -> Markup | None:
    """Cost vs prompt tokens (log-log): request dots, price curves and break-even marks."""
    xs_all = np.concatenate(
        [_finite(x) for x, _ in list(points.values()) + list(curves.values())] or [np.array([])]
    )
    ys_all = np.concatenate(
        [_finite(y) for _, y in list(points.values()) + list(curves.values())] or [np.array([])]
    )
    xs_all, ys_all = xs_all[xs_all > 0], ys_all[ys_all > 0]
    if not len(xs_all) or not len(ys_all):
        return None
    names = list(dict.fromkeys([*points, *curves]))
    svg = Svg(width, height, title)
    dash = dashes(names)
    legend_bottom = _legend(svg, [(k, colour[k]) for k in names], 66, 16, width - 10, dash)
    shown = [(x, label) for x, label in marks if x is not None and math.isfinite(x) and x > 0]
    band = 14 * len(shown)  # one row per break-even label, above the plot: labels never overlap
    height += band
    svg.h = height
    xs = Scale(float(xs_all.min()) * 0.8, float(xs_all.max()) * 1.25, 66, width - 24, log=True)
    ys = Scale(
        float(ys_all.min()) * 0.7, float(ys_all.max()) * 1.4, height - 44, legend_bottom + 22 + band, log=True
    )
    _axes(svg, xs, ys, axis_tokens, axis_usd, "prompt tokens (log)", ylabel)
    for k, (x, y) in points.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        g = Svg(0, 0, "")
        for a, b in zip(x[keep], y[keep], strict=True):
            g.circle(xs(a), ys(b), 2.4)
        svg.group(g, fill=colour[k], fill_opacity="0.45")
    for i, (k, (x, y)) in enumerate(curves.items()):
        pts = [(a, b) for a, b in zip(x, y, strict=True) if a > 0 and b > 0]
        if len(pts) > 1:
            d = "M" + "L".join(f"{_num(xs(a))},{_num(ys(b))}" for a, b in pts)
            # each line a little thinner than the one before it: where two coincide, the earlier one
            # shows as an edge around the later one
            w = 1.8 + 1.1 * (len(curves) - 1 - i)
            svg.path(d, fill="none", stroke=colour[k], stroke_width=w, stroke_dasharray=dash[k] or None)
    for i, (x, label) in enumerate(shown):
        px = xs(x)
        row = legend_bottom + 18 + 14 * i  # the baseline of this label's own row
        svg.line(px, row + 3, px, ys.a, stroke="#333", stroke_dasharray="5 4")
        right = px > xs.a + 0.6 * (xs.b - xs.a)
        svg.text(
            px - 4 if right else px + 4,
            row,
            label,
            fill="#222",
            font_size=11,
            text_anchor="end" if right else "start",
            paint_order="stroke",
            stroke="#fff",
            stroke_width=3,
        )
    return svg.markup()


def paired_bars(
    rows: dict[str, tuple[float | None, float | None]],
    names: tuple[str, str],
    colour: dict[str, str],
    title: str,
    xlabel: str,
    notes: dict[str, str] | None = None,
    width: int = 560,
) -> Markup | None:
    """Two horizontal bars per row (e.g. warm vs cold median), the second hatched darker."""
    rows = {k: v for k, v in rows.items() if v[0] is not None or v[1] is not None}
    if not rows:
        return None
    label_w = 16 + max(len(k) for k in rows) * (CHAR_W + 1)
    row_h = 40
    height = 40 + row_h * len(rows) + 44
    hi = max(v for pair in rows.values() for v in pair if v is not None)
    svg = Svg(width, height, title)
    _legend(svg, [(names[0], "#b8c4ce"), (names[1], "#37474f")], label_w, 14, width)
    xs = Scale(0, hi * 1.1, label_w, width - 150)
    ys = Scale(0, len(rows), 28, 28 + row_h * len(rows))
    _axes(svg, xs, Scale(0, 1, ys.b, ys.a), axis_ms, None, xlabel)
    for i, (k, (a, b)) in enumerate(rows.items()):
        y = ys(i + 0.5)
        svg.text(label_w - 8, y + 4, k, text_anchor="end", fill=colour.get(k, "#222"), font_weight="600")
        for j, (v, fill) in enumerate(((a, "#b8c4ce"), (b, "#37474f"))):
            if v is None:
                continue
            yy = y - 13 + j * 13
            svg.rect(xs(0), yy, xs(v) - xs(0), 11, fill=fill)
            svg.text(xs(v) + 4, yy + 9, axis_ms(round(v)), fill="#333", font_size=10)
        if notes and notes.get(k):
            svg.text(width - 144, y + 4, notes[k], fill="#333", font_size=11)
    return svg.markup()


def dots(
    rows: Sequence[str],
    series: dict[str, Sequence[float | None]],
    colour: dict[str, str],
    title: str,
    xlabel: str,
    width: int = 1120,
) -> Markup | None:
    """Dot plot on a 0..1 axis: one row per part, one dot per series (nudged apart vertically)."""
    if not rows or not any(v is not None for s in series.values() for v in s):
        return None
    label_w = 16 + max(len(r) for r in rows) * CHAR_W
    row_h = 14 + 7 * max(len(series), 1)
    height = 40 + row_h * len(rows) + 44
    svg = Svg(width, height, title)
    legend_bottom = _legend(svg, [(k, colour[k]) for k in series], label_w, 16, width - 10)
    xs = Scale(0, 1, label_w, width - 70)
    top = legend_bottom + 10
    ys = Scale(0, len(rows), top, top + row_h * len(rows))
    _axes(svg, xs, Scale(0, 1, ys.b, ys.a), lambda t: f"{t:g}", None, xlabel)
    k_n = len(series)
    for i, r in enumerate(rows):
        y0 = ys(i + 0.5)
        if i % 2 == 0:
            svg.rect(xs.a, ys(i), xs.b - xs.a, row_h, fill="#f6f8fa")
        svg.text(label_w - 8, y0 + 4, r, text_anchor="end", fill="#222")
        for j, (k, vals) in enumerate(series.items()):
            v = vals[i]
            if v is None or not math.isfinite(v):
                continue
            y = y0 + (j - (k_n - 1) / 2) * 7
            svg.circle(xs(v), y, 4.5, fill=colour[k], stroke="#fff", stroke_width=1)
    return svg.markup()
