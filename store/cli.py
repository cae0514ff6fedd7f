"""``parity export`` and ``parity compact``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the store as hive-partitioned Parquet (by day and endpoint)")
    p.add_argument("--db", required=True, help="store path")
    p.add_argument("--format", default="parquet", choices=["parquet"], help="output format")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compact", help="merge small segment files (safe while recording)")
    p.add_argument("--db", required=True, help="store path")
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

    try:
        done = compact_store(args.db, args.min_age, args.grace)
    except OSError as e:
        print(f"parity compact: {e}", file=sys.stderr)
        return 2
    for table, (files, rows) in done.items():
        if files:
            print(f"{table}: merged {files} segments ({rows} rows)")
    return 0
