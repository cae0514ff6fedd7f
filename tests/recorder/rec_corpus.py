"""The real recorded exchanges in corpus/openai-real, and what their streams amount to.

``expected_from_sse`` is deliberately independent of parity.wire.sse / parity.wire.reassemble:
a test that compared the recorder with itself would prove nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "openai-real" / "exchanges.jsonl"


def load_corpus() -> list[dict]:
    if not CORPUS.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def sample(records: list[dict], per_kind: int = 6) -> list[dict]:
    """Up to ``per_kind`` records per (endpoint, stream, status class), in file order."""
    seen: dict[tuple, int] = {}
    out = []
    for r in records:
        key = (r["endpoint"], r["stream"], r["response"]["status"] // 100, r["request"]["method"])
        if seen.get(key, 0) < per_kind:
            seen[key] = seen.get(key, 0) + 1
            out.append(r)
    return out


def request_bytes(rec: dict) -> bytes:
    req = rec["request"]
    if req.get("body_json") is not None:
        return json.dumps(req["body_json"]).encode()
    return (req.get("body_text") or "").encode()


def url_path(rec: dict) -> str:
    req = rec["request"]
    q = req.get("query")
    if isinstance(q, dict) and q:
        from urllib.parse import urlencode

        return req["path"] + "?" + urlencode(q)
    return req["path"] + (f"?{q}" if isinstance(q, str) and q else "")


def _data_payloads(sse: str) -> list[str]:
    out = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", sse):
        lines = [ln for ln in re.split(r"\r\n|\n|\r", block) if ln.startswith("data:")]
        if lines:
            out.append("\n".join(ln[5:].removeprefix(" ") for ln in lines))
    return out


def expected_from_sse(endpoint: str, sse: str) -> dict:
    """Text, tool-call arguments and usage a stream carries, computed from its raw text."""
    objs = []
    for d in _data_payloads(sse):
        if d.strip() == "[DONE]":
            continue
        try:
            v = json.loads(d)
        except ValueError:
            continue
        if isinstance(v, dict):
            objs.append(v)
    text: list[str] = []
    tools: dict[int, str] = {}
    usage = None
    if endpoint == "responses":
        for o in objs:
            if o.get("type") == "response.output_text.delta":
                text.append(o.get("delta", ""))
            if o.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                usage = (o.get("response") or {}).get("usage")
        return {"text": "".join(text), "tools": {}, "usage": usage}
    for o in objs:
        if o.get("usage"):
            usage = o["usage"]
        for ch in o.get("choices") or []:
            if ch.get("index", 0) != 0:
                continue
            if endpoint == "completions":
                text.append(ch.get("text") or "")
                continue
            delta = ch.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                args = (tc.get("function") or {}).get("arguments") or ""
                tools[tc.get("index", 0)] = tools.get(tc.get("index", 0), "") + args
    return {"text": "".join(text), "tools": tools, "usage": usage}


def reassembled_view(endpoint: str, body: dict) -> dict:
    """The same three things read from a reassembled (non-streamed shape) body."""
    usage = body.get("usage")
    if endpoint == "responses":
        text = "".join(
            part.get("text", "")
            for item in body.get("output") or []
            if isinstance(item, dict)
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        )
        return {"text": text, "tools": {}, "usage": usage}
    ch = (body.get("choices") or [{}])[0]
    if endpoint == "completions":
        return {"text": ch.get("text") or "", "tools": {}, "usage": usage}
    msg = ch.get("message") or {}
    tools = {
        i: (t.get("function") or {}).get("arguments", "") for i, t in enumerate(msg.get("tool_calls") or [])
    }
    return {"text": msg.get("content") or "", "tools": tools, "usage": usage}
