"""OpenAI wire formats for the fake provider: JSON bodies and pre-encoded SSE streams."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from .plans import ChoicePlan, chunk_pieces
from .profiles import Profile

_PAD = "qZ3xV9kLm2TsR8wYc4NbH7dFg"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
dumps = _ENCODER.encode  # compact JSON, as in OpenAI's SSE lines; one shared encoder is cheaper


def jstr(text: str) -> str:
    """JSON string literal; skips the encoder for plain printable text (most stream fragments)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return _ENCODER.encode(text)


def chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    """Chat/legacy usage block with OpenAI's detail sub-objects."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def plan_chunks(plan: ChoicePlan, chunk_tokens: int) -> list[tuple[int, str]]:
    """Stream chunks of one choice as (tool-call index, or -1 for text; fragment); a call head is ''."""
    if plan.tool_calls:
        out: list[tuple[int, str]] = []
        for j, call in enumerate(plan.tool_calls):
            out.append((j, ""))
            out += [(j, frag) for frag in chunk_pieces(call.pieces, chunk_tokens)]
        return out
    return [(-1, t) for t in chunk_pieces(plan.pieces, chunk_tokens)] or [(-1, "")]


def _finish(profile: Profile, reason: str) -> str | None:
    return None if profile.no_finish_reason else reason


def _padding() -> Iterator[str]:
    """OpenAI's `obfuscation` field: random-length padding that hides token sizes on the wire."""
    for k in itertools.count():
        yield _PAD[k % 11 : k % 11 + 3 + (k * 7) % 14]


def _merge(per_choice: list[list[str]]) -> list[str]:
    """Interleave choices: step k carries chunk k of every choice that still has one."""
    return ["".join(s[k] for s in per_choice if k < len(s)) for k in range(max(map(len, per_choice)))]


# --- chat completions -----------------------------------------------------------------------------
def chat_completion(
    head: dict[str, Any], plans: list[ChoicePlan], usage: dict[str, Any], fp: str, profile: Profile
) -> dict[str, Any]:
    """Non-streamed chat.completion body."""
    choices = []
    for i, pl in enumerate(plans):
        msg: dict[str, Any] = {"role": "assistant", "content": pl.text, "refusal": None, "annotations": []}
        if pl.tool_calls:
            msg["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in pl.tool_calls
            ]
        choice = {
            "index": i,
            "message": msg,
            "logprobs": None,
            "finish_reason": _finish(profile, pl.finish_reason),
        }
        if profile.extra_fields:
            choice["native_finish_reason"] = pl.finish_reason
            msg["reasoning_content"] = None
        choices.append(choice)
    obj = {**head, "object": "chat.completion", "choices": choices, "usage": usage}
    return {**obj, "service_tier": "default", "system_fingerprint": fp}


