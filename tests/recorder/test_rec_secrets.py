"""Leaks nothing: credentials sent through a real recorder never reach any file it writes."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import httpx
import openai
import pytest
from aiohttp import web
from rec_upstreams import _Threaded

from parity.store.schema import TABLES
from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

SECRET = "sk-proj-ZZTOPSECRET9d8f7e6"
HEADERS = {
    "Authorization": f"Bearer {SECRET}",
    "api-key": SECRET,
    "x-api-key": SECRET,
    "Cookie": f"session={SECRET}; other=1",
    "OpenAI-Organization": f"org-{SECRET}",
    "OpenAI-Project": f"proj_{SECRET}",
}


def test_secrets_never_reach_disk(run_recorder) -> None:
    from parity.fake.server import FakeProvider

    with FakeProvider.running(profile="instant", port=0) as fp:
        rec = run_recorder(fp.url, "--flush-interval", "0.2")
        client = openai.OpenAI(base_url=rec.base_url, api_key=SECRET, max_retries=0, default_headers=HEADERS)
        for i in range(40):  # enough rows for DuckDB/Parquet to dictionary-compress repeated strings
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}]
            )
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "s"}], stream=True
            )
        )
        client.embeddings.create(model="text-embedding-3-small", input="x", extra_query={"key": SECRET})
        with httpx.Client(headers=HEADERS) as h:
            h.get(f"{rec.base_url}/models?key={SECRET}&api_key={SECRET}&limit=2")
            h.post(f"{rec.base_url}/chat/completions?key={SECRET}", json={"model": "m"})  # a 400
            h.get(f"{rec.url}/other/path?token={SECRET}")  # an 'other' path
        time.sleep(0.5)
        assert rec.stop() == 0

    store_root = Path(str(rec.db) + ".d")
    spill = Path(rec.argv[rec.argv.index("--spill-dir") + 1])
    files = [rec.db, *[p for p in store_root.rglob("*") if p.is_file()]]
    if spill.exists():
        files += [p for p in spill.rglob("*") if p.is_file()]
    assert len(files) > 8
    needle = SECRET.encode()
    assert SECRET not in rec.log()  # nor in what it printed
    for f in files:
        assert needle not in f.read_bytes(), f"secret found in {f}"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for d in [store_root, *[p for p in store_root.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d

    # Byte search alone can miss compressed strings: scan every column of every table too.
    con = connect(rec.db)
    assert con.execute("SELECT count(*) FROM exchanges").fetchall()[0][0] >= 45
    for table in TABLES:
        for (col,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall():
            hits = con.execute(
                f'SELECT count(*) FROM {table} WHERE CAST("{col}" AS VARCHAR) LIKE ?', [f"%{SECRET[8:]}%"]
            ).fetchall()
            assert hits == [(0,)], f"{table}.{col}"
    # the key still groups traffic: one salted fingerprint for all of it
    fps = con.execute(
        "SELECT DISTINCT api_key_fingerprint FROM exchanges WHERE endpoint != 'other'"
    ).fetchall()
    assert len(fps) == 1 and fps[0][0] and SECRET not in fps[0][0]
    assert con.execute("SELECT query FROM exchanges WHERE endpoint = 'models'").fetchall() == [("limit=2",)]


class _EchoingUpstream(_Threaded):
    """An upstream that quotes the caller's key back, as OpenAI's 401 'Incorrect API key' message does."""

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            if request.query.get("stream"):
                resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(f'data: {{"error": {{"message": "bad key {key}"}}}}\n\n'.encode())
                await resp.write_eof()
                return resp
            err = {
                "error": {
                    "message": f"Incorrect API key provided: {key}.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
            return web.json_response(err, status=401)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def test_a_key_echoed_by_the_upstream_is_scrubbed(run_recorder) -> None:
    """The recorder knows the request's own credentials, so their echoes in any body are replaced."""
    with _EchoingUpstream().running() as up:
        rec = run_recorder(up.url, "--flush-interval", "0.2")
        client = openai.OpenAI(base_url=rec.base_url, api_key=SECRET, max_retries=0)
        for i in range(3):
            try:
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"{i} {SECRET}"}]
                )
            except openai.AuthenticationError as e:
                assert SECRET in str(e)  # the traffic itself is untouched
        with httpx.Client() as h:
            h.post(
                f"{rec.base_url}/chat/completions?stream=1",
                json={"model": "m", "stream": True},
                headers={"x-api-key": SECRET},
            )
        time.sleep(0.5)
        assert rec.stop() == 0
    files = [rec.db, *[p for p in Path(str(rec.db) + ".d").rglob("*") if p.is_file()]]
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f"secret found in {f}"
    con = connect(rec.db)
    rows = con.execute(
        "SELECT CAST(request_body AS VARCHAR), error_message, response_raw FROM exchanges"
    ).fetchall()
    assert len(rows) == 4
    assert all(SECRET not in str(r) for r in rows)
    assert any("[REDACTED]" in (r[1] or "") for r in rows)
