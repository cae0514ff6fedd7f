"""The verdict table: one row per provider, each cell a value, its interval, and a colour from the
test behind it (better / worse / same, or info when the figure is not a statistical comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from parity.evals.api import Evaluation
from parity.evals.figures import FIGURES
from parity.evals.report import cost_text
from parity.evals.report.data import Report
from parity.evals.report.fmt import fmt_ci, fmt_ms, fmt_p, fmt_pct, fmt_rate, known, ms_number

LATENCY = (("ttft", "TTFT", "time to first token"), ("e2e", "E2E", "end-to-end latency"))


@dataclass
class VerdictCell:
    """One verdict cell: the value, a second line (CI / context), a colour and a tooltip."""

    text: str
    sub: str = ""
    tone: str = "na"  # better | worse | same (tested, not significant) | info (not a test) | na
    title: str = ""


def latency_median_cell(r: dict, m: str, label: str) -> VerdictCell:
    """Median paired difference vs baseline with its family-wise CI, coloured by the same test:
    ``{m}_p_adjusted`` < 0.05 exactly when that interval excludes 0 (see ``timing.compare``)."""
    est = r.get(f"{m}_median_diff_ms")
    if not known(est):
        return VerdictCell("—", "no data", "na", f"no {label} measurements to compare")
    lo, hi = r.get(f"{m}_median_diff_ms_adj_ci_low"), r.get(f"{m}_median_diff_ms_adj_ci_high")
    p, level = r.get(f"{m}_p_adjusted"), r.get(f"{m}_adj_ci_level")
    sig = known(p) and p < 0.05 and est != 0
    tone = ("worse" if est > 0 else "better") if sig else "same"
    lvl = f"{level * 100:.4g}%" if known(level) else "—"
    title = (
        f"{FIGURES[f'{m}_median_diff_ms']}. Family-wise 95% over providers x (TTFT, E2E): the {lvl} "
        f"interval (Bonferroni), coloured when it excludes 0; {r.get(f'{m}_test') or 'test'} "
        f"{fmt_p(r.get(f'{m}_p_value'))}, adjusted {fmt_p(p)}"
    )
    reason = None if known(lo) and known(hi) else f"too few pairs for the {lvl} interval"
    return VerdictCell(
        fmt_ms(est, sign=True), fmt_ci(lo, hi, ms_number, " ms", reason, "family-wise "), tone, title
    )


def latency_p95_cell(r: dict, base: dict, m: str) -> VerdictCell:
    """p95 relative to the baseline's; coloured when its unadjusted 95% MOVER CI excludes 0 (the
    interval shown, marked unadjusted: label and interval are one procedure)."""
    pct = r.get(f"{m}_p95_delta_pct")
    if not known(pct):
        return VerdictCell("—", "no data", "na")
    lo, hi = r.get(f"{m}_p95_delta_ms_ci_low"), r.get(f"{m}_p95_delta_ms_ci_high")
    b = base.get(f"{m}_p95_ms")
    reason = r.get(f"{m}_p95_delta_ms_ci_reason")
    tone = "same"
    if known(lo) and known(hi):
        tone = "worse" if lo > 0 else "better" if hi < 0 else "same"
    short = "too few requests"  # the whole reason (how many, how many needed) is in the title
    if known(lo) and known(hi) and known(b) and b:
        sub = fmt_ci(lo / b * 100, hi / b * 100, lambda x: fmt_pct(x), "", short, "unadjusted ")
    else:
        sub = fmt_ci(lo, hi, ms_number, " ms", short, "unadjusted ")
    title = (
        f"{FIGURES[f'{m}_p95_delta_pct']}; p95 {fmt_ms(r.get(f'{m}_p95_ms'))} vs {fmt_ms(b)}. "
        "Coloured when the unadjusted 95% MOVER interval excludes 0 (no family-wise adjustment)"
    )
    if not (known(lo) and known(hi)):
        title += f". No interval, so not coloured: {reason or 'the sample cannot bound it'}"
    return VerdictCell(fmt_pct(pct), sub, tone, title)


def errors_cell(r: dict, base: dict, test: dict | None) -> VerdictCell:
    rate = r.get("error_rate")
    if not known(rate):
        return VerdictCell("—", "", "na")
    sub = f"baseline {fmt_rate(base.get('error_rate'))}"
    if not test:
        return VerdictCell(fmt_rate(rate), sub, "same")
    title = (
        f"{FIGURES['error_rate']}. Paired with the baseline: {test['worse']} failed only here, "
        f"{test['better']} only on the baseline; exact McNemar {fmt_p(test.get('p_value'))}, "
        f"Bonferroni-adjusted over the providers {fmt_p(test.get('p_adjusted'))}"
    )
    return VerdictCell(fmt_rate(rate), sub, test.get("tone", "same"), title)


def cost_cell(r: dict, test: dict | None) -> VerdictCell:
    delta = r.get("cost_delta_pct")
    text = cost_text.headline(r)  # $/month with a basis, else per 1,000 requests; partial is said
    if text is None:
        return VerdictCell("—", "no pricing", "na", "no price for this provider's model(s) in the run config")
    sub = "; ".join(cost_text.notes(r))
    fig = "cost_month_usd" if known(r.get("cost_month_usd")) else "cost_per_1k_usd"
    tone, title = "same", FIGURES[fig]
    if test:
        tone = test.get("tone", "same")
        lo, hi = test.get("delta_pct_adj_ci_low"), test.get("delta_pct_adj_ci_high")
        level = test.get("adj_ci_level")
        title += (
            f". Cost of the same exchanges vs the baseline: {fmt_pct(test['delta_pct'])}, family-wise "
            f"95% CI (each at {level * 100:.4g}%, Bonferroni over the providers) {fmt_pct(lo)} … "
            f"{fmt_pct(hi)}, adjusted {fmt_p(test.get('p_adjusted'))}: coloured exactly when this "
            "interval excludes 0"
        )
    elif not known(delta):
        tone = "info"
    return VerdictCell(text, sub, tone, title)


def quality_cell(r: dict) -> VerdictCell:
    q = r.get("quality_score")
    sim = r.get("text_similarity_mean")
    sub = f"text similarity {sim:.2f}" if known(sim) else ""
    title = FIGURES["quality_score"] + " (colour only from an LLM judge: --judge)"
    tone = "info" if known(q) else "na"
    win, loss = r.get("judge_win_rate"), r.get("judge_loss_rate")
    if known(win) and known(loss):
        sub = f"judge: wins {fmt_rate(win)}, loses {fmt_rate(loss)}"
        wl, wh = r.get("judge_win_rate_ci_low"), r.get("judge_win_rate_ci_high")
        ll, lh = r.get("judge_loss_rate_ci_low"), r.get("judge_loss_rate_ci_high")
        tone = "same"
        if known(wl) and known(lh) and wl > lh:
            tone = "better"
        elif known(ll) and known(wh) and ll > wh:
            tone = "worse"
        title = "LLM judge, both orders; coloured when the Wilson CIs of win and loss rates do not overlap"
    return VerdictCell(f"{q:.2f}" if known(q) else "—", sub, tone, title)


def compat_counts(r: dict) -> tuple[int, int, int] | None:
    """(passed, failed, applicable) from the summary's compat figures: the one source of the
    compatibility cell and its chip (None when no check applied)."""
    n, bad = r.get("compat_applicable"), r.get("compat_failures")
    if not known(n) or not n:
        return None
    bad = bad or 0
    passed = r.get("compat_passed")
    return (passed if known(passed) else n - bad), bad, n


def compat_cell(r: dict, base: dict, failed: list[str]) -> VerdictCell:
    counts = compat_counts(r)
    if counts is None:
        return VerdictCell("—", "no checks applied", "na")
    passed, bad, n = counts
    shown = ", ".join(failed[:3]) + (f" +{len(failed) - 3} more" if len(failed) > 3 else "")
    sub = f"fails {shown}" if failed else "all applicable checks pass"
    tone = "better" if not bad else "worse" if bad > (base.get("compat_failures") or 0) else "same"
    title = (
        "green: every applicable check passes; red: more failed checks than the baseline (a fact, not a test)"
    )
    return VerdictCell(f"{passed}/{n} pass", sub, tone, title)


def failed_checks(ev: Evaluation) -> dict[str, list[str]]:
    """Provider -> names of the compatibility checks it fails."""
    out: dict[str, list[str]] = {}
    if ev.compat is not None and not ev.compat.is_empty():
        for r in ev.compat.filter(pl.col("result") == "fail").iter_rows(named=True):
            out.setdefault(r["provider"], []).append(r["check"])
    return out


def verdict(rep: Report) -> list[dict]:
    """One row per candidate: headline chips and the verdict cells."""
    base = rep.base_row
    fails = failed_checks(rep.ev)
    out = []
    for r in rep.candidates:
        p = r["provider"]
        tests = rep.samples.tests.get(p, {})
        cells = {}
        for m, label, _ in LATENCY:
            cells[f"{m}_median"] = latency_median_cell(r, m, label)
            cells[f"{m}_p95"] = latency_p95_cell(r, base, m)
        cells["errors"] = errors_cell(r, base, tests.get("errors"))
        cells["cost"] = cost_cell(r, tests.get("cost"))
        cells["quality"] = quality_cell(r)
        cells["compat"] = compat_cell(r, base, fails.get(p, []))
        out.append({"provider": p, "chips": headline(r, cells), "cells": cells, "failed": fails.get(p, [])})
    return out


def headline(r: dict, cells: dict[str, VerdictCell]) -> list[tuple[str, str]]:
    """Short (text, tone) phrases: latency, cost, failures, quality, compatibility; each from the
    figure of the cell beside it."""
    chips = []
    slow, fast = r.get("significant_slower"), r.get("significant_faster")
    if slow and fast:
        chips.append(("mixed latency: faster on one of TTFT / E2E, slower on the other", "worse"))
    elif slow:
        chips.append(("significantly slower", "worse"))
    elif fast:
        chips.append(("significantly faster", "better"))
    elif known(r.get("ttft_median_diff_ms")) or known(r.get("e2e_median_diff_ms")):
        chips.append(("no significant latency difference", "same"))
    d, c = r.get("cost_delta_pct"), cells["cost"]
    if known(d):
        if c.tone == "better":
            chips.append((f"{abs(d):.0f}% cheaper", "better"))
        elif c.tone == "worse":
            chips.append((f"{d:.0f}% more expensive", "worse"))
        else:
            chips.append((f"cost {fmt_pct(d)} (not significant)", "same"))
    e = cells["errors"]
    if e.tone == "worse":
        chips.append((f"more failed requests ({e.text})", "worse"))
    elif e.tone == "better":
        chips.append((f"fewer failed requests ({e.text})", "better"))
    q = cells["quality"]
    if q.text != "—":
        chips.append((f"quality {q.text}" + (f" ({q.sub})" if q.sub else ""), q.tone))
    counts = compat_counts(r)
    if counts and counts[1]:
        _, n, of = counts
        chips.append((f"{n} of {of} compatibility checks failed", "worse"))
    elif counts:
        chips.append((f"passes every compatibility check ({counts[0]}/{counts[2]})", "better"))
    return chips
