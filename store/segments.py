"""Immutable Parquet segment files: the on-disk form of every parity table.

A store ``parity.duckdb`` keeps its rows under ``parity.duckdb.d/<table>/*.parquet``.
Each flush writes one new file (temp name, then an atomic rename), so any number of
writer processes can append without coordinating and readers never see a partial file.
A store ``s3://bucket/prefix`` keeps the same names under the prefix: each segment is one PUT
under its final name (``parity.store.objstore``); the functions here take either root.
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

from parity.store import objstore
from parity.store.format import MANIFEST, stamp
from parity.store.objstore import S3Path
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


Root = Path | S3Path  # a local segment folder, or a prefix in a bucket


def segment_root(db_path: str | os.PathLike) -> Root:
    """Folder (or bucket prefix, for ``s3://bucket/prefix``) holding the segments of the store at ``db_path``."""
    if objstore.is_s3(db_path):
        return db_path if isinstance(db_path, S3Path) else S3Path(db_path)
    p = Path(db_path)
    return p if p.suffix == ".d" else p.with_name(p.name + ".d")


def as_root(root: str | os.PathLike) -> Root:
    """``root`` as a segment root: an ``s3://`` URL (also after a ``Path()`` folded its ``//``) or a folder."""
    if objstore.is_s3(root):
        return root if isinstance(root, S3Path) else S3Path(root)
    return Path(root)


def store_salt(root: Root) -> bytes:
    """The store's random salt for API-key fingerprints, created once, owner-only."""
    if isinstance(root, S3Path):
        salt = objstore.get(root / ".salt")
        if salt is None:
            # create-only PUT: two recorders starting at once agree on the first one's salt
            if objstore.put(root / ".salt", secrets.token_bytes(16), create_only=True):
                _stamp_s3(root)
            salt = objstore.get(root / ".salt")
        return salt
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


def _write_options(table: pa.Table) -> dict:
    return {
        "compression": "zstd",
        "use_dictionary": [n for n in table.column_names if n not in _NO_DICTIONARY],
    }


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` encoded as one Parquet file in memory (for a single PUT)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_write_options(table))
    return sink.getvalue().to_pybytes()


def write_parquet_atomic(table: pa.Table, dest: Path) -> Path:
    """Write ``table`` to ``dest`` owner-only, via a temp file and rename."""
    tmp = dest.with_name(dest.name + f".{uuid.uuid4().hex[:6]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh, **_write_options(table))
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


_stamped: set[S3Path] = set()


def _stamp_s3(root: S3Path) -> None:
    """Stamp a bucket store's format once per process (a create-only PUT: the first writer's stays)."""
    if root not in _stamped:
        stamp(root)
        _stamped.add(root)


def ensure_table(root: Root, table: str) -> Root:
    """Create the table folder and its empty schema segment (so globs always match).

    A store created here is stamped with the current format (``parity.store.format``). In a
    bucket there are no folders to create, and readers need no schema segment.
    """
    if isinstance(root, S3Path):
        _stamp_s3(root)
        return table_dir(root, table)
    if not (root / MANIFEST).exists() and not any((root / t).is_dir() for t in TABLES):
        _mkdir_private(root)
        stamp(root)  # a new store (an existing one without a stamp stays unstamped: parity upgrade)
    _mkdir_private(root)
    d = table_dir(root, table)
    _mkdir_private(d)
    seed = d / f"_schema-{schema_hash(table)}.parquet"
    if not seed.exists():
        write_parquet_atomic(rows_to_table(table, []), seed)
    return d


def write_segment(root: Root, table: str, data: pa.Table | list[dict], writer_id: str) -> Root:
    """Append one segment holding ``data`` to ``table`` under ``root``.

    In a bucket the segment is one PUT under its final name, which carries this host and process
    (``objstore.writer_tag``) besides ``writer_id`` and a sequence number: no other writer makes it.
    """
    d = ensure_table(root, table)
    tbl = data if isinstance(data, pa.Table) else rows_to_table(table, data)
    if isinstance(root, S3Path):
        tag = objstore.writer_tag()
        dest = d / new_segment_name(writer_id if writer_id.startswith(tag) else f"{tag}-{writer_id}")
        objstore.put(dest, parquet_bytes(tbl))
        return dest
    return write_parquet_atomic(tbl, d / new_segment_name(writer_id))


def remove_stale_temps(root: Root, max_age_s: float = 600.0) -> int:
    """Delete temp files left by a writer killed mid-write (never matched by the views' glob).

    A bucket has none: an upload that did not complete leaves no object.
    """
    if isinstance(root, S3Path):
        return 0
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


def read_metadata(path: Root) -> pq.FileMetaData:
    """The Parquet footer of one segment, local or in a bucket."""
    if isinstance(path, S3Path):
        with objstore.open_read(path) as fh:
            try:
                return pq.read_metadata(fh)
            except OSError as e:
                raise objstore.error("reading the footer of", path, e) from e
    return pq.read_metadata(path)


def supersedes(path: Root) -> tuple[str, ...]:
    """Names of the segments a merged (``cmp-``) segment replaces, from its Parquet footer."""
    # objects in a bucket are never rewritten under the same name: the name is the key
    key = (str(path), 0) if isinstance(path, S3Path) else (path.name, path.stat().st_mtime_ns)
    hit = _supersedes_cache.get(key)
    if hit is None:
        meta = read_metadata(path).metadata or {}
        hit = tuple(json.loads(meta.get(SUPERSEDES_KEY, b"[]")))
        _supersedes_cache[key] = hit
    return hit


def _listing(root: Root, table: str) -> dict[str, float]:
    """The table's segment files now: {name: modification time (epoch seconds)}."""
    d = table_dir(root, table)
    if isinstance(d, S3Path):
        return {n: m for n, (_size, m) in objstore.listing(d).items() if n.endswith(".parquet")}
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        if p.name.endswith(".parquet"):
            try:
                out[p.name] = p.stat().st_mtime
            except FileNotFoundError:
                continue
    return out


def _state(root: Root, table: str, names) -> tuple[list, list, set[str], list]:
    """(live, accepted merges, hidden names, losing merges) of one listing ``names``.

    Merges are taken in name (time) order; one that claims a segment an earlier accepted merge
    already claimed lost a race with another compaction (two hosts compacting a bucket at once):
    it is hidden, so no row counts twice, and a later compaction deletes it.
    """
    d = table_dir(root, table)
    names = sorted(names)
    merged, losers = [], []
    claimed: set[str] = set()
    for n in names:
        if not n.startswith(MERGED_PREFIX):
            continue
        try:
            src = set(supersedes(d / n))
        except (OSError, ValueError):
            continue  # deleted meanwhile, or not ours: it then supersedes nothing
        if src & claimed:
            losers.append(d / n)
            continue
        claimed |= src
        merged.append(d / n)
    hidden = claimed | {p.name for p in losers}
    live = [d / n for n in names if n.startswith(("seg-", MERGED_PREFIX)) and n not in hidden]
    return live, merged, hidden, losers


def segment_state(root: Root, table: str) -> tuple[list, list, set[str]]:
    """One listing of a table: (live data segments, merged segments present, superseded names).

    A merged segment lists the segments it replaces; those stay on disk for a grace period (so a
    reader that started before the merge keeps a consistent view) but are no longer live.
    """
    live, merged, hidden, _losers = _state(root, table, _listing(root, table))
    return live, merged, hidden


def list_segments(root: Root, table: str) -> list:
    """The live data segments of ``table`` (flushed and merged, minus those a merge replaced)."""
    return segment_state(root, table)[0]


def import_spill(spill_root: Path, root: Root) -> int:
    """Move spilled segments into the store; returns how many rows were imported.

    Raises OSError when the store is still not writable (the spill stays for a later try).
    A spilled file that is not readable Parquet is renamed ``*.bad`` and left for a human.
    Into a bucket each is one PUT under its spilled name, so a repeated upload (the spill file
    removed only after it) overwrites the same object and never doubles a row.
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
            if isinstance(root, S3Path):
                objstore.put(d / seg.name, seg.read_bytes())
                seg.unlink()
                imported += rows
                continue
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
    root: Root,
    table: str,
    min_age_s: float = 5.0,
    writer_id: str = "compact",
    grace_s: float = GRACE_S,
    run_id: str | None = None,
) -> tuple[int, int]:
    """Merge live segments older than ``min_age_s`` into one file; returns (files merged, rows).

    The merged ``cmp-`` segment names its sources in its footer, and one atomic rename (one PUT,
    in a bucket) makes it visible: a reader connecting after it hides the sources, one that
    connected before ignores it (``parity.store.store`` builds each view from one listing), so no
    reader counts a row twice or misses one. Sources are deleted by a later compaction once the
    merge is ``grace_s`` old; a reader connection older than that may then miss those rows, so
    long-lived readers reconnect. An exclusive lock per table makes a second compaction on the
    same host return (0, 0); two compactions of one bucket from two hosts may both merge, and
    readers then take the first merge and hide the other (``_state``).
    With ``run_id``, only segments holding that run's rows alone are merged (their footers'
    statistics say so), so compacting after a replay does not rewrite the rest of the store.
    """
    if isinstance(root, S3Path):
        _drop_superseded(root, table, grace_s)
        return _compact_locked(root, table, min_age_s, writer_id, run_id)
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


def _delete(path: Root) -> bool:
    if isinstance(path, S3Path):
        objstore.delete(path)
        return True
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def _drop_superseded(root: Root, table: str, grace_s: float) -> int:
    """Delete losing merges, then the sources of merges older than ``grace_s``; returns files gone."""
    names = _listing(root, table)
    _live, merged, _hidden, losers = _state(root, table, names)
    gone = sum(_delete(p) for p in losers)
    cutoff = time.time() - grace_s
    d = table_dir(root, table)
    for m in merged:
        try:
            if names.get(m.name, cutoff + 1) > cutoff:
                continue
            srcs = supersedes(m)
        except (OSError, ValueError):
            continue
        for name in srcs:
            if name in names:
                gone += _delete(d / name)
    return gone


def _compact_locked(
    root: Root, table: str, min_age_s: float, writer_id: str, run_id: str | None = None
) -> tuple[int, int]:
    cutoff = time.time() - min_age_s
    names = _listing(root, table)
    live = _state(root, table, names)[0]
    segs = [p for p in live if names[p.name] < cutoff and (run_id is None or _only_run(p, run_id))]
    if len(segs) < 2:
        return 0, 0
    dest = table_dir(root, table) / new_segment_name(writer_id, MERGED_PREFIX)
    if table in SORTED_TABLES or isinstance(root, S3Path):
        return len(segs), _merge_duckdb(segs, table, dest)
    merged = pa.concat_tables(
        [pq.read_table(p).select(TABLES[table].names).cast(TABLES[table]) for p in segs]
    )
    meta = {SUPERSEDES_KEY: json.dumps([p.name for p in segs]).encode()}
    merged = merged.replace_schema_metadata({**(merged.schema.metadata or {}), **meta})
    write_parquet_atomic(merged, dest)
    return len(segs), merged.num_rows


def _only_run(path: Root, run_id: str) -> bool:
    """Does the segment hold rows, all of run ``run_id``? (Footer statistics only.)"""
    md = read_metadata(path)
    if md.num_rows == 0 or "run_id" not in md.schema.names:
        return False
    i = md.schema.names.index("run_id")
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is None or not st.has_min_max or st.min != run_id or st.max != run_id or st.null_count:
            return False
    return True


def _merge_duckdb(segs: list, table: str, dest: Root) -> int:
    """Merge ``segs`` into ``dest`` through DuckDB, so a sort spills to disk past ``MERGE_MEMORY``:
    ordered by ``SORTED_TABLES[table]`` in row groups of ``ROW_GROUP_ROWS`` where the table has an
    order. The footer names the sources, and the file appears with one rename (one PUT into a
    bucket, from a local temporary file). Returns the rows written."""
    import tempfile

    import duckdb

    from parity.store.store import sql_string  # parity.store.store imports this module

    remote = isinstance(dest, S3Path)
    work = Path(tempfile.mkdtemp(prefix="parity-merge-")) if remote else dest.parent
    tmp = work / f"{dest.name}.{uuid.uuid4().hex[:6]}.tmp"
    spill = work / f".merge-{uuid.uuid4().hex[:6]}"
    files = ", ".join(sql_string(str(p)) for p in segs)
    cols = ", ".join(f'"{f.name}"' for f in TABLES[table])
    order = ", ".join(f'"{c}"' for c in SORTED_TABLES.get(table, ()))
    meta = sql_string(json.dumps([p.name for p in segs]))
    con = duckdb.connect()
    try:
        if remote:
            objstore.register(con)
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = '{MERGE_MEMORY}'")
        con.execute(f"SET temp_directory = {sql_string(str(spill))}")
        con.execute("SET preserve_insertion_order = false")
        con.execute(
            f"COPY (SELECT {cols} FROM read_parquet([{files}], union_by_name = true){' ORDER BY ' + order if order else ''})"
            f" TO {sql_string(str(tmp))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS},"
            f" KV_METADATA {{{sql_string(SUPERSEDES_KEY.decode())}: {meta}}})"
        )
        rows = pq.read_metadata(tmp).num_rows
        if remote:
            objstore.put(dest, tmp.read_bytes())
        else:
            os.chmod(tmp, 0o600)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
    except duckdb.Error as e:
        tmp.unlink(missing_ok=True)
        raise OSError(objstore.scrub(f"merging {len(segs)} {table} segments failed: {e}")) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
        if remote:
            shutil.rmtree(work, ignore_errors=True)
    return rows
