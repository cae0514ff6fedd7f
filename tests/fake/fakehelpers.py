"""Helpers shared by the fake-provider tests (imported as `fakehelpers`)."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from parity.fake.server import FakeProvider

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "openai-real" / "exchanges.jsonl"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}, "utc": {"type": "boolean"}},
            "required": ["timezone", "utc"],
        },
    },
}
NEWS_TOOL = {
    "type": "function",
    "function": {
        "name": "search_news",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "number", "minimum": 1, "maximum": 5},
            },
            "required": ["query"],
        },
    },
}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "minItems": 1},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "email", "tags", "address"],
    "additionalProperties": False,
}


# One shared client: creating an httpx.Client builds an SSL context (~30-90 ms), which would swamp timings.
HTTP = httpx.Client(timeout=30)


def wav_bytes(seconds: float = 2.0, rate: int = 16000) -> bytes:
    """A small mono 16-bit PCM WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * 2))
    return buf.getvalue()


def client_for(fp: FakeProvider, **kw: Any) -> openai.OpenAI:
    """A real SDK client pointed at the fake (no SDK retries unless asked)."""
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 20)
    return openai.OpenAI(base_url=fp.base_url, api_key="sk-test", http_client=HTTP, **kw)


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body."""
    out = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out


def post_raw(fp: FakeProvider, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST straight to the fake with httpx (no SDK in between)."""
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    hdrs = {"content-type": "application/json", "authorization": "Bearer sk-test", **(headers or {})}
    return HTTP.post(fp.base_url + path, content=content, headers=hdrs)


def load_corpus() -> list[dict[str, Any]]:
    """Recorded real exchanges; skips the test when the corpus is not there."""
    if not CORPUS.is_file():
        pytest.skip(f"corpus not available at {CORPUS}")
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
