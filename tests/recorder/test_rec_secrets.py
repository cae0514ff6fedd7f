"""Leaks nothing: credentials sent through a real recorder never reach any file it writes."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import httpx
import openai

from recorder.schema import TABLES
from recorder.store import connect

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
    from replayer.fake.server import FakeProvider

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
