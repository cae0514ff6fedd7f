"""Turn a capture (or a recorded exchange) into ``results`` and ``attempts`` rows.

Runs in the post-processor process, off the timing path: SSE parsing, reassembly,
usage, token estimates, per-token ITL, cost and SDK validation all happen here.
Definitions (ms from the send of the answering attempt): TTFB = response headers;
TTFT = first SSE event carrying content or a tool call (streams only, null otherwise);
latency = last SSE event for streams, end of body otherwise; ``chunk_offsets_ms`` = every
SSE event's arrival.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from parity.replayer.client import Attempt, Capture, header_dict
from parity.replayer.config import PricingTable
from parity.replayer.costs import cost_estimated, cost_of
from parity.replayer.facts import cell_facts
from parity.replayer.mapping import Prepared, recorded_model
from parity.replayer.sampling import sample_key
from parity.replayer.select import Exchange
from parity.replayer.tokens import answer_text, estimate_tokens, mean, per_token_itl
from parity.replayer.validate import check_body, check_stream
from parity.wire.credentials import RESPONSE_HEADERS_KEPT
from parity.wire.reassemble import (
    StreamResult,
    dumps,
    extract_usage,
    finish_reason,
    output_text,
    reassemble,
)
from parity.wire.sse import SSEEvent, parse_all

STREAM_FAMILIES = (
    "chat.completions",
    "responses",
    "completions",
    "audio.transcriptions",
    "audio.translations",
)
GENERATIVE = ("chat.completions", "responses", "completions")


def _json(data: bytes | str | None) -> object | None:
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def error_of(status: int | None, body: object, raw: str | None) -> tuple[str | None, str | None]:
    """OpenAI-shaped error type and message of a non-2xx answer."""
    if status is None or status < 400:
        return None, None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            typ = next((str(err[k]) for k in ("type", "code") if err.get(k) not in (None, "")), None)
            msg = err.get("message")
            return typ or f"http_{status}", None if msg is None else str(msg)[:2000]
    return f"http_{status}", (raw or "")[:300] or None


def _tokens(endpoint: str, ok: bool, body: object, prompt_fallback: int | None) -> tuple:
    """(prompt, completion, cached, estimated): the usage, estimated where it is missing or says 0
    for a non-empty answer (``parity.replayer.tokens``); the prompt falls back to the recorded count."""
    u = extract_usage(body if isinstance(body, dict) else None)
    prompt, completion, estimated = u.prompt, u.completion, False
    if ok and endpoint in GENERATIVE:
        answer = answer_text(body)
        if completion is None or (completion == 0 and answer):
            completion, estimated = estimate_tokens(answer), True
    if ok and endpoint in (*GENERATIVE, "embeddings") and not prompt and prompt_fallback:
        prompt, estimated = prompt_fallback, True
    return prompt, completion, u.cached, estimated


class _Parsed(SSEEvent):
    """An event whose JSON is already parsed, so reassembly does not parse it again."""

    __slots__ = ("_obj",)

    def __init__(self, ev: SSEEvent, obj: dict | None) -> None:
        super().__init__(ev.t, ev.data, ev.event, ev.id)
        self._obj = obj

    def json(self) -> dict | None:
        return self._obj


def _finished(body: object) -> bool:
    """Does a reassembled chat/completions answer carry a finish reason in some choice?"""
    choices = body.get("choices") if isinstance(body, dict) else None
    return isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


def parse_stream(endpoint: str, chunks: list[tuple[float, bytes]]) -> dict:
    """Parse and reassemble a stream; ``problem`` is its error (type, message) or None.

    A failed stream is a failed request, typed: ``in_stream_error`` (a ``data: {"error": ...}``
    event), ``stream_broken`` (it ended inside an event, a Responses stream without its terminal
    event, or a chat/completions stream with neither ``[DONE]`` nor any finish reason: the answer
    stopped part-way). A chat/completions stream that finished its answer but ends without
    ``[DONE]`` is a success (the SDK just stops iterating) that fails the framing check.
    """
    events, parser = parse_all(chunks)
    family = endpoint if endpoint in STREAM_FAMILIES else "chat.completions"
    parsed = [None if e.is_done else e.json() for e in events]
    problem = None
    try:
        res = reassemble(family, [_Parsed(e, obj) for e, obj in zip(events, parsed, strict=True)])
    except Exception as e:  # a chunk shaped too strangely to merge: keep the timings, report it
        res = StreamResult(body=None, event_times=[ev.t for ev in events])
        problem = ("invalid_stream", f"stream could not be reassembled: {type(e).__name__}: {e}"[:2000])
    if problem is None:
        if res.error is not None:
            problem = ("in_stream_error", json.dumps(res.error)[:2000])
        elif getattr(parser, "ended_inside_event", False) or parser.incomplete:
            problem = ("stream_broken", "stream ended inside an event")
        elif not res.complete and family == "responses":
            problem = ("stream_broken", "stream ended without a terminal response event")
        elif not res.complete and family in ("chat.completions", "completions") and not _finished(res.body):
            problem = ("stream_broken", "stream ended without [DONE] or a finish_reason")
    return {"events": events, "parsed": parsed, "res": res, "problem": problem, "family": family}


def build_result(
    run_id: str, cap: Capture, x: Exchange, prep: Prepared, pricing: PricingTable
) -> tuple[dict, list[dict], dict]:
    """The results row, the attempts rows and a small summary for progress, for one capture."""
    final: Attempt = cap.attempts[-1]
    t0 = final.t0
    # the body as sent: the sender keeps the recorded bytes unparsed when no change applies
    sent = prep.request if prep.request is not None else _json(prep.sent_json)
    hdrs = header_dict(final.raw_headers)
    status = final.status
    ok = status is not None and 200 <= status < 300 and final.error_type is None
    judged = False  # sdk_valid is set only when there was a 2xx body to judge
    body_bytes = b"".join(final.chunks)
    ct = hdrs.get("content-type", "").lower()
    latency = round((final.t_end - t0) / 1e6, 3) if final.t_end else None
    row: dict = {
        "ttfb_ms": round((final.t_hdr - t0) / 1e6, 3) if final.t_hdr else None,
        "latency_ms": latency,
    }
    raw_text = body_bytes.decode("utf-8", "replace") if body_bytes else None
    body: object = None
    error_type, error_message = final.error_type, final.error_message
    sdk_error: str | None = None
    content_times: list[float] = []
    content_chars: list[int] = []
    sse_events: list[tuple[str, object]] | None = None  # (data, parsed) per event, for the facts
    sse_names: list[str | None] | None = None  # each event's `event:` field
    if "text/event-stream" in ct and status is not None and status < 300:
        chunks = [((t - t0) / 1e6, d) for t, d in zip(final.times, final.chunks, strict=True)]
        sp = parse_stream(x.endpoint, chunks)
        sse_events = [(e.data, p) for e, p in zip(sp["events"], sp["parsed"], strict=True)]
        sse_names = [e.event for e in sp["events"]]
        res = sp["res"]
        body = res.body
        content_times, content_chars = res.content_times, res.content_chars
        row.update(
            ttft_ms=round(res.content_times[0], 3) if res.content_times else None,
            latency_ms=round(res.event_times[-1], 3) if res.event_times else latency,
            chunk_offsets_ms=[round(t, 3) for t in res.event_times],
            stream_complete=res.complete,
            response_raw=raw_text,
        )
        if error_type is None and sp["problem"]:
            error_type, error_message = sp["problem"]
        ok = ok and error_type is None
        whole = res.complete or (sp["family"] != "responses" and error_type is None)
        sdk_error = check_stream(x.endpoint, sp["events"], sp["parsed"], body if whole else None)
        judged = True
    else:
        body = _json(body_bytes)
        if body is None and raw_text is not None:
            row["response_raw"] = raw_text
        if status is not None and status >= 400:
            error_type, error_message = error_of(status, body, raw_text)
        elif ok:
            judged = True
            if prep.stream:
                sdk_error = "stream requested but the response is not text/event-stream"
            else:
                sdk_error = check_body(x.endpoint, body, raw_text, sent)
            if body is None and not (x.endpoint.startswith("audio.") and sdk_error is None):
                error_type, error_message = "invalid_json", f"2xx body is not JSON ({len(body_bytes)} bytes)"
                ok = False
    prompt, completion, cached, estimated = _tokens(x.endpoint, ok, body, x.prompt_tokens)
    itl = per_token_itl(content_times, content_chars, completion)
    cost = cost_of(
        pricing, prep.model, x.endpoint, ok, body, prompt, completion, cached, _json(x.response_body)
    )
    waits = sum(a.waited_ms or 0.0 for a in cap.attempts)
    row.update(
        run_id=run_id,
        exchange_id=cap.exchange_id,
        provider=cap.provider,
        repeat=cap.repeat,
        endpoint=x.endpoint,
        model=prep.model,
        recorded_model=recorded_model(x),
        stream=prep.stream,
        started_at=datetime.fromtimestamp(final.wall, UTC),
        attempts=len(cap.attempts),
        rate_limit_wait_ms=round(cap.limiter_wait_ms + waits, 3),
        schedule_lag_ms=cap.schedule_lag_ms,
        resent=cap.resent,
        status=status,
        error_type=error_type,
        error_message=error_message,
        itl_ms=[round(v, 3) for v in itl],
        itl_mean_ms=mean(itl),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        tokens_estimated=estimated,
        cost_usd=cost,
        cost_estimated=cost_estimated(pricing.for_model(prep.model), estimated, cost),
        sdk_valid=(sdk_error is None) if judged else None,
        sdk_error=sdk_error,
        finish_reason=finish_reason(body if isinstance(body, dict) else None),
        response_headers=dumps({k: v for k, v in hdrs.items() if k in RESPONSE_HEADERS_KEPT}),
        response_body=dumps(body) if body is not None else None,
        sent_body=prep.sent_json,
        sent_raw=None if prep.sent_json is not None else prep.sent_raw,
        changes=dumps(prep.changes),
        **cell_facts(
            x.endpoint,
            body,
            sent,
            row.get("response_raw") if prep.stream else None,
            prep.stream,
            sse_events,
            status=status,
            headers=hdrs,
            names=sse_names,
        ),
        sample_key=sample_key(cap.exchange_id),
    )
    attempts = [attempt_row(run_id, cap, i, a) for i, a in enumerate(cap.attempts)]
    summary = {
        "key": (cap.exchange_id, cap.provider, cap.repeat),
        "status": status,
        "error_type": error_type,
        "ttft_ms": row.get("ttft_ms"),
        "latency_ms": row["latency_ms"],
        "cost_usd": cost,
        "n429": sum(1 for a in cap.attempts if a.status == 429),
        "sdk_valid": row["sdk_valid"],
        "completion_tokens": completion,
        "itl_mean_ms": row["itl_mean_ms"],
        "resent": cap.resent,
    }
    return row, attempts, summary


# How much of an error attempt's body is kept as evidence (OpenAI's error bodies are a few hundred bytes).
EVIDENCE_BODY_CHARS = 4000


def attempt_row(run_id: str, cap: Capture, i: int, a: Attempt) -> dict:
    """One ``attempts`` row; an error answer keeps its headers and body's start as evidence."""
    etype, evidence_headers, evidence_body = a.error_type, None, None
    if a.status is not None and a.status >= 400:
        body = b"".join(a.chunks)
        text = body.decode("utf-8", "replace")
        if etype is None:
            etype = error_of(a.status, _json(body), text)[0]
        kept = header_dict(a.raw_headers)
        evidence_headers = dumps({k: v for k, v in kept.items() if k in RESPONSE_HEADERS_KEPT})
        evidence_body = text[:EVIDENCE_BODY_CHARS]
    return {
        "run_id": run_id,
        "exchange_id": cap.exchange_id,
        "provider": cap.provider,
        "repeat": cap.repeat,
        "attempt": i + 1,
        "started_at": datetime.fromtimestamp(a.wall, UTC),
        "status": a.status,
        "error_type": etype,
        "latency_ms": round((a.t_end - a.t0) / 1e6, 3) if a.t_end else None,
        "retry_after_ms": a.retry_after_ms,
        "waited_ms": a.waited_ms,
        "response_headers": evidence_headers,
        "response_body": evidence_body,
    }


