"""A time window over a run: the exchanges production recorded between two instants.

``--since`` / ``--until`` take an ISO 8601 instant (``2026-12-07T10:00``, UTC unless it names its
zone) or a duration back from now (``90s``, ``30m``, ``1h``, ``7d``), so a continuous shadow run
can be read as "the last hour". The window selects whole exchanges by production's time, so every
arm of an exchange is in or out together and the pairs stay whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from parity.evals.errors import EvalError
from parity.replayer.errors import SelectionError
from parity.replayer.select import parse_time

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.I)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class Window:
    """The exchanges recorded at or after ``since`` and before ``until`` (UTC; None = unbounded)."""

    since: datetime | None = None
    until: datetime | None = None

    def to_dict(self) -> dict:
        return {k: v.isoformat() if v else None for k, v in (("since", self.since), ("until", self.until))}

    def describe(self) -> str:
        """``exchanges recorded from A to B`` in words, for the terminal and the report."""
        fmt = "%Y-%m-%d %H:%M:%S UTC"
        a = self.since.strftime(fmt) if self.since else "the start"
        b = self.until.strftime(fmt) if self.until else "now"
        return f"exchanges recorded from {a} to {b}"


def instant(text: str | datetime, flag: str, now: datetime | None = None) -> datetime:
    """One end of a window: a datetime, an ISO 8601 instant or a duration back from ``now``."""
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    ago = _AGO.match(text)
    if ago:
        return now - timedelta(**{_UNIT[ago.group(2).lower()]: float(ago.group(1))})
    try:
        return parse_time(text, flag)  # the replay selection's ISO reading, UTC when no zone is given
    except SelectionError:
        raise EvalError(
            f"{flag} {text!r} is neither an ISO 8601 time (2026-12-07T10:00) nor a duration back from now (1h, 30m, 7d)"
        ) from None


def window(
    since: str | datetime | None, until: str | datetime | None, now: datetime | None = None
) -> Window | None:
    """The window ``--since`` / ``--until`` name (None when neither is given)."""
    if since is None and until is None:
        return None
    now = now or datetime.now(UTC)
    w = Window(
        instant(since, "--since", now) if since is not None else None,
        instant(until, "--until", now) if until is not None else None,
    )
    if w.since and w.until and w.since >= w.until:
        raise EvalError(f"--since ({w.since.isoformat()}) must be before --until ({w.until.isoformat()})")
    return w
