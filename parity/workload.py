"""A realistic synthetic workload, sent by the real openai SDK (for the demo, tests and soaks)."""

from __future__ import annotations

import asyncio
import io
import math
import random
import struct
import wave
from dataclasses import dataclass, field

import openai

TOPICS = (
    "the quarterly revenue report",
    "a failing Kubernetes deployment",
    "our refund policy",
    "a Python memory leak",
    "the onboarding checklist",
    "a customer complaint about latency",
    "the Q3 marketing plan",
    "a SQL query that is slow",
    "the incident post-mortem",
    "a contract renewal",
    "GDPR data requests",
    "the mobile app crash rate",
)
SENTENCES = (
    "The system processed the batch overnight without errors.",
    "Customers reported slower responses after the update.",
    "Our team reviewed the logs and found a retry storm.",
    "The policy allows refunds within thirty days of purchase.",
    "Costs grew faster than traffic during the last quarter.",
    "The new index cut query time by half.",
    "Several users asked for an export feature.",
    "The deployment rolled back after the health check failed.",
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search the internal documentation.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    },
}
TICKET_SCHEMA = {
    "name": "ticket",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "priority": {"type": "string", "enum": ["low", "medium", "high"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "priority", "tags"],
        "additionalProperties": False,
    },
}


@dataclass
class WorkloadStats:
    """What the workload sent and how it ended, by kind."""

    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)


def _document(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choice(SENTENCES) for _ in range(sentences))


def tiny_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A short mono 16-bit sine WAV, for transcription requests."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(int(seconds * rate))
        )
        w.writeframes(frames)
    return buf.getvalue()


def plan(n: int = 80, seed: int = 7) -> list[tuple[str, dict]]:
    """The list of (kind, kwargs) requests making up a workload of about ``n`` requests."""
    rng = random.Random(seed)
    out: list[tuple[str, dict]] = []
    models = ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o")
    for i in range(n):
        topic = rng.choice(TOPICS)
        model = rng.choice(models)
        r = i % 20
        long_ctx = rng.random() < 0.2
        doc = _document(rng, rng.randint(150, 600) if long_ctx else rng.randint(2, 12))
        msgs = [
            {"role": "system", "content": "You are a concise assistant for an operations team."},
            {"role": "user", "content": f"Summarise {topic} for the weekly update. Context: {doc}"},
        ]
        if r in (0, 1, 2, 3, 4, 5):
            out.append(
                (
                    "chat.stream",
                    dict(
                        model=model,
                        messages=msgs,
                        stream=True,
                        stream_options={"include_usage": True},
                        max_tokens=rng.randint(60, 250),
                    ),
                )
            )
        elif r in (6, 7, 8):
            out.append(
                ("chat", dict(model=model, messages=msgs, max_tokens=rng.randint(60, 250), temperature=0.2))
            )
        elif r == 9:
            out.append(
                (
                    "chat.tools",
                    dict(
                        model=model,
                        tools=[WEATHER_TOOL, SEARCH_TOOL],
                        messages=[
                            {
                                "role": "user",
                                "content": f"What's the weather in {rng.choice(['Paris', 'Oslo', 'Lima'])} and find docs on {topic}?",
                            }
                        ],
                    ),
                )
            )
        elif r == 10:
            out.append(
                (
                    "chat.tools.stream",
                    dict(
                        model=model,
                        tools=[WEATHER_TOOL],
                        stream=True,
                        stream_options={"include_usage": True},
                        messages=[{"role": "user", "content": "Weather in Berlin?"}],
                    ),
                )
            )
        elif r == 11:
            out.append(
                (
                    "chat.json",
                    dict(
                        model=model,
                        response_format={"type": "json_schema", "json_schema": TICKET_SCHEMA},
                        messages=[{"role": "user", "content": f"File a ticket about {topic}."}],
                    ),
                )
            )
        elif r == 12:
            out.append(("responses", dict(model=model, input=f"Explain {topic} in two sentences.")))
        elif r == 13:
            out.append(
                ("responses.stream", dict(model=model, input=f"List three risks of {topic}.", stream=True))
            )
        elif r in (14, 15):
            texts = [f"{rng.choice(TOPICS)}: {_document(rng, 2)}" for _ in range(rng.randint(1, 4))]
            fmt = "float" if r == 14 else openai.NOT_GIVEN
            out.append(("embeddings", dict(model="text-embedding-3-small", input=texts, encoding_format=fmt)))
        elif r == 16 and i < 40:
            out.append(
                (
                    "audio",
                    dict(model="whisper-1", file=("memo.wav", tiny_wav(1.0 + rng.random()), "audio/wav")),
                )
            )
        elif r == 16:
            out.append(
                (
                    "image",
                    dict(
                        model="gpt-image-1",
                        prompt=f"A diagram of {topic}",
                        size="256x256",
                        response_format="b64_json",
                    ),
                )
            )
        elif r == 17:
            out.append(
                (
                    "completions",
                    dict(model="gpt-3.5-turbo-instruct", prompt=f"Title for {topic}:", max_tokens=20),
                )
            )
        elif r == 18 and i < 40:
            out.append(("error.429", dict(model=model, messages=msgs, extra_headers={"x-fake-error": "429"})))
        elif r == 18:
            out.append(("error.404", dict(model="no-such-model", messages=msgs)))
        else:
            out.append(("chat.stream", dict(model=model, messages=msgs, stream=True, max_tokens=80)))
    return out


async def _one(client: openai.AsyncOpenAI, kind: str, kw: dict, stats: WorkloadStats) -> None:
    stats.sent += 1
    stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
    try:
        if kind.startswith(("chat", "error")):
            r = await client.chat.completions.create(**kw)
            if kw.get("stream"):
                async for _ in r:
                    pass
        elif kind.startswith("responses"):
            r = await client.responses.create(**kw)
            if kw.get("stream"):
                async for _ in r:
                    pass
        elif kind == "embeddings":
            await client.embeddings.create(**kw)
        elif kind == "audio":
            await client.audio.transcriptions.create(**kw)
        elif kind == "image":
            await client.images.generate(**kw)
        elif kind == "completions":
            await client.completions.create(**kw)
        stats.ok += 1
    except openai.APIError as e:
        name = type(e).__name__
        stats.errors[name] = stats.errors.get(name, 0) + 1


async def run_workload(
    base_url: str, n: int = 80, concurrency: int = 8, seed: int = 7, api_key: str = "sk-demo-not-a-real-key"
) -> WorkloadStats:
    """Send the workload through ``base_url`` with the async openai SDK (no SDK retries)."""
    stats = WorkloadStats()
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    sem = asyncio.Semaphore(concurrency)

    async def guarded(kind: str, kw: dict) -> None:
        async with sem:
            await _one(client, kind, kw, stats)

    try:
        await asyncio.gather(*(guarded(k, kw) for k, kw in plan(n, seed)))
    finally:
        await client.close()
    return stats
