"""Bodies as JSON the store takes: strict parsing, text DuckDB's JSON type accepts, the error a body reports."""

from __future__ import annotations

import json

from parity.wire.reassemble import dumps


def json_or_none(data: bytes) -> tuple[object | None, str | None]:
    """Parse JSON strictly (no NaN/Infinity, which DuckDB's JSON type rejects)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        return _DECODER.decode(text), None
    except (ValueError, RecursionError):
        return None, "invalid_json"


def _reject(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject)  # one instance: json.loads(..., kw) builds one per call


def storable_json(text: str, parsed: object) -> tuple[str | None, bool]:
    """JSON text DuckDB's JSON type accepts: ``text`` itself, or (rarely) a re-encoding.

    Python accepts an unpaired surrogate escape such as ``"\\ud800"``; DuckDB rejects it, and one
    such cell would make every query on the column fail for the whole store. Only then is the
    text re-encoded, with U+FFFD for the lone surrogates; returns (text, altered).
    """
    if "\\ud" not in text and "\\uD" not in text:
        return text, False
    try:
        again = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):
        return text, False
    try:
        again.encode("utf-8")
        return text, False  # only valid surrogate pairs
    except UnicodeEncodeError:
        pass
    try:
        return dumps(parsed), True
    except ValueError:
        return None, True  # the caller keeps the raw bytes


def error_type_of(status: int | None, body: object) -> str | None:
    if status is None or status < 400:
        return None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for k in ("type", "code"):
                v = err.get(k)
                if v not in (None, ""):
                    return str(v)
    return f"http_{status}"


def error_message_of(body: object) -> str | None:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message") is not None:
            return str(err.get("message"))[:2000]
        if isinstance(err, str):
            return err[:2000]
    return None
