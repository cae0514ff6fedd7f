"""The HTML report in a real browser: headless Chromium renders it with no console message and no
network request, the SVG charts are in the DOM, and a screenshot is kept as ``artifacts/report.png``.

Skipped when Chromium is not installed (``make browser`` installs Debian's package).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)"),
]


def chromium(profile: Path, *args: str, timeout: float = 90.0) -> tuple[str, str]:
    """Run headless Chromium offline (every host name unresolvable); returns (stdout, stderr)."""
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *args,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium did not finish within {timeout} s") from None
    return out, err


def page_requests(netlog: Path) -> list[str]:
    """URLs the page asked for (Chromium's own background requests have no origin and are ignored)."""
    raw = netlog.read_text()
    try:
        log = json.loads(raw)
    except json.JSONDecodeError:  # written until exit: may lack its closing brackets
        log = json.loads(raw.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        url = p.get("url")
        if (
            e["type"] == start
            and url
            and p.get("initiator") != "not an origin"
            and not url.startswith("file:")
        ):
            urls.append(url)
    return urls


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Refused to" in line]


def load(page: Path, tmp: Path) -> tuple[str, list[str], list[str]]:
    """DOM after load, console messages and page network requests of ``page``."""
    netlog = tmp / f"{page.stem}.netlog.json"
    dom, err = chromium(
        tmp / f"profile-{page.stem}",
        "--enable-logging=stderr",
        "--v=0",
        f"--log-net-log={netlog}",
        "--dump-dom",
        page.as_uri(),
    )
    return dom, console_messages(err), page_requests(netlog)


def test_the_checks_catch_a_page_that_misbehaves(tmp_path):
    """Negative control: a script error and a remote image are both detected."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><body><img src="http://example.invalid/x.png"><script>nosuch()</script></body>'
    )
    _, console, requests = load(bad, tmp_path)
    assert any("nosuch" in line for line in console)
    assert "http://example.invalid/x.png" in requests


def test_report_renders_offline_without_errors(report_html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    dom, console, requests = load(page, tmp_path)
    assert console == []
    assert requests == []
    assert dom.count("<svg") >= 8 and "<path" in dom and "<circle" in dom
    assert 'class="verdict sortable js"' in dom  # our script ran under the CSP (it adds "js")
    assert "<script>alert" not in dom and "<img src" not in dom  # the injected answer stayed text
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 50_000
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        return
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is not None and len(colours) > 50  # not a blank page


# Appended to a copy of the report (and allowed by its hash next to the report's own): measures the
# layout after the report's script ran, clicks a column heading twice, and writes what it saw into
# the DOM, where --dump-dom reads it.
MEASURE = """(function () {
  var de = document.documentElement, main = document.querySelector("main").getBoundingClientRect();
  var out = {page: [de.scrollWidth, de.clientWidth], main: Math.round(main.right), tables: []};
  document.querySelectorAll("table").forEach(function (t) {
    var w = t.parentElement, r = t.getBoundingClientRect();
    if (r.width === 0) return;  // inside a closed <details>
    out.tables.push({cls: t.className, right: Math.round(r.right), box: [w.scrollWidth, w.clientWidth]});
  });
  var v = document.querySelector("table.verdict");
  var order = function () {
    return Array.prototype.map.call(v.tBodies[0].rows, function (r) { return r.cells[0].textContent.trim(); });
  };
  out.spill = [];  // cells whose content runs past their own edge
  document.querySelectorAll("table.verdict td, table.score td, table.score th").forEach(function (c) {
    if (c.getBoundingClientRect().width > 0 && c.scrollWidth > c.clientWidth + 1) out.spill.push(c.textContent.trim());
  });
  out.before = order();
  var th = v.tHead.rows[0].cells[5];  // failed requests
  th.click(); out.up = order(); th.click(); out.down = order();
  out.filters = document.querySelectorAll("input.filter").length;
  out.search = document.querySelectorAll("input.search").length;
  var pre = document.createElement("pre"); pre.id = "measured"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();"""


def _with_measure(html: str) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(MEASURE.encode()).digest()).decode()
    html = html.replace("script-src 'sha256-", f"script-src 'sha256-{digest}' 'sha256-", 1)
    return html.replace("</body>", f"<script>{MEASURE}</script></body>", 1)


def measure(page: Path, tmp: Path, width: int) -> tuple[dict, list[str]]:
    """Layout figures of ``page`` at ``width`` px after the report's script ran, and the console."""
    test_page = tmp / f"{page.stem}-measure-{width}.html"
    test_page.write_text(_with_measure(page.read_text(encoding="utf-8")), encoding="utf-8")
    dom, err = chromium(
        tmp / f"profile-measure-{width}",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={width},2000",
        "--dump-dom",
        test_page.as_uri(),
    )
    import html as html_mod
    import re

    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, ("the measuring script did not run", console_messages(err))
    return json.loads(html_mod.unescape(found[1])), console_messages(err)


@pytest.fixture(scope="module")
def nine_provider_report(trial, tmp_path_factory) -> Path:
    """The report of the shared nine-provider run: one provider failing many checks, one dead."""
    from parity.cli import main

    out = tmp_path_factory.mktemp("nine") / "report.html"
    assert main(["report", "--db", str(trial["db"]), "--run", "t", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("width", [1280, 1920])
def test_nothing_overflows_with_nine_providers(nine_provider_report, tmp_path, width):
    m, console = measure(nine_provider_report, tmp_path, width)
    assert console == []  # no CSP violation: both scripts ran by their hashes
    assert m["page"][0] <= m["page"][1], m["page"]  # no horizontal scrollbar on the page
    for t in m["tables"]:
        assert t["right"] <= m["main"], t  # every table ends inside the page's column
        assert t["box"][0] <= t["box"][1], t  # and none scrolls inside its wrapper
    assert m["spill"] == []  # and no text runs out of its cell
    classes = " ".join(t["cls"] for t in m["tables"])
    assert "verdict" in classes and "score" in classes


def test_sorting_and_filters_work_under_the_csp(nine_provider_report, tmp_path):
    m, console = measure(nine_provider_report, tmp_path, 1280)
    assert console == []
    assert m["filters"] >= 5 and m["search"] == 1
    assert sorted(m["before"]) == sorted(m["up"]) and m["up"] != m["before"]
    assert m["up"][-1] == "dead" and m["down"][0] == "dead"  # 100% failed: last ascending, first descending
    assert m["down"] != m["up"]


def test_the_page_reads_the_same_without_its_script(nine_provider_report, tmp_path):
    """The report with its own script taken out (as with scripts off): same layout, no dead controls,
    nothing hidden; the appendix is collapsed by <details>, which needs no script."""
    import re

    html = nine_provider_report.read_text(encoding="utf-8")
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<script>.*?</script>", "", html, count=1, flags=re.S), encoding="utf-8")
    assert "<script>" not in bare.read_text()
    assert not re.search(r"<[a-z]+[^>]* hidden[ =>]", html)  # no element hidden until a script shows it
    m, console = measure(bare, tmp_path, 1280)
    assert console == []
    assert m["filters"] == 0 and m["search"] == 0 and m["up"] == m["before"]  # nothing to sort with
    assert m["page"][0] <= m["page"][1]
    assert all(t["right"] <= m["main"] and t["box"][0] <= t["box"][1] for t in m["tables"]), m["tables"]
    assert "<b>dead</b>: dead: answered no request (connection refused at 127.0.0.1:" in html
    assert html.count('<details class="ex-entry"') >= 5  # the appendix: one summary line each
