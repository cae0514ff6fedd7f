"""Which recorded exchanges a replay uses: filters, reproducible sampling, an ids file."""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from parity.replayer.errors import SelectionError
from parity.store.store import StoreError, connect

_COLUMNS = (
    "id, recorded_at, endpoint, method, path, model, stream, status, "
    "CAST(request_body AS VARCHAR) AS request_body, request_raw, request_content_type, "
    "CAST(response_body AS VARCHAR) AS response_body, response_raw, "
    "CAST(response_headers AS VARCHAR) AS response_headers, ttfb_ms, ttft_ms, latency_ms, "
    "chunk_offsets_ms, prompt_tokens, completion_tokens, cached_tokens, finish_reason, "
    "error_type, error_message, stream_complete, tag, request_redactions, recorder_id"
)
# Placeholders left by content redaction ("[REDACTED:email]"; the credential scrub's plain
# "[REDACTED]" replaces a key, which must never be sent anyway).
_PLACEHOLDER = re.compile(r"\[REDACTED:([A-Za-z0-9_.-]{1,64})\]")
REDACTED_CHOICES = ("refuse", "allow", "skip")


@dataclass
class Exchange:
    """One recorded request and its production response (the columns the replayer uses)."""

    id: str
    recorded_at: datetime | None = None
    endpoint: str = "chat.completions"
    method: str = "POST"
    path: str = "/v1/chat/completions"
    model: str | None = None
    stream: bool = False
    status: int | None = 200
    request_body: str | None = None
    request_raw: bytes | None = None
    request_content_type: str | None = None
    response_body: str | None = None
    response_raw: str | None = None
    response_headers: str | None = None
    ttfb_ms: float | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    chunk_offsets_ms: list[float] | None = field(default=None, repr=False)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    stream_complete: bool | None = None
    tag: str | None = None
    request_redactions: int | None = None  # null: recorded without redaction, or before it existed
    recorder_id: str | None = None


@dataclass
class Selection:
    """The filters given on the command line (stored in the run's config)."""

    endpoints: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    status: str = "all"  # production's errors too: the scorecard compares error handling with them
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    ids_file: str | None = None
    redacted: str = "refuse"  # exchanges whose request was redacted: refuse | allow | skip
    redacted_found: int | None = None  # how many of those the selection held (allowed or skipped)

    def public(self) -> dict:
        """The filters as stored in a run's config (unset ones left out)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "")}


def parse_time(value: str, flag: str) -> datetime:
    """An ISO date or datetime (UTC when no zone is given)."""
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(
            f"{flag}: not an ISO date/time: {value!r} (e.g. 2026-11-25 or 2026-11-25T10:00Z)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def read_ids(path: str) -> list[str]:
    """Exchange ids, one a line; blank lines and ``#`` comments ignored."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SelectionError(f"--ids: cannot read {path}: {e.strerror or e}") from None
    ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise SelectionError(f"--ids: {path} holds no ids")
    return ids


def _where(sel: Selection) -> tuple[str, list]:
    clauses: list[str] = []
    params: list = []
    if sel.endpoints:
        clauses.append("endpoint IN (SELECT unnest(?))")
        params.append(list(sel.endpoints))
    if sel.models:
        clauses.append("(" + " OR ".join("model GLOB ?" for _ in sel.models) + ")")
        params.extend(sel.models)
    if sel.tags:
        clauses.append("tag IN (SELECT unnest(?))")
        params.append(list(sel.tags))
    if sel.since:
        clauses.append("recorded_at >= ?")
        params.append(parse_time(sel.since, "--since"))
    if sel.until:
        clauses.append("recorded_at < ?")
        params.append(parse_time(sel.until, "--until"))
    if sel.status == "ok":
        clauses.append("status BETWEEN 200 AND 299")
    elif sel.status != "all":
        raise SelectionError(f"--status must be ok or all, not {sel.status!r}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def load(db: str | os.PathLike, where: str = "", params: list | None = None) -> list[Exchange]:
    """Exchanges matching a WHERE clause, one per id, oldest first."""
    try:
        con = connect(db)
    except StoreError as e:
        raise SelectionError(str(e)) from None
    try:
        have = {r[0] for r in con.execute("DESCRIBE exchanges").fetchall()}
        # A store no recorder with redaction has written to yet has no such column.
        columns = _COLUMNS.replace(
            "request_redactions",
            "request_redactions"
            if "request_redactions" in have
            else "CAST(NULL AS INTEGER) AS request_redactions",
        )
        cur = con.execute(
            f"SELECT {columns} FROM exchanges{where} "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY recorded_at) = 1 ORDER BY recorded_at, id",
            params or [],
        )
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    return [Exchange(**dict(zip(names, r, strict=True))) for r in rows]


