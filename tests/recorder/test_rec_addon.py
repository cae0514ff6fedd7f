"""The addon inside mitmproxy's test context: hooks, stream tee, options, shutdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.http import Request, Response
from mitmproxy.test import taddons, tflow

from parity.recorder.addon import Recorder
from parity.store.store import connect

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def chat_flow(body: dict | None = None, path: str = "/v1/chat/completions", method: str = "POST", headers=()):
    req = Request.make(
        method,
        f"http://api.example{path}",
        json.dumps(body or CHAT).encode() if method == "POST" else b"",
        {"content-type": "application/json", "authorization": "Bearer sk-unit-secret", **dict(headers)},
    )
    return tflow.tflow(req=req)


def sse_response() -> Response:
    return Response.make(200, b"", {"content-type": "text/event-stream"})


def rows(db: Path) -> list[dict]:
    con = connect(db)
    try:
        cur = con.execute("SELECT * FROM exchanges ORDER BY recorded_at")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


@pytest.fixture
def rec(tmp_path: Path):
    r = Recorder()
    db = tmp_path / "parity.duckdb"
    with taddons.context(r) as tctx:
        tctx.configure(
            r,
            parity_db=str(db),
            parity_spill_dir=str(tmp_path / "spill"),
            parity_tag="unit",
            parity_writer="thread",  # the process writer has its own tests; a child per test is slow
        )
        yield r, db, tctx
        r.done()


def test_non_streamed_exchange(rec) -> None:
    r, db, _ = rec
    f = chat_flow()
    r.request(f)
    f.response = Response.make(
        200, json.dumps({"choices": []}).encode(), {"content-type": "application/json"}
    )
    r.responseheaders(f)
    assert f.response.stream is False  # small JSON stays buffered
    r.response(f)
    r.done()
    [row] = rows(db)
    assert (row["endpoint"], row["model"], row["status"], row["tag"]) == (
        "chat.completions",
        "gpt-4o-mini",
        200,
        "unit",
    )
    assert "sk-unit-secret" not in json.dumps(row, default=str)


def test_sse_is_streamed_through_the_tee_unchanged(rec) -> None:
    r, db, _ = rec
    f = chat_flow({**CHAT, "stream": True})
    r.request(f)
    f.response = sse_response()
    r.responseheaders(f)
    tee = f.response.stream
    assert callable(tee)
    parts = [b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n', b"\n", b"data: [DONE]\n\n", b""]
    assert [tee(p) for p in parts] == parts  # forwarded untouched, including the final b""
    f.error = tflow.terr("Client disconnected.")  # the SDK closes at [DONE]: mitmproxy calls error()
    r.error(f)
    r.done()
    [row] = rows(db)
    assert row["stream"] and row["stream_complete"] and row["client_disconnected"]
    assert row["error_type"] is None and row["n_events"] == 2
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "a"


def test_big_responses_are_streamed_and_cut(rec) -> None:
    r, db, tctx = rec
    tctx.configure(r, parity_max_body_bytes=10)
    f = chat_flow()
    r.request(f)
    f.response = Response.make(200, b"", {"content-type": "application/json"})
    f.response.headers["content-length"] = "30"
    r.responseheaders(f)
    assert callable(f.response.stream)
    assert f.response.stream(b"0123456789abcdefghij") == b"0123456789abcdefghij"
    r.response(f)
    r.done()
    [row] = rows(db)
    assert row["truncated"] and row["response_raw"] == "0123456789"


def test_skip_other(rec) -> None:
    r, db, tctx = rec
    tctx.configure(r, parity_record_other=False)
    f = chat_flow(path="/v1/files", method="GET")
    r.request(f)
    assert "parity" not in f.metadata
    g = chat_flow()
    r.request(g)
    g.response = Response.make(200, b"{}", {"content-type": "application/json"})
    r.response(g)
    r.done()
    assert [x["endpoint"] for x in rows(db)] == ["chat.completions"]


def test_in_flight_exchanges_are_recorded_at_shutdown(rec) -> None:
    r, db, _ = rec
    f = chat_flow({**CHAT, "stream": True})
    r.request(f)
    f.response = sse_response()
    r.responseheaders(f)
    f.response.stream(b'data: {"choices":[{"index":0,"delta":{"content":"par"}}]}\n\n')
    r.done()
    [row] = rows(db)
    assert row["error_type"] == "recorder_stopped" and row["status"] == 200
    assert json.loads(row["response_body"])["choices"][0]["message"]["content"] == "par"


def test_hooks_never_raise(rec, caplog) -> None:
    r, _, _ = rec
    f = chat_flow()
    f.request = None  # a broken flow: the hook logs and returns
    r.request(f)
    r.responseheaders(tflow.tflow(resp=True))  # no capture in metadata: ignored
    assert r.errors == 1 and "traffic unaffected" in caplog.text


def test_upstream_failure_without_response(rec) -> None:
    r, db, _ = rec
    f = chat_flow()
    r.request(f)
    f.error = tflow.terr("Connection refused")
    r.error(f)
    r.done()
    [row] = rows(db)
    assert row["status"] is None and row["error_type"] == "upstream_error"
    assert row["error_message"] == "Connection refused"


def test_options_are_checked() -> None:
    r = Recorder()
    with taddons.context(r) as tctx:
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(r, parity_flush_interval=5.0)
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(r, parity_max_body_bytes=-1)


def test_no_db_records_nothing(caplog) -> None:
    r = Recorder()
    with taddons.context(r):
        r.running()
        f = chat_flow()
        r.request(f)
        assert "parity" not in f.metadata
    assert "nothing will be recorded" in caplog.text


def test_process_writer_in_the_addon(tmp_path: Path) -> None:
    r = Recorder()
    db = tmp_path / "parity.duckdb"
    with taddons.context(r) as tctx:
        tctx.configure(r, parity_db=str(db), parity_spill_dir=str(tmp_path / "spill"))
        assert type(r.writer).__name__ == "ProcessWriter"
        f = chat_flow()
        r.request(f)
        f.response = Response.make(200, b'{"ok": true}', {"content-type": "application/json"})
        r.responseheaders(f)
        r.response(f)
        r.done()
    [row] = rows(db)
    assert row["status"] == 200 and json.loads(row["response_body"]) == {"ok": True}
    assert "sk-unit-secret" not in json.dumps(row, default=str)


def test_hooks_only_hand_references_to_the_queue(rec) -> None:
    """No DB, file or parsing work on the proxy loop: the hooks' only contact with the writer is put()."""
    import time

    r, _, _ = rec
    real = r.writer

    class QueueOnly:
        def __init__(self) -> None:
            self.items: list = []

        def put(self, table, item) -> None:
            self.items.append((table, item))

    r.writer = QueueOnly()
    try:
        flows = []
        for _ in range(2000):
            f = chat_flow({**CHAT, "stream": True})
            f.response = sse_response()
            flows.append(f)
        t0 = time.perf_counter()
        for f in flows:
            r.request(f)
            r.responseheaders(f)
            f.response.stream(b'data: {"choices":[]}\n\n')
            r.response(f)
        per_flow_us = (time.perf_counter() - t0) / len(flows) * 1e6
        assert r.errors == 0 and len(r.writer.items) == 2000
        cap = r.writer.items[0][1]
        assert cap.request_headers is flows[0].request.headers  # a reference, converted on the writer side
        assert cap.body is None and cap.chunks and cap.id == ""  # nothing built yet
        assert per_flow_us < 1000, per_flow_us  # four hooks + one stream read: ~20 us on an idle machine
    finally:
        r.writer = real
