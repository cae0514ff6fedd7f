"""Selection: filters, reproducible samples, ids files; and the CLI's help."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from replayhelpers import T0, make_chat_workload, make_exchange, write_exchanges

from parity.cli import build_parser
from parity.replayer.errors import SelectionError
from parity.replayer.select import Selection, select

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


@pytest.fixture
def store(db: Path) -> Path:
    rows = make_chat_workload(10, gap_s=60)
    rows[0]["id"] = "first"
    rows += [
        make_exchange(
            id="emb",
            endpoint="embeddings",
            path="/v1/embeddings",
            model="text-embedding-3-small",
            recorded_at=T0 + timedelta(hours=2),
            tag="batch",
        ),
        make_exchange(id="err", status=429, recorded_at=T0 + timedelta(hours=3), model="gpt-4o"),
        make_exchange(id="big", model="gpt-4o-2024-08-06", recorded_at=T0 + timedelta(hours=4), tag="batch"),
    ]
    write_exchanges(db, rows)
    write_exchanges(db, [rows[0]])  # a duplicate segment row must not double the exchange
    return db


def _ids(db: Path, **kw) -> list[str]:
    return [x.id for x in select(db, Selection(**kw))]


def test_filters(store: Path, tmp_path: Path) -> None:
    assert len(_ids(store)) == 13  # production's errors too by default, duplicates collapsed
    assert (
        "err" in _ids(store) and "err" not in _ids(store, status="ok") and len(_ids(store, status="ok")) == 12
    )
    assert _ids(store, endpoints=["embeddings"]) == ["emb"]
    assert _ids(store, models=["gpt-4o*"], status="all")[-2:] == ["err", "big"]
    assert _ids(store, tags=["batch"]) == ["emb", "big"]
    assert _ids(store, since="2026-11-20T14:00Z") == ["emb", "err", "big"]  # inclusive
    assert _ids(store, since="2026-11-20T14:30Z", status="ok") == ["big"]
    assert _ids(store, until="2026-11-20T12:01:00+00:00") == ["first"]
    assert _ids(store, limit=2)[0] == "first" and len(_ids(store, limit=2)) == 2
    ids = tmp_path / "ids.txt"
    ids.write_text("# picked by hand\nemb\n\nbig  # the dated model\nnot-there\n")
    assert _ids(store, ids_file=str(ids)) == ["emb", "big"]


def test_sample_is_reproducible(store: Path) -> None:
    a = _ids(store, sample=5, seed=7)
    assert a == _ids(store, sample=5, seed=7) and len(a) == 5
    assert a != _ids(store, sample=5, seed=8)
    assert len(_ids(store, sample=50)) == 13


def test_bad_selections(store: Path, tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="--since"):
        select(store, Selection(since="yesterday"))
    with pytest.raises(SelectionError, match="--ids"):
        select(store, Selection(ids_file=str(tmp_path / "missing.txt")))


def test_every_replay_option_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    replay = sub.choices["replay"]
    assert replay.description
    for action in replay._actions:
        if action.dest != "help":
            assert action.help, action.dest
    flags = {s for a in replay._actions for s in a.option_strings}
    assert flags >= {
        "--db",
        "--providers",
        "--run",
        "--endpoint",
        "--model",
        "--tag",
        "--since",
        "--until",
        "--status",
        "--limit",
        "--sample",
        "--seed",
        "--ids",
        "--concurrency",
        "--rate",
        "--arrival",
        "--as-recorded",
        "--speed",
        "--repeat",
        "--max-cost",
        "--dry-run",
        "--resume",
        "--allow-redacted",
        "--skip-redacted",
    }
