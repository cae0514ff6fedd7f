"""The object-storage backend of the store: ``--db s3://bucket/prefix`` (AWS S3, MinIO, Ceph, R2, GCS).

A store in a bucket keeps the local layout under its prefix (``<prefix>/<table>/seg-*.parquet``,
``<prefix>/parity-store.json``, ``<prefix>/.salt``); there is no ``.duckdb`` catalog. Writers PUT
each segment once under its final, writer-unique name (an S3 PUT is atomic: a reader sees the whole
object or none of it); readers list each table once per connection and read the segments where they
lie, through an fsspec filesystem (s3fs) registered with DuckDB, so no DuckDB extension is
downloaded at run time.

Credentials, region and endpoint come only from the standard AWS variables and files
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE`` and ``~/.aws/``), read by botocore;
parity never takes them as flags, stores them or prints them (:func:`scrub`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from pathlib import Path

SCHEME = "s3://"
# A Path() of "s3://b/p" is "s3:/b/p": layers above that wrap --db in Path() still mean the bucket.
_URL = re.compile(r"^s3:/+(?P<bucket>[^/]+)(?:/(?P<key>.*?))?/*$")
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


class ObjectStoreError(OSError):
    """A bucket operation failed; the message names the object, never a credential."""


def is_s3(db: str | os.PathLike) -> bool:
    """Whether ``db`` names a store in object storage (``s3://bucket/prefix``)."""
    return isinstance(db, S3Path) or bool(_URL.match(os.fspath(db) if isinstance(db, Path) else str(db)))


def local_state_dir() -> Path:
    """parity's local state folder (spill, replay journals): ``$XDG_STATE_HOME/parity``."""
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "parity"


class S3Path:
    """One object (or prefix) in a bucket, with the few ``Path`` operations the store uses.

    ``os.fspath()`` of it is a local folder under parity's state folder, named for the bucket and
    key: code above the store that keeps local bookkeeping "in the store folder" (the replayer's
    journal and plan) keeps it there, never in the bucket and never in the current folder.
    """

    __slots__ = ("bucket", "key")

    def __init__(self, url: str | os.PathLike) -> None:
        m = _URL.match(os.fspath(url) if isinstance(url, Path) else str(url))
        if not m:
            raise ValueError(f"not an s3:// URL: {url}")
        self.bucket = m["bucket"]
        self.key = (m["key"] or "").strip("/")

    @classmethod
    def _of(cls, bucket: str, key: str) -> S3Path:
        p = cls.__new__(cls)
        p.bucket, p.key = bucket, key
        return p

    def __truediv__(self, name: str) -> S3Path:
        return S3Path._of(self.bucket, f"{self.key}/{name}".strip("/"))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Path:
        return S3Path._of(self.bucket, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    @property
    def fs_path(self) -> str:
        """``bucket/key``, as fsspec names it."""
        return f"{self.bucket}/{self.key}".rstrip("/")

    def resolve(self) -> S3Path:
        return self

    def __str__(self) -> str:
        return f"{SCHEME}{self.fs_path}"

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Path) and (self.bucket, self.key) == (other.bucket, other.key)

    def __hash__(self) -> int:
        return hash((self.bucket, self.key))

    def __fspath__(self) -> str:
        return str(local_state_dir() / "s3" / self.bucket / self.key)


def scrub(text: str) -> str:
    """``text`` with the values of the AWS credential variables replaced by ``[REDACTED]``."""
    for var in SECRET_VARS:
        v = os.environ.get(var)
        if v and len(v) >= 4:
            text = text.replace(v, "[REDACTED]")
    return text


def error(what: str, path: S3Path | str, e: BaseException) -> ObjectStoreError:
    """An :class:`ObjectStoreError` saying what failed on which object, and why (scrubbed)."""
    why = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ObjectStoreError(scrub(f"{what} {path} failed: {type(e).__name__}: {why}"))


@functools.cache
def fs():
    """The process's S3 filesystem (s3fs over botocore: credentials from the environment only).

    Short timeouts and few retries: a writer that cannot upload spills instead of waiting, and a
    reader says so within seconds.
    """
    try:
        import s3fs
    except ImportError as e:  # pragma: no cover - s3fs is a dependency
        raise ObjectStoreError("s3:// stores need the s3fs package (pip install s3fs)") from e
    for name in ("botocore", "aiobotocore"):  # "found credentials in ...": not for the user's terminal
        logging.getLogger(name).setLevel(logging.WARNING)
    client: dict = {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client["region_name"] = region
    s3 = s3fs.S3FileSystem(
        use_listings_cache=False,
        skip_instance_cache=True,
        client_kwargs=client,
        config_kwargs={"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}},
    )
    s3.retries = 2  # s3fs's own retry loop, on top of botocore's
    return s3


def listing(d: S3Path) -> dict[str, tuple[int, float]]:
    """The objects directly under ``d``: {name: (size, last-modified epoch seconds)}, fresh."""
    try:
        entries = fs().ls(d.fs_path, detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    except Exception as e:
        raise error("listing", d, e) from e
    out = {}
    for e in entries:
        if e.get("type") != "file":
            continue
        lm = e.get("LastModified")
        out[e["name"].rsplit("/", 1)[-1]] = (int(e.get("size") or 0), lm.timestamp() if lm else 0.0)
    return out


def has_objects(d: S3Path) -> bool:
    """Whether anything exists under the prefix ``d``."""
    try:
        return bool(fs().ls(d.fs_path, refresh=True))
    except FileNotFoundError:
        return False
    except Exception as e:
        raise error("listing", d, e) from e


def put(path: S3Path, data: bytes, create_only: bool = False) -> bool:
    """PUT ``data`` at ``path`` in one request; with ``create_only``, False when it already exists."""
    try:
        fs().pipe_file(path.fs_path, data, mode="create" if create_only else "overwrite")
    except Exception as e:
        if create_only and ("PreconditionFailed" in repr(e) or isinstance(e, FileExistsError)):
            return False
        if create_only and any(c in repr(e) for c in ("NotImplemented", "InvalidArgument", "InvalidRequest")):
            # an endpoint without conditional writes: look, then write (two writers racing may
            # both write; the stamp is the same, and a salt read back after is the last one)
            return False if get(path) is not None else put(path, data)
        raise error("upload of", path, e) from e
    return True


def get(path: S3Path) -> bytes | None:
    """The bytes of ``path``, None when it does not exist."""
    try:
        return fs().cat_file(path.fs_path)
    except FileNotFoundError:
        return None
    except Exception as e:
        raise error("download of", path, e) from e


def delete(path: S3Path) -> None:
    try:
        fs().rm_file(path.fs_path)
    except FileNotFoundError:
        pass
    except Exception as e:
        raise error("delete of", path, e) from e


def open_read(path: S3Path):
    """A seekable binary file over ``path`` (for Parquet footers)."""
    try:
        return fs().open(path.fs_path, "rb", block_size=256 * 1024, cache_type="readahead")
    except Exception as e:
        raise error("reading", path, e) from e


def register(con) -> None:
    """Let ``con`` (DuckDB) read and write ``s3://`` through our filesystem, never httpfs."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    # segments are never rewritten under their name: a footer read once holds for the connection
    con.execute("SET parquet_metadata_cache = true")
    con.register_filesystem(fs())


def writer_tag() -> str:
    """``<host>.<pid>``: with a writer's sequence number, no other writer of the bucket makes the name."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}.{os.getpid()}"
