"""``parity export``, ``parity compact`` and ``parity upgrade``; how every command registers itself
(``add_command``) and its ``--db`` option (``add_db_option``)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_DB = "parity.duckdb"


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    handler,
    help: str,
    description: str,
    examples: str,
    **kw,
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` handled by ``handler`` (a ``cmd_<name>``), its ``--help`` made of
    a one-line ``help``, a ``description`` and ``examples`` shown as written; returns its parser for
    the options."""
    p = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    p.set_defaults(func=handler)
    return p


def add_db_option(
    p: argparse.ArgumentParser, *, creates: bool = False, default: str | None = DEFAULT_DB, where: str = ""
) -> None:
    """``--db PATH``, one rule on every command: default ``parity.duckdb`` in the current folder.

    Commands that only read refuse a path with no store ("no store at PATH", exit 2); only
    ``record`` and ``import`` (``creates=True``) create one. ``s3://bucket/prefix`` is a store in
    object storage (credentials, region and endpoint from the standard AWS variables and files).
    A command whose store has another default (``parity demo``: in its ``--out`` folder) passes
    ``default`` (None: the command decides) and ``where``, the default said in words.
    """
    what = "created if missing" if creates else "must exist"
    where = where or f"{DEFAULT_DB} in the current folder"
    p.add_argument(
        "--db",
        default=default,
        metavar="PATH",
        type=_db_value,
        help=f"the store ({what}; default: {where}), or s3://bucket/prefix "
        "(credentials from AWS_* variables or ~/.aws, never a flag)",
    )


def _db_value(value: str) -> str:
    """Refuse an ``s3://`` URL that names no bucket, or carries credentials, at parse time."""
    if value.startswith("s3:"):
        from parity.store.objstore import S3Path

        if "@" in value.removeprefix("s3://").split("/", 1)[0]:
            raise argparse.ArgumentTypeError(
                "credentials do not go in the s3:// URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE) in the environment"
            )
        try:
            S3Path(value)
        except ValueError:
            raise argparse.ArgumentTypeError("not s3://bucket/prefix") from None
    return value


EXPORT_DESCRIPTION = """\
Write every table of the store as Parquet, one folder per table: exchanges partitioned
by day and endpoint, results and attempts by run, for DuckDB, polars, pandas or a
warehouse. Only reads the store."""

EXPORT_EXAMPLES = """\
examples:
  parity export --db parity.duckdb --out parquet/
  duckdb -c "SELECT endpoint, count(*) FROM read_parquet('parquet/exchanges/**/*.parquet') GROUP BY 1"
"""

COMPACT_DESCRIPTION = """\
Merge the store's small segment files (one per flush) into larger ones, so reads stay
fast. Safe while parity record or parity replay is writing: only segments older than
--min-age are merged, and the files they replace are kept --grace seconds for readers
that opened the store before."""

COMPACT_EXAMPLES = """\
examples:
  parity compact --db parity.duckdb
  parity compact --db parity.duckdb --min-age 60 --grace 0"""


UPGRADE_DESCRIPTION = """\
Bring a store written by an earlier parity to the current store format, so every
command reads it. A store the upgrade cannot bring forward (results without the
compatibility facts a replay computes) is left as it is, and the message says
which runs to replay again."""


EXPORT_HELP = "write the store as Parquet for other engines, partitioned by day"
COMPACT_HELP = "merge small segment files (safe while recording)"
UPGRADE_HELP = "bring a store from an earlier parity to the current format"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "export", cmd_export, EXPORT_HELP, EXPORT_DESCRIPTION, EXPORT_EXAMPLES)
    add_db_option(p)
    p.add_argument("--format", default="parquet", choices=["parquet"], help="output format")
    p.add_argument("--out", required=True, help="output folder")

    p = add_command(sub, "compact", cmd_compact, COMPACT_HELP, COMPACT_DESCRIPTION, COMPACT_EXAMPLES)
    add_db_option(p)
    p.add_argument("--min-age", type=float, default=5.0, help="only merge segments older than this (seconds)")
    p.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        help="keep the files a merge replaced this long (seconds), for readers connected before it; "
        "a later compaction deletes them",
    )

    p = add_command(
        sub,
        "upgrade",
        cmd_upgrade,
        UPGRADE_HELP,
        UPGRADE_DESCRIPTION,
        "examples:\n  parity upgrade --db parity.duckdb",
    )
    add_db_option(p)


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


def cmd_upgrade(args) -> int:
    from parity.store.store import StoreError
    from parity.store.upgrade import upgrade

    try:
        print(upgrade(args.db))
    except (StoreError, OSError) as e:
        print(f"parity upgrade: {e}", file=sys.stderr)
        return 2
    return 0
