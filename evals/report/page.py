"""The report writer: one self-contained HTML file (inline CSS and SVG, no script, no network),
a Markdown digest for a pull-request comment, or every figure as JSON.

``build`` evaluates a run and gathers the per-request samples the charts need; ``render_html``,
``render_markdown`` and ``render_json`` turn that into text; ``write`` puts it in a file.
Everything that came from the store (model output above all) reaches the HTML only through
Jinja2 autoescaping or ``charts.Svg``'s escaping; no template uses ``|safe``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path

import jinja2
import markupsafe
import polars as pl

from parity.evals import load
from parity.evals.api import Evaluation, evaluate, unsupported_endpoints
from parity.evals.figures import RELIABILITY_FIGURES
from parity.evals.load import Store
from parity.evals.metrics.scorecard import CHECKS
from parity.evals.report import cost_text
from parity.evals.report.data import Report, appendix, gather
from parity.evals.report.fmt import fmt_num, fmt_rate, known
from parity.evals.report.recommend import recommendations
from parity.evals.report.verdict import verdict
from parity.evals.report.view import (
    anchor,
    chart_set,
    ci_min_n,
    key_figures,
    latency_table,
    metadata,
    scorecard,
    table,
)
from parity.evals.summarise import rows as frame_rows

FORMATS = ("html", "md", "json")
TEMPLATES = Path(__file__).parent / "templates"
SCRIPT = "report.js"  # the one inline script: allowed by its hash, the page reads the same without it
TONE_MARK = {"better": "🟢", "worse": "🔴", "same": "⚪", "info": "", "na": ""}
__all__ = ["FORMATS", "Report", "build", "render", "render_html", "render_json", "render_markdown", "write"]


def build(
    db: Store,
    run: str | None = None,
    baseline: str = "recorded",
    slos: str | dict | None = None,
    *,
    idle_s: float = 60.0,
    itl_sample: int = 10000,
    worst: int = 3,
    judge: str | None = None,
    providers: str | os.PathLike | None = None,
    monthly_requests: float | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> Report:
    """Evaluate ``run`` against ``baseline`` and gather the report's samples (``worst`` diffs per provider)."""
    ev = evaluate(
        db,
        run,
        baseline,
        slos,
        judge=judge,
        providers=providers,
        idle_s=idle_s,
        itl_sample=itl_sample,
        monthly_requests=monthly_requests,
        since=since,
        until=until,
    )
    with load.open_store(db, ev.window) as con:
        samples = gather(con, ev, idle_s=idle_s, itl_sample=itl_sample, worst=worst)
        ids = list(
            dict.fromkeys([*_compat_example_ids(ev), *(d["exchange_id"] for d in samples.disagreements)])
        )
        samples.appendix = appendix(con, ev.run, ids, baseline)
    return Report(ev=ev, samples=samples, idle_s=idle_s)


def cost_lines(rep: Report) -> list[str]:
    """The $/month basis (or why there is none) and each partial cost, as sentences."""
    ev = rep.ev
    out = [cost_text.month_sentence(ev.month)] if ev.month is not None else []
    out += [t for r in rep.summary if (t := cost_text.partial_sentence(r, ev.baseline))]
    return [t for t in out if t]


def _compat_example_ids(ev: Evaluation) -> list[str]:
    if ev.compat is None or ev.compat.is_empty():
        return []
    fails = ev.compat.filter(pl.col("result") == "fail")
    return [e for ex in fails["examples"].to_list() for e in (ex or [])]


def recommend(rep: Report, rows: list[dict] | None = None) -> list[dict]:
    """The one-line recommendation per provider, from the verdict rows (computed if not given)."""
    rows = verdict(rep) if rows is None else rows
    basis = rep.ev.month is not None and rep.ev.month.requests is not None
    return recommendations(rows, rep.summary, rep.ev.config, basis)


def context(rep: Report) -> dict:
    """Everything the HTML template reads."""
    ev = rep.ev
    ch = chart_set(rep)
    rows = verdict(rep)
    n_ex = rep.base_row.get("n_cells")
    provs = [r["provider"] for r in rep.summary]
    linked = {a["exchange_id"] for a in rep.samples.appendix}
    return {
        "run": ev.run,
        "baseline": ev.baseline,
        "window": ev.window.describe() if ev.window else None,
        "unsupported": unsupported_endpoints(ev.config),
        "n_exchanges": n_ex,
        "providers": provs,
        "colours": ch["colours"],
        "verdict": rows,
        "recommendations": recommend(rep, rows),
        "charts": ch,
        "key_figures": key_figures(rep),
        "latency_table": latency_table(rep),
        "ci_min_n": ci_min_n(),
        "reliability": table(rep, RELIABILITY_FIGURES),
        "cost_table": table(
            rep,
            (
                "cost_total_usd",
                "cost_priced_share",
                "cost_per_success_usd",
                "cost_per_1k_usd",
                "cost_month_usd",
                "cost_delta_pct",
                "cost_delta_basis",
                "cost_estimated_share",
                "breakeven_prompt_tokens",
                "breakeven_traffic_share",
            ),
        ),
        "breakeven": frame_rows(ev.breakeven.head(30)) if ev.breakeven is not None else [],
        "cost_notes": cost_lines(rep),
        "quality_table": table(
            rep,
            (
                "quality_score",
                "text_similarity_mean",
                "exact_match_rate",
                "length_ratio_median",
                "finish_reason_agreement",
                "refusal_rate",
                "new_refusal_rate",
                "json_valid_rate",
                "json_schema_valid_rate",
                "tool_call_valid_rate",
                "tool_call_agreement",
                "embedding_cosine_mean",
                "judge_n",
                "judge_win_rate",
                "judge_tie_rate",
                "judge_loss_rate",
            ),
        ),
        "scorecard": scorecard(rep),
        "disagreements": rep.samples.disagreements,
        "appendix": rep.samples.appendix,
        "linked": linked,
        "idle_s": rep.idle_s,
        "meta": metadata(rep),
        "anchor": anchor,
        "fmt_num": fmt_num,
        "fmt_tokens": lambda v: f"{v:,.0f}" if known(v) else "—",
        "fmt_rate": fmt_rate,
        **dict(zip(("script", "script_sha256"), script(), strict=True)),
    }


