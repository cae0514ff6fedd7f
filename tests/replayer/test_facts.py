"""The chk_* facts the post-processor writes: each has a passing and a failing case."""

from __future__ import annotations

from parity.replayer.facts import cell_facts, sse_bad_lines, stop_hit


def _chat(content=None, calls=None, n=1, usage=True, finish="stop") -> dict:
    msg = {"role": "assistant", "content": content}
    if calls is not None:
        msg["tool_calls"] = calls
    body = {
        "object": "chat.completion",
        "choices": [{"index": i, "message": msg, "finish_reason": finish} for i in range(n)],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    return body


def _call(args: str) -> dict:
    return {"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}


def test_sse_lines_fields_comments_done_and_a_cut_last_line() -> None:
    ok = ': PROCESSING\r\nevent: x\nid: 1\nretry: 5\ndata: {"a": 1}\n\ndata: [DONE]\n\n'
    assert sse_bad_lines(ok) == 0
    assert sse_bad_lines(ok + "data: {cut") == 0  # cut at the size limit: the last line is not judged
    assert sse_bad_lines('garbage line\ndata: {"a":1}\ndata: not json\n\n') == 2


def test_tool_calls_usage_error_and_choices() -> None:
    good = cell_facts(
        "chat.completions", _chat(calls=[_call('{"city": "Oslo"}')]), {}, None, False, status=200, headers={}
    )
    assert good["chk_tool_calls"] == 1 and good["chk_tool_args_ok"] is True and good["chk_usage"] is True
    bad = cell_facts(
        "chat.completions",
        _chat(calls=[_call('{"city": "Oslo"'), _call("[]")], usage=False),
        {},
        None,
        False,
        status=200,
        headers={},
    )
    assert bad["chk_tool_calls"] == 2 and bad["chk_tool_args_ok"] is False and bad["chk_usage"] is False
    none = cell_facts("chat.completions", _chat("hi"), {}, None, False, status=200, headers={})
    assert none["chk_tool_calls"] == 0 and none["chk_tool_args_ok"] is None and none["chk_error"] is False
    err = cell_facts(
        "chat.completions", {"error": {"message": "x", "type": "t"}}, {}, None, False, status=200, headers={}
    )
    assert err["chk_error"] is True and err["chk_n_choices"] is None
    assert (
        cell_facts("chat.completions", _chat("a", n=3), {"n": 3}, None, False, status=200, headers={})[
            "chk_n_choices"
        ]
        == 3
    )
    resp = {"object": "response", "output": [{"type": "function_call", "name": "f", "arguments": '{"x": 1}'}]}
    r = cell_facts("responses", resp, {}, None, False, status=200, headers={})
    assert r["chk_tool_calls"] == 1 and r["chk_tool_args_ok"] is True and r["chk_n_choices"] is None


def test_request_facts_and_stop_leaks() -> None:
    req = {
        "max_tokens": 50,
        "max_completion_tokens": 40,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["END", ""],
    }
    f = cell_facts(
        "chat.completions",
        _chat("text then END"),
        req,
        "data: {}\n\ndata: [DONE]\n\n",
        True,
        status=200,
        headers={},
    )
    assert (f["chk_max_tokens"], f["chk_n"], f["chk_include_usage"]) == (40, 2, True)
    assert f["chk_stop_hit"] is True and f["chk_sse_bad_lines"] == 0
    clean = cell_facts(
        "completions",
        {"choices": [{"text": "no marker"}]},
        {"stop": "END"},
        None,
        False,
        status=200,
        headers={},
    )
    assert clean["chk_stop_hit"] is False and clean["chk_sse_bad_lines"] is None
    assert (
        cell_facts("chat.completions", _chat("x"), {}, None, False, status=200, headers={})["chk_stop_hit"]
        is None
    )
    assert stop_hit(["", None], "anything") is None
    out = {
        "object": "response",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "a STOP b"}]}],
    }
    r = cell_facts(
        "responses", out, {"stop": "STOP", "max_output_tokens": 9}, None, False, status=200, headers={}
    )
    assert r["chk_stop_hit"] is True and r["chk_max_tokens"] == 9


def test_parsed_events_give_the_same_count_as_parsing_the_lines() -> None:
    raw = 'data: {"a": 1}\n\ndata: not json\n\ndata: [1, 2]\n\n: ping\nbogus\ndata: [DONE]\n\ndata: {"cut'
    parsed = [('{"a": 1}', {"a": 1}), ("not json", None), ("[1, 2]", None), ("[DONE]", None), ('{"cut', None)]
    assert sse_bad_lines(raw) == sse_bad_lines(raw, parsed) == 2  # "not json" and "bogus"


def test_error_facts_judge_the_error_shape_and_the_429_headers() -> None:
    def facts(body, status, headers=None):
        return cell_facts("chat.completions", body, {}, None, False, status=status, headers=headers or {})

    good = facts(
        {"error": {"message": "slow", "type": "rate_limit_error", "code": None}}, 429, {"Retry-After": "2"}
    )
    assert (good["chk_error_json"], good["chk_error_type"], good["chk_error_code"]) == (
        True,
        "rate_limit_error",
        None,
    )
    assert good["chk_retry_after"] is True and good["chk_should_retry"] is None
    no_delay = facts({"error": {"message": "slow", "code": 429}}, 429, {"x-should-retry": "false"})
    assert no_delay["chk_error_json"] is False and no_delay["chk_error_code"] == "429"  # an integer code
    assert no_delay["chk_retry_after"] is False and no_delay["chk_should_retry"] == "false"
    assert facts(None, 502)["chk_error_json"] is False  # an HTML or empty error page
    assert facts({"error": "bad"}, 400)["chk_error_json"] is False
    inside_200 = facts({"error": {"message": "boom", "type": "server_error"}}, 200)
    assert inside_200["chk_error_json"] is True and inside_200["chk_retry_after"] is None
    ok = facts(_chat("hi"), 200)
    assert all(
        ok[k] is None for k in ("chk_error_json", "chk_error_type", "chk_retry_after", "chk_should_retry")
    )
    assert facts(None, None)["chk_error_json"] is None  # no answer at all: nothing to judge


def test_sample_key_is_stable_and_uniform() -> None:
    from parity.replayer.sampling import SPACE, sample_key

    assert sample_key("x0000001") == sample_key("x0000001")
    assert sample_key("ex_abc") == 872_493  # pinned: stores written today must sample alike tomorrow
    keys = [sample_key(f"x{i}") for i in range(20_000)]
    assert min(keys) >= 0 and max(keys) < SPACE
    below = sum(k < SPACE // 10 for k in keys) / len(keys)
    assert 0.09 < below < 0.11
