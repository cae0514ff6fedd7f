"""End-to-end property: hypothesis-generated SSE through a real ``parity record`` process.

A tiny aiohttp upstream on 127.0.0.1 answers each request with generated event-stream bytes
(comments and ``: PROCESSING`` keep-alives, mixed line ends, mid-stream error events, garbage
events, a missing ``[DONE]``), written in hypothesis-chosen reads with small sleeps between them.
A raw aiohttp client reads through the recorder. Properties:

* the client receives exactly the upstream bytes (the proxy never alters traffic);
* one row per request is stored, holding the exact stream, the right event count, and either a
  reassembled body with no error (well-formed complete stream) or an ``error_type``.

The rows are checked after the examples (one wait for the store instead of one per example).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.store.store import connect
from parity.wire.reassemble import output_text
from parity.wire.sse import parse_all

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


class SSEUpstream:
    """Answers ``?case=<key>`` with the registered reads ``[(sleep before, bytes)]``."""

    def __init__(self) -> None:
        self.cases: dict[str, list[tuple[float, bytes]]] = {}
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        reads = self.cases[request.query["case"]]
        resp = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        for pause, data in reads:
            if pause:
                await asyncio.sleep(pause)
            await resp.write(data)
        await resp.write_eof()
        return resp

    @contextlib.contextmanager
    def running(self):
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        runner: list[web.AppRunner] = []

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self.handle)
            r = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await r.setup()
            site = web.TCPSite(r, "127.0.0.1", 0)
            await site.start()
            self.port = r.addresses[0][1]
            runner.append(r)

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            ready.set()
            loop.run_forever()

        t = threading.Thread(target=run, daemon=True, name="sse-upstream")
        t.start()
        assert ready.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            t.join(10)
            loop.close()


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "chatcmpl-e2e",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@st.composite
def streams(draw):
    """(stream bytes, expectation) where expectation is "ok" with the text, or an error kind."""
    words = draw(st.lists(st.text(max_size=6), max_size=5))
    events: list[bytes] = [json.dumps(chunk({"role": "assistant", "content": ""})).encode()]
    events += [json.dumps(chunk({"content": w}), ensure_ascii=draw(st.booleans())).encode() for w in words]
    events.append(json.dumps(chunk({}, "stop")).encode())
    fault = draw(st.sampled_from(["none", "none", "error_event", "no_done", "garbage_event"]))
    if fault == "error_event":
        err = {"error": {"message": "overloaded mid-stream", "type": "server_error"}}
        events.insert(draw(st.integers(1, len(events))), json.dumps(err).encode())
    elif fault == "garbage_event":
        events.insert(draw(st.integers(1, len(events))), b"{not json")
    if fault != "no_done":
        events.append(b"[DONE]")
    out = b""
    for data in events:
        nl = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
        if draw(st.integers(0, 3)) == 0:
            out += draw(st.sampled_from([b": PROCESSING", b":", b": keep-alive"])) + nl + nl
        out += b"data: " + data + nl + nl
    expect = ("ok", "".join(words)) if fault == "none" else (fault, None)
    return out, expect


@st.composite
def reads(draw, data: bytes) -> list[tuple[float, bytes]]:
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=5))))
    bounds = [0, *(c for c in cuts if 0 < c < len(data)), len(data)]
    pauses = st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.02])
    return [(draw(pauses), data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


async def fetch(url: str, body: bytes) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=20)  # a proxy that hangs fails here, not at pytest's timeout
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as s:
        async with s.post(url, data=body, headers={"content-type": "application/json"}) as r:
            got = b""
            async for piece in r.content.iter_any():
                got += piece
            return r.status, got


def stored_rows(db, n: int, timeout: float = 20.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        con = connect(db)
        try:
            cur = con.execute(
                "SELECT query, status, stream, response_raw, response_raw_bytes, n_events, error_type, "
                "error_message, CAST(response_body AS VARCHAR) AS response_body, stream_complete "
                "FROM exchanges WHERE query LIKE 'case=e2e-%'"
            )
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
        if len(rows) >= n or time.monotonic() > deadline:
            return {r["query"].removeprefix("case="): r for r in rows}
        time.sleep(0.2)


def test_sse_through_a_real_recorder(prop_count, module_recorders) -> None:
    up = SSEUpstream()
    sent: dict[str, tuple[bytes, tuple]] = {}
    with up.running():
        rec = module_recorders(f"http://127.0.0.1:{up.port}", "--flush-interval", "0.1")

        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(case=streams(), data=st.data())
        def prop(case, data) -> None:
            prop_count("test_props_e2e.py::test_sse_through_a_real_recorder")
            stream, expect = case
            key = f"e2e-{len(sent):04d}"
            up.cases[key] = data.draw(reads(stream), label="reads")
            body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": key}]})
            status, got = asyncio.run(fetch(f"{rec.base_url}/chat/completions?case={key}", body.encode()))
            assert status == 200
            assert got == stream, "the proxy altered the stream"
            sent[key] = (stream, expect)

        prop()
        rows = stored_rows(rec.db, len(sent))
    missing = sorted(set(sent) - set(rows))
    assert not missing, f"no row for {missing[:5]} ({len(missing)} of {len(sent)})\n{rec.log()[-2000:]}"
    for key, (stream, (kind, text)) in sent.items():
        row = rows[key]
        assert row["status"] == 200 and row["stream"], key
        assert row["response_raw"] == stream.decode("utf-8"), key
        assert row["n_events"] == len(parse_all([(0.0, stream)])[0]), key
        if kind == "ok":
            assert row["error_type"] is None, (key, row["error_type"], row["error_message"])
            assert row["stream_complete"] and output_text(json.loads(row["response_body"])) == text, key
        else:
            assert row["error_type"] is not None, (key, kind)
            if kind == "error_event":
                assert (row["error_type"], row["error_message"]) == (
                    "in_stream_error",
                    "overloaded mid-stream",
                )
            if kind == "no_done":
                assert row["error_type"] == "stream_broken" and not row["stream_complete"]