def chat_stream(
    head: dict[str, Any],
    plans: list[ChoicePlan],
    usage: dict[str, Any],
    include_usage: bool,
    fp: str,
    chunk_tokens: int,
    profile: Profile,
    obfuscate: bool = True,
) -> list[bytes]:
    """Pre-encoded chat.completion.chunk SSE steps; per-chunk work is string templating only."""
    p = profile
    pad = _padding() if obfuscate else None
    top = dumps(
        {**head, "object": "chat.completion.chunk", "service_tier": "default", "system_fingerprint": fp}
    )[:-1]
    extra = ',"provider":"fake-provider"' if p.extra_fields else ""
    tail = (',"usage":null' if include_usage else "") + extra
    per_choice: list[list[str]] = []
    for i, plan in enumerate(plans):
        pre = f'data: {top},"choices":[{{"index":{i},"delta":'

        def chunk(delta: str, finish: str | None = None, pre: str = pre) -> str:
            fr = "null" if finish is None or p.no_finish_reason else f'"{finish}"'
            if p.chunk_keys_omitted:  # no logprobs key; finish_reason only where it has a value
                keys = "" if fr == "null" else f',"finish_reason":{fr}'
            else:
                keys = f',"logprobs":null,"finish_reason":{fr}'
            native = f',"native_finish_reason":"{finish}"' if p.extra_fields and finish else ""
            ob = f',"obfuscation":"{next(pad)}"' if pad else ""
            return f"{pre}{delta}{keys}{native}}}]{tail}{ob}}}\n\n"

        steps: list[str] = []
        for j, frag in plan_chunks(plan, chunk_tokens):
            if j < 0:
                steps.append(chunk('{"content":' + jstr(frag) + "}") if frag else "")
            elif frag == "":  # first fragment of a call: id, type, name and empty arguments
                call = plan.tool_calls[j]
                first = {
                    "index": j,
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                delta: dict[str, Any] = {"tool_calls": [first]}
                if j == 0:
                    delta = {"role": "assistant", "content": None, **delta, "refusal": None}
                steps.append(chunk(dumps(delta)))
            else:
                steps.append(
                    chunk(f'{{"tool_calls":[{{"index":{j},"function":{{"arguments":{jstr(frag)}}}}}]}}')
                )
        if not plan.tool_calls:  # the role chunk goes out together with the first token
            steps[0] = chunk('{"role":"assistant","content":"","refusal":null}') + steps[0]
        steps[-1] += chunk("{}", plan.finish_reason)
        per_choice.append(steps)
    merged = _merge(per_choice)
    if include_usage:
        ob = f',"obfuscation":"{next(pad)}"' if pad else ""
        choices = '[{"index":0,"delta":{}}]' if p.usage_chunk_choices else "[]"
        merged[-1] += f'data: {top},"choices":{choices},"usage":{dumps(usage)}{extra}{ob}}}\n\n'
    if not p.no_done:
        merged[-1] += "data: [DONE]\n\n"
    return [m.encode() for m in merged]


# --- legacy completions ---------------------------------------------------------------------------
def completion(
    head: dict[str, Any],
    plans: list[ChoicePlan],
    usage: dict[str, Any],
    prefixes: list[str],
    profile: Profile,
) -> dict[str, Any]:
    """Non-streamed text_completion body (`prefixes` carries echoed prompts)."""
    choices = [
        {
            "text": prefixes[i] + (pl.text or ""),
            "index": i,
            "logprobs": None,
            "finish_reason": _finish(profile, pl.finish_reason),
        }
        for i, pl in enumerate(plans)
    ]
    return {
        "id": head["id"],
        "object": "text_completion",
        "created": head["created"],
        "model": head["model"],
        "choices": choices,
        "usage": usage,
    }


def completion_stream(
    head: dict[str, Any],
    plans: list[ChoicePlan],
    usage: dict[str, Any],
    include_usage: bool,
    prefixes: list[str],
    chunk_tokens: int,
    profile: Profile,
) -> list[bytes]:
    """text_completion SSE steps; like OpenAI, the last text chunk carries finish_reason."""
    p = profile
    top = f'data: {{"id":"{head["id"]}","object":"text_completion","created":{head["created"]},"choices":[{{"text":'
    extra = ',"provider":"fake-provider"' if p.extra_fields else ""
    tail = f',"model":{dumps(head["model"])}' + (',"usage":null' if include_usage else "") + extra + "}\n\n"
    per_choice = []
    for i, plan in enumerate(plans):
        texts = chunk_pieces(plan.pieces, chunk_tokens) or [""]
        texts[0] = prefixes[i] + texts[0]
        last = len(texts) - 1
        per_choice.append(
            [
                f'{top}{jstr(t)},"index":{i},"logprobs":null,"finish_reason":'
                + (f'"{plan.finish_reason}"' if k == last and not p.no_finish_reason else "null")
                + "}]"
                + tail
                for k, t in enumerate(texts)
            ]
        )
    merged = _merge(per_choice)
    if include_usage:
        merged[-1] += (
            f'data: {{"id":"{head["id"]}","object":"text_completion","created":{head["created"]},"choices":[],"model":{dumps(head["model"])},"usage":{dumps(usage)}{extra}}}\n\n'
        )
    if not p.no_done:
        merged[-1] += "data: [DONE]\n\n"
    return [m.encode() for m in merged]


# --- Responses API --------------------------------------------------------------------------------
def responses_usage(prompt: int, completion: int) -> dict[str, Any]:
    """Responses-API usage block."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response_object(
    head: dict[str, Any],
    body: dict[str, Any],
    tools: Any,
    status: str,
    output: list[Any],
    usage: Any,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """A `response` object in the shape OpenAI returns (request settings echoed)."""
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    return {
        "id": head["id"],
        "object": "response",
        "created_at": head["created"],
        "status": status,
        "background": False,
        "billing": {"payer": "developer"},
        "completed_at": completed_at if status == "completed" else None,
        "error": None,
        "frequency_penalty": 0.0,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": head["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "presence_penalty": 0.0,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": None,
        "prompt_cache_retention": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt or {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools if isinstance(tools, list) else [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def response_items(plan: ChoicePlan, msg_id: str, done: bool = True) -> list[dict[str, Any]]:
    """Output items (one message, or one function_call per call) for a plan."""
    status = "completed" if done and plan.finish_reason != "length" else "incomplete"
    if plan.tool_calls:
        return [
            {
                "id": c.item_id,
                "type": "function_call",
                "status": status,
                "arguments": c.arguments,
                "call_id": c.call_id,
                "name": c.name,
            }
            for c in plan.tool_calls
        ]
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": plan.text or ""}
    return [{"id": msg_id, "type": "message", "status": status, "content": [part], "role": "assistant"}]


class _Events:
    """Numbers Responses-API SSE events as they are appended."""

    def __init__(self, event_lines: bool = True) -> None:
        self.seq = 0
        self.event_lines = event_lines

    def ev(self, kind: str, payload: dict[str, Any]) -> str:
        data = dumps({"type": kind, "sequence_number": self.seq, **payload})
        self.seq += 1
        return f"event: {kind}\ndata: {data}\n\n" if self.event_lines else f"data: {data}\n\n"


def responses_stream(
    base: dict[str, Any],
    plan: ChoicePlan,
    final: dict[str, Any],
    msg_id: str,
    chunk_tokens: int,
    obfuscate: bool = True,
    event_lines: bool = True,
) -> tuple[bytes, list[bytes]]:
    """(preamble sent at once: created + in_progress, content steps on the token clock). No [DONE]."""
    e = _Events(event_lines)
    pad = _padding() if obfuscate else None
    pre = e.ev("response.created", {"response": base}) + e.ev("response.in_progress", {"response": base})
    steps: list[str] = []
    items = final["output"]
    if plan.tool_calls:
        for idx, (call, item) in enumerate(zip(plan.tool_calls, items, strict=True)):
            added = {**item, "status": "in_progress", "arguments": ""}
            steps.append(e.ev("response.output_item.added", {"output_index": idx, "item": added}))
            for frag in chunk_pieces(call.pieces, chunk_tokens):
                steps.append(
                    e.ev(
                        "response.function_call_arguments.delta",
                        {"item_id": item["id"], "output_index": idx, "delta": frag},
                    )
                )
            steps[-1] += e.ev(
                "response.function_call_arguments.done",
                {"item_id": item["id"], "output_index": idx, "name": call.name, "arguments": call.arguments},
            )
            steps[-1] += e.ev("response.output_item.done", {"output_index": idx, "item": item})
    else:
        item = items[0]
        part = item["content"][0]
        where = {"item_id": msg_id, "output_index": 0, "content_index": 0}
        first = e.ev(
            "response.output_item.added",
            {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
        )
        first += e.ev("response.content_part.added", {**where, "part": {**part, "text": ""}})
        texts = chunk_pieces(plan.pieces, chunk_tokens)
        for k, frag in enumerate(texts):
            ob = {"obfuscation": next(pad)} if pad else {}
            delta = e.ev("response.output_text.delta", {**where, "delta": frag, "logprobs": [], **ob})
            steps.append(first + delta if k == 0 else delta)
        if not steps:
            steps.append(first)
        steps[-1] += e.ev("response.output_text.done", {**where, "text": part["text"], "logprobs": []})
        steps[-1] += e.ev("response.content_part.done", {**where, "part": part})
        steps[-1] += e.ev("response.output_item.done", {"output_index": 0, "item": item})
    kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
    if not steps:
        steps.append("")
    steps[-1] += e.ev(kind, {"response": final})
    return pre.encode(), [s.encode() for s in steps]
