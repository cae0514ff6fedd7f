"""The shadow's pieces without processes: the bounded hand-off, never waiting at a limit, the counters."""

from __future__ import annotations

import pickle

from parity.recorder.cli import shadow_line
from parity.replayer.pacing import Bucket
from parity.shadow.handoff import ShadowHandle, ShadowInit, read_msg, write_msg
from parity.shadow.mirror import _take
from parity.shadow.status import Counters, short_reason


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    h = ShadowHandle(ShadowInit(db="x", root="x", providers="p.toml", run_id="r"), bound=3)
    for i in range(10):
        h.offer(i)  # no shadow process yet: nothing drains the queue
    assert list(h._q) == [0, 1, 2] and h.counts["queue_full"] == 7


def test_a_limit_is_taken_now_or_not_at_all() -> None:
    b = Bucket(per_minute=60)  # one a second, a burst of one
    assert _take(b, 1)
    level = b.level
    assert not _take(b, 1)  # the replayer would sleep here; the shadow drops instead
    assert abs(b.level - level) < 0.01  # and gives back what it reserved
    assert _take(None, 10**6)  # no limit configured


def test_messages_round_trip_and_a_torn_one_reads_as_the_end(tmp_path) -> None:
    path = tmp_path / "pipe"
    with open(path, "wb") as fh:
        write_msg(fh.fileno(), ("caps", [1, 2], {"seen": 2}))
        fh.write(b"\x05\x00\x00")  # a length cut by a kill
    with open(path, "rb") as fh:
        assert read_msg(fh) == ("caps", [1, 2], {"seen": 2})
        assert read_msg(fh) is None


def test_counters_survive_a_round_trip_through_the_stored_config() -> None:
    c = Counters(seen=5, sampled=4, sample=0.5, max_cost=2.0)
    c.add("mirrored", "cand", 4)
    c.add("dropped", "cand: rpm")
    back = Counters.from_public(pickle.loads(pickle.dumps(c.public())))
    assert back.mirrored == {"cand": 4} and back.dropped == {"cand: rpm": 1} and back.seen == 5
    assert short_reason("side effects (POST /files)") == "side effects"


def test_ls_line_names_the_state_the_drops_and_the_spend() -> None:
    c = Counters(seen=10, sampled=5, sample=0.5, max_cost=1.0, spent_usd=0.25, state="capped")
    c.add("mirrored", "cand", 5)
    c.add("failed", "dead", 5)
    c.add("dropped", "max_cost", 2)
    text = shadow_line("staging", "mirroring", c.public())
    assert "shadow run staging (mirroring, capped): 5 of 10 requests sampled (sample 0.5)" in text
    assert "mirrored: cand 5" in text and "failed: dead 5" in text and "dropped: max_cost 2" in text
    assert "spend: $0.2500 of $1 cap" in text
