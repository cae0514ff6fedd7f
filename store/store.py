"""The only module that talks to DuckDB: views over the Parquet segments, and migrations.

Design (see README "Store"): writers never open the ``.duckdb`` file. They append
immutable Parquet segments under ``<db>.d/<table>/``. Readers call :func:`connect`,
which builds the documented views in an in-memory DuckDB over those segments, so a
notebook, ``parity ls`` or the replayer can read while any number of recorders write,
and no process ever waits on DuckDB's single-writer file lock. The ``.duckdb`` file
itself is a catalog holding the same views (for the DuckDB CLI) plus the record of
applied migrations; it is opened only briefly by :func:`init_catalog`.

A store ``s3://bucket/prefix`` has no catalog: :func:`connect` lists each table's segments in
the bucket once and builds the same views over that list, read where the segments lie through
the filesystem ``parity.store.objstore`` registers with DuckDB.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from parity.store import objstore
from parity.store.errors import NoStoreError, StoreError, StoreFormatError
from parity.store.format import check as check_format
from parity.store.objstore import S3Path
from parity.store.schema import JSON_COLUMNS, TABLES
from parity.store.segments import (
    MERGED_PREFIX,
    SEGMENT_GLOB,
    ensure_table,
    segment_root,
    segment_state,
)

__all__ = ["NoStoreError", "StoreError", "StoreFormatError", "connect", "init_catalog", "query"]

log = logging.getLogger("parity.store")


def store_exists(db_path: str | os.PathLike) -> bool:
    """Whether a store exists at ``db_path`` (its segment folder ``<db>.d/`` does; in a bucket,
    anything under the prefix)."""
    root = segment_root(db_path)
    if isinstance(root, S3Path):
        return objstore.has_objects(root)
    return root.is_dir()


def require_store(db_path: str | os.PathLike) -> None:
    """Raise :class:`NoStoreError` ("no store at PATH", with the nearest store beside it) if none,
    and :class:`~parity.store.format.StoreFormatError` if it is not of the current format."""
    try:
        exists = store_exists(db_path)
    except OSError as e:  # a bucket that cannot be listed: say so, as for a missing store
        raise NoStoreError(str(e)) from e
    if not exists:
        near = "" if objstore.is_s3(db_path) else _nearest_store(db_path)
        raise NoStoreError(f"no store at {db_path}{near}")
    try:
        check_format(db_path, segment_root(db_path))
    except OSError as e:
        raise NoStoreError(str(e)) from e


def _nearest_store(db_path: str | os.PathLike) -> str:
    """`` (did you mean --db X?)`` for the store in ``db_path``'s folder whose name is closest, else ``""``."""
    p = Path(db_path)
    try:
        names = sorted(q.name[:-2] for q in p.parent.glob("*.duckdb.d") if q.is_dir())
    except OSError:
        return ""
    best = difflib.get_close_matches(p.name, names, n=1, cutoff=0)
    return f" (did you mean --db {p.parent / best[0]}?)" if best else ""


def sql_string(s: str) -> str:
    """``s`` as a SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def table_scan(root: Path | S3Path, table: str) -> str:
    """The SQL relation of one table's rows: every segment exactly once, as of now.

    The glob sees segments written later (recorders keep appending), but compaction's merged
    (``cmp-``) segments count only if they were already there, and the segments they replace
    are hidden only then: the folder is listed once, here, so whatever a compaction does after
    this call, the view counts each row once (see ``parity.store.segments.compact``).
    In a bucket the view is over that one listing's live segments (a listing per table per
    connection; segments written later are seen by the next connection).
    """
    if isinstance(root, S3Path):
        live = segment_state(root, table)[0]
        if not live:
            return f"({empty_relation(table)})"
        files = ", ".join(sql_string(str(p)) for p in live)
        return (
            f"(SELECT * FROM read_parquet([{files}], union_by_name=true)"
            f" UNION ALL BY NAME {empty_relation(table)})"
        )
    d = (root / table).resolve()
    if not d.is_dir() or not any(d.glob(SEGMENT_GLOB)):
        return f"({empty_relation(table)})"  # a table no writer has written yet
    _live, merged, hidden = segment_state(root, table)
    glob = sql_string(str(d / SEGMENT_GLOB))
    known = ", ".join(sql_string(str(d / p.name)) for p in merged)
    keep = f"(filename NOT LIKE {sql_string('%/' + MERGED_PREFIX + '%')}" + (
        f" OR filename IN ({known}))" if known else ")"
    )
    if hidden:
        keep += " AND filename NOT IN (" + ", ".join(sql_string(str(d / n)) for n in sorted(hidden)) + ")"
    # UNION ALL BY NAME with an empty relation of the current schema: the view's columns and types
    # are the schema's whatever the segments hold; it costs nothing at run time.
    return (
        f"(SELECT * EXCLUDE (filename) FROM read_parquet({glob}, union_by_name=true, filename=true) WHERE {keep}"
        f" UNION ALL BY NAME {empty_relation(table)})"
    )


_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.binary(): "BLOB",
    pa.bool_(): "BOOLEAN",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return _sql_type(t.value_type) + "[]"
    return _SQL_TYPES[t]


def empty_relation(table: str) -> str:
    """A relation with ``table``'s current columns and types and no rows."""
    cols = ", ".join(f'CAST(NULL AS {_sql_type(f.type)}) AS "{f.name}"' for f in TABLES[table])
    return f"SELECT {cols} WHERE false"