def script() -> tuple[markupsafe.Markup, str]:
    """The inline script and the base64 sha256 of exactly the text inlined (its CSP source)."""
    text = (TEMPLATES / SCRIPT).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return markupsafe.Markup(text), digest  # our own file, never data: not escaped


def _ticks(text: str) -> markupsafe.Markup:
    """Our own prose with `code` spans: escaped first, then the backtick pairs become <code>."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _wbr(text: object) -> markupsafe.Markup:
    """Escaped text with a line-break opportunity after each underscore (check names in narrow cells)."""
    return markupsafe.Markup(str(markupsafe.escape(text)).replace("_", "_<wbr>"))


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # model output is untrusted: everything is escaped, nothing is |safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ticks"] = _ticks  # for the check catalogue's prose only, never for answers
    env.filters["wbr"] = _wbr  # escapes first, like ticks
    return env


def render_html(rep: Report) -> str:
    """The self-contained HTML report."""
    return _env().get_template("report.html.j2").render(**context(rep))


def render_json(rep: Report) -> str:
    """Every figure (``evals.summary_dict``'s shape) as JSON."""
    return json.dumps(rep.ev.to_dict(), indent=2, allow_nan=False, default=str) + "\n"


def _md(v: object) -> str:
    """Markdown table cell text: no pipes, no HTML, one line."""
    s = str(v).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(s.split())


def render_markdown(rep: Report) -> str:
    """A pull-request comment: verdict table, compatibility failures and key figures."""
    ev = rep.ev
    lines = [f"## parity: run `{_md(ev.run)}` vs `{_md(ev.baseline)}`", ""]
    if ev.window:
        lines += [f"Only {ev.window.describe()}.", ""]
    n = rep.base_row.get("n_cells")
    if n:
        lines += [
            f"{n:,} baseline answers compared. 🟢 significantly better · 🔴 significantly worse · "
            "⚪ no significant difference (family-wise 95%: the interval shown excludes 0; p95 unadjusted)",
            "",
        ]
    rows = verdict(rep)
    lines += [f"- **{_md(r['provider'])}**: {_md(r['text'])}" for r in recommend(rep, rows)]
    if rows:
        lines.append("")
    cols = [
        ("TTFT median Δ", "ttft_median"),
        ("TTFT p95 Δ", "ttft_p95"),
        ("E2E median Δ", "e2e_median"),
        ("E2E p95 Δ", "e2e_p95"),
        ("errors", "errors"),
        ("cost", "cost"),
        ("quality", "quality"),
        ("compatibility", "compat"),
    ]
    lines.append("| provider | verdict | " + " | ".join(c for c, _ in cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    for v in rows:
        chips = "; ".join(f"{TONE_MARK[t]} {_md(x)}".strip() for x, t in v["chips"])
        cells = []
        for _, k in cols:
            c = v["cells"][k]
            mark = TONE_MARK.get(c.tone, "")
            sub = f" ({_md(c.sub)})" if c.sub and k in ("ttft_median", "e2e_median", "cost") else ""
            cells.append(f"{mark} {_md(c.text)}{sub}".strip())
        lines.append(f"| **{_md(v['provider'])}** | {chips} | " + " | ".join(cells) + " |")
    notes = cost_lines(rep)
    if notes:
        lines += ["", *(f"Cost: {_md(n)}" for n in notes)]
    card = ev.compat
    lines += ["", "### Compatibility failures", ""]
    fails = card.filter(pl.col("result") == "fail") if card is not None and not card.is_empty() else None
    if fails is None or fails.is_empty():
        lines.append("None: every applicable check passes for every provider.")
    else:
        for r in fails.iter_rows(named=True):
            ex = ", ".join(f"`{_md(e)}`" for e in r["examples"] or [])
            applicable = r["passed"] + r["failed"]
            detail = f" ({_md(r['detail'])})" if r["detail"] else ""
            lines.append(
                f"- **{_md(r['provider'])}** `{r['check']}`: {r['failed']} of {applicable} failed{detail}"
                + (f"; e.g. {ex}" if ex else "")
                + f" — {_md(CHECKS.get(r['check'], ''))}"
            )
    figs = key_figures(rep)
    if figs:
        provs = [r["provider"] for r in rep.summary]
        lines += ["", "### Key figures", "", "| figure | " + " | ".join(_md(p) for p in provs) + " |"]
        lines.append("|---|" + "---|" * len(provs))
        for f in figs:
            lines.append(f"| `{f['figure']}` | " + " | ".join(_md(x) for x in f["values"]) + " |")
    lines += [
        "",
        f"<sub>parity report · figure definitions: `parity check --list-figures` · generated "
        f"{rep.generated_at:%Y-%m-%d %H:%M} UTC</sub>",
        "",
    ]
    return "\n".join(lines)


def render(rep: Report, fmt: str = "html") -> str:
    """The report in ``fmt`` (html, md or json)."""
    if fmt == "html":
        return render_html(rep)
    if fmt == "md":
        return render_markdown(rep)
    if fmt == "json":
        return render_json(rep)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def write(rep: Report, out: str | os.PathLike, fmt: str = "html") -> Path:
    """Render and write atomically (a temporary file renamed into place)."""
    text = render(rep, fmt)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
