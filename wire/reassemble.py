"""Turn SSE events into the non-streamed response shape, and read usage from any body.

One function per endpoint family. All of them tolerate what real providers send:
missing ``[DONE]``, no usage, extra fields, error events in the middle of a stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from parity.wire.sse import SSEEvent

TERMINAL_RESPONSE_EVENTS = ("response.completed", "response.failed", "response.incomplete")
_CONTENT_RESPONSE_EVENTS = (
    "response.output_text.delta",
    "response.function_call_arguments.delta",
    "response.refusal.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.audio.delta",
    "response.audio_transcript.delta",
)


@dataclass
class StreamResult:
    """What one SSE stream amounts to."""

    body: dict | None  # reassembled non-streamed shape
    event_times: list[float] = field(default_factory=list)  # arrival time of every event
    content_times: list[float] = field(default_factory=list)  # events that carried content/tool calls
    content_chars: list[int] = field(default_factory=list)  # characters of content per such event
    complete: bool = False  # [DONE] or a terminal Responses event seen
    done_marker: bool = False  # a literal [DONE] was seen
    error: dict | None = None  # an error event inside the stream
    bad_events: int = 0  # events whose data was not JSON


def _objects(
    events: Iterable[SSEEvent], res: StreamResult, done_completes: bool
) -> Iterator[tuple[SSEEvent, dict]]:
    """Each event's JSON object, with the bookkeeping every stream shares: every event's time, the
    ``[DONE]`` marker (which also completes the stream when ``done_completes``), and events whose
    data is not JSON (counted, skipped)."""
    for ev in events:
        res.event_times.append(ev.t)
        if ev.is_done:
            res.done_marker = True
            res.complete = res.complete or done_completes
            continue
        obj = ev.json()
        if obj is None:
            res.bad_events += 1
            continue
        yield ev, obj


def _merge_tool_call(calls: dict[int, dict], tc: dict) -> None:
    if not isinstance(tc, dict):
        return
    idx = tc.get("index", len(calls))
    if not isinstance(idx, int):
        idx = len(calls)
    cur = calls.setdefault(idx, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if tc.get("id"):
        cur["id"] = tc["id"]
    if tc.get("type"):
        cur["type"] = tc["type"]
    fn = tc.get("function")
    if isinstance(fn, dict):
        if isinstance(fn.get("name"), str):
            cur["function"]["name"] += fn["name"]
        if isinstance(fn.get("arguments"), str):
            cur["function"]["arguments"] += fn["arguments"]


def _chat_delta_chars(delta: dict) -> int:
    n = 0
    for key in ("content", "refusal", "reasoning_content", "reasoning"):
        v = delta.get(key)
        if isinstance(v, str):
            n += len(v)
    tcs = delta.get("tool_calls")
    for tc in tcs if isinstance(tcs, list) else ():
        if not isinstance(tc, dict):
            continue
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
        for v in (fn.get("arguments"), fn.get("name")):
            if isinstance(v, str):
                n += len(v)
        if tc.get("id"):
            n = max(n, 1)
    return n


def _new_choice(idx: int) -> dict:
    return {
        "index": idx,
        "text": [],
        "refusal": [],
        "reasoning": [],
        "tools": {},
        "role": None,
        "finish_reason": None,
        "logprobs": None,
    }


_HEAD_KEYS = ("id", "created", "model", "system_fingerprint", "service_tier")


def reassemble_chat(events: list[SSEEvent], legacy: bool = False) -> StreamResult:
    """Chat (or legacy completions) chunks -> one ``chat.completion`` (``text_completion``) body."""
    res = StreamResult(body=None)
    head: dict = {}
    choices: dict[int, dict] = {}
    usage = None
    for ev, obj in _objects(events, res, done_completes=True):
        try:
            usage = _chat_chunk(obj, ev.t, res, head, choices, legacy, usage)
        except (TypeError, AttributeError, ValueError):  # a chunk shaped like no OpenAI chunk
            res.bad_events += 1
    res.body = _chat_body(head, choices, usage, legacy)
    return res


def _chat_chunk(obj: dict, t: float, res: StreamResult, head: dict, choices: dict, legacy: bool, usage):
    """Fold one chunk into the running state; returns the latest usage.

    Runs for every event of every stream in the writer process: kept lean (one dict lookup per
    field, type checks only where a wrong type would corrupt the result).
    """
    chs = obj.get("choices")
    if "error" in obj and not chs:
        res.error = obj.get("error") if isinstance(obj.get("error"), dict) else obj
        return usage
    if len(head) < 5:
        for k in _HEAD_KEYS:
            if k not in head and obj.get(k) is not None:
                head[k] = obj[k]
    u = obj.get("usage")
    if u:
        usage = u
    if not chs or not isinstance(chs, list):
        return usage
    chars = 0
    for ch in chs:
        if not isinstance(ch, dict):
            continue
        idx = ch.get("index", 0)
        if not isinstance(idx, int):
            idx = 0
        c = choices.get(idx)
        if c is None:
            c = choices[idx] = _new_choice(idx)
        if legacy:
            t_ = ch.get("text")
            if isinstance(t_, str):
                c["text"].append(t_)
                chars += len(t_)
        else:
            d = ch.get("delta")
            if not isinstance(d, dict):
                d = {}
            v = d.get("content")
            if type(v) is str:
                c["text"].append(v)
                chars += len(v)
            if len(d) > 1 or v is None:  # anything beyond plain content: the full treatment
                if isinstance(d.get("role"), str) and d["role"]:
                    c["role"] = d["role"]
                if isinstance(d.get("refusal"), str):
                    c["refusal"].append(d["refusal"])
                for key in ("reasoning_content", "reasoning"):
                    if isinstance(d.get(key), str):
                        c["reasoning"].append(d[key])
                tcs = d.get("tool_calls")
                for tc in tcs if isinstance(tcs, list) else ():
                    _merge_tool_call(c["tools"], tc)
                chars += _chat_delta_chars(d) - (len(v) if type(v) is str else 0)
        lp = ch.get("logprobs")
        if isinstance(lp, dict):
            merged = c["logprobs"] if c["logprobs"] is not None else {}
            for key, vals in lp.items():
                if isinstance(vals, list):
                    merged.setdefault(key, []).extend(vals)
            c["logprobs"] = merged
        fr = ch.get("finish_reason")
        if fr:
            c["finish_reason"] = fr
    if chars:
        res.content_times.append(t)
        res.content_chars.append(chars)
    return usage


def _chat_body(head: dict, choices: dict, usage, legacy: bool) -> dict:
    out_choices = []
    for idx in sorted(choices):
        c = choices[idx]
        if legacy:
            out_choices.append(
                {
                    "index": idx,
                    "text": "".join(c["text"]),
                    "finish_reason": c["finish_reason"],
                    "logprobs": c["logprobs"],
                }
            )
            continue
        msg: dict = {"role": c["role"] or "assistant", "content": "".join(c["text"]) if c["text"] else None}
        if c["refusal"]:
            msg["refusal"] = "".join(c["refusal"])
        if c["reasoning"]:
            msg["reasoning_content"] = "".join(c["reasoning"])
        if c["tools"]:
            msg["tool_calls"] = [c["tools"][i] for i in sorted(c["tools"])]
        out_choices.append(
            {"index": idx, "message": msg, "finish_reason": c["finish_reason"], "logprobs": c["logprobs"]}
        )
    body = {**head, "object": "text_completion" if legacy else "chat.completion", "choices": out_choices}
    body["usage"] = usage
    return body


def reassemble_responses(events: list[SSEEvent]) -> StreamResult:
    """Responses-API typed events -> the final ``response`` object."""
    res = StreamResult(body=None)
    final = None
    latest = None
    text: list[str] = []
    for ev, obj in _objects(events, res, done_completes=False):
        typ = obj.get("type") or ev.event or ""
        if isinstance(obj.get("response"), dict):
            latest = obj["response"]
        if typ in TERMINAL_RESPONSE_EVENTS:
            final = obj["response"] if isinstance(obj.get("response"), dict) else None
            res.complete = True
            if typ == "response.failed":
                err = (final or {}).get("error") if isinstance(final, dict) else None
                res.error = err if isinstance(err, dict) else {"message": "response.failed"}
        elif typ == "error" or (typ == "" and "error" in obj):
            res.error = obj.get("error") if isinstance(obj.get("error"), dict) else obj
        if typ in _CONTENT_RESPONSE_EVENTS:
            delta = obj.get("delta")
            n = len(delta) if isinstance(delta, str) else 1
            res.content_times.append(ev.t)
            res.content_chars.append(max(n, 1))
            if typ == "response.output_text.delta" and isinstance(delta, str):
                text.append(delta)
    if final is None:
        base = dict(latest or {"object": "response"})
        base["status"] = "incomplete"
        base["output"] = [
            {
                "type": "message",
                "role": "assistant",
                "status": "incomplete",
                "content": [{"type": "output_text", "text": "".join(text), "annotations": []}],
            }
        ]
        final = base
    res.body = final
    res.complete = res.complete or False
    return res


def reassemble_transcription(events: list[SSEEvent]) -> StreamResult:
    """Streamed transcription events (``transcript.text.delta`` / ``.done``) -> ``{text, usage}``."""
    res = StreamResult(body=None)
    text: list[str] = []
    final = None
    for ev, obj in _objects(events, res, done_completes=True):
        typ = obj.get("type") or ev.event or ""
        if typ == "transcript.text.delta" and isinstance(obj.get("delta"), str):
            text.append(obj["delta"])
            res.content_times.append(ev.t)
            res.content_chars.append(max(len(obj["delta"]), 1))
        elif typ == "transcript.text.done":
            final = {"text": obj.get("text", "".join(text))}
            if obj.get("usage") is not None:
                final["usage"] = obj["usage"]
            res.complete = True
        elif typ == "error" or "error" in obj:
            res.error = obj.get("error") if isinstance(obj.get("error"), dict) else obj
    res.body = final or {"text": "".join(text)}
    return res


def reassemble(endpoint: str, events: list[SSEEvent]) -> StreamResult:
    """Dispatch on the endpoint family."""
    if endpoint == "responses":
        return reassemble_responses(events)
    if endpoint in ("audio.transcriptions", "audio.translations"):
        return reassemble_transcription(events)
    return reassemble_chat(events, legacy=endpoint == "completions")


@dataclass
class Usage:
    """Token counts read from a response body; None where the body has none."""

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None
    reasoning: int | None = None


def _int(v) -> int | None:
    """A token count as stored (BIGINT): an int that fits, else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 else None


