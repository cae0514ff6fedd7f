"""parity export writes hive-partitioned Parquet other engines read; parity compact keeps every row once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from parity.cli import main
from parity.store.segments import list_segments, segment_root, write_segment
from parity.store.store import query


def _rows(n: int, day: datetime) -> list[dict]:
    eps = ("chat.completions", "embeddings")
    return [
        {
            "id": f"x{day:%d}-{i}",
            "recorded_at": day + timedelta(seconds=i),
            "endpoint": eps[i % 2],
            "method": "POST",
            "path": "/v1/" + eps[i % 2].replace(".", "/"),
            "status": 200,
            "request_body": '{"model":"m"}',
        }
        for i in range(n)
    ]


def test_export_is_hive_partitioned_by_day_and_endpoint(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    root = segment_root(db)
    write_segment(root, "exchanges", _rows(6, datetime(2026, 11, 24, tzinfo=UTC)), "t")
    write_segment(root, "exchanges", _rows(4, datetime(2026, 11, 25, tzinfo=UTC)), "t")
    out = tmp_path / "export"
    assert main(["export", "--db", str(db), "--format", "parquet", "--out", str(out)]) == 0
    assert "exchanges: 10 rows" in capsys.readouterr().out
    parts = sorted(
        p.relative_to(out / "exchanges").parent.as_posix() for p in (out / "exchanges").rglob("*.parquet")
    )
    assert parts == [
        "day=2026-11-24/endpoint=chat.completions",
        "day=2026-11-24/endpoint=embeddings",
        "day=2026-11-25/endpoint=chat.completions",
        "day=2026-11-25/endpoint=embeddings",
    ]
    got = duckdb.sql(
        f"SELECT day, endpoint, count(*), min(request_body) FROM read_parquet('{out}/exchanges/**/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert [(str(d), e, n) for d, e, n, _ in got] == [
        ("2026-11-24", "chat.completions", 3),
        ("2026-11-24", "embeddings", 3),
        ("2026-11-25", "chat.completions", 2),
        ("2026-11-25", "embeddings", 2),
    ]
    assert all(body == '{"model":"m"}' for *_, body in got)  # JSON exported as plain text


def test_results_and_attempts_are_partitioned_by_day_then_run(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    root = segment_root(db)
    day = datetime(2026, 11, 24, 23, 59, 58, tzinfo=UTC)
    cells = [
        {
            "run_id": run,
            "exchange_id": f"x{i}",
            "provider": "p",
            "repeat": 0,
            "started_at": day + timedelta(seconds=i),
        }
        for run in ("r1", "r2")
        for i in range(4)
    ] + [{"run_id": "r1", "exchange_id": "never-sent", "provider": "p", "repeat": 0, "started_at": None}]
    write_segment(root, "results", cells, "t")
    write_segment(root, "attempts", [c | {"attempt": 1} for c in cells[:2]], "t")
    out = tmp_path / "export"
    assert main(["export", "--db", str(db), "--out", str(out)]) == 0
    capsys.readouterr()
    parts = sorted(
        {p.relative_to(out).parent.as_posix() for p in out.rglob("*.parquet") if "exchanges" not in p.parts}
    )
    assert parts == [
        "attempts/day=2026-11-24/run_id=r1",
        "results/day=2026-11-24/run_id=r1",
        "results/day=2026-11-24/run_id=r2",
        "results/day=2026-11-25/run_id=r1",
        "results/day=2026-11-25/run_id=r2",
        "results/day=unknown/run_id=r1",
    ]
    n = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/results/**/*.parquet', hive_partitioning = true)"
    )
    assert n.fetchall() == [(9,)]


def test_compact_merges_and_keeps_every_row_once(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    root = segment_root(db)
    for k in range(5):
        write_segment(root, "exchanges", _rows(3, datetime(2026, 11, 20 + k, tzinfo=UTC)), "t")
    assert len(list_segments(root, "exchanges")) == 5
    assert main(["compact", "--db", str(db), "--min-age", "0"]) == 0
    assert "exchanges: merged 5 segments (15 rows)" in capsys.readouterr().out
    assert len(list_segments(root, "exchanges")) == 1
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM exchanges") == [(15, 15)]
