"""The report's tables, charts and run metadata, ready for the template (values formatted as text)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from parity.evals.figures import FIGURES
from parity.evals.metrics import spend, stats
from parity.evals.metrics.compat_checks import CATALOGUE, CHECKS
from parity.evals.metrics.outcome import succeeded
from parity.evals.report import charts, sweep_charts
from parity.evals.report.data import MAX_SCATTER, Report
from parity.evals.report.fmt import fmt_figure, fmt_ms, fmt_p, fmt_pct, known
from parity.evals.report.verdict import LATENCY, latency_median_cell
from parity.evals.summarise import rows as frame_rows

QUALITY_PARTS = (
    ("text_similarity_mean", "text similarity"),
    ("exact_match_rate", "exact match"),
    ("finish_reason_agreement", "finish reason agrees"),
    ("json_conformance", "JSON conformance"),
    ("tool_call_valid_rate", "tool calls valid"),
    ("tool_call_agreement", "tool calls agree"),
    ("embedding_cosine_mean", "embedding cosine"),
    ("no_new_refusal", "no new refusals"),
)
KEY_FIGURES = (
    "n_cells", "error_rate", "rate_429", "retry_rate", "goodput_rate", "ttft_p50_ms", "ttft_p95_ms", "e2e_p50_ms",
    "e2e_p95_ms", "itl_p50_ms", "tpot_p50_ms", "output_tps_p50", "cold_start_delta_ms", "cost_per_1k_usd",
    "cost_month_usd", "cost_delta_pct", "breakeven_prompt_tokens", "quality_score", "text_similarity_mean",
    "judge_win_rate", "compat_score", "compat_failures",
)  # fmt: skip
# short column headings for figure tables (the figure name and definition go in the tooltip)
LABELS = {
    "n_cells": "cells", "n_success": "HTTP 200", "error_rate": "failed", "rate_429": "met a 429",
    "no_response_rate": "no response", "retry_rate": "retried", "goodput_rate": "goodput",
    "tokens_estimated_rate": "tokens estimated", "cold_start_delta_ms": "cold-start Δ", "cold_start_p_value": "cold-start p",
    "cost_total_usd": "run total", "cost_per_success_usd": "per success", "cost_month_usd": "per month",
    "cost_delta_pct": "vs baseline", "cost_estimated_share": "estimated", "cost_per_1k_usd": "per 1,000 requests",
    "cost_priced_share": "priced", "cost_delta_basis": "delta over", "breakeven_prompt_tokens": "break-even prompt",
    "breakeven_traffic_share": "traffic cheaper flat", "quality_score": "quality score",
    "text_similarity_mean": "text similarity", "exact_match_rate": "exact match", "length_ratio_median": "length ratio",
    "finish_reason_agreement": "finish reason agrees", "refusal_rate": "refusals", "new_refusal_rate": "new refusals",
    "json_valid_rate": "JSON valid", "json_schema_valid_rate": "schema valid", "tool_call_valid_rate": "tool calls valid",
    "tool_call_agreement": "tool calls agree", "embedding_cosine_mean": "embedding cosine", "judge_n": "judged pairs",
    "judge_win_rate": "judge: wins", "judge_tie_rate": "judge: ties", "judge_loss_rate": "judge: losses",
}  # fmt: skip
_SECRET_KEY = re.compile(
    r"(?i)(^|[_-])(api[_-]?key|secret|password|passwd|authorization|bearer|credentials?|cookie)s?($|[_-])"
    r"|(^|[_-])token$"
)


def key_figures(rep: Report) -> list[dict]:
    """Rows of (figure, definition, formatted value per provider) for figures with any value."""
    rows = rep.summary
    out = []
    for f in KEY_FIGURES:
        vals = [r.get(f) for r in rows]
        if not any(known(v) for v in vals):
            continue
        out.append({"figure": f, "definition": FIGURES[f], "values": [fmt_figure(f, v) for v in vals]})
    return out


def latency_table(rep: Report) -> list[dict]:
    """Per metric and provider: percentiles, the 95% CIs of p50 and p95, and p50 vs the baseline's."""
    metrics = (
        ("ttft", "TTFT", "_ms"),
        ("tpot", "TPOT", "_ms"),
        ("itl", "ITL (per token)", "_ms"),
        ("e2e", "E2E", "_ms"),
        ("output_tps", "output tokens/s", ""),
    )
    out = []
    for m, label, u in metrics:
        first = True
        for r in rep.summary:
            if not known(r.get(f"{m}_p50{u}")):
                continue

            def f(x: float | None, u: str = u) -> str:
                if not known(x):
                    return "—"
                return fmt_ms(x) if u else f"{x:,.1f}"

            row = {"metric": label if first else "", "provider": r["provider"]}
            first = False
            for p in ("p50", "p90", "p95", "p99"):
                row[p] = f(r.get(f"{m}_{p}{u}"))
                lo, hi = r.get(f"{m}_{p}{u}_ci_low"), r.get(f"{m}_{p}{u}_ci_high")
                reason = r.get(f"{m}_{p}{u}_ci_reason") or "the sample cannot bound it"
                row[f"{p}_ci"] = f"{f(lo)} – {f(hi)}" if known(lo) and known(hi) else f"no CI: {reason}"
            row["delta"] = (
                fmt_pct(r.get(f"{m}_p50_delta_pct")) if r["provider"] != rep.ev.baseline else "baseline"
            )
            out.append(row)
    return out


