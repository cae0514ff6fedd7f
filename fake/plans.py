"""What each choice of a fake answer says, before it is rendered to a wire format: text or tool calls.

A :class:`GenRequest` holds the endpoint-neutral parameters of a request; :func:`plan_choices`
turns it into one :class:`ChoicePlan` per choice, deterministically from its seed, cut at stop
sequences and at the token limit as a model would be.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .content import (
    answer_length,
    count_tokens,
    dumps_compact,
    gen_from_schema,
    gen_pieces,
    short_id,
    split_tokens,
    stable_hash,
)


@dataclass
class ToolCallPlan:
    """One function call: ids, name, arguments and their streamed fragments."""

    call_id: str
    item_id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass
class ChoicePlan:
    """What one choice (or Responses output) says, before it is rendered to any wire format."""

    text: str | None = None
    pieces: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallPlan] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | tool_calls
    completion_tokens: int = 0


@dataclass
class GenRequest:
    """Endpoint-neutral generation parameters extracted from a request body."""

    seed: int
    n: int = 1
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "parameters"}
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    after_tool_result: bool = False
    json_schema: dict[str, Any] | None = None  # set for json_object / json_schema output
    exact_tokens: int | None = None
    bad_tool_args: bool = False


def forced_name(tool_choice: Any) -> str | None:
    """Function named by tool_choice, in the chat or the Responses shape (None if not forced)."""
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        return (fn or {}).get("name") if isinstance(fn, dict) else tool_choice.get("name")
    return None


def _pick_tools(req: GenRequest, rng: random.Random) -> list[dict[str, Any]]:
    if not req.tools or req.tool_choice == "none":
        return []
    forced = forced_name(req.tool_choice)
    if forced is not None:
        return [t for t in req.tools if t["name"] == forced][:1]
    if req.tool_choice != "required" and req.after_tool_result:
        return []  # like a model that answers once it has seen the tool results
    if req.parallel_tool_calls and len(req.tools) > 1:
        k = rng.randint(2, min(3, len(req.tools)))
        chosen = set(rng.sample(range(len(req.tools)), k))
        return [t for i, t in enumerate(req.tools) if i in chosen]
    return [rng.choice(req.tools)]


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def plan_choices(req: GenRequest, lo: int, hi: int) -> list[ChoicePlan]:
    """Generate `req.n` choices deterministically from `req.seed`."""
    plans: list[ChoicePlan] = []
    for index in range(req.n):
        rng = random.Random(stable_hash(req.seed, index))
        tools = _pick_tools(req, rng)
        plans.append(_plan_tools(req, rng, tools, index) if tools else _plan_text(req, rng, lo, hi))
    return plans


def _plan_text(req: GenRequest, rng: random.Random, lo: int, hi: int) -> ChoicePlan:
    if req.json_schema is not None:
        pieces = split_tokens(dumps_compact(gen_from_schema(req.json_schema, rng)))
    else:
        pieces = gen_pieces(rng, req.exact_tokens or answer_length(rng, lo, hi))
    finish = "stop"
    text = "".join(pieces)
    if req.stop:
        text, _ = _cut_at_stop(text, req.stop)
        pieces = split_tokens(text)
    if req.max_tokens is not None and len(pieces) > req.max_tokens:
        pieces, finish = pieces[: req.max_tokens], "length"
        text = "".join(pieces)
    return ChoicePlan(text=text, pieces=pieces, finish_reason=finish, completion_tokens=len(pieces))


def _plan_tools(req: GenRequest, rng: random.Random, tools: list[dict[str, Any]], index: int) -> ChoicePlan:
    budget = req.max_tokens if req.max_tokens is not None else 1 << 30
    calls: list[ToolCallPlan] = []
    used = 0
    finish = "tool_calls"
    for i, tool in enumerate(tools):
        args = dumps_compact(gen_from_schema(tool.get("parameters") or {"type": "object"}, rng))
        if req.bad_tool_args:
            args = args[:-1].replace('"', "'")  # unterminated, single-quoted: not JSON
        name_cost = count_tokens(tool["name"])
        if used + name_cost > budget:
            finish = "length"
            break
        used += name_cost
        pieces = split_tokens(args)
        if used + len(pieces) > budget:
            pieces, finish = pieces[: budget - used], "length"
        used += len(pieces)
        seed = stable_hash(req.seed, index, i, "call")
        calls.append(
            ToolCallPlan(
                "call_" + short_id(seed),
                "fc_" + short_id(seed + 1, 48, "0123456789abcdef"),
                tool["name"],
                "".join(pieces),
                pieces,
            )
        )
        if finish == "length":
            break
    return ChoicePlan(text=None, tool_calls=calls, finish_reason=finish, completion_tokens=used)


def chunk_pieces(pieces: list[str], per_chunk: int) -> list[str]:
    """Group token pieces into stream chunks of `per_chunk` tokens."""
    if per_chunk <= 1:
        return pieces
    return ["".join(pieces[i : i + per_chunk]) for i in range(0, len(pieces), per_chunk)]
