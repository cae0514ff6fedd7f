"""The verdicts a user acts on, end to end: real traffic recorded through ``parity record`` with the
openai SDK, replayed to a clean OpenAI-shaped control, to one fake gateway per known deviation and
to a provider that is down, then ``parity eval --json`` and ``parity check``.

The control must show zero failed checks; every deviation must fail at least the check that
protects the code it breaks; a broken stream is a failed request; a dead provider is loud.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gateway_trial import DEVIATIONS

from parity.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _eval(trial: dict, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["eval", "--db", str(trial["db"]), "--run", "t", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _failed(ev: dict, provider: str) -> set[str]:
    return {r["check"] for r in ev["compat"] if r["provider"] == provider and r["result"] == "fail"}


def test_the_control_fails_nothing_and_every_deviation_fails_its_check(trial, capsys):
    ev = _eval(trial, capsys)
    assert _failed(ev, "control") == set(), [
        r for r in ev["compat"] if r["provider"] == "control" and r["result"] == "fail"
    ]
    assert ev["providers"]["control"]["compat_failures"] == 0
    for name, must in DEVIATIONS.items():
        got = _failed(ev, name)
        assert must <= got, (name, got)
        assert ev["providers"][name]["compat_failures"] >= len(must)
        for check in must:
            assert ev["providers"][name][f"compat.{check}"] > 0
            row = next(r for r in ev["compat"] if r["provider"] == name and r["check"] == check)
            assert row["examples"], (name, check)


def test_a_broken_stream_is_a_failed_request_not_shape_failures(trial, capsys):
    ev = _eval(trial, capsys)
    figures = ev["providers"]
    assert figures["breaks"]["error_rate"] > 0 and figures["control"]["error_rate"] == 0
    # the broken streams are not also counted as framing, usage or finish-reason failures
    assert _failed(ev, "breaks") & {"stream_terminated", "usage_present", "finish_reason_present"} == set()


def test_a_dead_provider_is_loud(trial, capsys):
    assert trial["replay_rc"] == 3  # documented: a provider answered no request
    ev = _eval(trial, capsys)
    assert ev["providers"]["dead"]["error_rate"] == 1
    assert ev["providers"]["dead"]["compat_failures"] is None  # nothing applied: not a clean scorecard
    capsys.readouterr()
    rc = main(
        ["check", "--db", str(trial["db"]), "--run", "t", "--provider", "dead", "--provider", "control"]
    )
    out = capsys.readouterr()
    assert rc == 1
    assert "FAIL dead" in out.out and "FAIL control" not in out.out
    rc = main(
        [
            "check",
            "--db",
            str(trial["db"]),
            "--run",
            "t",
            "--provider",
            "dead",
            "--fail-if",
            "compat_failures > 0",
        ]
    )
    assert rc == 1  # no data is not a pass


def test_single_checks_are_gateable_figures(trial, capsys):
    args = ["check", "--db", str(trial["db"]), "--run", "t", "--provider"]
    assert main([*args, "usage-chunk-choices", "--fail-if", "compat.usage_chunk_shape > 0"]) == 1
    assert main([*args, "control", "--fail-if", "compat.usage_chunk_shape > 0"]) == 0


def _row(ev: dict, provider: str, check: str) -> dict:
    return next(r for r in ev["compat"] if r["provider"] == provider and r["check"] == check)


def test_every_finding_shows_both_sides(trial, capsys):
    ev = _eval(trial, capsys)
    usage = _row(ev, "usage-chunk-choices", "usage_chunk_shape")["evidence"][0]
    assert '"choices":[]' in usage["production"] and '"choices":[{"index":0,"delta":{}}]' in usage["provider"]
    model = _row(ev, "unknown-model-400", "error_status_match")["evidence"][0]
    assert "HTTP 404" in model["production"] and "model_not_found" in model["production"]
    assert "HTTP 400" in model["provider"]
    # a 429 the replay retried past is shown with its status, headers and body
    retried = _row(ev, "error-envelope", "error_code_known")["evidence"][0]["retried"]
    assert (
        retried and "HTTP 429" in retried[0] and "retry-after" in retried[0] and '"code":"429"' in retried[0]
    )
    # passing checks carry no evidence
    assert _row(ev, "control", "usage_chunk_shape")["evidence"] == []


def test_the_report_shows_the_findings(trial, capsys):
    out = trial["tmp"] / "report.html"
    assert main(["report", "--db", str(trial["db"]), "--run", "t", "--out", str(out)]) == 0
    html = out.read_text()
    assert 'id="findings"' in html and "usage_chunk_shape" in html
    assert (
        "&#34;choices&#34;:[{&#34;index&#34;:0" in html or "&quot;choices&quot;:[{&quot;index&quot;:0" in html
    )


def test_every_check_is_documented_with_what_it_protects():
    from parity.evals.metrics.compat_checks import CATALOGUE

    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for c in CATALOGUE.values():
        assert f"| `{c.name}` | {c.what} | {c.protects} |" in docs, c.name
