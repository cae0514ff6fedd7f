"""Which recorded exchanges a replay uses: filters, reproducible sampling, an ids file."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recorder.store import StoreError, connect
from replayer.errors import SelectionError

_COLUMNS = (
    "id, recorded_at, endpoint, method, path, model, stream, status, "
    "CAST(request_body AS VARCHAR) AS request_body, request_raw, request_content_type, "
    "CAST(response_body AS VARCHAR) AS response_body, response_raw, "
    "CAST(response_headers AS VARCHAR) AS response_headers, ttfb_ms, ttft_ms, latency_ms, "
    "chunk_offsets_ms, prompt_tokens, completion_tokens, cached_tokens, finish_reason, "
    "error_type, error_message, stream_complete, tag"
)


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


@dataclass
class Selection:
    """The filters given on the command line (stored in the run's config)."""

    endpoints: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    status: str = "ok"
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    ids_file: str | None = None

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
        cur = con.execute(
            f"SELECT {_COLUMNS} FROM exchanges{where} "
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
    return exchanges


def by_ids(db: str | os.PathLike, ids: list[str]) -> list[Exchange]:
    """The exchanges with these ids (a resumed run's plan), oldest first."""
    return load(db, " WHERE id IN (SELECT unnest(?))", [ids]) if ids else []
