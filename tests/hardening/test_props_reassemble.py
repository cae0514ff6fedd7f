"""Properties of stream reassembly and of the body readers (wire/reassemble.py).

* Well-formed chat streams: for any fragmentation of tool-call names and arguments, interleaved
  across calls and chunks in any order, the reassembled calls (ordered by index) are the originals,
  and content, finish reason, usage and the ``complete`` flag are right.
* Legacy completions and Responses streams: text deltas concatenate, a terminal event wins.
* Arbitrary JSON events (any shape a broken or hostile provider could send): reassembly never
  raises and always gives a JSON-serialisable object body.
* extract_usage / finish_reason / output_text on arbitrary JSON values: never raise, and return
  the types the ``exchanges`` columns need.

Found by these properties and fixed since (the explicit examples are the failing inputs):
reassemble_chat raised AttributeError/TypeError on ill-typed shapes (choices not a list of
objects, delta not an object, unhashable index, tool_calls not a list of objects, non-string
arguments or text); reassemble_responses returned a non-object body for a terminal event whose
``response`` is not an object; finish_reason returned non-strings (the column is a string) and
output_text raised on non-list output/content.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parity.wire.reassemble import Usage, dumps, extract_usage, finish_reason, output_text, reassemble
from parity.wire.sse import SSEEvent

ENDPOINTS = ["chat.completions", "completions", "responses", "audio.transcriptions"]


def events(*objs) -> list[SSEEvent]:
    return [SSEEvent(float(i), o if isinstance(o, str) else json.dumps(o)) for i, o in enumerate(objs)]


def pieces(draw, s: str, min_size: int = 1) -> list[str]:
    """``s`` cut into consecutive pieces (empty pieces allowed: providers send them)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(s)), max_size=6)))
    bounds = [0, *cuts, len(s)]
    out = [s[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return out if len(out) >= min_size else out + [""] * (min_size - len(out))


text = st.text(max_size=20)  # no lone surrogates: hypothesis' text() excludes category Cs
json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
)
json_values = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3),
    max_leaves=12,
)


def chunk(choices: list[dict] | None = None, **extra) -> dict:
    return {
        "id": "chatcmpl-p",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices or [],
        **extra,
    }


