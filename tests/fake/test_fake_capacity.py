"""The capacity model: a fixed number of slots, a fixed service time, queueing inside TTFT, 429 past a queue
limit, and a KV-cache-like slowdown as slots fill."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import random
import subprocess
import sys
import time

import httpx
import openai
import pytest

from parity.fake.base import Ctx
from parity.fake.profiles import get_profile
from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts servers

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "queue me"}], "stream": True}


async def _burst(base_url: str, n: int) -> list[tuple[float, float, int]]:
    """n streamed requests at once: (TTFT ms, total ms, status) each, measured on the raw stream."""

    async def one(client: httpx.AsyncClient) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        first = None
        async with client.stream("POST", base_url + "/chat/completions", json=CHAT) as r:
            async for chunk in r.aiter_raw():
                if first is None and b'"content":"' in chunk:
                    first = time.perf_counter()
            status = r.status_code
        end = time.perf_counter()
        return ((first or end) - t0) * 1000, (end - t0) * 1000, status

    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def test_slots_queue_requests_and_the_wait_is_ttft() -> None:
    with FakeProvider.running("instant", slots=2, service_ms=200, ttft_ms=20) as fp:
        asyncio.run(_burst(fp.base_url, 1))  # warm-up: connection set-up out of the figures
        got = sorted(asyncio.run(_burst(fp.base_url, 6)), key=lambda r: r[1])
    assert all(s == 200 for _, _, s in got)
    totals = [t for _, t, _ in got]
    ttfts = [f for f, _, _ in got]
    # two at a time, 200 ms each: done at ~200, 200, 400, 400, 600, 600 ms
    for i, (total, ttft) in enumerate(zip(totals, ttfts, strict=True)):
        wave = i // 2
        assert 200 * (wave + 1) - 5 <= total <= 200 * (wave + 1) + 60, (i, totals)
        assert 200 * wave + 15 <= ttft <= 200 * wave + 80, (i, ttfts)


def test_sdk_sees_capacity_wait_in_ttft_and_full_answers() -> None:
    with FakeProvider.running("instant", slots=1, service_ms=150) as fp:
        client = openai.OpenAI(base_url=fp.base_url, api_key="x", max_retries=0)

        def ask() -> str:
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}]
            )
            return r.choices[0].message.content or ""

        with cf.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: ask(), range(3)))  # warm-up: three connections
            t0 = time.perf_counter()
            answers = list(pool.map(lambda _: ask(), range(3)))
            took = time.perf_counter() - t0
    assert all(answers) and 0.44 <= took <= 0.75, took  # one slot: three requests in series


def test_queue_limit_answers_429_with_retry_after() -> None:
    with FakeProvider.running("instant", slots=1, service_ms=300, queue_limit=1, retry_after_s=0.5) as fp:
        got = asyncio.run(_burst(fp.base_url, 4))
    statuses = sorted(s for _, _, s in got)
    assert statuses == [200, 200, 429, 429], statuses  # one served, one queued, two refused at once
    assert fp.busy == 0 and fp.waiting == 0


def test_kv_slowdown_stretches_requests_as_slots_fill() -> None:
    with FakeProvider.running("instant", slots=2, service_ms=200, kv_slowdown=1.0) as fp:
        asyncio.run(_burst(fp.base_url, 1))
        got = sorted(t for _, t, _ in asyncio.run(_burst(fp.base_url, 2)))
    # the first takes 200 ms alone; the second starts with one other slot busy: 200 x (1 + 1/2) = 300 ms
    assert 195 <= got[0] <= 260 and 295 <= got[1] <= 370, got


def test_offsets_spread_the_stream_over_the_service_time() -> None:
    ctx = Ctx(
        seq=1,
        t0=0.0,
        body={},
        model="m",
        ttft=0.25,  # 0.2 s queued + 0.05 s first token
        itl=0.0,
        jitter=0.0,
        rng=random.Random(0),
        error=None,
        tokens=None,
        chunk_tokens=1,
        request_id="r",
        queued=0.2,
        service=0.3,
    )
    offs = ctx.offsets(6)
    assert offs[0] == pytest.approx(0.25) and offs[-1] == pytest.approx(0.5)
    assert all(b > a for a, b in zip(offs, offs[1:], strict=False))
    assert ctx.offsets(1) == [pytest.approx(0.5)]


def test_profile_capacity_and_validation() -> None:
    assert get_profile("capacity").capacity_rps == pytest.approx(16.0)
    assert get_profile("instant", slots=3, service_ms=100).capacity_rps == pytest.approx(30.0)
    assert get_profile("instant", slots=3).capacity_rps is None  # no fixed service time: unknown
    with pytest.raises(ValueError, match="slots"):
        get_profile("instant", slots=-1)


def test_cli_flags_print_the_capacity() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parity.fake.server",
            "--profile",
            "instant",
            "--slots",
            "3",
            "--service-ms",
            "150",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)
    assert line.endswith("capacity 3 slots = 20 req/s)"), line
