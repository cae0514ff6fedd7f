"""The SVG charts: escaped text, sensible axes, nothing drawn without data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from parity.evals.report import charts

EVIL = '</text></svg><script>alert(1)</script>"&'


def _parse(svg) -> ET.Element:
    return ET.fromstring(str(svg))  # well-formed XML, or this raises


def test_every_text_is_escaped_and_the_svg_is_well_formed():
    col = {EVIL: "#123456", "b": "#654321"}
    out = [
        charts.cdf({EVIL: [1, 2, 3], "b": [2, 3, 4]}, col, EVIL, EVIL),
        charts.boxes({EVIL: charts.box_stats([1, 2, 3, 4, 5])}, col, EVIL, EVIL),
        charts.forest([(EVIL, 1.0, 0.5, 1.5, "worse")], EVIL, EVIL),
        charts.scatter_cost(
            {EVIL: ([10, 100], [0.1, 1])}, {EVIL: ([10, 100], [0.2, 0.3])}, [(50, EVIL)], col, EVIL
        ),
        charts.paired_bars({EVIL: (100.0, 300.0)}, (EVIL, EVIL), col, EVIL, EVIL, {EVIL: EVIL}),
        charts.dots([EVIL], {EVIL: [0.5]}, col, EVIL, EVIL),
    ]
    for svg in out:
        assert svg is not None
        text = str(svg)
        assert "<script" not in text
        assert text.count("<svg") == 1 and text.count("</svg>") == 1
        root = _parse(svg)
        assert root.tag.endswith("svg")
        assert any(EVIL in (t.text or "") for t in root.iter() if t.tag.endswith(("text", "title")))


def test_nothing_to_draw_returns_none():
    assert charts.cdf({"a": [], "b": [float("nan")]}, {"a": "#000", "b": "#111"}, "t", "x") is None
    assert charts.boxes({"a": None}, {"a": "#000"}, "t", "x") is None
    assert charts.forest([("a", None, None, None, "na")], "t", "x") is None
    assert charts.scatter_cost({}, {}, [], {}, "t") is None
    assert charts.dots([], {}, {}, "t", "x") is None


def test_cdf_is_a_step_line_per_series_with_log_axis_for_wide_ranges():
    svg = charts.cdf({"a": [10, 100, 1000, 5000], "b": [20, 30]}, {"a": "#000", "b": "#111"}, "t", "x")
    root = _parse(svg)
    paths = [p for p in root.iter() if p.tag.endswith("path")]
    assert len(paths) == 2
    labels = [t.text for t in root.iter() if t.tag.endswith("text")]
    assert "1 s" in labels and "100 ms" in labels  # powers of ten on a log axis


def test_nice_ticks_and_colours():
    assert charts.nice_ticks(0, 100, 6) == [0, 20, 40, 60, 80, 100]
    assert charts.nice_ticks(-3, 7, 5)[0] >= -3
    c = charts.colours(["recorded", "a", "b"], "recorded")
    assert c["recorded"] == charts.BASELINE_COLOUR and c["a"] != c["b"]
