"""``parity export`` and ``parity compact``."""

from __future__ import annotations

import argparse
import sys

DEFAULT_DB = "parity.duckdb"


def add_db_option(p: argparse.ArgumentParser, *, creates: bool = False) -> None:
    """``--db PATH``, one rule on every command: default ``parity.duckdb`` in the current folder.

    Commands that only read refuse a path with no store ("no store at PATH", exit 2); only
    ``record`` and ``import`` (``creates=True``) create one.
    """
    what = "created if missing" if creates else "must exist"
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"the store ({what}; default: {DEFAULT_DB} in the current folder)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the store as hive-partitioned Parquet (by day and endpoint)")
    add_db_option(p)
    p.add_argument("--format", default="parquet", choices=["parquet"], help="output format")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compact", help="merge small segment files (safe while recording)")
    add_db_option(p)
    p.add_argument("--min-age", type=float, default=5.0, help="only merge segments older than this (seconds)")
    p.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        help="keep the files a merge replaced this long (seconds), for readers connected before it; "
        "a later compaction deletes them",
    )
    p.set_defaults(func=cmd_compact)


def cmd_export(args) -> int:
    from parity.store.export import export_parquet
    from parity.store.store import StoreError

    try:
        counts = export_parquet(args.db, args.out)
    except (StoreError, OSError) as e:
        print(f"parity export: {e}", file=sys.stderr)
        return 2
    for table, n in counts.items():
        print(f"{table}: {n} rows")
    print(f"wrote {args.out} (read it with: SELECT * FROM read_parquet('{args.out}/exchanges/**/*.parquet'))")
    return 0


def cmd_compact(args) -> int:
    from parity.store.export import compact_store
    from parity.store.store import StoreError

    try:
        done = compact_store(args.db, args.min_age, args.grace)
    except (StoreError, OSError) as e:
        print(f"parity compact: {e}", file=sys.stderr)
        return 2
    for table, (files, rows) in done.items():
        if files:
            print(f"{table}: merged {files} segments ({rows} rows)")
    return 0
