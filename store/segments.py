"""Immutable Parquet segment files: the on-disk form of every parity table.

A store ``parity.duckdb`` keeps its rows under ``parity.duckdb.d/<table>/*.parquet``.
Each flush writes one new file (temp name, then an atomic rename), so any number of
writer processes can append without coordinating and readers never see a partial file.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from parity.store.schema import TABLES

SEGMENT_GLOB = "*.parquet"
MERGED_PREFIX = "cmp-"  # segments written by compaction; their footer names what they replace
SUPERSEDES_KEY = b"parity.supersedes"
GRACE_S = 3600.0  # sources of a merge stay on disk this long for readers that connected before it
# Compaction writes results ordered by run and sample key (parity.replayer.sampling), then exchange, arm
# and repeat, in row groups of ROW_GROUP_ROWS rows: an evaluation's sample (the cells below a key,
# the same exchanges in every arm) is then one prefix of the run's rows, and DuckDB skips the other
# row groups by their statistics instead of decompressing every body. One exchange's answers sit
# side by side, so the bodies also compress better (1M cells: 115 MB, by arm first 150 MB).
# The sorted merge runs in DuckDB, whose sort spills to disk past MERGE_MEMORY: merging a
# million results (160 MB of segments) held 4.1 GB in Arrow; this way the process peaks at 0.7 GB.
SORTED_TABLES = {"results": ("run_id", "sample_key", "exchange_id", "provider", "repeat")}
ROW_GROUP_ROWS = 65536
MERGE_MEMORY = "512MB"
_supersedes_cache: dict[tuple[str, int], tuple[str, ...]] = {}
_seq = itertools.count(1)  # next() is atomic: several writers may share a process


def segment_root(db_path: str | os.PathLike) -> Path:
    """Folder holding the segments of the store at ``db_path``."""
    p = Path(db_path)
    return p if p.suffix == ".d" else p.with_name(p.name + ".d")


def store_salt(root: Path) -> bytes:
    """The store's random salt for API-key fingerprints, created once, owner-only."""
    p = root / ".salt"
    try:
        return p.read_bytes()
    except FileNotFoundError:
        _mkdir_private(root)
        salt = secrets.token_bytes(16)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return p.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(salt)
        return salt


def table_dir(root: Path, table: str) -> Path:
    return root / table


def schema_hash(table: str) -> str:
    return hashlib.sha256(TABLES[table].to_string().encode()).hexdigest()[:12]


