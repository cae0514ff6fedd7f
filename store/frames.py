"""A table as a polars LazyFrame over its live segments: the views' listing, read by polars.

For a wide read of many rows (evals' cells: a million rows of some forty scalar columns) polars' own
Parquet reader decodes straight into its columns, where DuckDB's scan plus the Arrow hand-over costs
about three times the CPU (``bench/evals_scale.py``). The segments are the views' (the same listing
rules: a compaction's merged segment counts once, the segments it replaced never), and every column
has the schema's type. In a bucket the list is read through pyarrow's dataset over the store's s3fs
filesystem, so credentials come from the same place as every other read.
"""

from __future__ import annotations

import os

import polars as pl

from parity.store import objstore
from parity.store.objstore import S3Path
from parity.store.schema import TABLES
from parity.store.segments import segment_root, segment_state


def scan(db_path: str | os.PathLike, table: str) -> pl.LazyFrame:
    """Every row of ``table`` in the store at ``db_path`` as of now, with the schema's columns and types."""
    schema = pl.from_arrow(TABLES[table].empty_table()).schema
    root = segment_root(db_path)
    live = segment_state(root, table)[0]
    if not live:
        return pl.LazyFrame(schema=schema)
    if isinstance(root, S3Path):
        import pyarrow.dataset as ds
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs = PyFileSystem(FSSpecHandler(objstore.fs()))
        lf = pl.scan_pyarrow_dataset(ds.dataset([p.fs_path for p in live], filesystem=fs, format="parquet"))
    else:
        lf = pl.scan_parquet([str(p) for p in live], missing_columns="insert", extra_columns="ignore")
    have = lf.collect_schema()
    return lf.select(pl.col(c).cast(t) if c in have else pl.lit(None, t).alias(c) for c, t in schema.items())
