"""The words around a cost figure: partial costs, the delta's basis and the $/month basis.

One place, so the verdict cell, the Markdown comment and the HTML report say the same thing.
"""

from __future__ import annotations

from parity.evals.metrics.spend import MonthBasis
from parity.evals.report.fmt import fmt_pct, fmt_rate, fmt_usd, known


def headline(r: dict) -> str | None:
    """$/month when it has a basis, else the cost of 1,000 requests; None without any cost."""
    month, per_1k = r.get("cost_month_usd"), r.get("cost_per_1k_usd")
    if known(month):
        return f"{fmt_usd(month)}/mo"
    return f"{fmt_usd(per_1k)}/1k req" if known(per_1k) else None


def notes(r: dict) -> list[str]:
    """Short notes: the delta (and over which exchanges), and a partial cost's priced share."""
    out = []
    delta = r.get("cost_delta_pct")
    if known(delta):
        subset = r.get("cost_delta_basis") == "priced_common_subset"
        out.append(f"{fmt_pct(delta)} vs baseline" + (" on exchanges priced in both arms" if subset else ""))
    share = r.get("cost_priced_share")
    if known(share) and share < 1:
        out.append(f"partial: {fmt_rate(share)} priced")
    return out


def month_sentence(m: MonthBasis | None) -> str:
    """What $/month rests on, or why there is none (for the report's cost section)."""
    if m is None:
        return ""
    if m.basis is None:
        return f"No $/month: {m.note}. Costs are shown per 1,000 requests of the recorded mix."
    if m.basis.startswith("monthly_requests="):
        n = float(m.basis.split("=", 1)[1])
        head = f"$/month = {n:,.0f} requests a month (--monthly-requests) × the mean cost per recorded request, the mix as recorded"
    else:
        head = f"$/month extrapolates the {m.basis.removeprefix('recording span ')} recording's own request rate to 30 days"
    return head + (f" ({m.note})" if m.note else "") + "."


def partial_sentence(r: dict, baseline: str) -> str | None:
    """A provider whose cost is partial: its priced share, and what the deltas are taken over."""
    share = r.get("cost_priced_share")
    if not known(share) or share >= 1:
        return None
    p = r["provider"]
    if share == 0:
        return f"{p}: no successful request has a price (or the units its price bills): no cost, never $0."
    over = (
        "deltas against it are taken over the exchanges priced in both arms"
        if p == baseline
        else "its delta is taken over the exchanges priced in both arms"
    )
    return f"{p}: cost partial, {fmt_rate(share)} of successful requests priced; {over}."
