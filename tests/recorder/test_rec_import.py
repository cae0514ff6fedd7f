"""``parity import``: HAR files (by hand and from the real corpus) and mitmproxy flow files."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rec_corpus import expected_from_sse, load_corpus, reassembled_view, request_bytes, sample, url_path
from rowkit import CHAT_REQ, CHAT_RESP

from parity.recorder.importers import import_files
from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

SECRET = "sk-HAR-secret-777"
SSE = (
    'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"str"}}]}\n\n'
    'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"eamed"},"finish_reason":"stop"}]}\n\n'
    "data: [DONE]\n\n"
)
AUDIO = b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n\x00\xff\xfeRIFF\r\n--B--\r\n'


def entry(
    method="POST",
    url="https://api.openai.com/v1/chat/completions",
    req_body=None,
    status=200,
    resp=None,
    mime="application/json",
    **kw,
):
    e = {
        "startedDateTime": kw.pop("started", "2026-01-02T03:04:05.678Z"),
        "time": 250.5,
        "request": {
            "method": method,
            "url": url,
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Authorization", "value": f"Bearer {SECRET}"},
                {"name": "Content-Type", "value": "application/json"},
            ],
            "queryString": [],
        },
        "response": {
            "status": status,
            "headers": [{"name": "Content-Type", "value": mime}],
            "content": {"size": len(resp or ""), "mimeType": mime, "text": resp},
        },
        "timings": {"send": 1, "wait": 120.25, "receive": 129.25},
    }
    if req_body is not None:
        e["request"]["postData"] = {"mimeType": "application/json", "text": req_body}
    for k, v in kw.items():
        e[k] = v
    return e


def har(*entries) -> dict:
    return {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": list(entries)}}


def rows(db: Path, where: str = "") -> list[dict]:
    con = connect(db)
    cur = con.execute(f"SELECT * FROM exchanges {where} ORDER BY recorded_at, id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def hand_built_har() -> dict:
    audio = entry(
        url="https://api.openai.com/v1/audio/transcriptions",
        resp='{"text": "hi"}',
        started="2026-01-02T03:04:06Z",
    )
    audio["request"]["headers"][1]["value"] = "multipart/form-data; boundary=B"
    audio["request"]["postData"] = {
        "mimeType": "multipart/form-data; boundary=B",
        "text": base64.b64encode(AUDIO).decode(),
        "encoding": "base64",
    }
    gz = entry(req_body=json.dumps(CHAT_REQ), resp=json.dumps(CHAT_RESP), started="2026-01-02T03:04:07Z")
    gz["response"]["headers"].append(
        {"name": "Content-Encoding", "value": "gzip"}
    )  # HAR text is already decoded
    failed = entry(req_body=json.dumps(CHAT_REQ), started="2026-01-02T03:04:08Z")
    failed["response"] = {"status": 0, "headers": [], "content": {}, "_error": "Connection refused"}
    return har(
        entry(req_body=json.dumps(CHAT_REQ), resp=json.dumps(CHAT_RESP)),
        entry(
            req_body=json.dumps({**CHAT_REQ, "stream": True}),
            resp=SSE,
            mime="text/event-stream",
            started="2026-01-02T03:04:05.9Z",
        ),
        audio,
        gz,
        failed,
        entry(
            req_body=json.dumps(CHAT_REQ),
            status=429,
            resp='{"error": {"message": "slow down", "type": "requests"}}',
            started="2026-01-02T03:04:09Z",
        ),
        entry(
            method="GET",
            url=f"https://api.openai.com/v1/models?key={SECRET}",
            resp='{"data": []}',
            started="2026-01-02T03:04:10Z",
        ),
    )


def test_hand_built_har(tmp_path: Path, migrated_store: Path) -> None:
    path = tmp_path / "traffic.har"
    path.write_text(json.dumps(har_doc := hand_built_har()))
    res = import_files([path], migrated_store)[str(path)]
    assert (res.kind, res.imported, res.skipped, res.errors) == ("har", len(har_doc["log"]["entries"]), 0, [])
    r = rows(migrated_store)
    chat, stream, audio, gz, failed, limited, models = r
    assert chat["source"] == "har" and json.loads(chat["response_body"]) == CHAT_RESP
    assert (chat["ttfb_ms"], chat["latency_ms"]) == (120.25, 250.5)  # timings.wait, time
    assert str(chat["recorded_at"]).startswith("2026-01-02 03:04:05.678")
    assert chat["api_key_fingerprint"] and chat["prompt_tokens"] == 3
    assert stream["stream"] and stream["stream_complete"] and stream["n_events"] == 3
    assert json.loads(stream["response_body"])["choices"][0]["message"]["content"] == "streamed"
    assert stream["chunk_offsets_ms"] is None and stream["ttft_ms"] is None  # HAR has no per-event times
    assert audio["request_raw"] == AUDIO and audio["model"] == "whisper-1"
    assert json.loads(gz["response_body"]) == CHAT_RESP and gz["error_type"] is None
    assert failed["status"] is None and failed["error_message"] == "Connection refused"
    assert (limited["status"], limited["error_type"]) == (429, "requests")
    assert models["endpoint"] == "models" and models["query"] is None
    con = connect(migrated_store)
    for (col,) in con.execute("SELECT column_name FROM (DESCRIBE exchanges)").fetchall():
        hits = con.execute(
            f"SELECT count(*) FROM exchanges WHERE CAST({col} AS VARCHAR) LIKE ?", [f"%{SECRET}%"]
        ).fetchall()
        assert hits == [(0,)], col
    # a second import adds nothing
    again = import_files([path], migrated_store)[str(path)]
    assert (again.imported, again.duplicates) == (0, len(r))


def test_truncated_and_lying_files(tmp_path: Path, migrated_store: Path) -> None:
    good = json.dumps(hand_built_har())
    cut = tmp_path / "cut.har"
    cut.write_text(good[: good.index('"startedDateTime": "2026-01-02T03:04:07Z"') + 20])  # inside entry 4
    lying = tmp_path / "lying.har"
    bad_b64 = entry(resp="x")
    bad_b64["response"]["content"].update(text="!!!notbase64", encoding="base64")
    short = entry(resp='{"a": 1}', started="2026-01-02T03:05:00Z")
    short["response"]["content"]["size"] = 5000
    lying.write_text(
        json.dumps(har(bad_b64, {"request": {"url": "x"}}, short, entry(resp="{}", started="nope")))
    )
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage")
    results = import_files([cut, lying, junk, tmp_path / "missing.har"], migrated_store)
    c = results[str(cut)]
    assert c.imported == 3 and "not complete JSON" in c.errors[0] and "3 entries" in c.errors[0]
    lie = results[str(lying)]
    assert lie.imported == 1 and lie.skipped == 3
    assert any("not valid base64" in e for e in lie.errors)
    assert any("content.size says 5000" in e for e in lie.errors)
    assert any("not an ISO date" in e for e in lie.errors)
    assert "neither a HAR" in results[str(junk)].errors[0]
    assert "cannot read" in results[str(tmp_path / "missing.har")].errors[0]
    [kept] = rows(migrated_store, "WHERE recorded_at >= '2026-01-02 03:05:00'")
    assert kept["truncated"] and kept["response_raw"] == '{"a": 1}'


def test_cli_import_reports_each_file(tmp_path: Path, migrated_store: Path) -> None:
    ok = tmp_path / "ok.har"
    ok.write_text(json.dumps(har(entry(resp="{}"))))
    bad = tmp_path / "bad.har"
    bad.write_text('{"log": {"entries": [')
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "parity.recorder.cli",
            "import",
            str(ok),
            str(bad),
            "--db",
            str(migrated_store),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"{ok}: har, 1 exchanges imported" in out.stdout
    assert f"{bad}: error: not complete JSON" in out.stderr


def corpus_har(records: list[dict]) -> dict:
    entries = []
    for i, rec in enumerate(records):
        req, resp = rec["request"], rec["response"]
        text = resp.get("sse") if resp.get("sse") is not None else json.dumps(resp.get("body_json"))
        e = {
            "startedDateTime": f"2026-02-01T00:{i // 60:02d}:{i % 60:02d}Z",
            "time": 10,
            "request": {
                "method": req["method"],
                "url": f"https://{rec['provider']}{url_path(rec)}",
                "headers": [{"name": k, "value": v} for k, v in req["headers"].items()],
            },
            "response": {
                "status": resp["status"],
                "headers": [
                    {"name": k, "value": v[0] if isinstance(v, list) else v}
                    for k, v in resp["headers"].items()
                ],
                "content": {"mimeType": resp["headers"].get("content-type", ""), "text": text},
            },
            "timings": {"wait": 5},
        }
        body = request_bytes(rec)
        if body:
            e["request"]["postData"] = {
                "mimeType": req["headers"].get("content-type", ""),
                "text": body.decode(),
            }
        entries.append(e)
    return har(*entries)


def test_har_built_from_the_real_corpus(tmp_path: Path, migrated_store: Path) -> None:
    records = sample(load_corpus(), per_kind=8)
    path = tmp_path / "corpus.har"
    path.write_text(json.dumps(corpus_har(records)))
    res = import_files([path], migrated_store)[str(path)]
    assert res.imported == len(records) and not res.errors
    got = rows(migrated_store)
    assert len(got) == len(records)
    for rec, row in zip(records, got, strict=True):
        resp = rec["response"]
        assert row["status"] == resp["status"], rec["id"]
        if resp.get("sse") is not None:
            assert row["stream"] and row["response_raw"] == resp["sse"], rec["id"]
            if row["endpoint"] in ("chat.completions", "completions", "responses"):
                exp = expected_from_sse(row["endpoint"], resp["sse"])
                assert reassembled_view(row["endpoint"], json.loads(row["response_body"])) == exp, rec["id"]
        elif resp.get("body_json") is not None:
            assert json.loads(row["response_body"]) == resp["body_json"], rec["id"]


# ---------------------------------------------------------------- flow files from a real mitmdump -w


@pytest.fixture(scope="module")
def flow_recording(module_recorders, proc_kit, tmp_path_factory):
    """client -> parity record -> mitmdump -w flows -> fake provider: one set of exchanges, two records."""
    from parity.fake.server import FakeProvider

    tmp = tmp_path_factory.mktemp("flows")
    with FakeProvider.running(profile="instant", port=0) as fp:
        port = proc_kit.free_port()
        flows = tmp / "traffic.flows"
        dump = proc_kit.start_proxy(
            [
                str(proc_kit.venv_bin / "mitmdump"),
                "-q",
                "--mode",
                f"reverse:{fp.url}",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(port),
                "--set",
                f"confdir={tmp / 'conf'}",
                "-w",
                str(flows),
            ],
            port,
            tmp / "mitmdump.log",
        )
        rec = module_recorders(f"http://127.0.0.1:{port}")
        with httpx.Client(base_url=rec.base_url, timeout=30) as c:
            for i in range(3):
                c.post(
                    "/chat/completions", json={**CHAT_REQ, "messages": [{"role": "user", "content": f"n{i}"}]}
                )
            c.post(
                "/chat/completions",
                json={**CHAT_REQ, "stream": True, "stream_options": {"include_usage": True}},
            )
            c.post("/embeddings", json={"model": "text-embedding-3-small", "input": "abc"})
            c.post("/chat/completions", json=CHAT_REQ, headers={"x-fake-error": "429"})
            c.get("/models")
        assert dump.stop() == 0
        assert rec.stop() == 0
    return rec.db, flows


def test_flow_file_import_matches_the_direct_recording(flow_recording, tmp_path: Path) -> None:
    direct_db, flows = flow_recording
    db = tmp_path / "imported.duckdb"
    res = import_files([flows], db)[str(flows)]
    assert (res.kind, res.imported, res.errors) == ("flow", 7, [])
    direct = {r["request_body"] or r["path"]: r for r in rows(direct_db)}
    imported = {r["request_body"] or r["path"]: r for r in rows(db)}
    assert direct.keys() == imported.keys()
    same = [
        "endpoint",
        "method",
        "path",
        "model",
        "stream",
        "status",
        "response_body",
        "prompt_tokens",
        "completion_tokens",
        "finish_reason",
        "error_type",
        "stream_complete",
        "n_events",
        "request_id",
    ]
    for key, d in direct.items():
        i = imported[key]
        assert {c: i[c] for c in same} == {c: d[c] for c in same}, key
        assert i["source"] == "flow" and i["ttfb_ms"] > 0 and i["latency_ms"] >= i["ttfb_ms"]
        if d["stream"]:
            assert d["chunk_offsets_ms"] and i["chunk_offsets_ms"] is None


def test_truncated_flow_file_keeps_the_complete_flows(flow_recording, tmp_path: Path) -> None:
    _, flows = flow_recording
    data = flows.read_bytes()
    cut = tmp_path / "cut.flows"
    cut.write_bytes(data[: len(data) * 2 // 3])
    res = import_files([cut], tmp_path / "x.duckdb")[str(cut)]
    assert 1 <= res.imported < 7
    assert f"unreadable after {res.imported} flows" in res.errors[0]
