"""Replay refuses exchanges recorded with redacted content unless told --allow-redacted or --skip-redacted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replayhelpers import T0, fake_table, make_exchange, providers_file, write_exchanges

from parity.cli import main
from parity.replayer.errors import SelectionError
from parity.replayer.select import Selection, load, select
from parity.store.schema import EXCHANGES
from parity.store.segments import segment_root, write_segment
from parity.store.store import connect, init_catalog

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


def chat(content: str, i: int, **kw) -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "stream": False}
    return make_exchange(id=f"x{i}", body=body, recorded_at=T0 + timedelta(seconds=i), **kw)


@pytest.fixture
def store(db: Path) -> Path:
    rows = [
        chat("plain one", 0),
        chat("plain two", 1),
        chat("my key is [REDACTED] ok", 2),  # the credential scrub's mark: not content redaction
        chat("write to [REDACTED:email] now", 3, request_redactions=1, redactions=2),
        chat("answer only was redacted", 4, request_redactions=0, redactions=3),
        chat("call [REDACTED:phone]", 5),  # recorded before the count existed: judged by its placeholder
        chat("ticket <ticket> please", 6, request_redactions=1, redactions=1, recorder_id="host-42"),
    ]
    write_exchanges(db, rows)
    write_segment(
        segment_root(db),
        "recordings",
        [
            {
                "recorder_id": "host-42",
                "started_at": datetime.now(UTC),
                "db": str(db),
                "options": json.dumps(
                    {"redaction": {"rules": [{"name": "ticket", "pattern": "T"}], "hook": "h.py:f"}}
                ),
            }
        ],
        "test",
    )
    return db


def _config(db: Path, run: str) -> dict:
    con = connect(db)
    try:
        [(config,)] = con.execute(
            "SELECT CAST(config AS VARCHAR) FROM run_events WHERE run_id = ? AND state = 'started'", [run]
        ).fetchall()
    finally:
        con.close()
    return json.loads(config)


def test_refuses_with_one_clear_line(store: Path, tmp_path: Path, fakes, capsys) -> None:
    fp = fakes("red", "instant")
    pf = providers_file(tmp_path, fake_table("p", fp))
    base = ["replay", "--db", str(store), "--providers", str(pf), "--no-progress", "--no-preflight"]
    assert main([*base, "--run", "r0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "3 of the 7 selected exchanges were recorded with redacted content" in err
    assert "(rules: email, hook h.py:f, phone, ticket)" in err
    assert "--skip-redacted" in err and "--allow-redacted" in err
    assert main([*base, "--run", "r0", "--dry-run"]) == 2  # what a real run would do
    capsys.readouterr()
    assert fp.requests() == []
    # a selection without redacted requests runs as usual
    ids = tmp_path / "ids.txt"
    ids.write_text("x0\nx2\nx4\n")
    assert main([*base, "--run", "clean", "--ids", str(ids)]) == 0
    assert len(fp.posts()) == 3
    assert _config(store, "clean")["selection"]["redacted"] == "refuse"


def test_skip_and_allow(store: Path, tmp_path: Path, fakes, capsys) -> None:
    fp = fakes("red2", "instant")
    pf = providers_file(tmp_path, fake_table("p", fp))
    base = ["replay", "--db", str(store), "--providers", str(pf), "--no-progress", "--no-preflight"]
    assert main([*base, "--run", "skip", "--skip-redacted"]) == 0
    sent = [r["body"]["messages"][0]["content"] for r in fp.posts()]
    assert sorted(sent) == ["answer only was redacted", "my key is [REDACTED] ok", "plain one", "plain two"]
    sel = _config(store, "skip")["selection"]
    assert (sel["redacted"], sel["redacted_found"], sel["exchanges"]) == ("skip", 3, 4)

    assert main([*base, "--run", "allow", "--allow-redacted"]) == 0
    sent = [r["body"]["messages"][0]["content"] for r in fp.posts()[4:]]
    assert len(sent) == 7 and "write to [REDACTED:email] now" in sent  # sent as they are
    sel = _config(store, "allow")["selection"]
    assert (sel["redacted"], sel["redacted_found"], sel["exchanges"]) == ("allow", 3, 7)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*base, "--run", "both", "--allow-redacted", "--skip-redacted"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_select_on_a_store_from_before_redaction(tmp_path: Path) -> None:
    """No request_redactions column at all: placeholders alone decide."""
    db = tmp_path / "old.duckdb"
    init_catalog(db)
    root = segment_root(db)
    old = pa.schema([f for f in EXCHANGES if f.name not in ("redactions", "request_redactions")])
    for p in (root / "exchanges").glob("_schema-*.parquet"):
        p.unlink()
    pq.write_table(old.empty_table(), root / "exchanges" / "_schema-000000000000.parquet")
    rows = [chat("fine", 0), chat("see [REDACTED:email]", 1)]
    pq.write_table(
        pa.Table.from_pylist([{k: v for k, v in r.items() if k in old.names} for r in rows], schema=old),
        root / "exchanges" / "seg-0-old-000001.parquet",
    )
    assert [x.request_redactions for x in load(db)] == [None, None]
    assert [x.id for x in select(db, Selection(redacted="skip"))] == ["x0"]
    with pytest.raises(SelectionError, match=r"1 of the 2 selected .* \(rules: email\)"):
        select(db, Selection())