def _mkdir_private(path: Path) -> None:
    """Create ``path`` owner-only (0700); its parents keep the default mode (they are the user's)."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def rows_to_table(table: str, rows: Iterable[dict]) -> pa.Table:
    """Build an Arrow table for ``table`` from dict rows (missing keys become null)."""
    return pa.Table.from_pylist(list(rows), schema=TABLES[table])


# Columns that are (nearly) unique per row: a dictionary page would only cost time (a quarter of
# the write time for exchanges) before Parquet gives up on it.
_NO_DICTIONARY = frozenset(
    {
        "id",
        "exchange_id",
        "request_id",
        "key",
        "request_body",
        "request_raw",
        "request_headers",
        "response_body",
        "response_raw",
        "response_raw_bytes",
        "response_headers",
        "chunk_offsets_ms",
        "itl_ms",
        "error_message",
        "sent_body",
        "sent_raw",
        "changes",
        "raw",
    }
)


def write_parquet_atomic(table: pa.Table, dest: Path) -> Path:
    """Write ``table`` to ``dest`` owner-only, via a temp file and rename."""
    tmp = dest.with_name(dest.name + f".{uuid.uuid4().hex[:6]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    dictionary = [n for n in table.column_names if n not in _NO_DICTIONARY]
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", use_dictionary=dictionary)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def new_segment_name(writer_id: str, prefix: str = "seg") -> str:
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{prefix}-{now}-{writer_id}-{next(_seq):06d}.parquet"


def ensure_table(root: Path, table: str) -> Path:
    """Create the table folder and its empty schema segment (so globs always match)."""
    _mkdir_private(root)
    d = table_dir(root, table)
    _mkdir_private(d)
    seed = d / f"_schema-{schema_hash(table)}.parquet"
    if not seed.exists():
        write_parquet_atomic(rows_to_table(table, []), seed)
    return d


def write_segment(root: Path, table: str, data: pa.Table | list[dict], writer_id: str) -> Path:
    """Append one segment holding ``data`` to ``table`` under ``root``."""
    d = ensure_table(root, table)
    tbl = data if isinstance(data, pa.Table) else rows_to_table(table, data)
    return write_parquet_atomic(tbl, d / new_segment_name(writer_id))


def remove_stale_temps(root: Path, max_age_s: float = 600.0) -> int:
    """Delete temp files left by a writer killed mid-write (never matched by the views' glob)."""
    cutoff = time.time() - max_age_s
    n = 0
    for table in TABLES:
        d = table_dir(root, table)
        if not d.is_dir():
            continue
        for p in d.glob("*.tmp"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
            except OSError:
                pass
    return n


def supersedes(path: Path) -> tuple[str, ...]:
    """Names of the segments a merged (``cmp-``) segment replaces, from its Parquet footer."""
    key = (path.name, path.stat().st_mtime_ns)
    hit = _supersedes_cache.get(key)
    if hit is None:
        meta = pq.read_metadata(path).metadata or {}
        hit = tuple(json.loads(meta.get(SUPERSEDES_KEY, b"[]")))
        _supersedes_cache[key] = hit
    return hit


def segment_state(root: Path, table: str) -> tuple[list[Path], list[Path], set[str]]:
    """One listing of a table: (live data segments, merged segments present, superseded names).

    A merged segment lists the segments it replaces; those stay on disk for a grace period (so a
    reader that started before the merge keeps a consistent view) but are no longer live.
    """
    d = table_dir(root, table)
    if not d.is_dir():
        return [], [], set()
    names = sorted(p.name for p in d.iterdir() if p.name.endswith(".parquet"))
    merged = [d / n for n in names if n.startswith(MERGED_PREFIX)]
    hidden: set[str] = set()
    for p in merged:
        try:
            hidden.update(supersedes(p))
        except (OSError, ValueError):
            continue  # deleted meanwhile, or not ours: it then supersedes nothing
    live = [d / n for n in names if n.startswith(("seg-", MERGED_PREFIX)) and n not in hidden]
    return live, merged, hidden


def list_segments(root: Path, table: str) -> list[Path]:
    """The live data segments of ``table`` (flushed and merged, minus those a merge replaced)."""
    return segment_state(root, table)[0]


def import_spill(spill_root: Path, root: Path) -> int:
    """Move spilled segments into the store; returns how many rows were imported.

    Raises OSError when the store is still not writable (the spill stays for a later try).
    A spilled file that is not readable Parquet is renamed ``*.bad`` and left for a human.
    """
    imported = 0
    if not spill_root.is_dir():
        return 0
    for table in TABLES:
        sdir = spill_root / table
        if not sdir.is_dir():
            continue
        for seg in sorted(sdir.glob("seg-*.parquet")):
            try:
                rows = pq.ParquetFile(seg).metadata.num_rows
            except Exception:
                seg.rename(seg.with_name(seg.name + ".bad"))
                continue
            d = ensure_table(root, table)
            dest = d / seg.name
            tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:6]}.import.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as out, open(seg, "rb") as src:
                    shutil.copyfileobj(src, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)  # same name: a repeated import overwrites, never duplicates
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            seg.unlink()
            imported += rows
    return imported