@st.composite
def tool_call_streams(draw):
    """(events, expected calls, expected content, done) for a chat stream with parallel tool calls."""
    n = draw(st.integers(1, 4))
    indexes = sorted(draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True)))
    calls = []
    queues = []
    for idx in indexes:
        name = draw(st.text(min_size=1, max_size=12))
        args = draw(st.one_of(json_values.map(json.dumps), text))
        call_id = draw(st.text(min_size=1, max_size=8))
        calls.append(
            (idx, {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        )
        name_parts = pieces(draw, name)
        arg_parts = pieces(draw, args)
        k = max(len(name_parts), len(arg_parts))
        name_parts += [None] * (k - len(name_parts))
        arg_parts += [None] * (k - len(arg_parts))
        frags = []
        for j, (np_, ap) in enumerate(zip(name_parts, arg_parts, strict=True)):
            fn: dict = {}
            if np_ is not None:
                fn["name"] = np_
            elif draw(st.booleans()):
                fn["name"] = draw(st.sampled_from([None, ""]))  # some providers repeat an empty name
            if ap is not None:
                fn["arguments"] = ap
            frag: dict = {"index": idx}
            if j == 0:
                frag.update(id=call_id, type="function")
            elif draw(st.integers(0, 4)) == 0:
                frag["id"] = call_id  # repeated id (seen with some providers)
            if fn or draw(st.booleans()):
                frag["function"] = fn
            frags.append(frag)
        queues.append(frags)
    content_parts = draw(st.lists(st.text(min_size=1, max_size=6), max_size=4))
    queues.append([{"content": c} for c in content_parts])
    # interleave the per-call queues in any order, keeping each queue's own order
    order = []
    for qi, q in enumerate(queues):
        order += [qi] * len(q)
    order = draw(st.permutations(order))
    pos = [0] * len(queues)
    items = []
    for qi in order:
        items.append((qi, queues[qi][pos[qi]]))
        pos[qi] += 1
    # group consecutive items into chunks (one delta per chunk: tool calls + maybe content)
    evs: list = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}])
    ]
    i = 0
    while i < len(items):
        size = draw(st.integers(1, 3))
        group, i = items[i : i + size], i + size
        delta: dict = {}
        tcs = [f for qi, f in group if qi < n]
        texts = [f["content"] for qi, f in group if qi == n]
        if tcs:
            delta["tool_calls"] = tcs
        if texts:  # at most one content per delta: emit extra ones as their own chunks
            delta["content"] = texts[0]
        evs.append(chunk([{"index": 0, "delta": delta, "finish_reason": None}]))
        for t in texts[1:]:
            evs.append(chunk([{"index": 0, "delta": {"content": t}, "finish_reason": None}]))
    evs.append(chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    usage = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
    if draw(st.booleans()):
        evs.append(chunk([], usage=usage))
    else:
        usage = None
    done = draw(st.booleans())
    if done:
        evs.append("[DONE]")
    expected_calls = [c for _, c in sorted(calls, key=lambda c: c[0])]
    return events(*evs), expected_calls, ("".join(content_parts) if content_parts else None), usage, done


@settings(max_examples=200, deadline=None)
@given(case=tool_call_streams())
def test_tool_call_fragments_reassemble_to_the_originals(prop_count, case) -> None:
    prop_count()
    evs, expected_calls, content, usage, done = case
    res = reassemble("chat.completions", evs)
    [choice] = res.body["choices"]
    assert choice["message"]["tool_calls"] == expected_calls
    assert choice["message"]["content"] == content
    assert choice["finish_reason"] == "tool_calls" == finish_reason(res.body)
    assert res.body["usage"] == usage
    assert res.complete is done and res.error is None and res.bad_events == 0
    assert len(res.content_times) == len(res.content_chars) and all(c > 0 for c in res.content_chars)
    assert output_text(res.body) == (content or "")
    json.loads(dumps(res.body))


@st.composite
def text_streams(draw):
    """Legacy completions or Responses streams cut into deltas, maybe ended, maybe with an error."""
    endpoint = draw(st.sampled_from(["completions", "responses"]))
    full = draw(text)
    parts = pieces(draw, full)
    err = {"message": draw(text), "type": "server_error"}
    error_at = draw(st.none() | st.integers(0, len(parts)))
    evs: list = []
    for i, p in enumerate(parts):
        if error_at == i:
            evs.append({"error": err} if endpoint == "completions" else {"type": "error", "error": err})
        if endpoint == "completions":
            evs.append({"id": "cmpl", "object": "text_completion", "choices": [{"index": 0, "text": p}]})
        else:
            evs.append({"type": "response.output_text.delta", "delta": p, "output_index": 0})
    if error_at == len(parts):
        evs.append({"error": err} if endpoint == "completions" else {"type": "error", "error": err})
    terminal = draw(st.booleans())
    final = {"object": "response", "id": "resp_1", "status": "completed", "output": [], "usage": None}
    if terminal:
        evs.append(
            "[DONE]"
            if endpoint == "completions"
            else {"type": "response.completed", "response": final, "sequence_number": 99}
        )
    return endpoint, events(*evs), full, terminal, (err if error_at is not None else None), final


@settings(max_examples=150, deadline=None)
@given(case=text_streams())
def test_text_deltas_concatenate_and_terminal_events_win(prop_count, case) -> None:
    prop_count()
    endpoint, evs, full, terminal, err, final = case
    res = reassemble(endpoint, evs)
    assert res.complete is terminal
    assert res.error == err
    if endpoint == "completions":
        assert res.body["choices"][0]["text"] == full and output_text(res.body) == full
    elif terminal:
        assert res.body == final
    else:
        assert res.body["status"] == "incomplete" and output_text(res.body) == full
    json.loads(dumps(res.body))


# ---------------------------------------------------------------- arbitrary events

KEYS = [
    "choices", "delta", "index", "tool_calls", "function", "arguments", "name", "id", "type",
    "content", "usage", "error", "response", "text", "finish_reason", "logprobs", "object",
    "output", "role", "refusal", "reasoning_content", "message", "status", "prompt_tokens",
    "input_tokens_details", "cached_tokens", "model", "created",
]  # fmt: skip
shaped_values = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(KEYS), kids, max_size=4),
    max_leaves=16,
)
event_texts = st.one_of(
    shaped_values.map(json.dumps),
    st.dictionaries(st.sampled_from(KEYS), shaped_values, max_size=5).map(json.dumps),
    st.sampled_from(["[DONE]", "", "not json", '{"a": NaN}', "[" * 5000]),
)
TYPES = ["response.completed", "response.failed", "response.output_text.delta", "error", None]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=st.sampled_from(ENDPOINTS + ["models"]),
    datas=st.lists(st.tuples(event_texts, st.sampled_from(TYPES)), max_size=6),
)
@example(endpoint="chat.completions", datas=[('{"choices": "abc"}', None)])
@example(endpoint="chat.completions", datas=[('{"choices": [null]}', None)])
@example(endpoint="chat.completions", datas=[('{"choices": [{"delta": "x"}]}', None)])
@example(endpoint="chat.completions", datas=[('{"choices": [{"index": [1]}]}', None)])
@example(endpoint="chat.completions", datas=[('{"choices": [{"delta": {"tool_calls": 5}}]}', None)])
@example(endpoint="chat.completions", datas=[('{"choices": [{"delta": {"tool_calls": ["x"]}}]}', None)])
@example(
    endpoint="chat.completions",
    datas=[('{"choices": [{"delta": {"tool_calls": [{"function": {"arguments": 5}}]}}]}', None)],
)
@example(endpoint="completions", datas=[('{"choices": [{"text": 5}]}', None)])
def test_arbitrary_events_never_raise(prop_count, endpoint: str, datas) -> None:
    prop_count()
    evs = [SSEEvent(float(i), d, event=typ) for i, (d, typ) in enumerate(datas)]
    res = reassemble(endpoint, evs)
    assert res.body is None or isinstance(res.body, dict)
    json.loads(dumps(res.body))
    assert len(res.event_times) == len(evs)
    assert len(res.content_times) == len(res.content_chars)


