"""Immutable Parquet segment files: the on-disk form of every parity table.

A store ``parity.duckdb`` keeps its rows under ``parity.duckdb.d/<table>/*.parquet``.
Each flush writes one new file (temp name, then an atomic rename), so any number of
writer processes can append without coordinating and readers never see a partial file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.schema import TABLES

SEGMENT_GLOB = "*.parquet"
_seq = 0


def segment_root(db_path: str | os.PathLike) -> Path:
    """Folder holding the segments of the store at ``db_path``."""
    p = Path(db_path)
    return p if p.suffix == ".d" else p.with_name(p.name + ".d")


def table_dir(root: Path, table: str) -> Path:
    return root / table


def schema_hash(table: str) -> str:
    return hashlib.sha256(TABLES[table].to_string().encode()).hexdigest()[:12]


def _mkdir_private(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def rows_to_table(table: str, rows: Iterable[dict]) -> pa.Table:
    """Build an Arrow table for ``table`` from dict rows (missing keys become null)."""
    return pa.Table.from_pylist(list(rows), schema=TABLES[table])


def write_parquet_atomic(table: pa.Table, dest: Path) -> Path:
    """Write ``table`` to ``dest`` owner-only, via a temp file and rename."""
    tmp = dest.with_name(dest.name + f".{uuid.uuid4().hex[:6]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def new_segment_name(writer_id: str) -> str:
    global _seq
    _seq += 1
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"seg-{now}-{writer_id}-{_seq:06d}.parquet"


def ensure_table(root: Path, table: str) -> Path:
    """Create the table folder and its empty schema segment (so globs always match)."""
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


def list_segments(root: Path, table: str) -> list[Path]:
    d = table_dir(root, table)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("seg-*.parquet"))


def import_spill(spill_root: Path, root: Path) -> int:
    """Move spilled segments into the store; returns how many rows were imported."""
    imported = 0
    if not spill_root.is_dir():
        return 0
    for table in TABLES:
        for seg in (
            sorted((spill_root / table).glob("seg-*.parquet")) if (spill_root / table).is_dir() else []
        ):
            d = ensure_table(root, table)
            dest = d / seg.name
            tmp = dest.with_name(dest.name + ".import.tmp")
            shutil.copyfile(seg, tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, dest)
            imported += pq.ParquetFile(dest).metadata.num_rows
            seg.unlink()
    return imported


def compact(root: Path, table: str, min_age_s: float = 5.0, writer_id: str = "compact") -> tuple[int, int]:
    """Merge segments older than ``min_age_s`` into one file; returns (files merged, rows)."""
    cutoff = time.time() - min_age_s
    segs = [p for p in list_segments(root, table) if p.stat().st_mtime < cutoff]
    if len(segs) < 2:
        return 0, 0
    merged = pa.concat_tables(
        [pq.read_table(p).cast(TABLES[table]) if _same_cols(p, table) else _conform(p, table) for p in segs]
    )
    dest = table_dir(root, table) / new_segment_name(writer_id)
    write_parquet_atomic(merged, dest)
    for p in segs:
        p.unlink(missing_ok=True)
    return len(segs), merged.num_rows


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