def _json_replace(table: str) -> str:
    cols = JSON_COLUMNS.get(table, ())
    if not cols:
        return "*"
    return "* REPLACE (" + ", ".join(f"CAST({c} AS JSON) AS {c}" for c in cols) + ")"


def _create_base_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    for table in ("exchanges", "results", "attempts", "dispatches", "judgments", "run_events"):
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT {_json_replace(table)} FROM {table_scan(root, table)}"
        )


def _create_runs_view(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    con.execute(
        """
        CREATE OR REPLACE VIEW runs AS
        SELECT run_id,
               min("at") FILTER (WHERE state = 'started') AS started_at,
               max("at") FILTER (WHERE state IN ('finished', 'stopped', 'failed')) AS finished_at,
               arg_max(state, "at") AS state,
               arg_max(config, "at") FILTER (WHERE config IS NOT NULL) AS config,
               count(*) FILTER (WHERE state = 'resumed') AS resumes
        FROM run_events GROUP BY run_id
        """
    )


def _create_recordings_view(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    con.execute(
        f"CREATE OR REPLACE VIEW recordings AS SELECT {_json_replace('recordings')} "
        f"FROM {table_scan(root, 'recordings')}"
    )


Migration = tuple[str, Callable[[duckdb.DuckDBPyConnection, Path], None]]

# Named, append-only. A migration is never edited once released; add a new one instead.
MIGRATIONS: list[Migration] = [
    ("0001_base_views", _create_base_views),
    ("0002_runs_view", _create_runs_view),
    ("0003_recordings_view", _create_recordings_view),
]


def prepare(root: Path) -> None:
    """Create the segment folders (and their empty schema segments) if missing."""
    for table in TABLES:
        ensure_table(root, table)


def _apply_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    for _name, fn in MIGRATIONS:
        fn(con, root)


def connect(db_path: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the documented views over the store at ``db_path``.

    Reading never creates a store: a path with no store raises :class:`NoStoreError` (writers
    create one with :func:`init_catalog`), and a store of another format
    :class:`~parity.store.format.StoreFormatError` (saying which, and what to run). Every table's
    view has every column of ``parity.store.schema``, from segments that all have them.
    """
    require_store(db_path)
    root = segment_root(db_path)
    con = duckdb.connect(":memory:")
    try:
        if isinstance(root, S3Path):
            objstore.register(con)
        _apply_views(con, root)
        # which store this connection reads, for readers handed only the connection (frames.scan)
        con.execute(f"CREATE VIEW parity_store AS SELECT {sql_string(str(db_path))} AS db")
    except (OSError, duckdb.Error) as e:
        con.close()
        raise StoreError(objstore.scrub(f"store {db_path} cannot be read: {str(e).splitlines()[0]}")) from e
    return con


def init_catalog(db_path: str | os.PathLike) -> list[str]:
    """Create segment folders and apply pending migrations to the ``.duckdb`` catalog.

    Returns the names of the migrations applied now (empty when up to date). A locked
    catalog is not an error for writers: segments do not need it, so we log and go on.
    """
    root = segment_root(db_path)
    prepare(root)
    if isinstance(root, S3Path):
        return []  # a bucket store has no catalog: readers build the views from the listing
    db_path = Path(db_path)
    old_umask = os.umask(0o077)  # the catalog and its .wal are created owner-only
    try:
        return _migrate_catalog(db_path, root)
    finally:
        os.umask(old_umask)


def _migrate_catalog(db_path: Path, root: Path) -> list[str]:
    try:
        con = duckdb.connect(str(db_path))
    except duckdb.Error as e:
        log.warning("catalog %s not updated (%s); recording continues into %s", db_path, e, root)
        return []
    try:
        os.chmod(db_path, 0o600)
        con.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ)"
        )
        done = {r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()}
        applied = []
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            con.execute("BEGIN")
            try:
                fn(con, root)
                con.execute("INSERT INTO _migrations VALUES (?, ?)", [name, datetime.now(UTC)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            applied.append(name)
        # Views hold absolute paths; re-point them if the store was moved.
        _apply_views(con, root)
        return applied
    finally:
        con.close()


def store_of(con: duckdb.DuckDBPyConnection) -> str:
    """The store a :func:`connect` connection reads (its ``--db`` as given)."""
    try:
        return con.sql("SELECT db FROM parity_store").fetchall()[0][0]
    except duckdb.Error as e:
        raise StoreError("this DuckDB connection was not opened by parity.store.store.connect") from e


def live_files(db_path: str | os.PathLike, table: str) -> list[str]:
    """The live segments of ``table`` (paths, or ``s3://`` URLs a connection from :func:`connect`
    reads), from one listing: for ``parquet_metadata([...])`` and the like, without touching the
    store's files or layout above this layer."""
    return [str(p) for p in segment_state(segment_root(db_path), table)[0]]


def query(db_path: str | os.PathLike, sql: str, params: list | None = None) -> list[tuple]:
    """Run one read query against the store and return all rows."""
    con = connect(db_path)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
