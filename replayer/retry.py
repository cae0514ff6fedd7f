"""When to retry and how long to wait, as the OpenAI SDK does (openai/_base_client.py).

Retried: 408, 409, 429, any 5xx, connection errors and timeouts before the body
started; ``x-should-retry: true|false`` wins over the status. A stream that already
started is never retried. The server's ``retry-after-ms`` (preferred) or ``retry-after``
(seconds or HTTP date) is honoured when ``0 < delay <= max_retry_after_s``; otherwise
the backoff is ``min(0.5 * 2**n, 8) * (1 - 0.25 * random())`` for retry number ``n``.
"""

from __future__ import annotations

import email.utils
import random
import time

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
RETRY_STATUSES = frozenset({408, 409, 429})


def should_retry(
    status: int | None, headers: dict[str, str], error_type: str | None, body_started: bool
) -> bool:
    """Whether this attempt's outcome is worth another attempt."""
    if body_started and status is not None and status < 300:
        return False  # a stream (or body) that already started is never retried
    flag = headers.get("x-should-retry", "").strip().lower()
    if flag == "true":
        return True
    if flag == "false":
        return False
    if status is None:
        return error_type in ("connection_error", "timeout")
    return status in RETRY_STATUSES or status >= 500


def server_delay_s(headers: dict[str, str], now: float | None = None) -> float | None:
    """The delay the server asked for, in seconds, or None when it gave none we can read."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(ra)
    if parsed is None:
        return None
    return email.utils.mktime_tz(parsed) - (time.time() if now is None else now)


def backoff_s(retry_number: int, rng: random.Random | None = None) -> float:
    """The SDK's capped exponential backoff with jitter (``retry_number`` starts at 0)."""
    r = (rng or random).random()
    return min(INITIAL_RETRY_DELAY * 2.0**retry_number, MAX_RETRY_DELAY) * (1 - 0.25 * r)


def retry_delay_s(retry_number: int, headers: dict[str, str], max_retry_after_s: float) -> float:
    """Seconds to wait before the next attempt."""
    server = server_delay_s(headers)
    if server is not None and 0 < server <= max_retry_after_s:
        return server
    return backoff_s(retry_number)