@settings(max_examples=150, deadline=None)
@given(
    endpoint=st.sampled_from(["responses", "audio.transcriptions"]),
    datas=st.lists(st.tuples(event_texts, st.sampled_from(TYPES)), max_size=6),
)
def test_responses_and_transcription_reassembly_never_raise(prop_count, endpoint: str, datas) -> None:
    """The same chaos, on the reassemblers of the other families."""
    prop_count()
    evs = [SSEEvent(float(i), d, event=typ) for i, (d, typ) in enumerate(datas)]
    res = reassemble(endpoint, evs)
    json.loads(dumps(res.body))
    assert len(res.event_times) == len(evs)
    assert len(res.content_times) == len(res.content_chars)


@settings(max_examples=100, deadline=None)
@given(datas=st.lists(st.tuples(event_texts, st.sampled_from(TYPES)), max_size=6))
@example(datas=[('{"response": []}', "response.completed")])
@example(datas=[('{"type": "response.completed", "response": "x"}', None)])
def test_responses_body_is_always_an_object(prop_count, datas) -> None:
    prop_count()
    evs = [SSEEvent(float(i), d, event=typ) for i, (d, typ) in enumerate(datas)]
    assert isinstance(reassemble("responses", evs).body, dict)


# ---------------------------------------------------------------- body readers

any_json = shaped_values | st.dictionaries(st.sampled_from(KEYS), shaped_values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(body=any_json)
@example(body={"usage": {"prompt_tokens": True, "completion_tokens": 2.0, "input_tokens_details": []}})
def test_extract_usage_never_raises_and_gives_ints(prop_count, body) -> None:
    prop_count()
    u = extract_usage(body)
    assert isinstance(u, Usage)
    for v in (u.prompt, u.completion, u.cached, u.reasoning):
        assert v is None or (type(v) is int)


@settings(max_examples=150, deadline=None)
@given(body=any_json)
@example(body={"choices": [{"finish_reason": 5}]})
@example(body={"object": "response", "status": ["done"]})
def test_finish_reason_is_a_string_or_none(prop_count, body) -> None:
    prop_count()
    fr = finish_reason(body)
    assert fr is None or isinstance(fr, str)


@settings(max_examples=150, deadline=None)
@given(body=any_json)
@example(body={"object": "response", "output": 5})
@example(body={"object": "response", "output": [{"content": 5}]})
@example(body={"object": "response", "output": [{"content": [{"type": "output_text", "text": 5}]}]})
@example(body={"choices": [{"message": {"content": 5}}]})
def test_output_text_is_always_a_string(prop_count, body) -> None:
    prop_count()
    assert isinstance(output_text(body), str)
