"""Every verdict chip derives from the figure of the cell beside it: on a run where one provider
fails a compatibility check, the chip's count and the cell's "passed/applicable" are one figure."""

from __future__ import annotations

import re

from parity.evals.report.verdict import verdict


def test_compat_chip_and_cell_agree_on_a_run_with_a_failing_check(built_report):
    s = {r["provider"]: r for r in built_report.summary}
    rows = {row["provider"]: row for row in verdict(built_report)}
    failing = [p for p, r in s.items() if not r["is_baseline"] and r.get("compat_failures")]
    assert failing, "the synthetic run has a provider failing a check (slowco: cold_start)"
    for p, row in rows.items():
        r = s[p]
        cell = row["cells"]["compat"]
        chips = [t for t, _ in row["chips"] if "compatibility check" in t]
        assert len(chips) == 1, (p, row["chips"])
        passed, applicable = map(int, re.match(r"(\d+)/(\d+) pass", cell.text).groups())
        assert applicable == r["compat_applicable"]
        assert passed == r["compat_passed"] == r["compat_applicable"] - r["compat_failures"]
        if r["compat_failures"]:
            assert chips[0] == f"{r['compat_failures']} of {applicable} compatibility checks failed"
            assert applicable - passed == r["compat_failures"] and cell.tone == "worse"
        else:
            assert chips[0] == f"passes every compatibility check ({passed}/{applicable})"
            assert passed == applicable


def test_cost_chip_says_not_significant_only_when_the_family_wise_interval_covers_zero(built_report):
    for row in verdict(built_report):
        t = built_report.samples.tests.get(row["provider"], {}).get("cost")
        chips = [
            (text, tone)
            for text, tone in row["chips"]
            if "cost" in text or "cheaper" in text or "expensive" in text
        ]
        if not t or not chips:
            continue
        covers = t["delta_pct_adj_ci_low"] <= 0 <= t["delta_pct_adj_ci_high"]
        text, tone = chips[0]
        assert ("not significant" in text) == covers == (tone == "same"), (row["provider"], text, t)
