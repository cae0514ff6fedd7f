"""``parity eval``'s default output: the verdict in two tables and one line per provider, in 120 columns.

Every value is a summary figure (``Evaluation.summary``, the same row the report and the JSON read)
written by ``report_format``'s formatters, so a missing value is "—" and a p-value "p=0.034" here as
everywhere else. The significance labels come from ``verdict.latency_median_cell``, the report's rule.
"""

from __future__ import annotations

import io

from parity.evals.api import Evaluation, unsupported_endpoints
from parity.evals.report import cost_text
from parity.evals.report.fmt import fmt_ms, fmt_p, fmt_pct, fmt_usd, known, ms_number
from parity.evals.report.recommend import dead_reason
from parity.evals.report.verdict import LATENCY, compat_counts, failed_checks, latency_median_cell
from parity.evals.summarise import rows

WIDTH = 120
FORMATS = ("text", "json", "md", "csv")  # parity eval --format
LABELS = {"worse": "slower", "better": "faster", "same": "n.s.", "na": ""}
LEGEND = (
    "median Δ: median of per-request differences from {b}, ms, with its family-wise 95% CI; faster /\n"
    "slower: significant (Bonferroni-adjusted p<0.05), n.s.: not significant. p95 Δ: relative to {b}'s p95."
)


def _latency(r: dict, m: str, label: str) -> tuple[str, str]:
    """("−170 (−403 … −5.5) faster", label) from the figures behind the report's median cell."""
    est = r.get(f"{m}_median_diff_ms")
    if not known(est):
        return "—", ""
    lo, hi = r.get(f"{m}_median_diff_ms_adj_ci_low"), r.get(f"{m}_median_diff_ms_adj_ci_high")
    ci = f"({ms_number(lo)} … {ms_number(hi)})" if known(lo) and known(hi) else "(no CI)"
    tag = LABELS[latency_median_cell(r, m, label).tone]
    return f"{ms_number(est)} {ci} {tag}".rstrip(), tag


def _failed(r: dict) -> str:
    n, ok = r.get("n_cells"), r.get("n_success")
    return f"{n - ok}/{n}" if known(n) and known(ok) else "—"


def _compat(r: dict, failed: list[str], room: int) -> str:
    counts = compat_counts(r)
    if counts is None:
        return "— (no check applied)"
    passed, _, n = counts
    text = f"{passed}/{n} pass"
    if not failed:
        return text
    return _names(text + ", fails ", failed, room)


def _names(head: str, names: list[str], room: int) -> str:
    """``head`` + as many names as fit in ``room`` characters, then "+N more"."""
    for k in range(len(names), 0, -1):
        more = f" +{len(names) - k} more" if k < len(names) else ""
        text = head + ", ".join(names[:k]) + more
        if len(text) <= room or k == 1:
            return text
    return head.rstrip(", ")


def _table(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(header), *(line(r) for r in body)]


LEVELS = 3  # of detail in the lines in words: 0 with p-values, 1 without, 2 the shortest