def ci_min_n() -> str:
    """ "6 for p50, 36 for p90, ...": the fewest requests whose 95% percentile interval has both bounds."""
    return ", ".join(f"{stats.min_n_bounded(q):,} for {stats.pct_name(q)}" for q in stats.QUANTILES)


def table(rep: Report, figures: tuple[str, ...]) -> dict:
    """A provider x figure table of formatted values (figures without any value dropped)."""
    rows = rep.summary
    figs = [f for f in figures if any(known(r.get(f)) for r in rows)]
    return {
        "figures": [{"name": f, "label": LABELS.get(f, f), "definition": FIGURES.get(f, f)} for f in figs],
        "rows": [
            {"provider": r["provider"], "values": [fmt_figure(f, r.get(f)) for f in figs]} for r in rows
        ],
    }


def anchor(exchange_id: str) -> str:
    """An HTML id for an exchange's appendix entry (ids are data: keep only safe characters)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", exchange_id)[:48]
    if safe != exchange_id:
        safe += "-" + hashlib.sha1(exchange_id.encode()).hexdigest()[:8]
    return "ex-" + safe


def scorecard(rep: Report) -> dict:
    """Checks x providers: result, counts and example links (an example not in the appendix stays
    text), then every finding with what it breaks and both sides of its examples."""
    card = rep.ev.compat
    if card is None or card.is_empty():
        return {"providers": [], "rows": [], "findings": []}
    linked = {a["exchange_id"] for a in rep.samples.appendix}
    provs = [r["provider"] for r in rep.summary if r["provider"] in set(card["provider"].to_list())]
    cells = {(r["check"], r["provider"]): r for r in card.iter_rows(named=True)}
    rows, findings = [], []
    for check, what in CHECKS.items():
        info = CATALOGUE[check]
        line = []
        for p in provs:
            c = cells.get((check, p))
            if c is None:
                line.append({"result": "n/a", "text": "n/a", "examples": [], "detail": None})
                continue
            applicable = c["passed"] + c["failed"]
            text = "n/a" if c["result"] == "n/a" else f"{c['passed']}/{applicable}"
            if c.get("same_as_production"):
                text += f" (+{c['same_as_production']} as production)"
            ex = [{"id": e, "href": "#" + anchor(e) if e in linked else None} for e in c["examples"] or []]
            line.append({"result": c["result"], "text": text, "examples": ex, "detail": c["detail"]})
            if c["result"] in ("fail", "info"):
                findings.append(
                    {
                        "provider": p,
                        "check": check,
                        "result": c["result"],
                        "failed": c["failed"],
                        "applicable": applicable,
                        "what": what,
                        "protects": info.protects,
                        "basis": info.basis,
                        "detail": c["detail"],
                        "evidence": c.get("evidence") or [],
                    }
                )
        if any(x["result"] != "n/a" for x in line):
            flagged = any(x["result"] in ("fail", "info") for x in line)
            rows.append(
                {"check": check, "what": what, "severity": info.severity, "cells": line, "flagged": flagged}
            )
    na = [c for c in CHECKS if c not in {r["check"] for r in rows}]
    findings.sort(key=lambda f: (f["result"] != "fail", f["provider"], list(CHECKS).index(f["check"])))
    return {"providers": provs, "rows": rows, "not_applicable": na, "findings": findings}


def chart_set(rep: Report) -> dict:
    """Every chart of the report as inline SVG (None where there is nothing to draw)."""
    s, ev = rep.samples, rep.ev
    provs = [r["provider"] for r in rep.summary]
    col = charts.colours(provs, ev.baseline)
    m = s.metrics.filter(succeeded())

    def per(col_name: str) -> dict[str, list[float]]:
        return {p: m.filter(pl.col("provider") == p)[col_name].drop_nulls().to_list() for p in provs}

    out: dict = {"colours": col}
    out["ttft_cdf"] = charts.cdf(
        per("ttft_ms"), col, "Time to first token: CDF per provider", "time to first token"
    )
    out["e2e_cdf"] = charts.cdf(
        per("e2e_ms"), col, "End-to-end latency: CDF per provider", "end-to-end latency"
    )
    itl = s.itl
    itl_stats = {
        p: charts.box_stats(itl.filter(pl.col("provider") == p)["itl_ms"].explode().drop_nulls().to_list())
        for p in provs
    }
    out["itl_box"] = charts.boxes(
        itl_stats, col, "Inter-token latency per token", "inter-token latency (pooled tokens)"
    )
    out["tpot_box"] = charts.boxes(
        {p: charts.box_stats(v) for p, v in per("tpot_ms").items()},
        col,
        "Time per output token per request",
        "time per output token (per request)",
    )
    rows = []
    for r in rep.candidates:
        for m_, label, _ in LATENCY:
            c = latency_median_cell(r, m_, label)
            rows.append(
                (
                    f"{r['provider']} · {label}",
                    r.get(f"{m_}_median_diff_ms"),
                    r.get(f"{m_}_median_diff_ms_adj_ci_low"),
                    r.get(f"{m_}_median_diff_ms_adj_ci_high"),
                    c.tone,
                )
            )
    out["forest"] = charts.forest(
        rows,
        "Median paired latency difference vs baseline, family-wise 95% CI (Bonferroni)",
        "difference vs baseline (per request, paired)",
    )
    out["cost"], out["cost_note"] = _cost_chart(rep, col)
    cold = {r["provider"]: r for r in frame_rows(s.cold)}
    bars, notes = {}, {}
    for p in provs:
        c = cold.get(p)
        if c and known(c.get("cold_p50_ms")):
            bars[p] = (c["warm_p50_ms"], c["cold_p50_ms"])
            notes[p] = f"{fmt_ms(c['cold_start_delta_ms'], sign=True)}, {fmt_p(c['cold_start_p_value'])}"
    out["cold"] = charts.paired_bars(
        bars,
        ("warm (median)", f"cold: first to its model or after ≥ {rep.idle_s:g} s idle (median)"),
        col,
        "Cold-start effect: first-token time after an idle gap",
        "first-token time (E2E if not streamed)",
        notes,
    )
    out["cold_counts"] = {p: (c.get("n_cold"), c.get("n_warm")) for p, c in cold.items()}
    parts = {label: [] for _, label in QUALITY_PARTS}
    series = {}
    for r in rep.candidates:
        vals = []
        for f, _label in QUALITY_PARTS:
            if f == "json_conformance":
                v = (
                    r.get("json_schema_valid_rate")
                    if known(r.get("json_schema_valid_rate"))
                    else r.get("json_valid_rate")
                )
            elif f == "no_new_refusal":
                v = 1 - r["new_refusal_rate"] if known(r.get("new_refusal_rate")) else None
            else:
                v = r.get(f)
            vals.append(v if known(v) else None)
        series[r["provider"]] = vals
    keep = [i for i in range(len(QUALITY_PARTS)) if any(v[i] is not None for v in series.values())]
    labels = [QUALITY_PARTS[i][1] for i in keep]
    out["quality"] = charts.dots(
        labels,
        {p: [v[i] for i in keep] for p, v in series.items()},
        col,
        "Quality vs baseline, by part (1 = same as baseline)",
        "agreement / validity (0..1)",
    )
    del parts
    out["sweep"] = sweep_charts.section(ev, col)  # a capacity sweep's curves (None for other runs)
    return out


def _cost_chart(rep: Report, col: dict[str, str]):
    """Cost per request vs prompt length, each arm's price curve for the busiest model, break-even marks."""

    s, ev = rep.samples, rep.ev
    if s.costs is None:
        return None, ""
    ok = s.costs.filter(succeeded() & (pl.col("prompt_tokens") > 0) & (pl.col("cost_usd") > 0))
    if ok.is_empty():
        return None, ""
    points = {}
    for p in col:
        g = ok.filter(pl.col("provider") == p)
        if g.height > MAX_SCATTER:
            g = g.with_columns(pl.col("exchange_id").hash(7).alias("_h")).sort("_h").head(MAX_SCATTER)
        if g.height:
            points[p] = (g["prompt_tokens"].to_list(), (g["cost_usd"] * 1000).to_list())
    busiest = ok.group_by("model").len().sort("len", descending=True)["model"][0]
    rec = ok.filter(pl.col("model") == busiest)
    c_med = float(rec["completion_tokens"].median() or 0)
    lo, hi = max(1.0, float(ok["prompt_tokens"].min())), float(ok["prompt_tokens"].max())
    grid = [lo * (hi * 1.2 / lo) ** (i / 59) for i in range(60)]
    tables = spend.pricing_map(ev.config)
    curves = {}
    for p in col:
        price = spend.resolve_price(tables, ev.config, p, busiest)
        if price is None:
            continue
        curves[p] = (
            grid,
            [
                1000 * (x * price.input_per_1m / 1e6 + c_med * price.output_per_1m / 1e6 + price.per_request)
                for x in grid
            ],
        )
    marks = []
    be = ev.breakeven
    if be is not None and not be.is_empty():
        sel = be.filter((pl.col("model") == busiest) & pl.col("breakeven_prompt_tokens").is_not_null())
        sel = sel.filter(pl.col("breakeven_prompt_tokens") > 0).sort(
            "flat_provider", "breakeven_prompt_tokens"
        )
        groups: list[list[dict]] = []
        for r in sel.iter_rows(named=True):
            g = groups[-1] if groups else None
            if (
                g
                and g[0]["flat_provider"] == r["flat_provider"]
                and r["breakeven_prompt_tokens"] <= 1.2 * g[0]["breakeven_prompt_tokens"]
            ):
                g.append(r)
            else:
                groups.append([r])
        for g in groups[:4]:
            x = sum(r["breakeven_prompt_tokens"] for r in g) / len(g)
            names = ", ".join(r["token_provider"] for r in g)
            approx = "~" if len(g) > 1 else ""
            marks.append((x, f"{g[0]['flat_provider']} cheaper than {names} above {approx}{x:,.0f} tokens"))
    svg = charts.scatter_cost(points, curves, marks, col, "Cost per 1,000 requests vs prompt length")
    note = (
        f"Cost per 1,000 requests of a given prompt length. Dots: successful requests (up to {MAX_SCATTER} per provider). "
        f"Lines: each arm's price for {busiest} "
        f"(the busiest model) at its median completion of {c_med:,.0f} tokens, each arm in its own line style so "
        "lines that coincide stay visible. Vertical dashed lines: break-even prompt lengths."
    )
    return svg, note