def extract_usage(body: dict | None) -> Usage:
    """Usage from chat, completions, responses, embeddings or transcription bodies."""
    if not isinstance(body, dict):
        return Usage()
    u = body.get("usage")
    if not isinstance(u, dict):
        return Usage()
    prompt = _int(u.get("prompt_tokens"))
    if prompt is None:
        prompt = _int(u.get("input_tokens"))
    completion = _int(u.get("completion_tokens"))
    if completion is None:
        completion = _int(u.get("output_tokens"))
    pd = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    cd = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
    return Usage(
        prompt=prompt,
        completion=completion,
        cached=_int(pd.get("cached_tokens")) if isinstance(pd, dict) else None,
        reasoning=_int(cd.get("reasoning_tokens")) if isinstance(cd, dict) else None,
    )


def finish_reason(body: dict | None) -> str | None:
    """First choice's finish_reason, or the Responses status (None unless it is a string)."""
    if not isinstance(body, dict):
        return None
    ch = body.get("choices")
    v = None
    if isinstance(ch, list) and ch and isinstance(ch[0], dict):
        v = ch[0].get("finish_reason")
    elif body.get("object") == "response":
        v = body.get("status")
    return v if isinstance(v, str) else None


def output_text(body: dict | None) -> str:
    """The generated text of any response shape (first choice), '' when none."""
    if not isinstance(body, dict):
        return ""
    ch = body.get("choices")
    if isinstance(ch, list) and ch and isinstance(ch[0], dict):
        c = ch[0]
        if isinstance(c.get("text"), str):
            return c["text"]
        m = c.get("message")
        content = m.get("content") if isinstance(m, dict) else None
        return content if isinstance(content, str) else ""
    if body.get("object") == "response":
        parts = []
        output = body.get("output")
        for item in output if isinstance(output, list) else ():
            content = item.get("content") if isinstance(item, dict) else None
            for part in content if isinstance(content, list) else ():
                if (
                    isinstance(part, dict)
                    and part.get("type") == "output_text"
                    and isinstance(part.get("text"), str)
                ):
                    parts.append(part["text"])
        return "".join(parts)
    if isinstance(body.get("text"), str):
        return body["text"]
    return ""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj) -> str:
    """Compact JSON text for storage: valid UTF-8 and strict JSON, as DuckDB's JSON type needs.

    NaN and ±Infinity become null; lone surrogates (from ``"\\ud800"``-style escapes, which DuckDB
    rejects even escaped) become U+FFFD. Raises ValueError for nesting too deep to encode.
    """
    try:
        try:
            s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or Infinity somewhere: rare, so the slow path is fine
            s = json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False)
    except RecursionError as e:
        raise ValueError("nested too deeply to encode") from e
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = _LONE_SURROGATE.sub("\ufffd", s)
    return s


def _finite(obj):
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
