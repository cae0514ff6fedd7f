"""One line per provider at the top of the report, read off the verdict's own cells.

Every phrase repeats a cell's text and its significance label (a cell coloured better or worse is
"significant", a grey one "not significant"), so the line can never say what the table does not.
A provider that answered no request is named dead, with the replay's diagnosis from the run config.
"""

from __future__ import annotations

from parity.evals.report.fmt import fmt_pct, fmt_rate, known
from parity.evals.report.verdict import VerdictCell, compat_counts

SIGNIFICANT = {"better": "significant", "worse": "significant", "same": "not significant"}
MAX_CHECKS = 3  # failing checks named before "+N more"


def _label(c: VerdictCell) -> str:
    s = SIGNIFICANT.get(c.tone)
    return f" ({s})" if s else ""


def dead_reason(config: dict, provider: str) -> str | None:
    """The replay's diagnosis of a provider that answered no request (None when it answered)."""
    v = ((config.get("failures") or {}).get("providers") or {}).get(provider) or {}
    if not v.get("dead"):
        return None
    reasons = v.get("reasons") or []
    return v.get("hint") or (reasons[0].get("reason") if reasons else None) or "no answer"


def cost_phrase(r: dict, c: VerdictCell, month_basis: bool) -> str | None:
    """ "38% cheaper (significant; $0.35/1k req, no $/month basis)": the cost cell's tone and text."""
    if c.tone == "na":
        return None
    d = r.get("cost_delta_pct")
    if known(d) and c.tone == "better":
        head = f"{abs(d):.0f}% cheaper"
    elif known(d) and c.tone == "worse":
        head = f"{abs(d):.0f}% more expensive"
    else:
        head = f"cost {fmt_pct(d)}" if known(d) else "cost"
    facts = [c.text]
    share = r.get("cost_priced_share")
    if known(share) and share < 1:
        facts.append(f"cost partial: {fmt_rate(share)} priced")
    if not month_basis:
        facts.append("no $/month basis")
    sig = SIGNIFICANT.get(c.tone)
    return f"{head} ({sig + '; ' if sig else ''}{', '.join(facts)})"


def latency_phrase(cells: dict[str, VerdictCell]) -> str | None:
    """TTFT median (E2E where nothing streamed, or both when they disagree) with its label."""
    t, e = cells["ttft_median"], cells["e2e_median"]
    parts = []
    if t.text != "—":
        parts.append(f"TTFT median {t.text}{_label(t)}")
    if e.text != "—" and (not parts or e.tone != t.tone):
        parts.append(f"E2E median {e.text}{_label(e)}")
    return ", ".join(parts) or None


def errors_phrase(c: VerdictCell) -> str | None:
    if c.tone in ("better", "worse") or (c.text not in ("—", "0%") and c.tone == "same"):
        return f"failed requests {c.text}{_label(c)}, {c.sub}" if c.sub else f"failed requests {c.text}"
    return None


def compat_phrase(r: dict, failed: list[str]) -> str:
    counts = compat_counts(r)
    if counts is None:
        return "no compatibility check applied"
    bad = counts[1]
    if not bad:
        return f"passes every compatibility check ({counts[0]}/{counts[2]})"
    names = ", ".join(failed[:MAX_CHECKS]) + (
        f" and {len(failed) - MAX_CHECKS} more" if len(failed) > MAX_CHECKS else ""
    )
    noun = "failure" if bad == 1 else "failures"
    return f"{bad} compatibility {noun}: {names}" if names else f"{bad} compatibility {noun}"


def recommendations(
    verdict_rows: list[dict], summary: list[dict], config: dict, month_basis: bool
) -> list[dict]:
    """``{"provider", "text", "tone"}`` per verdict row; tone is "dead", "worse" (a significant
    regression or a compatibility failure), "better" (only improvements) or "same"."""
    by_name = {r["provider"]: r for r in summary}
    out = []
    for v in verdict_rows:
        p, cells = v["provider"], v["cells"]
        r = by_name.get(p, {})
        dead = dead_reason(config, p)
        if dead is not None or (r.get("n_success") == 0 and known(r.get("n_cells")) and r["n_cells"]):
            out.append(
                {"provider": p, "text": f"dead: answered no request ({dead or 'no answer'})", "tone": "dead"}
            )
            continue
        phrases = [
            cost_phrase(r, cells["cost"], month_basis),
            latency_phrase(cells),
            errors_phrase(cells["errors"]),
            compat_phrase(r, v.get("failed") or []),
        ]
        tones = {c.tone for k, c in cells.items() if k != "quality"}
        tone = "worse" if "worse" in tones else "better" if "better" in tones else "same"
        out.append({"provider": p, "text": ", ".join(x for x in phrases if x), "tone": tone})
    return out