def _recorded_events(x: Exchange) -> list[SSEEvent]:
    events, _ = parse_all([(0.0, (x.response_raw or "").encode())])
    offsets = x.chunk_offsets_ms or []
    if len(offsets) == len(events):
        for ev, t in zip(events, offsets, strict=True):
            ev.t = t
    return events


def recorded_result(run_id: str, x: Exchange, pricing: PricingTable) -> dict:
    """The production arm: a results row (provider ``recorded``, repeat 0) from the exchange itself."""
    body = _json(x.response_body)
    two_xx = x.status is not None and 200 <= x.status < 300
    ok = two_xx and not x.error_type
    sdk_error, judged = None, False
    itl: list[float] = []
    sse_events: list[tuple[str, object]] | None = None
    sse_names: list[str | None] | None = None
    if x.stream and x.response_raw:
        events = _recorded_events(x)
        parsed = [None if e.is_done else e.json() for e in events]
        sse_events = [(e.data, p) for e, p in zip(events, parsed, strict=True)]
        sse_names = [e.event for e in events]
        family = x.endpoint if x.endpoint in STREAM_FAMILIES else "chat.completions"
        try:
            res = reassemble(family, events)
        except Exception:  # a recording too strange to merge: judge its chunks only
            res = StreamResult(body=None)
        if two_xx:
            whole = res.complete or family != "responses"
            sdk_error, judged = check_stream(x.endpoint, events, parsed, res.body if whole else None), True
        if x.chunk_offsets_ms and len(x.chunk_offsets_ms) == len(events):
            itl = per_token_itl(res.content_times, res.content_chars, x.completion_tokens)
    elif two_xx and (body is not None or x.response_raw):
        request = _json(x.request_body) if x.request_body else None
        sdk_error, judged = check_body(x.endpoint, body, x.response_raw, request), True
    prompt, completion, cached, estimated = x.prompt_tokens, x.completion_tokens, x.cached_tokens, False
    if ok and completion is None and x.endpoint in GENERATIVE:
        completion, estimated = estimate_tokens(output_text(body if isinstance(body, dict) else None)), True
    model = recorded_model(x)
    cost = cost_of(pricing, model, x.endpoint, ok, body, prompt, completion, cached)
    return {
        "run_id": run_id,
        "exchange_id": x.id,
        "provider": "recorded",
        "repeat": 0,
        "endpoint": x.endpoint,
        "model": model,
        "recorded_model": model,
        "stream": x.stream,
        "started_at": x.recorded_at,
        "attempts": 1,
        "resent": False,
        "status": x.status,
        "error_type": x.error_type,
        "error_message": x.error_message,
        "ttfb_ms": x.ttfb_ms,
        "ttft_ms": x.ttft_ms,
        "latency_ms": x.latency_ms,
        "chunk_offsets_ms": x.chunk_offsets_ms,
        "itl_ms": [round(v, 3) for v in itl],
        "itl_mean_ms": mean(itl),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "tokens_estimated": estimated,
        "cost_usd": cost,
        "cost_estimated": cost_estimated(pricing.for_model(model), estimated, cost),
        "sdk_valid": (sdk_error is None) if judged else None,
        "sdk_error": sdk_error,
        "stream_complete": x.stream_complete,
        "finish_reason": x.finish_reason,
        "response_headers": x.response_headers,
        "response_body": x.response_body,
        "response_raw": x.response_raw,
        "sent_body": x.request_body,
        "sent_raw": x.request_raw,
        "changes": "[]",
        "sample_key": sample_key(x.id),
    } | cell_facts(
        x.endpoint,
        body,
        _json(x.request_body) if x.request_body else None,
        x.response_raw if x.stream else None,
        x.stream,
        sse_events,
        status=x.status,
        headers=_json(x.response_headers) if x.response_headers else None,
        names=sse_names,
    )