def sentence(r: dict, failed: list[str], level: int = 0, width: int = WIDTH, why: str | None = None) -> str:
    """One line for a provider, the verdict in words: latency, failures, cost, compatibility. At
    ``level`` 0 a significant difference has its adjusted p-value, at 1 not, at 2 non-significant
    latency has no figures; failing check names become "+N more" to fit ``width``. ``why``: the
    replay's diagnosis of a provider that answered nothing."""
    p = r["provider"]
    n, ok = r.get("n_cells"), r.get("n_success")
    if known(n) and n and ok == 0:
        return f"{p}: answered none of its {n} requests ({why or 'is it up? is its base_url right?'}): nothing to compare"
    slow, fast = r.get("significant_slower"), r.get("significant_faster")
    lat = []
    for m, label, _ in LATENCY:
        est = r.get(f"{m}_median_diff_ms")
        if known(est):
            pv = f" ({fmt_p(r.get(f'{m}_p_adjusted'))})" if level == 0 and (slow or fast) else ""
            lat.append(f"{label} {fmt_ms(est, sign=True)}{pv}")
    word = "mixed latency" if slow and fast else "slower" if slow else "faster" if fast else "latency n.s."
    if not lat:
        parts = ["no latency to compare"]
    elif level >= 2 and not (slow or fast):
        parts = [word]
    else:
        parts = [f"{word}: {', '.join(lat)}"]
    if known(n) and known(ok) and n - ok:
        parts.append(f"{n - ok} of {n} requests failed")
    delta = r.get("cost_delta_pct")
    if known(delta):
        parts.append(
            f"{abs(delta):.0f}% cheaper"
            if delta <= -1
            else f"{delta:.0f}% more expensive"
            if delta >= 1
            else f"cost {fmt_pct(delta)}"
        )
    counts = compat_counts(r)
    line = f"{p}: " + "; ".join(parts)
    what = "compatibility checks" if level < 2 else "checks"
    if counts and failed:
        line += _names(f"; fails {len(failed)} of {counts[2]} {what}: ", failed, width - len(line))
    elif counts:
        line += f"; passes all {counts[2]} {what}"
    return line if len(line) <= width else line[: width - 1] + "…"


def sentences(
    summary: list[dict],
    fails: dict[str, list[str]],
    baseline: str,
    width: int = WIDTH,
    config: dict | None = None,
) -> list[str]:
    """The lines of every provider but the baseline, all at the most detailed level where all fit."""
    rs = sorted((r for r in summary if r["provider"] != baseline), key=lambda r: r["provider"])
    for level in range(LEVELS):
        lines = [
            sentence(r, fails.get(r["provider"], []), level, width, dead_reason(config or {}, r["provider"]))
            for r in rs
        ]
        if all(len(x) <= width and not x.endswith("…") for x in lines):
            break
    return lines


def verdict_tables(
    ev: Evaluation, width: int = WIDTH
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The two tables' headers and rows, one row per provider besides the baseline."""
    base = ev.baseline
    summary = sorted(rows(ev.summary), key=lambda r: r["provider"])
    fails = failed_checks(ev)
    lat_head = ["provider", "failed"]
    for _, label, _ in LATENCY:
        lat_head += [f"{label} median Δ", f"{label} p95 Δ"]
    lat_rows, other_rows = [], []
    cands = [r for r in summary if r["provider"] != base]
    pw = max([len("provider"), *(len(r["provider"]) for r in cands)])
    for r in cands:
        row = [r["provider"], _failed(r)]
        for m, label, _ in LATENCY:
            row += [_latency(r, m, label)[0], fmt_pct(r.get(f"{m}_p95_delta_pct"))]
        lat_rows.append(row)
        cost = cost_text.headline(r) or "—"
        q = r.get("quality_score")
        fixed = pw + 2 + max(len(cost), 4) + 2 + 7 + 2 + 7 + 2
        other_rows.append(
            [
                r["provider"],
                cost,
                fmt_pct(r.get("cost_delta_pct")),
                f"{q:.2f}" if known(q) else "—",
                _compat(r, fails.get(r["provider"], []), width - fixed),
            ]
        )
    return lat_head, lat_rows, ["provider", "cost", "cost Δ", "quality", "compatibility"], other_rows


def render(ev: Evaluation, width: int = WIDTH) -> str:
    """The default terminal output of ``parity eval``."""
    summary = rows(ev.summary)
    base = next((r for r in summary if r["provider"] == ev.baseline), {})
    out = [_headline(ev, base, len(summary) - bool(base)), ""]
    lat_head, lat_rows, other_head, other_rows = verdict_tables(ev, width)
    if not lat_rows:
        out.append(f"no provider besides the baseline {ev.baseline} in this run: nothing to compare")
        return "\n".join(out) + "\n"
    out += _table(lat_head, lat_rows, {1, 3, 5})
    out += LEGEND.format(b=ev.baseline).splitlines() + [""]
    out += _table(other_head, other_rows, {1, 2, 3}) + [""]
    out += sentences(summary, failed_checks(ev), ev.baseline, width, ev.config)
    out += capacity_lines(ev)
    gone = unsupported_lines(ev)
    if gone:
        out += ["", *gone.splitlines()]
    out += [
        "",
        "every table: parity eval --detail; machine forms: --format json|md|csv; the report: parity report",
    ]
    return "\n".join(out) + "\n"


def capacity_lines(ev: Evaluation) -> list[str]:
    """A capacity sweep's answer, one line per provider (nothing for a run that is not a sweep): the
    highest load whose step met the SLOs, the step that did not and why, and the cost there. The
    latency and cost verdicts above pool every step."""
    caps = rows(ev.capacity)
    if not caps:
        return []
    unit = "req/s" if caps[0].get("by") == "rate" else "in flight"
    slos = ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in ev.slos.items()) or "no --slo given"
    out = [
        "",
        f"capacity ({caps[0]['target']:.0%} of requests within the SLOs: {slos}; the figures above pool every step):",
    ]
    for c in caps:
        if c.get("max_load") is None:
            line = f"  {c['provider']}: no step met the SLOs"
        else:
            line = f"  {c['provider']}: {c['max_load']:g} {unit}"
            if c.get("first_bad_load") is not None:
                line += f" (at {c['first_bad_load']:g}: {c['first_bad_why']})"
            else:
                line += " (every step met the SLOs: the capacity is at least this)"
            if c.get("cost_per_1k_at_max_usd") is not None:
                line += f"; {fmt_usd(c['cost_per_1k_at_max_usd'])}/1k req there"
        if c.get("client_bound_steps"):
            line += f"; {c['client_bound_steps']} step(s) client-bound"
        out.append(line)
    return out


