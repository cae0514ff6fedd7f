"""Factories for evals tests: result rows, exchanges, run configs, written as real store segments."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from parity.store.segments import segment_root, write_segment

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
JSON_COLS = ("response_headers", "response_body", "sent_body", "changes", "request_body", "config")


def chat_body(
    content: str | None = "Hello there.",
    finish: str | None = "stop",
    tool_calls: list | None = None,
    usage: tuple[int, int] | None = (10, 5),
    refusal: str | None = None,
    n: int = 1,
) -> dict:
    """A chat.completion body."""
    msg: dict = {"role": "assistant", "content": content}
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    if refusal is not None:
        msg["refusal"] = refusal
    choice = {"index": 0, "message": msg, "finish_reason": finish}
    body: dict = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice] * n,
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return body


def tool_call(name: str, args: str | dict, i: int = 0) -> dict:
    """One chat tool call (``args`` dicts are JSON-encoded)."""
    a = args if isinstance(args, str) else json.dumps(args)
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": a}}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def chat_request(**extra) -> dict:
    """A chat request body."""
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}]} | extra


def make_result(**o) -> dict:
    """A successful non-streamed chat cell of the ``recorded`` arm unless overridden."""
    row = {
        "run_id": "r1",
        "exchange_id": "e0",
        "provider": "recorded",
        "repeat": 0,
        "endpoint": "chat.completions",
        "model": "m",
        "recorded_model": "m",
        "stream": False,
        "started_at": T0,
        "attempts": 1,
        "rate_limit_wait_ms": 0.0,
        "status": 200,
        "ttft_ms": None,
        "latency_ms": 500.0,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "tokens_estimated": False,
        "sdk_valid": True,
        "stream_complete": None,
        "finish_reason": "stop",
        "response_headers": {"x-request-id": "req_1"},
        "response_body": chat_body(),
        "sent_body": chat_request(),
    }
    row.update(o)
    return {
        k: (json.dumps(v) if k in JSON_COLS and v is not None and not isinstance(v, str) else v)
        for k, v in row.items()
    }


def make_exchange(**o) -> dict:
    """A recorded exchange row."""
    row = {
        "id": "e0",
        "recorded_at": T0,
        "endpoint": "chat.completions",
        "model": "m",
        "stream": False,
        "status": 200,
        "request_body": chat_request(),
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    row.update(o)
    return {
        k: (json.dumps(v) if k in JSON_COLS and v is not None and not isinstance(v, str) else v)
        for k, v in row.items()
    }


def run_config(
    providers: dict | None = None, recorded_pricing: dict | None = None, run_id: str = "r1"
) -> dict:
    """A run config as the replayer stores it."""
    return {
        "run_id": run_id,
        "selection": {},
        "pacing": {},
        "repeat": 1,
        "providers": providers or {},
        "recorded": {"pricing": recorded_pricing or {}},
    }


def with_facts(rows: list[dict]) -> list[dict]:
    """The rows as the replayer writes them today: with the ``chk_*`` facts of ``parity.replayer.facts``.

    ``write_run`` applies it to every row written without them, as the replayer always writes them.
    """
    from parity.replayer.facts import cell_facts
    from parity.replayer.sampling import sample_key

    def parsed(v):
        return json.loads(v) if isinstance(v, str) else v

    return [
        r
        | cell_facts(
            r.get("endpoint", "chat.completions"),
            parsed(r.get("response_body")),
            parsed(r.get("sent_body")),
            r.get("response_raw") if r.get("stream") else None,
            r.get("stream"),
            status=r.get("status"),
            headers=parsed(r.get("response_headers")),
        )
        | {"sample_key": sample_key(r["exchange_id"])}
        for r in rows
    ]


def write_run(
    db: Path,
    results: list[dict],
    config: dict | None = None,
    exchanges: list[dict] | None = None,
    attempts: list[dict] | None = None,
    run_id: str = "r1",
) -> Path:
    """Write one run's tables as segments of the store at ``db``."""
    root = segment_root(db)
    bare = [r for r in results if "chk_error" not in r]
    if bare:
        results = [r for r in results if "chk_error" in r] + with_facts(bare)
    write_segment(root, "results", results, "test")
    if config is not None:
        ev = {"run_id": run_id, "at": T0, "state": "finished", "config": json.dumps(config), "note": None}
        write_segment(root, "run_events", [ev], "test")
    if exchanges:
        write_segment(root, "exchanges", exchanges, "test")
    if attempts:
        write_segment(root, "attempts", attempts, "test")
    return db


def latency_arms(
    n: int,
    seed: int,
    shift_ms: float = 0.0,
    providers: tuple[str, ...] = ("recorded", "cand"),
    stream: bool = True,
) -> list[dict]:
    """Streamed cells with lognormal TTFT/e2e sharing a per-request base; ``cand`` gets ``shift_ms`` more TTFT."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(np.log(300), 0.4, n)  # request difficulty, shared by every arm
    tokens = rng.integers(20, 200, n)
    rows = []
    for p in providers:
        noise = rng.lognormal(0, 0.25, n)
        ttft = base * noise + (shift_ms if p != "recorded" else 0.0)
        itl = rng.lognormal(np.log(20), 0.2, n)
        for i in range(n):
            e2e = ttft[i] + itl[i] * (tokens[i] - 1)
            rows.append(
                make_result(
                    exchange_id=f"e{i}",
                    provider=p,
                    stream=stream,
                    started_at=T0 + timedelta(seconds=2 * i),
                    ttft_ms=float(ttft[i]) if stream else None,
                    latency_ms=float(e2e),
                    completion_tokens=int(tokens[i]),
                    itl_ms=[float(itl[i])] * int(tokens[i] - 1) if stream else None,
                    itl_mean_ms=float(itl[i]) if stream else None,
                    stream_complete=True if stream else None,
                    response_raw='data: {"choices":[]}\n\ndata: [DONE]\n\n' if stream else None,
                )
            )
    return rows
