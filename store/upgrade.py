"""``parity upgrade``: bring a store without a format stamp (a pre-release parity's) to the current format.

The one place that knows older layouts. A segment lacking columns that may be null (redaction
counts, newer exchange fields) is rewritten with them as nulls, into a merged ``cmp-`` segment that
supersedes it (the compaction mechanism: readers never count a row twice); then the store is
stamped. A results segment lacking the compatibility facts (``chk_*``, computed by the replay from
what the provider sent) cannot be upgraded here: the message names the runs to replay again.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from parity.store.errors import StoreFormatError
from parity.store.format import STORE_FORMAT, read_format, stamp
from parity.store.objstore import S3Path
from parity.store.schema import TABLES
from parity.store.segments import (
    MERGED_PREFIX,
    SUPERSEDES_KEY,
    ensure_table,
    list_segments,
    new_segment_name,
    read_metadata,
    segment_root,
    write_parquet_atomic,
)
from parity.store.store import NoStoreError, store_exists

FACT_PREFIX = "chk_"


def upgrade(db_path: str | os.PathLike) -> str:
    """Upgrade the store at ``db_path`` to format ``STORE_FORMAT``; returns what was done (one line)."""
    if not store_exists(db_path):
        raise NoStoreError(f"no store at {db_path}")
    root = segment_root(db_path)
    found = read_format(root)
    if found == STORE_FORMAT:
        return f"store {db_path} is format {STORE_FORMAT} already; nothing to do"
    if found is not None and found > STORE_FORMAT:
        raise StoreFormatError(f"store {db_path} is format {found}, newer than this parity: upgrade parity")
    lacking: dict[str, list] = defaultdict(list)
    for table, schema in TABLES.items():
        for seg in list_segments(root, table):
            have = set(read_metadata(seg).schema.to_arrow_schema().names)
            if set(schema.names) - have:
                lacking[table].append(seg)
    _refuse_missing_facts(db_path, lacking.get("results", []))
    rewritten = 0
    for table, segs in lacking.items():
        rewritten += _conform_into_merge(root, table, segs)
    if not isinstance(root, S3Path):
        for table in TABLES:
            ensure_table(root, table)  # the current schema's seed segment
    stamp(root)
    return f"store {db_path} upgraded to format {STORE_FORMAT} ({rewritten} segments given their missing columns)"


def _refuse_missing_facts(db_path, segs: list) -> None:
    runs: set[str] = set()
    missing: set[str] = set()
    for seg in segs:
        names = set(read_metadata(seg).schema.to_arrow_schema().names)
        lost = {c for c in TABLES["results"].names if c.startswith(FACT_PREFIX)} - names
        if lost:
            missing |= lost
            if "run_id" in names:
                runs.update(pq.read_table(seg, columns=["run_id"]).column(0).drop_null().unique().to_pylist())
    if missing:
        raise StoreFormatError(
            f"store {db_path} cannot be upgraded: results of run(s) {', '.join(sorted(runs)) or '?'} lack the "
            f"compatibility facts ({', '.join(sorted(missing)[:4])}{', ...' if len(missing) > 4 else ''}), "
            "which only a replay computes. Replay those runs again into a new store "
            "(record or import the traffic with this parity, then parity replay)"
        )


def _conform_into_merge(root, table: str, segs: list) -> int:
    """Rewrite ``segs`` with the current columns (missing ones null) as one merged segment."""
    schema = TABLES[table]
    parts = []
    for seg in segs:
        t = pq.read_table(seg)
        cols = [
            t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
            for f in schema
        ]
        parts.append(pa.Table.from_arrays(cols, schema=schema))
    merged = pa.concat_tables(parts)
    merged = merged.replace_schema_metadata({SUPERSEDES_KEY: json.dumps([p.name for p in segs]).encode()})
    write_parquet_atomic(merged, root / table / new_segment_name("upgrade", MERGED_PREFIX))
    return len(segs)