def select(db: str | os.PathLike, sel: Selection) -> list[Exchange]:
    """Apply the selection; ``--sample`` is reproducible for a given ``--seed`` and store."""
    where, params = _where(sel)
    if sel.ids_file:
        ids = read_ids(sel.ids_file)
        where += (" AND " if where else " WHERE ") + "id IN (SELECT unnest(?))"
        params.append(ids)
    exchanges = load(db, where, params)
    if sel.sample is not None:
        if sel.sample < 1:
            raise SelectionError("--sample must be >= 1")
        if sel.sample < len(exchanges):
            picked = random.Random(sel.seed).sample(range(len(exchanges)), sel.sample)
            exchanges = [exchanges[i] for i in sorted(picked)]
    if sel.limit is not None:
        if sel.limit < 1:
            raise SelectionError("--limit must be >= 1")
        exchanges = exchanges[: sel.limit]
    return _redaction_check(db, sel, exchanges)


def redacted_rules(x: Exchange) -> set[str] | None:
    """Names of the rules that redacted this request (maybe empty); None when it was not redacted.

    ``request_redactions`` says it when the recorder counted; rows recorded before the count
    existed are judged by the placeholders their request holds.
    """
    if x.request_redactions is not None and x.request_redactions <= 0:
        return None
    names: set[str] = set()
    for text in (x.request_body, x.request_raw):
        if text and (b"[REDACTED:" if isinstance(text, bytes) else "[REDACTED:") in text:
            if isinstance(text, bytes):
                text = text.decode("latin-1")
            names.update(_PLACEHOLDER.findall(text))
    if x.request_redactions is None and not names:
        return None
    return names


def _redaction_check(db, sel: Selection, exchanges: list[Exchange]) -> list[Exchange]:
    """Refuse to replay redacted requests unless --allow-redacted or --skip-redacted says what to do."""
    if sel.redacted not in REDACTED_CHOICES:
        raise SelectionError(f"redacted must be one of {', '.join(REDACTED_CHOICES)}, not {sel.redacted!r}")
    found = {x.id: r for x in exchanges if (r := redacted_rules(x)) is not None}
    if not found:
        return exchanges
    if sel.redacted == "refuse":
        rules: set[str] = set().union(*found.values())
        unnamed = {x.recorder_id for x in exchanges if x.id in found and not found[x.id]}
        if unnamed:  # custom replacements or a hook: the recorder's rules say which
            rules |= _recorder_rules(db, unnamed)
        raise SelectionError(
            f"{len(found)} of the {len(exchanges)} selected exchanges were recorded with redacted content in "
            f"their request (rules: {', '.join(sorted(rules)) or 'unknown'}); replaying them would send the "
            "placeholders, not what the app sent. Add --skip-redacted to leave them out, or --allow-redacted "
            "to send them as they are"
        )
    sel.redacted_found = len(found)
    if sel.redacted == "skip":
        return [x for x in exchanges if x.id not in found]
    return exchanges


def _recorder_rules(db, recorder_ids: set[str | None]) -> set[str]:
    """Rule and hook names from the ``recordings`` rows of these recorders."""
    try:
        con = connect(db)
        try:
            rows = con.execute(
                "SELECT CAST(options AS VARCHAR) FROM recordings WHERE recorder_id IN (SELECT unnest(?))",
                [[r for r in recorder_ids if r]],
            ).fetchall()
        finally:
            con.close()
    except Exception:  # an old store without recordings: the count alone must do
        return set()
    names: set[str] = set()
    for (text,) in rows:
        red = (json.loads(text or "{}") or {}).get("redaction") or {}
        names.update(r.get("name", "?") for r in red.get("rules") or [])
        if red.get("hook"):
            names.add(f"hook {red['hook']}")
    return names


def by_ids(db: str | os.PathLike, ids: list[str]) -> list[Exchange]:
    """The exchanges with these ids (a resumed run's plan), oldest first."""
    return load(db, " WHERE id IN (SELECT unnest(?))", [ids]) if ids else []
