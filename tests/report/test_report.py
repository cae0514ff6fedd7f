"""The report: self-contained HTML, verdict colours that follow the ground truth, escaped model
output, Markdown and JSON, and the ``parity report`` command."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from reporthelpers import INJECTED_EXCHANGE, INJECTION, RUN, build_store

from parity import evals
from parity.cli import build_parser, main
from parity.evals.report import page as report
from parity.evals.report import view as report_view
from parity.evals.report.cli import register
from parity.evals.report.verdict import verdict


class Doc(HTMLParser):
    """Every start tag with its attributes, the ids, and the text of <style>."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.style = ""
        self._in_style = False
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        self.text.append(data)

    @property
    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}


EXTERNAL = re.compile(r"^\s*(https?:|//|ftp:|data:text/html|javascript:)", re.I)


def assert_self_contained(html: str) -> Doc:
    """One inline script (ours), no reference to anything outside the file (the browser test checks
    the same live)."""
    doc = Doc(html)
    names = [t for t, _ in doc.tags]
    assert [a for t, a in doc.tags if t == "script"] == [{}]  # one inline script, no src
    for banned in ("iframe", "object", "embed", "link", "img", "base", "form"):
        assert banned not in names, banned
    for tag, attrs in doc.tags:
        for k, v in attrs.items():
            assert not k.startswith("on"), (tag, k)
            if k in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                assert v is not None and not EXTERNAL.match(v), (tag, k, v)
            if k == "href":
                assert v.startswith("#"), (tag, v)
    assert "@import" not in doc.style and not re.search(r"url\(\s*['\"]?(https?:|//)", html, re.I)
    return doc


def test_html_is_self_contained_with_charts_and_working_anchors(report_html):
    doc = assert_self_contained(report_html)
    svgs = [a for t, a in doc.tags if t == "svg"]
    assert len(svgs) >= 8  # forest, 2 CDFs, 2 box plots, cold start, cost, quality
    assert all(a.get("role") == "img" for a in svgs)
    hrefs = [a["href"][1:] for t, a in doc.tags if t == "a"]
    assert hrefs and set(hrefs) <= doc.ids  # every link lands in this file
    assert any(h.startswith("ex-") for h in hrefs)
    assert 'http-equiv="Content-Security-Policy"' in report_html and "default-src 'none'" in report_html


