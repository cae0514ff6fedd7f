"""Evidence for every compatibility finding: production's answer and the provider's, side by side.

For each check that failed (or, informational, found a difference) the scorecard names up to three
example exchanges. This module reads those few cells back from the store and cuts from each answer
the part the check is about: the usage chunk, the first chunks' keys, the SSE event lines, the
stream's end, the error body with its status and retry headers, and the failed attempts before the
final answer (a 429 the SDK retried: its status, headers and body). Text is cut only outside that
part, and every excerpt says what was cut.
"""

from __future__ import annotations

import json

import duckdb
import polars as pl

from parity.evals.load import frame, results_text
from parity.evals.metrics.compat_checks import PRODUCTION_ARM
from parity.replayer.facts import chunk_keys_missing
from parity.replayer.sampling import sample_key

EXCERPT_CHARS = 700  # per excerpt; the part a check is about is kept whole up to this
SSE_CHECKS = {
    "usage_chunk_shape",
    "chunk_finish_reason_key",
    "chunk_logprobs_key",
    "sse_event_names",
    "stream_terminated",
    "stream_wellformed",
}
ERROR_CHECKS = {
    "error_json",
    "error_fields_present",
    "error_status",
    "error_status_match",
    "error_code_match",
    "error_type_match",
    "error_code_known",
    "rejects_like_production",
    "retry_after_429",
    "retryable_429",
}


def _cut(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters cut]"


def _sse_part(raw: str | None, check: str) -> str | None:
    """The lines of a raw stream the check is about."""
    if not raw:
        return None
    lines = [line for line in raw.replace("\r", "").split("\n") if line]
    if check == "stream_terminated":  # how the stream ended
        part, note = lines[-3:], f"[last 3 of {len(lines)} lines]"
    elif check in ("sse_event_names", "stream_wellformed"):  # how the stream is framed
        part, note = lines[:6], f"[first 6 of {len(lines)} lines]"
    elif check == "usage_chunk_shape":  # the chunk that carries the usage
        hits = [line for line in lines if '"usage":{' in line.replace(" ", "")]
        part, note = hits[-1:], f"[the usage chunk, 1 of {len(lines)} lines]"
    else:  # the first chunk whose choice lacks the key
        key = "finish_reason" if check == "chunk_finish_reason_key" else "logprobs"
        part = [line for line in lines if _lacks(line, key)][:1]
        note = f"[the first chunk without {key!r}, of {len(lines)} lines]"
        if not part:  # this answer has the key everywhere: show its first chunk to compare with
            part = [line for line in lines if '"choices"' in line][:1]
            note = f"[every chunk has {key!r}; the first chunk, of {len(lines)} lines]"
    return note + "\n" + "\n".join(_cut(line) for line in part)


def _lacks(line: str, key: str) -> bool:
    """Is ``line`` a non-usage chunk with a choice that lacks ``key`` (as the facts judge it)?"""
    try:
        obj = json.loads(line.removeprefix("data:").strip())
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("usage") is None and key in chunk_keys_missing(obj)


def _body_part(body: str | None, check: str) -> str:
    """The part of a JSON answer the check reads (usage, finish reasons, tool calls), else its start."""
    try:
        obj = json.loads(body) if body else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return _cut(body or "(no body)")
    choices = obj.get("choices") if isinstance(obj.get("choices"), list) else []
    part: object
    if check in ("usage_present", "max_tokens_respected"):
        part = {"usage": obj.get("usage")}
    elif check == "finish_reason_present":
        part = {"choices[].finish_reason": [c.get("finish_reason") for c in choices if isinstance(c, dict)]}
        if "status" in obj:
            part = {"status": obj.get("status"), "incomplete_details": obj.get("incomplete_details")}
    elif check == "tool_args_json":
        part = {
            "tool_calls": [(c.get("message") or {}).get("tool_calls") for c in choices if isinstance(c, dict)]
        }
        if "output" in obj:
            part = {
                "output": [
                    o for o in obj["output"] if isinstance(o, dict) and o.get("type") == "function_call"
                ]
            }
    elif check == "n_choices":
        part = {"len(choices)": len(choices)}
    else:
        return _cut(body)
    return "[the part the check reads]\n" + _cut(json.dumps(part))


def _error_part(status: int | None, headers: str | None, body: str | None) -> str:
    h = {}
    try:
        h = json.loads(headers) if headers else {}
    except ValueError:
        pass
    keep = {k: v for k, v in h.items() if k in ("retry-after", "retry-after-ms", "x-should-retry")}
    head = f"HTTP {status}" + "".join(f"\n{k}: {v}" for k, v in keep.items())
    return head + "\n" + _cut(body or "(no body)")


