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
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)")


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
    assert 'class="verdict"' in dom
    assert "<script" not in dom  # the injected answer stayed text
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
