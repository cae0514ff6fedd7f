"""Units behind the measurements: per-token ITL, token estimates, retry delays, pacing, limits."""

from __future__ import annotations

import email.utils
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from parity.replayer.pacing import Bucket, Pacing, offsets
from parity.replayer.retry import backoff_s, retry_delay_s, server_delay_s, should_retry
from parity.replayer.tokens import estimate_tokens, mean, per_token_itl


def test_itl_one_token_per_event_is_the_gaps() -> None:
    assert per_token_itl([100, 110, 125, 130], [3, 4, 5, 2], 4) == [10, 15, 5]


def test_itl_divides_a_gap_over_the_tokens_of_its_event() -> None:
    # 8 tokens over 4 events of equal size: 2 tokens per event, each gap split in two.
    itl = per_token_itl([0, 20, 40, 60], [5, 5, 5, 5], 8)
    assert itl == [10, 10, 10, 10, 10, 10]
    assert mean(itl) == pytest.approx(60 / 6)  # (t_last - t_first) / tokens after the first event


def test_itl_zero_token_event_carries_its_gap_forward() -> None:
    # 2 tokens over 4 events; the 1-char events round to no token of their own.
    itl = per_token_itl([0, 10, 20, 50], [10, 1, 1, 10], 2)
    assert itl == [50.0]


def test_itl_without_usage_counts_events() -> None:
    assert per_token_itl([0, 5, 15], [1, 1, 1], None) == [5, 10]
    assert per_token_itl([3], [1], 9) == []


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2


def test_retry_decisions_follow_the_sdk() -> None:
    for status in (408, 409, 429, 500, 502, 503):
        assert should_retry(status, {}, None, body_started=False)
    for status in (400, 401, 403, 404, 422):
        assert not should_retry(status, {}, None, body_started=False)
    assert not should_retry(429, {"x-should-retry": "false"}, None, False)
    assert should_retry(400, {"x-should-retry": "true"}, None, False)
    assert should_retry(None, {}, "connection_error", False) and should_retry(None, {}, "timeout", False)
    assert not should_retry(200, {}, "stream_broken", body_started=True)  # a started stream: never


def test_server_delay_headers() -> None:
    assert server_delay_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert server_delay_s({"retry-after": "1.5"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= server_delay_s({"retry-after": date}) <= 31
    assert server_delay_s({}) is None and server_delay_s({"retry-after": "soon"}) is None


def test_retry_delay_caps_and_backoff() -> None:
    assert retry_delay_s(0, {"retry-after": "2"}, 60) == 2
    d = retry_delay_s(0, {"retry-after": "3600"}, 60)  # beyond the cap: backoff instead
    assert 0.375 <= d <= 0.5
    rng = random.Random(1)
    for n, top in ((0, 0.5), (1, 1.0), (2, 2.0), (5, 8.0), (9, 8.0)):
        b = backoff_s(n, rng)
        assert 0.75 * top <= b <= top


def test_offsets_rate_and_as_recorded() -> None:
    starts = [(None, 0)] * 5
    assert offsets(Pacing(), starts) is None
    assert offsets(Pacing(mode="rate", rate=4), starts) == [0, 0.25, 0.5, 0.75, 1.0]
    p1 = offsets(Pacing(mode="rate", rate=10, arrival="poisson", seed=3), starts)
    assert p1 == offsets(Pacing(mode="rate", rate=10, arrival="poisson", seed=3), starts)  # reproducible
    assert p1 != offsets(Pacing(mode="rate", rate=10, arrival="poisson", seed=4), starts)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    rec = [(t0, 0), (t0 + timedelta(seconds=1), 0), (t0 + timedelta(seconds=3), 0)]
    assert offsets(Pacing(mode="as-recorded", speed=2), rec) == [0, 0.5, 1.5]
    rep = rec + [(t, 1) for t, _ in rec]  # a repeat follows after the whole span plus one mean gap
    assert offsets(Pacing(mode="as-recorded"), rep) == [0, 1, 3, 4.5, 5.5, 7.5]


def test_bucket_spaces_requests() -> None:
    b = Bucket(120)  # 2 per second, burst of 2
    waits = [b.reserve(1) for _ in range(4)]
    assert waits[0] == 0 and waits[1] == 0
    assert waits[2] == pytest.approx(0.5, abs=0.01) and waits[3] == pytest.approx(1.0, abs=0.01)
