"""The sample key of a result cell: where its exchange falls in evaluation's samples.

Evaluation reads bodies and per-token lists for a deterministic sample of exchanges (the same
ones for every arm): those whose key is below a threshold. Stored with every results row, and
with ``parity compact`` writing results ordered by it in small row groups, a sample is a prefix
of each file that DuckDB reaches through row-group statistics, skipping the other bodies.
"""

from __future__ import annotations

import hashlib

SPACE = 1_000_000  # keys are 0 .. SPACE - 1; a threshold t samples a fraction t / SPACE


def sample_key(exchange_id: str) -> int:
    """A uniform key for ``exchange_id``, stable across processes, versions and machines."""
    digest = hashlib.blake2b(exchange_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SPACE
