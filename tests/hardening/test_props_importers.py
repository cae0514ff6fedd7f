"""Properties of ``parity import`` (recorder/importers.py) on damaged HAR and mitmproxy flow files.

* A HAR file cut at any position: reading never raises, the file gets a "not complete JSON" line,
  and exactly the entries complete before the cut are imported (valid ones) or skipped (invalid
  ones, each with its own line). A complete file has no such line.
* HAR entries that lie about their size (content.size larger than the text, a Content-Length
  header that disagrees): imported, flagged ``truncated`` only when content.size says the text
  is short, never a crash.
* A flow file cut at any position or with a tnetstring length prefix that lies: reading never
  raises or hangs, every flow before the damage is imported, the damage is reported.
* ``import_files`` over such files: never raises (except ImportError_), what it counts is in
  the store.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mitmproxy import io as mio
from mitmproxy.test import tflow
from rowkit import CHAT_REQ, CHAT_RESP

from parity.recorder.capture import build_row
from parity.recorder.importers import FileResult, import_files, read_flows, read_har
from parity.store.segments import rows_to_table

SSE = (
    'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"h\\u00e9"}}]}\n\n'
    "data: [DONE]\n\n"
)
VALID = ["chat", "stream", "error", "b64", "no_response", "lying_size", "lying_cl", "pseudo_headers"]
INVALID = ["bad_b64", "no_url", "bad_date", "no_tz", "not_http", "not_object", "headers_not_list"]


def har_entry(kind: str, i: int) -> object:
    """One HAR entry of ``kind`` (distinct start time and URL per ``i``)."""
    text = json.dumps(CHAT_RESP)
    e: dict = {
        "startedDateTime": f"2026-01-02T03:{i // 60:02d}:{i % 60:02d}.5Z",
        "time": 250.5,
        "request": {
            "method": "POST",
            "url": f"https://api.openai.com/v1/chat/completions?n={i}",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "postData": {"mimeType": "application/json", "text": json.dumps({**CHAT_REQ, "n": i})},
        },
        "response": {
            "status": 200,
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "content": {"size": len(text), "mimeType": "application/json", "text": text},
        },
        "timings": {"send": 1, "wait": 120.25, "receive": 129.25},
    }
    resp = e["response"]
    if kind == "stream":
        resp["headers"] = [{"name": "Content-Type", "value": "text/event-stream"}]
        resp["content"] = {"size": len(SSE.encode()), "mimeType": "text/event-stream", "text": SSE}
    elif kind == "error":
        err = json.dumps({"error": {"message": "slow down", "type": "rate_limit_exceeded"}})
        resp.update(status=429, content={"size": len(err), "text": err})
    elif kind == "b64":
        resp["content"].update(text=base64.b64encode(text.encode()).decode(), encoding="base64")
    elif kind == "no_response":
        e["response"] = {"status": 0, "_error": "net::ERR_CONNECTION_RESET"}
    elif kind == "lying_size":
        resp["content"]["size"] = len(text) + 1000
    elif kind == "lying_cl":
        resp["headers"].append({"name": "Content-Length", "value": "999999"})
        resp["content"]["size"] = 3  # smaller than the text: not a cut
    elif kind == "pseudo_headers":
        e["request"]["headers"].insert(0, {"name": ":authority", "value": "api.openai.com"})
    elif kind == "bad_b64":
        resp["content"].update(text="!!!not base64", encoding="base64")
    elif kind == "no_url":
        del e["request"]["url"]
    elif kind == "bad_date":
        e["startedDateTime"] = "yesterday"
    elif kind == "no_tz":
        e["startedDateTime"] = "2026-01-02T03:04:05"
    elif kind == "not_http":
        e["request"]["url"] = "wss://api.openai.com/v1/realtime"
    elif kind == "not_object":
        return ["not", "an", "entry"]
    elif kind == "headers_not_list":
        e["request"]["headers"] = {"Content-Type": "application/json"}
    return e


_KINDS = st.lists(st.sampled_from(VALID + INVALID), min_size=1, max_size=6)


@st.composite
def har_files(draw, kinds=_KINDS):
    """(file text, [(kind, end offset of the entry)]) with entries last, so a cut keeps a prefix."""
    kinds = draw(kinds)
    indent = draw(st.sampled_from([None, 1]))
    text = '{"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": ['
    ends = []
    for i, kind in enumerate(kinds):
        if i:
            text += ", "
        text += json.dumps(har_entry(kind, i), indent=indent)
        ends.append((kind, len(text)))
    text += "]}}"
    return text, ends


_SCRATCH = Path(tempfile.mkdtemp(prefix="parity-props-"))  # one file rewritten per example


def teardown_module() -> None:
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def read(text: str) -> tuple[list, FileResult]:
    path = _SCRATCH / "x.har"
    path.write_text(text, encoding="utf-8")
    res = FileResult(str(path))
    return list(read_har(path, res)), res


def check_har_prefix(text: str, ends, cut: int) -> list:
    caps, res = read(text[:cut])
    complete = [k for k, end in ends if end <= cut]
    assert len(caps) == sum(k in VALID for k in complete)
    assert res.skipped == sum(k in INVALID for k in complete)
    broken = [e for e in res.errors if "not complete JSON" in e]
    if cut == len(text):
        assert not broken
    else:
        assert broken and f"{len(complete)} entries before that point" in broken[0], res.errors
    return caps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=har_files(), frac=st.floats(0, 1))
@example(case=(json.dumps({"log": {"entries": [har_entry("chat", 0)]}}), [("chat", 0)]), frac=1.0)
def test_har_cut_anywhere_keeps_the_complete_entries(prop_count, case, frac: float) -> None:
    prop_count()
    text, ends = case
    if ends == [("chat", 0)]:  # the explicit example: a document built without offsets
        ends = [("chat", text.index("}]}}") + 1)]
    cut = round(frac * len(text))
    for cap in check_har_prefix(text, ends, cut):
        row = build_row(cap)
        rows_to_table("exchanges", [row])
        assert row["source"] == "har"


@settings(max_examples=20, deadline=None)
@given(
    case=har_files(st.lists(st.sampled_from(["chat", "not_object"]), min_size=1, max_size=4)),
    frac=st.floats(0, 1),
)
@example(
    case=(
        '{"log": {"entries": [["not", "an", "entry"], ' + json.dumps(har_entry("chat", 1)) + "]}}",
        [("not_object", 43), ("chat", 43 + 2 + len(json.dumps(har_entry("chat", 1))))],
    ),
    frac=0.99,
)
def test_har_cut_reports_non_object_entries(prop_count, case, frac: float) -> None:
    """Found by this suite, fixed since: in a truncated HAR an entry that is not an object was
    dropped silently by the salvage (not skipped, no line, not counted), unlike a complete file."""
    prop_count()
    text, ends = case
    check_har_prefix(text, ends, round(frac * len(text)))


def test_har_truncated_at_every_position(prop_count) -> None:
    """One realistic file, every cut position (the property above samples positions)."""
    kinds = ["chat", "bad_date", "stream"]
    text = '{"log": {"version": "1.2", "entries": ['
    ends = []
    for i, kind in enumerate(kinds):
        text += (", " if i else "") + json.dumps(har_entry(kind, i))
        ends.append((kind, len(text)))
    text += "]}}"
    for cut in range(len(text) + 1):
        prop_count()
        check_har_prefix(text, ends, cut)


@settings(max_examples=100, deadline=None)
@given(
    size=st.one_of(st.integers(-5, 10_000), st.none(), st.text(max_size=3), st.floats(), st.booleans()),
    compression=st.one_of(st.none(), st.integers(-10_000, 10_000), st.text(max_size=2)),
    content_length=st.one_of(st.none(), st.text(max_size=8), st.integers(-1, 10**20).map(str)),
)
@example(size=10_000, compression=None, content_length="5")
@example(size=100, compression=-50, content_length=None)
def test_har_sizes_that_lie(prop_count, size, compression, content_length) -> None:
    prop_count()
    e = har_entry("chat", 0)
    content = e["response"]["content"]
    n = len(content["text"].encode())
    content["size"] = size
    if compression is not None:
        content["compression"] = compression
    if content_length is not None:
        e["response"]["headers"].append({"name": "Content-Length", "value": content_length})
    [cap], res = read(json.dumps({"log": {"entries": [e]}}))
    row = build_row(cap)
    rows_to_table("exchanges", [row])
    if isinstance(size, int) and not isinstance(size, bool):
        expected = size + min(compression, 0) if isinstance(compression, int) else size
        assert row["truncated"] == (n < expected)
        assert any("content.size" in x for x in res.errors) == (n < expected)
    if not row["truncated"]:
        assert json.loads(row["response_body"]) == CHAT_RESP and row.get("error_type") is None
    else:
        assert row["error_type"] == "truncated"


# ---------------------------------------------------------------- mitmproxy flow files


@st.composite
def flow_files(draw):
    """(file bytes, [end offset of each flow]) written by mitmproxy's own FlowWriter."""
    n = draw(st.integers(1, 4))
    data = b""
    ends = []
    for i in range(n):
        kind = draw(st.sampled_from(["json", "sse", "error", "no_response"]))
        req = tflow.treq(
            method=b"POST",
            path=f"/v1/chat/completions?i={i}".encode(),
            content=json.dumps({**CHAT_REQ, "stream": kind == "sse"}).encode(),
        )
        req.headers["content-type"] = "application/json"
        if kind == "no_response":
            f = tflow.tflow(req=req, err=True)
        else:
            body = SSE.encode() if kind == "sse" else json.dumps(CHAT_RESP).encode()
            status = 500 if kind == "error" else 200
            ct = "text/event-stream" if kind == "sse" else "application/json"
            resp = tflow.tresp(status_code=status, content=body)
            resp.headers["content-type"] = ct
            if draw(st.booleans()):
                resp.headers["content-length"] = str(draw(st.integers(0, 10**9)))  # may lie
            f = tflow.tflow(req=req, resp=resp)
        buf = io.BytesIO()
        mio.FlowWriter(buf).add(f)
        data += buf.getvalue()
        ends.append(len(data))
    return data, ends


