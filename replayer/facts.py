"""Per-cell compatibility facts, computed once when a result is built (``chk_*`` columns).

The scorecard checks every cell: is usage there, is an error body inside a 200, do tool-call
arguments parse, did a stop sequence leak, how many choices came back, is every SSE line well
formed. Answering those at evaluation time means parsing every stored body again (on a million
cells that is most of the evaluation's time), while the post-processor already holds each body
parsed. So it records the answers as small typed columns; ``evals`` reads them and parses bodies
only for its quality sample and for rows written before these columns existed (where it derives
the same facts in SQL). ``chk_error`` is never null in a row that has facts; an error cell's
``chk_error_json`` (and a 429's ``chk_retry_after``) is never null in a row written since the
error facts exist, so evaluation knows which error cells still need their body read.
"""

from __future__ import annotations

import json

COLUMNS = (
    "chk_usage",  # the body carries a usage object
    "chk_error",  # the body carries a top-level error object
    "chk_tool_calls",  # number of tool calls in the answer (0 when none)
    "chk_tool_args_ok",  # every call's arguments are a JSON object in a string; null without calls
    "chk_n_choices",  # len(choices) of chat/completions bodies, else null
    "chk_sse_bad_lines",  # malformed SSE lines in the raw stream; null when not streamed
    "chk_max_tokens",  # the request's max_completion_tokens / max_tokens / max_output_tokens
    "chk_n",  # the request's n
    "chk_include_usage",  # the request asked for stream usage
    "chk_stop_hit",  # a requested stop sequence appears in the output; null when none was asked
    # error cells (status >= 400, or an error object in the body); null for the others:
    "chk_error_json",  # OpenAI's error JSON: error.message a string, error.type and .code strings or null
    "chk_error_type",  # error.type, as text
    "chk_error_code",  # error.code, as text
    # a 429 answer; null for other statuses:
    "chk_retry_after",  # it carried Retry-After or Retry-After-Ms
    "chk_should_retry",  # its x-should-retry header, as sent
    # the wire shape apps and SDKs read, compared with production's answer to the same request:
    "chk_done",  # a streamed answer carried `data: [DONE]`; null when not streamed
    "chk_unnamed_events",  # streamed JSON events without an `event:` line; null when not streamed
    "chk_usage_choices",  # len(choices) of the chunk carrying usage (chat/completions streams); null without
    "chk_chunk_keys_missing",  # choice keys OpenAI always sends that some chunk lacked, e.g. "finish_reason"
    "chk_error_keys",  # an error body's error-object keys with their JSON types, e.g. "code:null,message:string"
)
# Keys every choice of a chat/completions chunk carries on OpenAI (null until they mean something).
CHUNK_CHOICE_KEYS = ("finish_reason", "logprobs")
# The keys of OpenAI's error object (all four always sent; code and param may be null).
ERROR_KEYS = ("code", "message", "param", "type")
_FIELDS = ("data:", "event:", "id:", "retry:", ":")


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _calls(endpoint: str, body: dict) -> list | None:
    if endpoint == "responses":
        out = body.get("output")
        calls = (
            [o for o in out if isinstance(o, dict) and o.get("type") == "function_call"]
            if isinstance(out, list)
            else []
        )
        return calls or None
    ch = body.get("choices")
    if isinstance(ch, list) and ch and isinstance(ch[0], dict):
        msg = ch[0].get("message")
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        return calls if isinstance(calls, list) and calls else None
    return None


def _args_ok(endpoint: str, calls: list) -> bool:
    for c in calls:
        if not isinstance(c, dict):
            return False
        a = c.get("arguments") if endpoint == "responses" else (c.get("function") or {}).get("arguments")
        if not isinstance(a, str):
            return False
        try:
            if not isinstance(json.loads(a), dict):
                return False
        except (ValueError, RecursionError):
            return False
    return True


def output_text(endpoint: str, body: dict) -> str | None:
    """The text the stop check looks at: chat content, completions text, Responses output text.

    Unlike ``parity.wire.reassemble.output_text`` (which gives "" when there is none) this is None
    where the answer has no text (e.g. only tool calls), as evals' SQL derivation has it, so the
    stop check is then not applicable rather than passed.
    """
    if endpoint == "responses":
        parts = []
        for o in body.get("output") or []:
            for c in (o.get("content") or []) if isinstance(o, dict) else []:
                if isinstance(c, dict) and isinstance(c.get("text"), str):
                    parts.append(c["text"])
        return "".join(parts)
    ch = body.get("choices")
    if not (isinstance(ch, list) and ch and isinstance(ch[0], dict)):
        return None
    if endpoint == "completions":
        t = ch[0].get("text")
    else:
        msg = ch[0].get("message")
        t = msg.get("content") if isinstance(msg, dict) else None
    return t if isinstance(t, str) else None


def stop_hit(stop: object, text: str | None) -> bool | None:
    """Does a requested stop sequence appear in ``text``? None when nothing can be judged."""
    seqs = stop if isinstance(stop, list) else [stop]
    seqs = [s for s in seqs if isinstance(s, str) and s]
    if not seqs or text is None:
        return None
    return any(s in text for s in seqs)