def unsupported_lines(ev: Evaluation) -> str:
    """Endpoints a provider does not serve: left out of every figure, listed with the fix."""
    gone = unsupported_endpoints(ev.config)
    if not gone:
        return ""
    lines = ["unsupported endpoints (left out of the figures above; the provider does not serve them):"]
    lines += [f"  {u['provider']}: {u['endpoint']}: {u['cells']} requests got {u['reason']}" for u in gone]
    lines.append("  to stop sending them, list the endpoints to send in providers.toml: endpoints = [...]")
    return "\n".join(lines) + "\n"


def _headline(ev: Evaluation, base: dict, n: int) -> str:
    head = f"run {ev.run}: {n} provider{'s' if n != 1 else ''} vs {ev.baseline}"
    if base:
        cost = cost_text.headline(base)
        head += f" ({_failed(base)} failed" + (f", {cost}" if cost else "") + ")"
    if ev.slos:
        head += f"; SLOs {ev.slos}"
    if ev.window:
        head += f"; only {ev.window.describe()}"
    return head


def markdown(ev: Evaluation) -> str:
    """The same verdict as Markdown: a heading, the two tables, one bullet per provider."""
    summary = rows(ev.summary)
    base = next((r for r in summary if r["provider"] == ev.baseline), {})
    lat_head, lat_rows, other_head, other_rows = verdict_tables(ev, width=10_000)
    out = [f"### {_headline(ev, base, len(summary) - bool(base))}", ""]
    for head, body in ((lat_head, lat_rows), (other_head, other_rows)):
        if body:
            out += [_md_row(head), "|" + "---|" * len(head), *(_md_row(r) for r in body), ""]
    out += [f"- {x}" for x in sentences(summary, failed_checks(ev), ev.baseline, 10_000, ev.config)]
    return "\n".join(out) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def csv(ev: Evaluation) -> str:
    """Every summary figure, one row per provider (an empty field where a figure has no value)."""
    buf = io.StringIO()
    ev.summary.write_csv(buf)
    return buf.getvalue()