def _safe_url(url: object) -> object:
    """A base URL without credentials or query (a key may hide in either)."""
    if not isinstance(url, str):
        return url
    try:
        u = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    host = u.hostname or ""
    if u.port:
        host += f":{u.port}"
    return urlunsplit((u.scheme, host, u.path, "", ""))


def redact(v: object, key: str = "") -> object:
    """Config for display: secret-looking keys masked, URLs stripped of credentials and query."""
    if isinstance(v, dict):
        return {k: redact(x, str(k)) for k, x in v.items()}
    if isinstance(v, list):
        return [redact(x, key) for x in v]
    if key != "api_key_env" and _SECRET_KEY.search(key) and v not in (None, "", [], {}):
        return "(redacted)"
    if key.endswith("url"):
        return _safe_url(v)
    return v


def _compact(v: object) -> str:
    """A config value as one readable line: flat dicts as "key: value; ...", the rest as JSON."""
    if v is None or v == {} or v == []:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S UTC") if v.utcoffset() == timedelta(0) else v.isoformat(" ")
    if isinstance(v, dict) and all(not isinstance(x, dict | list) for x in v.values()):
        return "; ".join(f"{k}: {_compact(x) if x is not None else 'none'}" for k, x in v.items())
    return json.dumps(v, ensure_ascii=False, default=str, separators=(", ", ": "))