def sse_bad_lines(raw: str, parsed: list[tuple[str, object]] | None = None) -> int:
    """Lines that are neither an SSE field nor a comment, plus ``data:`` payloads that are not JSON.

    A raw body cut at the size limit ends mid-line, so its last line is not judged. ``parsed``,
    the caller's (data, parsed object or None) per event, spares parsing every payload again: only
    the payloads that did not parse as an object are tried as JSON.
    """
    text = raw.replace("\r", "")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]
    bad = sum(1 for line in lines if line and not line.startswith(_FIELDS))
    if parsed is not None:
        if not text.endswith("\n"):
            parsed = parsed[:-1]  # the event on the unjudged last line
        payloads = [d for d, obj in parsed if obj is None]
    else:
        payloads = [line[5:] for line in lines if line.startswith("data:")]
    for payload in payloads:
        payload = payload.strip()
        if payload == "[DONE]":
            continue
        try:
            json.loads(payload)
        except (ValueError, RecursionError):
            bad += 1
    return bad


def _text(v: object) -> str | None:
    """A JSON value as DuckDB's ``->>`` gives it: strings bare, other values as compact JSON."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), "other")


def _error_facts(body: object, status: int | None, headers: dict | None) -> dict:
    b = body if isinstance(body, dict) else {}
    err = b.get("error")
    is_err = err is not None or (status is not None and status >= 400)
    keys = (
        ",".join(f"{k}:{_json_type(err[k])}" for k in sorted(err) if k in ERROR_KEYS)
        if is_err and isinstance(err, dict)
        else None
    )
    shape = (
        isinstance(err, dict)
        and isinstance(err.get("message"), str)
        and all(err.get(k) is None or isinstance(err.get(k), str) for k in ("type", "code"))
    )
    h = {k.lower(): v for k, v in (headers or {}).items()}
    return {
        "chk_error_json": shape if is_err else None,
        "chk_error_type": _text(err.get("type")) if isinstance(err, dict) else None,
        "chk_error_code": _text(err.get("code")) if isinstance(err, dict) else None,
        "chk_retry_after": ("retry-after" in h or "retry-after-ms" in h) if status == 429 else None,
        "chk_should_retry": _text(h.get("x-should-retry")) if status == 429 else None,
        "chk_error_keys": keys,
    }


def chunk_keys_missing(chunk: dict) -> set[str]:
    """The keys OpenAI always sends in a chat/completions chunk's choices that this (non-usage)
    chunk's choices lack."""
    choices = chunk.get("choices")
    missing: set[str] = set()
    for c in choices if isinstance(choices, list) else []:
        if isinstance(c, dict) and ("delta" in c or "text" in c):
            missing.update(k for k in CHUNK_CHOICE_KEYS if k not in c)
    return missing


def stream_facts(
    endpoint: str, events: list[tuple[str, object]] | None, names: list[str | None] | None
) -> dict:
    """The framing facts of a streamed answer: ``events`` are its (data, parsed object or None)
    pairs, ``names`` each event's ``event:`` field. All null for an answer that was not streamed."""
    if events is None:
        return {
            "chk_done": None,
            "chk_unnamed_events": None,
            "chk_usage_choices": None,
            "chk_chunk_keys_missing": None,
        }
    names = names if names is not None and len(names) == len(events) else [None] * len(events)
    chat = endpoint in ("chat.completions", "completions")
    usage_choices: int | None = None
    missing: set[str] = set()
    for _, obj in events:
        if not (chat and isinstance(obj, dict)):
            continue
        if obj.get("usage") is not None:  # the usage chunk: its shape is judged on its own
            choices = obj.get("choices")
            usage_choices = max(usage_choices or 0, len(choices) if isinstance(choices, list) else 0)
        else:
            missing |= chunk_keys_missing(obj)
    return {
        "chk_done": any(isinstance(d, str) and d.strip() == "[DONE]" for d, _ in events),
        "chk_unnamed_events": sum(
            1 for (_, obj), n in zip(events, names, strict=True) if obj is not None and not n
        ),
        "chk_usage_choices": usage_choices,
        "chk_chunk_keys_missing": ",".join(sorted(missing)) if chat else None,
    }


def cell_facts(
    endpoint: str,
    body: object,
    request: object,
    raw_sse: str | None,
    stream: bool | None,
    events: list[tuple[str, object]] | None = None,
    *,
    status: int | None,
    headers: dict | None,
    names: list[str | None] | None = None,
) -> dict:
    """The ``chk_*`` columns for one cell (``body`` parsed or reassembled; ``request`` as sent;
    ``events`` the stream's (data, parsed object) pairs when the caller parsed them already;
    ``status`` and ``headers`` the final answer's; ``names`` the events' ``event:`` fields)."""
    b = body if isinstance(body, dict) else {}
    q = request if isinstance(request, dict) else {}
    calls = _calls(endpoint, b)
    ch = b.get("choices")
    opts = q.get("stream_options")
    max_tokens = next(
        (
            v
            for v in (_int(q.get(k)) for k in ("max_completion_tokens", "max_tokens", "max_output_tokens"))
            if v is not None
        ),
        None,
    )
    stop = q.get("stop")
    return (
        {
            "chk_usage": b.get("usage") is not None,
            "chk_error": b.get("error") is not None,
            "chk_tool_calls": len(calls) if calls else 0,
            "chk_tool_args_ok": _args_ok(endpoint, calls) if calls else None,
            "chk_n_choices": len(ch)
            if isinstance(ch, list) and endpoint in ("chat.completions", "completions")
            else None,
            "chk_sse_bad_lines": sse_bad_lines(raw_sse, events) if stream and raw_sse is not None else None,
            "chk_max_tokens": max_tokens,
            "chk_n": _int(q.get("n")),
            "chk_include_usage": isinstance(opts, dict) and opts.get("include_usage") is True,
            "chk_stop_hit": stop_hit(stop, output_text(endpoint, b)) if stop is not None and b else None,
        }
        | _error_facts(body, status, headers)
        | stream_facts(endpoint, events if stream else None, names)
    )
