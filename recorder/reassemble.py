"""Turn SSE events into the non-streamed response shape, and read usage from any body.

One function per endpoint family. All of them tolerate what real providers send:
missing ``[DONE]``, no usage, extra fields, error events in the middle of a stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from recorder.sse import SSEEvent

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


def _merge_tool_call(calls: dict[int, dict], tc: dict) -> None:
    idx = tc.get("index", len(calls))
    cur = calls.setdefault(idx, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if tc.get("id"):
        cur["id"] = tc["id"]
    if tc.get("type"):
        cur["type"] = tc["type"]
    fn = tc.get("function") or {}
    if fn.get("name"):
        cur["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        cur["function"]["arguments"] += fn["arguments"]


def _chat_delta_chars(delta: dict) -> int:
    n = 0
    for key in ("content", "refusal", "reasoning_content", "reasoning"):
        v = delta.get(key)
        if isinstance(v, str):
            n += len(v)
    for tc in delta.get("tool_calls") or []:
        fn = tc.get("function") or {}
        n += len(fn.get("arguments") or "") + len(fn.get("name") or "")
        if tc.get("id"):
            n = max(n, 1)
    return n


def reassemble_chat(events: list[SSEEvent], legacy: bool = False) -> StreamResult:
    """Chat (or legacy completions) chunks -> one ``chat.completion`` (``text_completion``) body."""
    res = StreamResult(body=None)
    head: dict = {}
    choices: dict[int, dict] = {}
    usage = None
    for ev in events:
        res.event_times.append(ev.t)
        if ev.is_done:
            res.complete = res.done_marker = True
            continue
        obj = ev.json()
        if obj is None:
            res.bad_events += 1
            continue
        if "error" in obj and not obj.get("choices"):
            res.error = obj.get("error") if isinstance(obj.get("error"), dict) else obj
            continue
        for k in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if obj.get(k) is not None and k not in head:
                head[k] = obj[k]
        if obj.get("usage"):
            usage = obj["usage"]
        chars = 0
        for ch in obj.get("choices") or []:
            idx = ch.get("index", 0)
            c = choices.setdefault(
                idx,
                {
                    "index": idx,
                    "text": [],
                    "refusal": [],
                    "reasoning": [],
                    "tools": {},
                    "role": None,
                    "finish_reason": None,
                    "logprobs": None,
                },
            )
            if legacy:
                t = ch.get("text") or ""
                c["text"].append(t)
                chars += len(t)
            else:
                d = ch.get("delta") or {}
                if d.get("role"):
                    c["role"] = d["role"]
                if isinstance(d.get("content"), str):
                    c["text"].append(d["content"])
                if isinstance(d.get("refusal"), str):
                    c["refusal"].append(d["refusal"])
                for key in ("reasoning_content", "reasoning"):
                    if isinstance(d.get(key), str):
                        c["reasoning"].append(d[key])
                for tc in d.get("tool_calls") or []:
                    _merge_tool_call(c["tools"], tc)
                chars += _chat_delta_chars(d)
            if ch.get("finish_reason"):
                c["finish_reason"] = ch["finish_reason"]
        if chars:
            res.content_times.append(ev.t)
            res.content_chars.append(chars)
    out_choices = []
    for idx in sorted(choices):
        c = choices[idx]
        if legacy:
            out_choices.append(
                {
                    "index": idx,
                    "text": "".join(c["text"]),
                    "finish_reason": c["finish_reason"],
                    "logprobs": None,
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
            {"index": idx, "message": msg, "finish_reason": c["finish_reason"], "logprobs": None}
        )
    body = {**head, "object": "text_completion" if legacy else "chat.completion", "choices": out_choices}
    body["usage"] = usage
    res.body = body
    return res


def reassemble_responses(events: list[SSEEvent]) -> StreamResult:
    """Responses-API typed events -> the final ``response`` object."""
    res = StreamResult(body=None)
    final = None
    latest = None
    text: list[str] = []
    for ev in events:
        res.event_times.append(ev.t)
        if ev.is_done:
            res.done_marker = True
            continue
        obj = ev.json()
        if obj is None:
            res.bad_events += 1
            continue
        typ = obj.get("type") or ev.event or ""
        if isinstance(obj.get("response"), dict):
            latest = obj["response"]
        if typ in TERMINAL_RESPONSE_EVENTS:
            final = obj.get("response")
            res.complete = True
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


def reassemble(endpoint: str, events: list[SSEEvent]) -> StreamResult:
    """Dispatch on the endpoint family."""
    if endpoint == "responses":
        return reassemble_responses(events)
    return reassemble_chat(events, legacy=endpoint == "completions")


@dataclass
class Usage:
    """Token counts read from a response body; None where the body has none."""

    prompt: int | None = None
    completion: int | None = None
    cached: int | None = None
    reasoning: int | None = None


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


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
    """First choice's finish_reason, or the Responses status."""
    if not isinstance(body, dict):
        return None
    ch = body.get("choices")
    if isinstance(ch, list) and ch and isinstance(ch[0], dict):
        return ch[0].get("finish_reason")
    if body.get("object") == "response":
        return body.get("status")
    return None


def output_text(body: dict | None) -> str:
    """The generated text of any response shape (first choice), '' when none."""
    if not isinstance(body, dict):
        return ""
    ch = body.get("choices")
    if isinstance(ch, list) and ch and isinstance(ch[0], dict):
        c = ch[0]
        if isinstance(c.get("text"), str):
            return c["text"]
        m = c.get("message") or {}
        return m.get("content") or "" if isinstance(m, dict) else ""
    if body.get("object") == "response":
        parts = []
        for item in body.get("output") or []:
            for part in item.get("content") or [] if isinstance(item, dict) else []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    parts.append(part.get("text") or "")
        return "".join(parts)
    if isinstance(body.get("text"), str):
        return body["text"]
    return ""


def dumps(obj) -> str:
    """Compact JSON text for storage."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
