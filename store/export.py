"""Export the store as hive-partitioned Parquet, and compact its small segment files."""

from __future__ import annotations

import os
from pathlib import Path

from parity.store import objstore
from parity.store.objstore import S3Path
from parity.store.schema import JSON_COLUMNS, TABLES
from parity.store.segments import GRACE_S, compact, segment_root
from parity.store.store import connect, init_catalog, require_store, sql_string

# How each table is partitioned on export (hive style: key=value folders), by day first so that other
# engines prune by date; ``day`` is the UTC date of the row's time column (DAY_OF).
PARTITIONS: dict[str, tuple[str, ...]] = {
    "exchanges": ("day", "endpoint"),
    "results": ("day", "run_id"),
    "attempts": ("day", "run_id"),
    "run_events": (),
    "judgments": (),
    "dispatches": (),
}
DAY_OF = {"exchanges": "recorded_at", "results": "started_at", "attempts": "started_at"}


def export_parquet(
    db_path: str | os.PathLike, out: str | os.PathLike, tables: tuple[str, ...] | None = None
) -> dict[str, int]:
    """Write every table under ``out/<table>/`` as Parquet; returns rows written per table.

    JSON columns are written as text so Spark and Trino read them without extensions. ``out``
    may be ``s3://bucket/prefix`` (written through the same filesystem the store reads with).
    """
    require_store(db_path)  # before creating ``out``: a missing store leaves nothing behind
    remote = objstore.is_s3(out)
    out = S3Path(out) if remote else Path(out)
    if not remote:
        out.mkdir(parents=True, exist_ok=True)
    con = connect(db_path)
    if remote and not objstore.is_s3(db_path):
        objstore.register(con)
    counts: dict[str, int] = {}
    try:
        for table in tables or tuple(TABLES):
            n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            counts[table] = n
            if not n:
                continue
            cols = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in JSON_COLUMNS[table])
            select = f"SELECT * REPLACE ({cols})" if cols else "SELECT *"
            if table in DAY_OF:  # a row without a time (a cell never sent) goes to day=unknown
                select += f", coalesce(strftime({DAY_OF[table]}, '%Y-%m-%d'), 'unknown') AS day"
            dest = str((out / table).resolve())
            parts = PARTITIONS.get(table, ())
            opts = "FORMAT parquet, COMPRESSION zstd, OVERWRITE_OR_IGNORE"
            if parts:
                opts += f", PARTITION_BY ({', '.join(parts)})"
                con.execute(f"COPY ({select} FROM {table}) TO {sql_string(dest)} ({opts})")
            else:
                if not remote:
                    (out / table).mkdir(exist_ok=True)
                con.execute(
                    f"COPY ({select} FROM {table}) TO {sql_string(dest + '/data.parquet')}"
                    " (FORMAT parquet, COMPRESSION zstd)"
                )
    finally:
        con.close()
    return counts


def compact_store(
    db_path: str | os.PathLike,
    min_age_s: float = 5.0,
    grace_s: float = GRACE_S,
    tables: tuple[str, ...] | None = None,
    run_id: str | None = None,
) -> dict[str, tuple[int, int]]:
    """Merge each table's (or ``tables``') segments older than ``min_age_s`` (with ``run_id``: those
    holding only that run's rows) into one file: {table: (files, rows)}.

    Sources of merges older than ``grace_s`` are deleted first. The catalog's views (the ``.duckdb``
    file, for the DuckDB CLI) are re-pointed at the new listing when the catalog is free.
    A path with no store raises ``NoStoreError``: compacting never creates one.
    """
    require_store(db_path)
    root = segment_root(db_path)
    done = {
        table: compact(root, table, min_age_s=min_age_s, grace_s=grace_s, run_id=run_id)
        for table in (tables or TABLES)
    }
    if not isinstance(root, S3Path) and Path(db_path).suffix != ".d":
        init_catalog(db_path)  # logs and goes on when another process holds the catalog
    return done