def compact(
    root: Path,
    table: str,
    min_age_s: float = 5.0,
    writer_id: str = "compact",
    grace_s: float = GRACE_S,
    run_id: str | None = None,
) -> tuple[int, int]:
    """Merge live segments older than ``min_age_s`` into one file; returns (files merged, rows).

    The merged ``cmp-`` segment names its sources in its footer, and one atomic rename makes it
    visible: a reader connecting after it hides the sources, one that connected before ignores it
    (``parity.store.store`` builds each view from one listing), so no reader counts a row twice or
    misses one. Sources are deleted by a later compaction once the merge is ``grace_s`` old; a
    reader connection older than that may then miss those rows, so long-lived readers reconnect.
    An exclusive lock per table makes a second compaction on the same host return (0, 0).
    With ``run_id``, only segments holding that run's rows alone are merged (their footers'
    statistics say so), so compacting after a replay does not rewrite the rest of the store.
    """
    d = table_dir(root, table)
    if not d.is_dir():
        return 0, 0
    fd = os.open(d / ".compact.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0, 0  # another compaction of this table is running
        _drop_superseded(root, table, grace_s)
        return _compact_locked(root, table, min_age_s, writer_id, run_id)
    finally:
        os.close(fd)


def _drop_superseded(root: Path, table: str, grace_s: float) -> int:
    """Delete the sources of merges older than ``grace_s``; returns how many files went."""
    _live, merged, _hidden = segment_state(root, table)
    cutoff = time.time() - grace_s
    d = table_dir(root, table)
    gone = 0
    for m in merged:
        try:
            if m.stat().st_mtime > cutoff:
                continue
            names = supersedes(m)
        except (OSError, ValueError):
            continue
        for name in names:
            try:
                (d / name).unlink()
                gone += 1
            except FileNotFoundError:
                pass
    return gone


def _compact_locked(
    root: Path, table: str, min_age_s: float, writer_id: str, run_id: str | None = None
) -> tuple[int, int]:
    cutoff = time.time() - min_age_s
    segs = []
    for p in list_segments(root, table):
        try:
            if p.stat().st_mtime < cutoff and (run_id is None or _only_run(p, run_id)):
                segs.append(p)
        except FileNotFoundError:
            continue
    if len(segs) < 2:
        return 0, 0
    dest = table_dir(root, table) / new_segment_name(writer_id, MERGED_PREFIX)
    if table in SORTED_TABLES:
        return len(segs), _merge_sorted(segs, table, dest)
    merged = pa.concat_tables(
        [pq.read_table(p).cast(TABLES[table]) if _same_cols(p, table) else _conform(p, table) for p in segs]
    )
    meta = {SUPERSEDES_KEY: json.dumps([p.name for p in segs]).encode()}
    merged = merged.replace_schema_metadata({**(merged.schema.metadata or {}), **meta})
    write_parquet_atomic(merged, dest)
    return len(segs), merged.num_rows


def _only_run(path: Path, run_id: str) -> bool:
    """Does the segment hold rows, all of run ``run_id``? (Footer statistics only.)"""
    md = pq.read_metadata(path)
    if md.num_rows == 0 or "run_id" not in md.schema.names:
        return False
    i = md.schema.names.index("run_id")
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is None or not st.has_min_max or st.min != run_id or st.max != run_id or st.null_count:
            return False
    return True


def _merge_sorted(segs: list[Path], table: str, dest: Path) -> int:
    """Merge ``segs`` into ``dest`` ordered by ``SORTED_TABLES[table]`` in row groups of
    ``ROW_GROUP_ROWS``, through DuckDB so the sort spills to disk past ``MERGE_MEMORY``; the
    footer names the sources, and the file appears with one rename. Returns the rows written."""
    import duckdb

    from parity.store.store import empty_relation, sql_string  # parity.store.store imports this module

    tmp = dest.with_name(dest.name + f".{uuid.uuid4().hex[:6]}.tmp")
    spill = dest.parent / f".merge-{uuid.uuid4().hex[:6]}"
    files = ", ".join(sql_string(str(p)) for p in segs)
    cols = ", ".join(f'"{f.name}"' for f in TABLES[table])
    order = ", ".join(f'"{c}"' for c in SORTED_TABLES[table])
    meta = sql_string(json.dumps([p.name for p in segs]))
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = '{MERGE_MEMORY}'")
        con.execute(f"SET temp_directory = {sql_string(str(spill))}")
        con.execute("SET preserve_insertion_order = false")
        con.execute(
            f"COPY (SELECT {cols} FROM (SELECT * FROM read_parquet([{files}], union_by_name = true)"
            f" UNION ALL BY NAME {empty_relation(table)}) ORDER BY {order})"
            f" TO {sql_string(str(tmp))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS},"
            f" KV_METADATA {{{sql_string(SUPERSEDES_KEY.decode())}: {meta}}})"
        )
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        rows = pq.read_metadata(tmp).num_rows
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return rows


def _same_cols(path: Path, table: str) -> bool:
    return pq.read_schema(path).names == TABLES[table].names


def _conform(path: Path, table: str) -> pa.Table:
    """Read an older segment and add the columns it lacks as nulls."""
    t = pq.read_table(path)
    schema = TABLES[table]
    cols = [
        t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)