def test_the_csp_allows_exactly_the_inline_script_by_its_hash(report_html):
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', report_html)[1])
    inline = re.search(r"<script>(.*?)</script>", report_html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp
    assert re.findall(r"script-src [^;]*;", csp) == [f"script-src 'sha256-{digest}';"]  # nothing else
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    assert inline == (report.TEMPLATES / report.SCRIPT).read_text()


def test_recommendations_repeat_the_verdict_cells(built_report):
    rows = {v["provider"]: v for v in verdict(built_report)}
    recs = report.recommend(built_report)
    assert [r["provider"] for r in recs] == list(rows)
    label = {"better": "(significant", "worse": "(significant", "same": "(not significant"}
    for r in recs:
        cells = rows[r["provider"]]["cells"]
        t, cost = cells["ttft_median"], cells["cost"]
        assert f"TTFT median {t.text} {label[t.tone]}" in r["text"], r
        assert cost.text in r["text"] and label[cost.tone] in r["text"].split(cost.text)[0], r
        if rows[r["provider"]]["failed"]:
            assert (
                f"compatibility failure{'s' if len(rows[r['provider']]['failed']) > 1 else ''}: " in r["text"]
            )
            assert all(c in r["text"] for c in rows[r["provider"]]["failed"][:3])
        else:
            assert "passes every compatibility check" in r["text"]
        assert "no $/month basis" in r["text"]  # the synthetic recording spans minutes, not a day
    md = report.render_markdown(built_report)
    assert all(f"- **{r['provider']}**: " in md for r in recs)


def test_model_output_is_escaped_everywhere(report_html):
    assert "<script>alert" not in report_html
    assert "<img src=x" not in report_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report_html
    assert "onerror=alert(1)&gt;" in report_html  # as text only
    text = "".join(Doc(report_html).text)
    assert INJECTION in text  # shown to the reader, in the diff and the appendix
    assert f'id="{report_view.anchor(INJECTED_EXCHANGE)}"' in report_html


def test_templates_never_mark_anything_safe():
    for t in Path(report.TEMPLATES).glob("*.j2"):
        body = t.read_text()
        assert "|safe" not in body.replace(" ", "") and "autoescape false" not in body, t


def test_verdict_follows_the_ground_truth(built_report):
    v = {row["provider"]: row for row in verdict(built_report)}
    assert set(v) == {"fastco", "slowco", "flatco"}
    tone = {p: {k: c.tone for k, c in row["cells"].items()} for p, row in v.items()}
    assert tone["fastco"]["ttft_median"] == tone["fastco"]["e2e_median"] == "better"
    assert tone["slowco"]["ttft_median"] == tone["slowco"]["e2e_median"] == "worse"
    assert tone["flatco"]["ttft_median"] == tone["flatco"]["e2e_median"] == "same"
    assert tone["flatco"]["errors"] == "worse" and tone["fastco"]["errors"] == "same"
    assert tone["fastco"]["cost"] == "better"  # 0.6 $/M tokens vs the recorded 2.5 / 10
    assert tone["fastco"]["compat"] == "better"
    assert tone["slowco"]["compat"] == "worse" and "cold_start" in v["slowco"]["cells"]["compat"].sub
    assert tone["flatco"]["quality"] == "info"  # no judge: not a test
    chips = {p: [t for t, _ in row["chips"]] for p, row in v.items()}
    assert "significantly faster" in chips["fastco"] and "significantly slower" in chips["slowco"]
    assert "no significant latency difference" in chips["flatco"]
    s = {r["provider"]: r for r in built_report.summary}
    # cells and headline use one significance family: they never disagree
    for p, row in v.items():
        faster = any(row["cells"][f"{m}_median"].tone == "better" for m in ("ttft", "e2e"))
        slower = any(row["cells"][f"{m}_median"].tone == "worse" for m in ("ttft", "e2e"))
        assert (faster, slower) == (s[p]["significant_faster"], s[p]["significant_slower"])


def test_verdict_table_cells_are_coloured_in_the_html(report_html):
    row = re.search(r"<tr>\s*<td class=\"prov\">.*?slowco.*?</tr>", report_html, re.S).group(0)
    assert row.count('class="worse"') >= 5  # 4 latency cells + compatibility
    row = re.search(r"<tr>\s*<td class=\"prov\">.*?fastco.*?</tr>", report_html, re.S).group(0)
    assert row.count('class="better"') >= 6


def test_run_metadata_never_shows_keys_or_url_secrets(report_html, built_report):
    assert "sk-should-not-show" not in report_html and "user:secret" not in report_html
    assert "https://fastco.example/v1" in report_html
    assert "FASTCO_API_KEY" in report_html  # the variable's name is not a secret
    meta = report_view.metadata(built_report)
    facts = dict(meta["facts"])
    assert facts["run"] == RUN and "160 exchanges" in facts["recorded traffic"]
    assert any(k == "python" for k, _ in meta["versions"])
    assert report_view.redact(
        {"api_key": "sk-1", "headers": {"Authorization": "Bearer x"}, "max_tokens": 5}
    ) == {
        "api_key": "(redacted)",
        "headers": {"Authorization": "(redacted)"},
        "max_tokens": 5,
    }


def test_markdown_digest(built_report):
    md = report.render_markdown(built_report)
    assert md.startswith(f"## parity: run `{RUN}` vs `recorded`")
    assert "| provider | verdict |" in md and "| **slowco** | 🔴 significantly slower" in md
    assert "### Compatibility failures" in md and "**flatco** `usage_present`" in md
    assert "**slowco** `cold_start`" in md
    assert "### Key figures" in md and "| `ttft_p50_ms` |" in md
    assert "<script" not in md
    table = [line for line in md.splitlines() if line.startswith("| **")]
    assert all(line.count(" | ") == 9 for line in table)  # 10 columns, no stray pipes


def test_json_has_every_figure(built_report, report_store):
    data = json.loads(report.render_json(built_report))
    assert set(data["providers"]) == {"recorded", "fastco", "slowco", "flatco"}
    assert set(data["providers"]["fastco"]) == set(evals.FIGURES)
    again = evals.summary_dict(report_store, RUN)
    assert data["providers"]["slowco"] == pytest.approx(again["providers"]["slowco"])


def test_report_command_writes_each_format(report_store, tmp_path, capsys):
    db = str(report_store)
    html = tmp_path / "out" / "report.html"
    assert main(["report", "--db", db, "--run", RUN, "--out", str(html)]) == 0
    assert html.read_text().startswith("<!doctype html>")
    assert "wrote" in capsys.readouterr().out
    md = tmp_path / "r.md"
    assert main(["report", "--db", db, "--run", RUN, "--out", str(md)]) == 0  # format from the suffix
    assert md.read_text().startswith("## parity")
    capsys.readouterr()
    assert main(["report", "--db", db, "--run", RUN, "--format", "json"]) == 0  # stdout by default
    assert json.loads(capsys.readouterr().out)["run"] == RUN


def test_report_command_errors_exit_2(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "x.html")]) == 2
    assert "parity report: error: no store at" in capsys.readouterr().err


def test_commands_have_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("report", "check"):
        p = sub.choices[name]
        assert p.description and len(p.description) > 80
        for action in p._actions:
            if action.dest != "help":
                assert action.help, (name, action.dest)
    assert callable(register)


def test_minimal_run_renders(tmp_path):
    """One candidate, non-streamed answers, no pricing, no exchanges: the report still renders."""
    from evalhelpers import make_result, run_config, write_run

    db = tmp_path / "parity.duckdb"
    rows = [make_result(exchange_id=f"e{i}", provider=p) for i in range(5) for p in ("recorded", "solo")]
    rows.append(
        make_result(exchange_id="e9", provider="solo", status=None, error_type="timeout", response_body=None)
    )
    write_run(db, rows, run_config({"solo": {"base_url": "http://solo/v1"}}))
    rep = report.build(db, "r1")
    html = report.render_html(rep)
    assert_self_contained(html)
    assert "No time to first token measurements" in html or "no data" in html
    assert report.render_markdown(rep).count("| **solo** |") == 1


def test_store_builder_is_reusable(tmp_path):
    db = build_store(tmp_path / "again.duckdb")
    assert db.parent.joinpath("again.duckdb.d").is_dir()


def test_another_arm_as_baseline(report_store):
    rep = report.build(report_store, RUN, baseline="fastco")
    assert {row["provider"] for row in verdict(rep)} == {"recorded", "slowco", "flatco"}
    slow = next(row for row in verdict(rep) if row["provider"] == "slowco")
    assert slow["cells"]["ttft_median"].tone == "worse"
    assert "vs `fastco`" in report.render_markdown(rep)
    assert_self_contained(report.render_html(rep))