def read_flow_bytes(data: bytes) -> tuple[list, FileResult]:
    path = _SCRATCH / "x.flows"
    path.write_bytes(data)
    res = FileResult(str(path))
    return list(read_flows(path, res)), res


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=flow_files(), frac=st.floats(0, 1))
def test_flow_file_cut_anywhere_keeps_the_complete_flows(prop_count, case, frac: float) -> None:
    prop_count()
    data, ends = case
    cut = round(frac * len(data))
    caps, res = read_flow_bytes(data[:cut])
    complete = sum(end <= cut for end in ends)
    assert len(caps) == complete
    at_boundary = cut == 0 or cut in ends
    unreadable = [e for e in res.errors if "unreadable after" in e]
    assert bool(unreadable) != at_boundary, (cut, ends, res.errors)
    if unreadable:
        assert f"unreadable after {complete} flows" in unreadable[0]
    for cap in caps:
        rows_to_table("exchanges", [build_row(cap)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=flow_files(), which=st.integers(0, 3), lie=st.integers(-50, 50) | st.sampled_from([10**6, 10**11, 0])
)
def test_flow_file_length_prefix_that_lies(prop_count, case, which: int, lie: int) -> None:
    prop_count()
    data, ends = case
    k = min(which, len(ends) - 1)
    start = ends[k - 1] if k else 0
    colon = data.index(b":", start)
    true_len = int(data[start:colon])
    new_len = max(0, true_len + lie) if lie not in (10**6, 10**11, 0) else lie
    bad = data[:start] + str(new_len).encode() + data[colon:]
    caps, res = read_flow_bytes(bad)
    assert len(caps) >= k  # every flow before the damage
    good, _ = read_flow_bytes(data)
    assert [c.id for c in caps[:k]] == [c.id for c in good[:k]]
    if new_len != true_len:
        assert len(caps) < len(ends) or res.errors
    for cap in caps:
        rows_to_table("exchanges", [build_row(cap)])


# ---------------------------------------------------------------- the whole import


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(har=har_files(), flows=flow_files(), hcut=st.floats(0, 1), fcut=st.floats(0, 1))
def test_import_files_never_raises_and_stores_what_it_counts(prop_count, har, flows, hcut, fcut) -> None:
    prop_count()
    from parity.store.store import connect

    text, ends = har
    data, fends = flows
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "a.har").write_text(text[: round(hcut * len(text))], encoding="utf-8")
        (root / "b.flows").write_bytes(data[: round(fcut * len(data))])
        (root / "c.bin").write_bytes(b"\x00junk")
        paths = [root / "a.har", root / "b.flows", root / "c.bin", root / "missing.har"]
        results = import_files(paths, root / "store.duckdb")
        con = connect(root / "store.duckdb")
        try:
            stored = con.execute("SELECT count(*), count(error_type) FROM exchanges").fetchone()
        finally:
            con.close()
    assert stored[0] == sum(r.imported for r in results.values())
    assert results[str(root / "c.bin")].errors and results[str(root / "missing.har")].errors
    for r in results.values():
        assert all(isinstance(e, str) and e for e in r.errors)
