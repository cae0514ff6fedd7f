"""SSE parsing: framing rules, and the same events whatever the read boundaries."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from parity.wire.sse import SSEParser, parse_all

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b"event: response.output_text.delta\r\n"
    b'data: {"type": "response.output_text.delta", "delta": "h\xc3\xa9"}\r\n\r\n'
    b"data: line one\rdata: line two\r\r"
    b"id: 7\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)


def events_of(chunks: list[bytes]):
    return parse_all([(float(i), c) for i, c in enumerate(chunks)])


def test_framing_rules() -> None:
    evs, p = events_of([STREAM])
    assert [e.data for e in evs] == [
        '{"a": 1}',
        '{"type": "response.output_text.delta", "delta": "hé"}',
        "line one\nline two",
        "no-space",
        "[DONE]",
    ]
    assert evs[1].event == "response.output_text.delta"
    assert evs[3].id == "7"
    assert evs[-1].is_done and not evs[0].is_done
    assert evs[0].json() == {"a": 1} and evs[2].json() is None
    assert p.comments == 1
    assert not p.ended_inside_event


def test_split_at_every_byte_boundary() -> None:
    whole = [(e.data, e.event, e.id) for e in events_of([STREAM])[0]]
    for i in range(len(STREAM) + 1):
        got = [(e.data, e.event, e.id) for e in events_of([STREAM[:i], STREAM[i:]])[0]]
        assert got == whole, f"split at byte {i}"


def test_every_byte_its_own_read() -> None:
    whole = [e.data for e in events_of([STREAM])[0]]
    assert [e.data for e in events_of([STREAM[i : i + 1] for i in range(len(STREAM))])[0]] == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    bounds = sorted(set([0, len(STREAM), *cuts]))
    chunks = [STREAM[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert [e.data for e in events_of(chunks)[0]] == [e.data for e in events_of([STREAM])[0]]


def test_event_time_is_the_read_that_completed_it() -> None:
    p = SSEParser()
    assert p.feed(b'data: {"x"', 1.0) == []
    evs = p.feed(b": 1}\n\ndata: 2\n", 2.0)
    assert [(e.data, e.t) for e in evs] == [('{"x": 1}', 2.0)]
    assert p.incomplete
    evs = p.feed(b"\n", 3.0)
    assert [(e.data, e.t) for e in evs] == [("2", 3.0)]


def test_crlf_split_across_reads_is_one_line_end() -> None:
    p = SSEParser()
    out = p.feed(b"data: a\r", 0) + p.feed(b"\n\r", 1) + p.feed(b"\n", 2)
    assert [e.data for e in out] == ["a"]


def test_stream_cut_inside_an_event() -> None:
    evs, p = events_of([b'data: {"a": 1}\n\ndata: {"b"'])
    assert [e.data for e in evs] == ['{"a": 1}', '{"b"']  # kept, but flagged
    assert p.ended_inside_event


def test_json_data_of_real_chat_chunks() -> None:
    chunk = {"choices": [{"delta": {"content": "x"}, "index": 0}], "obfuscation": "abc"}
    evs, _ = events_of([b"data: " + json.dumps(chunk).encode() + b"\n\n"])
    assert evs[0].json() == chunk


def test_a_leading_byte_order_mark_is_ignored() -> None:
    bom = b"\xef\xbb\xbf"
    stream = bom + b'data: {"a": 1}\n\n'
    for i in range(len(stream) + 1):
        evs, _ = events_of([stream[:i], stream[i:]])
        assert [e.data for e in evs] == ['{"a": 1}'], i
    p = SSEParser()
    assert p.feed(b"\xef", 0) == [] and p.feed(b"\xbb\xbfdata: x\r\n\r\n", 1)[0].data == "x"


def test_event_json_is_strict() -> None:
    from parity.wire.sse import SSEEvent

    assert SSEEvent(0, ' {"a": 1} ').json() == {"a": 1}
    assert SSEEvent(0, '{"a": NaN}').json() is None
    assert SSEEvent(0, "[1]").json() is None and SSEEvent(0, '{"a": 1} x').json() is None
    assert SSEEvent(0, "[" * 100_000).json() is None