def metadata(rep: Report) -> dict:
    """Run facts: selection, pacing, providers (never keys), versions and dates."""
    cfg = redact(rep.ev.config)
    info, tr = rep.samples.run_info, rep.samples.traffic
    facts = [
        ("run", rep.ev.run),
        ("state", info.get("state")),
        ("replay started", info.get("started_at")),
        ("replay finished", info.get("finished_at")),
        ("resumes", info.get("resumes")),
        ("baseline", rep.ev.baseline),
        ("window", rep.ev.window.describe() if rep.ev.window else "the whole run"),
        (
            "recorded traffic",
            f"{tr.get('n') or 0:,} exchanges, {_compact(tr.get('first'))} → {_compact(tr.get('last'))}"
            if tr.get("n")
            else "no recorded exchanges in this store",
        ),
        ("selection", cfg.get("selection")),
        ("pacing", cfg.get("pacing")),
        ("repeats", cfg.get("repeat")),
        ("seed", cfg.get("seed")),
        ("cost cap", cfg.get("max_cost")),
        ("SLOs (goodput)", rep.ev.slos or None),
        ("cold-start idle gap", f"{rep.idle_s:g} s"),
        ("report generated", rep.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    versions = cfg.get("versions") or {}
    try:
        from parity.store.version import __version__

        versions = {"report (parity)": __version__, **versions}
    except ImportError:  # pragma: no cover
        pass
    providers = []
    for name, p in (cfg.get("providers") or {}).items():
        p = p or {}
        listed = p.get("models_listed")
        providers.append(
            {
                "name": name,
                "base_url": p.get("base_url") or p.get("preset"),
                "key_env": p.get("api_key_env"),
                "models": _compact(p.get("models")),
                "pricing": _compact(p.get("pricing")),
                "limits": _compact({k: v for k, v in (p.get("limits") or {}).items() if v is not None}),
                "changes": _compact({k: p[k] for k in ("set", "drop", "rename", "headers") if p.get(k)})
                or "—",
                "listed": f"{len(listed)} models" if isinstance(listed, list) else "not listed",
            }
        )
    recorded = cfg.get("recorded") or {}
    return {
        "facts": [(k, _compact(v)) for k, v in facts if v not in (None, "", {}, [])],
        "versions": [(k, _compact(v)) for k, v in versions.items()],
        "providers": providers,
        "recorded_pricing": _compact(recorded.get("pricing")) if recorded.get("pricing") else None,
    }
