"""``recordings`` rows: one per recorder or import start, saying how it was configured."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from datetime import UTC, datetime

_USERINFO = re.compile(r"//[^/@\s]*@")


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (an upstream URL may carry one)."""
    return _USERINFO.sub("//", url)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def recording_row(recorder_id: str, tag: str | None, db: str, options: dict, redaction: dict | None) -> dict:
    """A ``recordings`` row; ``options`` must hold no secret (callers pass settings, never headers)."""
    doc = {
        **options,
        "redaction": redaction,
        "versions": {
            "parity": _version("parity"),
            "mitmproxy": _version("mitmproxy"),
            "python": platform.python_version(),
        },
    }
    return {
        "recorder_id": recorder_id,
        "started_at": datetime.now(UTC),
        "tag": tag,
        "db": db,
        "options": json.dumps(doc, sort_keys=True, default=str),
    }
