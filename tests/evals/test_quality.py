"""Quality checks: every text, JSON, tool-call and embedding check with a passing and a failing case."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from evalhelpers import WEATHER_TOOL, chat_body, chat_request, make_result, run_config, tool_call, write_run

from parity import evals
from parity.evals.metrics.answers import check_json, check_tools
from parity.evals.metrics.embeddings import embedding_pairs

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}
JSON_SCHEMA_REQ = chat_request(
    response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
)
JSON_OBJECT_REQ = chat_request(response_format={"type": "json_object"})
TOOLS_REQ = chat_request(tools=[WEATHER_TOOL])


def _cells(db) -> dict[tuple[str, str], dict]:
    df = evals.quality_cells(db, "r1")
    return {(r["exchange_id"], r["provider"]): r for r in df.iter_rows(named=True)}


def _pair(xid: str, base: dict, cands: dict[str, dict], **common) -> list[dict]:
    rows = [make_result(exchange_id=xid, provider="recorded", **common, **base)]
    rows += [make_result(exchange_id=xid, provider=p, **common, **o) for p, o in cands.items()]
    return rows


def test_text_similarity_exact_length_finish_and_refusal(db):
    base = {"response_body": chat_body("The capital of France is Paris.")}
    rows = _pair(
        "t",
        base,
        {
            "same": {"response_body": chat_body("The capital of France is Paris.")},
            "case": {"response_body": chat_body("the capital of france is PARIS!")},
            "long": {
                "response_body": chat_body("The capital of France is Paris. " * 2, finish="length"),
                "finish_reason": "length",
            },
            "refuse": {"response_body": chat_body("I'm sorry, but I can't help with that.")},
        },
    )
    write_run(db, rows, run_config())
    c = _cells(db)
    assert c[("t", "same")]["exact_match"] and c[("t", "same")]["text_similarity"] == 1.0
    assert not c[("t", "case")]["exact_match"] and c[("t", "case")]["text_similarity"] == 1.0  # normalised
    assert c[("t", "long")]["length_ratio"] == pytest.approx(64 / 31)
    assert c[("t", "long")]["finish_agree"] is False and c[("t", "same")]["finish_agree"] is True
    assert c[("t", "refuse")]["new_refusal"] is True and c[("t", "same")]["new_refusal"] is False
    assert c[("t", "refuse")]["text_similarity"] < 0.5
    q = {r["provider"]: r for r in evals.quality(db, "r1").iter_rows(named=True)}
    assert q["refuse"]["new_refusal_rate"] == 1.0 and q["same"]["quality_score"] == 1.0
    # score = mean(similarity, finish agreement, 1 - new refusal) when nothing else applies
    r = q["refuse"]
    assert r["quality_score"] == pytest.approx((r["text_similarity_mean"] + 1.0 + 0.0) / 3)


def test_json_output_checks_pass_and_fail(db):
    good = json.dumps({"answer": "Paris"})
    rows = _pair(
        "js",
        {"response_body": chat_body(good)},
        {
            "ok": {"response_body": chat_body(good)},
            "extra": {
                "response_body": chat_body(json.dumps({"answer": "Paris", "x": 1}))
            },  # valid JSON, violates schema
            "prose": {"response_body": chat_body("Paris")},  # not JSON
        },
        sent_body=JSON_SCHEMA_REQ,
    )
    rows += _pair(
        "jo",
        {"response_body": chat_body("{}")},
        {
            "ok": {"response_body": chat_body('{"a": [1, 2]}')},
            "extra": {"response_body": chat_body('{"a": 1')},  # truncated JSON
            "prose": {"response_body": chat_body("[1]")},
        },
        sent_body=JSON_OBJECT_REQ,
    )
    write_run(db, rows, run_config())
    c = _cells(db)
    assert (c[("js", "ok")]["json_valid"], c[("js", "ok")]["json_schema_valid"]) == (True, True)
    assert (c[("js", "extra")]["json_valid"], c[("js", "extra")]["json_schema_valid"]) == (True, False)
    assert (c[("js", "prose")]["json_valid"], c[("js", "prose")]["json_schema_valid"]) == (False, False)
    assert (c[("jo", "ok")]["json_valid"], c[("jo", "ok")]["json_schema_valid"]) == (True, None)
    assert c[("jo", "extra")]["json_valid"] is False
    q = {r["provider"]: r for r in evals.quality(db, "r1").iter_rows(named=True)}
    assert q["ok"]["json_valid_rate"] == 1.0 and q["ok"]["json_schema_valid_rate"] == 1.0
    assert q["extra"]["json_valid_rate"] == 0.5 and q["extra"]["json_schema_valid_rate"] == 0.0


def test_tool_call_checks_pass_and_fail(db):
    base_call = chat_body(
        None, finish="tool_calls", tool_calls=[tool_call("get_weather", {"city": "Paris", "unit": "c"})]
    )
    cands = {
        "same": [
            tool_call("get_weather", '{"unit": "c", "city": "Paris"}')
        ],  # key order differs: still equal
        "other_args": [tool_call("get_weather", {"city": "Lyon"})],
        "bad_name": [tool_call("get_wether", {"city": "Paris"})],
        "bad_json": [tool_call("get_weather", '{"city": "Paris"')],
        "bad_schema": [tool_call("get_weather", {"town": "Paris"})],
        "two_calls": [
            tool_call("get_weather", {"city": "Paris", "unit": "c"}),
            tool_call("get_weather", {"city": "Rome"}, 1),
        ],
    }
    rows = _pair(
        "tc",
        {"response_body": base_call},
        {p: {"response_body": chat_body(None, "tool_calls", tool_calls=t)} for p, t in cands.items()},
        sent_body=TOOLS_REQ,
    )
    rows += _pair(
        "tx",
        {"response_body": base_call},
        {"same": {"response_body": chat_body("It is sunny.")}},
        sent_body=TOOLS_REQ,
    )
    write_run(db, rows, run_config())
    c = _cells(db)
    assert (
        c[("tc", "same")]["tool_valid"]
        and c[("tc", "same")]["tool_call_agree"]
        and c[("tc", "same")]["tool_names_agree"]
    )
    assert c[("tc", "other_args")]["tool_valid"] and c[("tc", "other_args")]["tool_names_agree"]
    assert c[("tc", "other_args")]["tool_call_agree"] is False
    assert (
        c[("tc", "bad_name")]["tool_name_valid"] is False
        and c[("tc", "bad_name")]["tool_names_agree"] is False
    )
    assert c[("tc", "bad_json")]["tool_args_json"] is False and c[("tc", "bad_json")]["tool_valid"] is False
    assert (
        c[("tc", "bad_schema")]["tool_args_json"] is True
        and c[("tc", "bad_schema")]["tool_args_schema"] is False
    )
    assert c[("tc", "two_calls")]["tool_names_agree"] is False
    assert c[("tx", "same")]["tool_call_agree"] is False  # answered in text where production called a tool
    q = {r["provider"]: r for r in evals.quality(db, "r1").iter_rows(named=True)}
    assert q["same"]["tool_call_agreement"] == 0.5 and q["bad_schema"]["tool_call_valid_rate"] == 0.0


def test_check_json_and_check_tools_units():
    schema = json.dumps(SCHEMA)
    assert check_json('{"answer": "x"}', schema) == (True, True)
    assert check_json('{"answer": 3}', schema) == (True, False)
    assert check_json("nope", None) == (False, None)
    assert check_json(None, schema) == (False, False)
    # 2020-12 vocabulary goes to jsonschema (the reference), draft-7 may go to the fast validator
    tuple_schema = json.dumps({"type": "array", "prefixItems": [{"type": "integer"}], "items": False})
    assert check_json("[1]", tuple_schema) == (True, True)
    assert check_json("[1, 2]", tuple_schema) == (True, False)
    tools = json.dumps([WEATHER_TOOL])
    ok = check_tools(json.dumps([tool_call("get_weather", {"city": "Oslo"})]), tools)
    assert ok["tool_name_valid"] and ok["tool_args_json"] and ok["tool_args_schema"]
    bad = check_tools(json.dumps([tool_call("get_weather", {"city": "Oslo", "unit": "k"})]), tools)
    assert bad["tool_args_schema"] is False
    responses_style = json.dumps(
        [{"type": "function_call", "name": "get_weather", "arguments": '{"city": "Oslo"}', "call_id": "c"}]
    )
    responses_tools = json.dumps(
        [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}]
    )
    assert check_tools(responses_style, responses_tools)["tool_args_schema"] is True


def _emb_body(vectors: np.ndarray) -> dict:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
    }


def test_embeddings_cosine_and_structure(db):
    rng = np.random.default_rng(4)
    base = rng.normal(size=(40, 2, 16))  # 40 requests of 2 inputs each
    proj = rng.normal(size=(16, 24))
    arms = {
        "recorded": base,
        "close": base + rng.normal(scale=0.05, size=base.shape),  # same model, tiny noise
        "projected": base @ proj,  # other dimensions, same geometry (roughly)
        "random": rng.normal(size=(40, 2, 24)),  # other dimensions, unrelated
    }
    rows = [
        make_result(
            exchange_id=f"e{i}",
            provider=p,
            endpoint="embeddings",
            model="emb",
            recorded_model="emb",
            response_body=_emb_body(v[i]),
            sent_body={"model": "emb", "input": ["a", "b"]},
            finish_reason=None,
        )
        for p, v in arms.items()
        for i in range(40)
    ]
    write_run(db, rows, run_config())
    q = {r["provider"]: r for r in evals.quality(db, "r1").iter_rows(named=True)}
    assert q["close"]["embedding_cosine_mean"] > 0.99
    assert q["projected"]["embedding_cosine_mean"] is None and q["random"]["embedding_cosine_mean"] is None
    assert q["close"]["embedding_structure_spearman"] > 0.95
    assert q["projected"]["embedding_structure_spearman"] > 0.5
    assert abs(q["random"]["embedding_structure_spearman"]) < 0.2
    assert q["close"]["quality_score"] > q["random"]["quality_score"]


def test_embedding_cosine_mean_does_not_depend_on_row_order():
    """The store hands cells over in its threads' order; the mean is summed in one fixed order."""
    rng = np.random.default_rng(3)
    n = 40_000
    emb = pl.DataFrame(
        {
            "exchange_id": [f"x{i:05d}" for i in range(n)],
            "provider": ["p"] * n,
            "repeat": [0] * n,
            "endpoint": ["embeddings"] * n,
            "model": ["m"] * n,
            "cosine": rng.uniform(0.9, 1.0, n) * np.pi,  # sums that round differently by order
            "v": [None] * n,
            "vb": [None] * n,
        },
        schema_overrides={"v": pl.List(pl.List(pl.Float64)), "vb": pl.List(pl.List(pl.Float64))},
    )
    by = ["provider"]  # the provider level, whose mean changed in its last digit between runs

    def as_delivered(seed: int) -> pl.DataFrame:  # shuffled, in record batches of varying sizes
        df = emb.sample(fraction=1.0, shuffle=True, seed=seed)
        cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, n), 6, replace=False))
        return pl.concat([df[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)], rechunk=False)

    means = {embedding_pairs(as_delivered(s), "recorded", by)["embedding_cosine_mean"][0] for s in range(8)}
    assert len(means) == 1, means


def test_quality_sample_bounds_work_but_the_scorecard_sees_every_cell(db):
    rows = [
        make_result(exchange_id=f"e{i}", provider=p, response_body=chat_body(f"answer {i}"))
        for i in range(60)
        for p in ("recorded", "p")
    ]
    write_run(db, rows, run_config())
    ev = evals.evaluate(db, "r1", quality_sample=15)
    q = ev.quality.filter(ev.quality["provider"] == "p").row(0, named=True)
    assert 0 < q["n_text_compared"] < 60 and q["text_similarity_mean"] == 1.0
    sdk = ev.compat.filter((ev.compat["provider"] == "p") & (ev.compat["check"] == "sdk_valid")).row(
        0, named=True
    )
    assert sdk["passed"] == 60
    assert evals.evaluate(db, "r1", quality_sample=None).quality["n_text_compared"].max() == 60
