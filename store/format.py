"""The store's format version: stamped once when a store is created, checked by every reader.

``<root>/parity-store.json`` (an object under the prefix for ``s3://`` stores) holds
``{"format": N}``. One reader path reads format :data:`STORE_FORMAT` only: every segment has
every column of ``parity.store.schema`` (a fact column is null only where the replay found the
fact undefined, never because the store predates it). A store without the stamp was written by a
pre-release parity: ``parity upgrade`` stamps it when its segments already have every column, and
otherwise says which table lacks what, and to record (or replay) again into a new store.
"""

from __future__ import annotations

import json
import os

from parity.store import objstore
from parity.store.errors import StoreFormatError
from parity.store.version import __version__

STORE_FORMAT = 1
MANIFEST = "parity-store.json"


def manifest_bytes() -> bytes:
    return json.dumps({"format": STORE_FORMAT, "created_by": f"parity {__version__}"}).encode()


def read_format(root) -> int | None:
    """The format stamped in the store at ``root``; None when it has no stamp."""
    if objstore.is_s3(root):
        raw = objstore.get(root / MANIFEST)
    else:
        try:
            raw = (root / MANIFEST).read_bytes()
        except FileNotFoundError:
            raw = None
    if raw is None:
        return None
    try:
        return int(json.loads(raw)["format"])
    except (ValueError, KeyError, TypeError) as e:
        raise StoreFormatError(
            f"store {root}: {MANIFEST} is not readable ({e}); it is not a parity store"
        ) from e


def stamp(root) -> None:
    """Write the current format's stamp (once: an existing stamp is left as it is)."""
    if objstore.is_s3(root):
        objstore.put(root / MANIFEST, manifest_bytes(), create_only=True)
        return
    p = root / MANIFEST
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(manifest_bytes())


def check(db, root) -> None:
    """Raise :class:`StoreFormatError` unless the store at ``root`` is of format :data:`STORE_FORMAT`."""
    found = read_format(root)
    if found == STORE_FORMAT:
        return
    if found is None:
        raise StoreFormatError(
            f"store {db} has no format stamp: a pre-release parity wrote it. "
            f"Run `parity upgrade --db {db}` (it stamps the store, or says what to record again)"
        )
    if found > STORE_FORMAT:
        raise StoreFormatError(
            f"store {db} is format {found}, written by a newer parity; this parity {__version__} "
            f"reads format {STORE_FORMAT}: upgrade parity"
        )
    raise StoreFormatError(
        f"store {db} is format {found}; this parity reads format {STORE_FORMAT}: "
        f"run `parity upgrade --db {db}`"
    )
