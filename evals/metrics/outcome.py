"""What counts as a successful request, in one place.

A cell succeeded when its final answer was HTTP 200 and nothing went wrong after the status line:
a stream that broke off (``stream_broken``), carried an error event (``in_stream_error``) or a 2xx
body that is not JSON has status 200 but an ``error_type``, and is a failed request everywhere
(error rate, latency, cost, quality), never a success with shape failures.
"""

from __future__ import annotations

import polars as pl

SUCCEEDED_SQL = "(status = 200 AND error_type IS NULL)"


def succeeded(suffix: str = "") -> pl.Expr:
    """True for a successful cell (``suffix`` names the columns of a joined arm, e.g. ``_b``)."""
    return (pl.col(f"status{suffix}") == 200) & pl.col(f"error_type{suffix}").is_null()
