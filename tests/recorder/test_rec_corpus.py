"""Real recorded OpenAI exchanges replayed through a real ``parity record``.

A tiny upstream answers each request with its recorded response (status, headers, JSON body,
or the SSE text written in a few chunks at arbitrary boundaries). The client must get exactly
that, and the store must hold it: JSON bodies equal, streams byte-equal, and the reassembled
streams carrying the same text, tool calls and usage as the recorded SSE says.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from rec_corpus import expected_from_sse, load_corpus, reassembled_view, request_bytes, sample, url_path
from rec_upstreams import CorpusUpstream

from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return sample(load_corpus(), per_kind=12)


def test_corpus_through_the_proxy(records, run_recorder) -> None:
    up = CorpusUpstream({r["id"]: r for r in records})
    with up.running(), httpx.Client(timeout=30) as client:
        rec = run_recorder(up.url, "--flush-interval", "0.2")
        for r in records:
            req = r["request"]
            body = request_bytes(r)
            headers = {**req["headers"], "x-corpus-id": r["id"], "accept-encoding": "identity"}
            resp = client.request(req["method"], rec.url + url_path(r), content=body or None, headers=headers)
            want = r["response"]
            assert resp.status_code == want["status"], r["id"]
            if want.get("sse") is not None:
                assert resp.text == want["sse"], r["id"]
            elif want.get("body_json") is not None:
                assert resp.json() == want["body_json"], r["id"]
        time.sleep(0.5)
        assert rec.stop() == 0

    con = connect(rec.db)
    cur = con.execute("SELECT * FROM exchanges ORDER BY recorded_at")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, x, strict=True)) for x in cur.fetchall()]
    assert len(rows) == len(records)
    streams = 0
    for r, row in zip(records, rows, strict=True):
        want = r["response"]
        assert row["status"] == want["status"] and row["method"] == r["request"]["method"], r["id"]
        if r["request"].get("body_json") is not None:
            assert json.loads(row["request_body"]) == r["request"]["body_json"], r["id"]
        if want.get("sse") is not None:
            streams += 1
            assert row["stream"] and row["response_raw"] == want["sse"], r["id"]
            assert len(row["chunk_offsets_ms"]) == row["n_events"] > 0
            if row["endpoint"] in ("chat.completions", "completions", "responses"):
                got = reassembled_view(row["endpoint"], json.loads(row["response_body"]))
                assert got == expected_from_sse(row["endpoint"], want["sse"]), r["id"]
                assert row["stream_complete"], r["id"]
        elif want.get("body_json") is not None:
            assert json.loads(row["response_body"]) == want["body_json"], r["id"]
            if want["status"] >= 400:
                assert row["error_type"], r["id"]
    assert streams >= 10