def _answer(r: dict, check: str) -> str:
    """What one arm answered, cut to what ``check`` looks at."""
    if r is None:
        return "(no answer in this run)"
    if r["error_type"] and r["status"] is None:
        return f"no HTTP answer: {r['error_type']}: {r['error_message'] or ''}"
    if check in SSE_CHECKS and r["response_raw"]:
        return f"HTTP {r['status']}, streamed\n" + (_sse_part(r["response_raw"], check) or "")
    if (r["status"] or 0) >= 400:
        return _error_part(r["status"], r["response_headers"], r["response_body"] or r["response_raw"])
    if check in ERROR_CHECKS:  # a success after the retried errors below
        return f"HTTP {r['status']} (its final answer; the errors before it are listed as retried)"
    return f"HTTP {r['status']}\n" + _body_part(r["response_body"], check)


def _attempts(rows: list[dict]) -> list[str]:
    return [
        f"attempt {a['attempt']}: " + _error_part(a["status"], a["response_headers"], a["response_body"])
        for a in rows
    ]


def attach(con: duckdb.DuckDBPyConnection, run: str, card: pl.DataFrame) -> pl.DataFrame:
    """``card`` with an ``evidence`` column: per failing (or differing) check, one record per example
    exchange with ``production``, ``provider`` and ``retried`` (the provider's failed attempts)."""
    found = card.filter(pl.col("result").is_in(["fail", "info"]) & (pl.col("examples").list.len() > 0))
    ids = sorted({x for xs in found["examples"].to_list() for x in xs})
    empty = pl.Series("evidence", [[] for _ in range(card.height)], dtype=pl.List(pl.Struct(_FIELDS)))
    if not ids:
        return card.with_columns(empty)
    cells = _cells(con, run, ids)
    first = {}
    for r in cells.iter_rows(named=True):
        first.setdefault((r["exchange_id"], r["provider"]), r)
    attempts = _failed_attempts(con, run, ids)
    evidence = []
    for r in card.iter_rows(named=True):
        recs = []
        if r["result"] in ("fail", "info"):
            for x in r["examples"] or []:
                mine = first.get((x, r["provider"]))
                recs.append(
                    {
                        "exchange_id": x,
                        "production": _answer(first.get((x, PRODUCTION_ARM)), r["check"]),
                        "provider": _answer(mine, r["check"]),
                        "retried": _attempts(
                            attempts.get((x, r["provider"], mine["repeat"] if mine else 0), [])
                        ),
                    }
                )
        evidence.append(recs)
    return card.with_columns(pl.Series("evidence", evidence, dtype=pl.List(pl.Struct(_FIELDS))))


_FIELDS = {"exchange_id": pl.Utf8, "production": pl.Utf8, "provider": pl.Utf8, "retried": pl.List(pl.Utf8)}


_CELL_SQL = """SELECT exchange_id, provider, "repeat", status, error_type, error_message,
                      response_headers, response_body, response_raw
               FROM {results} WHERE run_id = $run AND {where} ORDER BY "repeat" """


def _cells(con: duckdb.DuckDBPyConnection, run: str, ids: list[str]) -> pl.DataFrame:
    """The example exchanges' cells. Results are stored in sample-key order, so asking by sample key
    reads the few row groups that hold them; rows written before the key existed are asked by id."""
    keys = sorted({sample_key(x) for x in ids})
    results = results_text(con)
    # integer literals (our own hashes): an IN list of constants is what prunes row groups
    by_key = f"sample_key IN ({', '.join(map(str, keys))}) AND list_contains($ids, exchange_id)"
    cells = frame(con, _CELL_SQL.format(results=results, where=by_key), {"run": run, "ids": ids})
    missing = sorted(set(ids) - set(cells["exchange_id"].to_list()))
    if missing:
        where = "sample_key IS NULL AND list_contains($ids, exchange_id)"
        old = frame(con, _CELL_SQL.format(results=results, where=where), {"run": run, "ids": missing})
        cells = pl.concat([cells, old], how="vertical_relaxed")
    return cells


def _failed_attempts(con: duckdb.DuckDBPyConnection, run: str, ids: list[str]) -> dict[tuple, list[dict]]:
    """The error attempts that preceded each example cell's final answer (the final one is its answer)."""
    cols = frame(con, "SELECT * FROM attempts LIMIT 0").columns
    if "response_body" not in cols:  # stores written before attempts kept their error bodies
        return {}
    df = frame(
        con,
        """SELECT exchange_id, provider, "repeat", attempt, status, response_headers, response_body
           FROM (SELECT *, max(attempt) OVER (PARTITION BY exchange_id, provider, "repeat") AS last
                 FROM attempts WHERE run_id = $run AND list_contains($ids, exchange_id))
           WHERE status >= 400 AND attempt < last ORDER BY attempt""",
        {"run": run, "ids": ids},
    )
    out: dict[tuple, list[dict]] = {}
    for a in df.iter_rows(named=True):
        out.setdefault((a["exchange_id"], a["provider"], a["repeat"]), []).append(a)
    return out
