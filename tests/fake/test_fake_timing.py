"""Timing: TTFT/ITL on absolute deadlines, header overrides, non-stream latency, cold starts, time_scale.

Tolerances follow perf-anchors (timer floor ~2 ms p50 at low concurrency) plus slack for a shared 2-core box.
"""

from __future__ import annotations

import statistics
import time

import pytest
from fakehelpers import HTTP, post_raw

from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "time me"}], "stream": True}


def _timed_stream(
    fp: FakeProvider, headers: dict[str, str] | None = None, body: dict | None = None
) -> tuple[float, list[float], float]:
    """(TTFT ms, gaps between content reads ms, total ms) measured with a raw httpx stream."""
    t0 = time.perf_counter()
    stamps: list[float] = []
    with HTTP.stream(
        "POST", fp.base_url + "/chat/completions", json=body or CHAT, headers=headers or {}, timeout=30
    ) as r:
        for chunk in r.iter_raw():
            if b'"delta":{"content":' in chunk:
                stamps.extend([time.perf_counter()] * chunk.count(b'"delta":{"content":'))
    total = (time.perf_counter() - t0) * 1000
    gaps = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    return (stamps[0] - t0) * 1000, gaps, total


def test_fixed_ttft_and_itl() -> None:
    with FakeProvider.running("instant", ttft_ms=120, itl_ms=15, chunk_tokens=1) as fp:
        _timed_stream(fp)  # warm-up
        ttft, gaps, total = _timed_stream(fp, {"x-fake-tokens": "12"})
    assert 118 <= ttft <= 140, ttft
    assert len(gaps) == 11 and 12 <= statistics.median(gaps) <= 19, gaps
    assert 120 + 11 * 15 - 5 <= total <= 120 + 11 * 15 + 40, total


def test_header_overrides_and_no_drift() -> None:
    with FakeProvider.running("slow") as fp:  # headers beat the profile (and are not time-scaled)
        _timed_stream(fp, {"x-fake-ttft-ms": "0", "x-fake-itl-ms": "0", "x-fake-tokens": "2"})
        ttft, gaps, total = _timed_stream(
            fp, {"x-fake-ttft-ms": "40", "x-fake-itl-ms": "4", "x-fake-tokens": "100"}
        )
    assert 38 <= ttft <= 65, ttft
    # Absolute deadlines: 99 gaps of 4 ms end ~396 ms after the first token, however late single writes were.
    assert 40 + 396 - 5 <= total <= 40 + 396 + 40, total
    assert 3 <= statistics.median(gaps) <= 5.5


def test_non_stream_latency_covers_whole_generation() -> None:
    with FakeProvider.running("instant", ttft_ms=50, itl_ms=5) as fp:
        post_raw(fp, "/embeddings", {"model": "m", "input": "warm"})
        t0 = time.perf_counter()
        r = post_raw(fp, "/chat/completions", {**CHAT, "stream": False}, {"x-fake-tokens": "41"})
        elapsed = (time.perf_counter() - t0) * 1000
        assert r.json()["usage"]["completion_tokens"] == 41
        t0 = time.perf_counter()
        post_raw(fp, "/embeddings", {"model": "m", "input": "x"})
        emb = (time.perf_counter() - t0) * 1000
    assert 50 + 40 * 5 - 5 <= elapsed <= 50 + 40 * 5 + 40, elapsed
    assert 48 <= emb <= 90, emb  # one-shot endpoints take TTFT only


def test_chunk_tokens_groups_tokens() -> None:
    with FakeProvider.running("instant", chunk_tokens=4) as fp:
        raw = post_raw(fp, "/chat/completions", CHAT, {"x-fake-tokens": "10"}).text
        per_req = post_raw(
            fp, "/chat/completions", CHAT, {"x-fake-tokens": "10", "x-fake-chunk-tokens": "5"}
        ).text
    assert raw.count('"delta":{"content":') == 3  # 4 + 4 + 2
    assert per_req.count('"delta":{"content":') == 2


def test_cold_start_after_idle() -> None:
    def latency(fp: FakeProvider) -> float:
        t0 = time.perf_counter()
        assert post_raw(fp, "/moderations", {"input": "x"}).status_code == 200
        return (time.perf_counter() - t0) * 1000

    with FakeProvider.running("instant", cold_start_ms=250, cold_idle_s=0.5) as fp:
        first, warm = latency(fp), latency(fp)
        time.sleep(0.6)
        cold_again, warm_again = latency(fp), latency(fp)
    assert first >= 250 and cold_again >= 250, (first, cold_again)
    assert warm < 100 and warm_again < 100, (warm, warm_again)


def test_cold_starts_are_per_model() -> None:
    """Each model scales to zero on its own: its first request is cold, even amid traffic to others
    (as evals count it: the first request to a provider model is cold)."""

    def latency(fp: FakeProvider, model: str) -> float:
        t0 = time.perf_counter()
        assert post_raw(fp, "/embeddings", {"model": model, "input": "x"}).status_code == 200
        return (time.perf_counter() - t0) * 1000

    with FakeProvider.running("instant", cold_start_ms=250, cold_idle_s=0.5) as fp:
        a1, a2, b1, b2, a3 = (latency(fp, m) for m in ("a", "a", "b", "b", "a"))
        time.sleep(0.6)
        a_idle = latency(fp, "a")
    assert a1 >= 250 and b1 >= 250 and a_idle >= 250, (a1, b1, a_idle)
    assert max(a2, b2, a3) < 100, (a2, b2, a3)


def test_named_cold_start_profile_scaled() -> None:
    # cold-start: 2500 ms after 10 s idle; time_scale 0.05 -> 125 ms after 0.5 s, on top of ~17 ms TTFT.
    with FakeProvider.running("cold-start", time_scale=0.05) as fp:
        t0 = time.perf_counter()
        post_raw(fp, "/moderations", {"input": "x"})
        first = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        post_raw(fp, "/moderations", {"input": "x"})
        second = (time.perf_counter() - t0) * 1000
    assert first >= 125 and second < 100, (first, second)


def test_time_scale_scales_profile_timing() -> None:
    with FakeProvider.running("slow", time_scale=0.1, ttft_dist="fixed") as fp:
        ttft, gaps, _ = _timed_stream(fp, {"x-fake-tokens": "20"})
    assert 88 <= ttft <= 120, ttft  # 900 ms * 0.1
    assert 2 <= statistics.median(gaps) <= 8, gaps  # 45 ms * 0.1 with jitter
