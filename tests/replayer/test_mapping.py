"""The request each provider gets: only declared changes, headers from scratch, multipart byte-exact."""

from __future__ import annotations

import json

from replayhelpers import make_exchange, multipart_body

from parity.replayer.config import parse_config
from parity.replayer.mapping import (
    apply_changes,
    build_headers,
    exchange_skip_reason,
    prepare,
    provider_skip_reason,
)
from parity.replayer.select import Exchange
from parity.wire.multipart import boundary_of, field_value, replace_field


def _x(**kw) -> Exchange:
    row = make_exchange(**kw)
    return Exchange(**{k: v for k, v in row.items() if k in Exchange.__dataclass_fields__})


def _p(**table):
    return parse_config({"p": {"base_url": "http://127.0.0.1:9/v1", **table}}).providers["p"]


def test_no_changes_sends_the_recorded_bytes() -> None:
    body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "h\\u00e9"}], "stream": false}'
    x = _x(body={}, request_body=body, model="gpt-4o-mini")
    prep = prepare(x, _p(models={"*": "*"}))
    assert prep.body == body.encode() and prep.sent_json == body and prep.changes == []
    assert prep.url == "http://127.0.0.1:9/v1/chat/completions"


def test_declared_changes_only_and_in_place() -> None:
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "héllo"}],
        "store": True,
        "service_tier": "auto",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    original = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    x = _x(body={}, request_body=original, model="gpt-4o-mini", stream=True)
    p = _p(
        models={"gpt-4o-mini": "llama-3"},
        drop=["store", "service_tier", "absent"],
        rename={"max_tokens": "max_completion_tokens"},
        set={"temperature": 0, "stream_options.include_usage": True, "extra.deep": "x"},
    )
    prep = prepare(x, p)
    sent = json.loads(prep.sent_json)
    assert list(sent) == [
        "model",
        "max_completion_tokens",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "extra",
    ]
    assert (
        sent["model"] == "llama-3" and sent["max_completion_tokens"] == 5 and sent["extra"] == {"deep": "x"}
    )
    assert [c["op"] for c in prep.changes] == ["model", "rename", "drop", "drop", "set", "set"]
    assert apply_changes(body, prep.changes) == sent  # the stored changes explain the whole difference
    assert prep.sent_json == json.dumps(
        sent, separators=(",", ":"), ensure_ascii=False
    )  # recorded style kept
    assert "héllo" in prep.sent_json


def test_recorded_json_style_is_kept() -> None:
    body = {"model": "a", "input": "ü"}
    spaced = json.dumps(body)  # default separators and ASCII escapes
    prep = prepare(
        _x(body={}, request_body=spaced, model="a", endpoint="embeddings", path="/v1/embeddings"),
        _p(models={"a": "b"}),
    )
    assert prep.sent_json == json.dumps({"model": "b", "input": "ü"})


def test_headers_built_from_scratch() -> None:
    h = build_headers(_p(headers={"HTTP-Referer": "https://example.com"}), "sk-test")
    assert h["authorization"] == "Bearer sk-test" and h["user-agent"].startswith("parity/")
    assert h["HTTP-Referer"] == "https://example.com"
    assert not any(k.lower() in ("cookie", "openai-organization", "openai-project", "api-key") for k in h)
    azure = build_headers(_p(api_key_header="api-key"), "k2")
    assert azure["api-key"] == "k2" and "authorization" not in azure
    assert "authorization" not in build_headers(_p(), None)


def test_multipart_model_rewritten_byte_exact() -> None:
    raw, ct = multipart_body("whisper-1")
    assert boundary_of(ct) == "----parityBoundary7MA4YWxk"
    assert field_value(raw, ct, "model") == "whisper-1"
    assert field_value(raw, ct, "file") is None  # file parts are not text fields
    new, old = replace_field(raw, ct, "model", "large-v3")
    assert old == "whisper-1"
    assert new.replace(b"large-v3", b"whisper-1", 1) == raw
    assert replace_field(raw, ct, "missing", "x") == (raw, None)
    x = _x(
        body={},
        endpoint="audio.transcriptions",
        path="/v1/audio/transcriptions",
        model="whisper-1",
        request_raw=raw,
        request_content_type=ct,
    )
    prep = prepare(x, _p(models={"whisper-1": "large-v3"}, drop=["store"]))
    assert prep.sent_json is None and prep.sent_raw == new and prep.content_type == ct
    assert prep.changes == [{"op": "model", "path": "model", "from": "whisper-1", "to": "large-v3"}]
    same = prepare(x, _p(models={"*": "*"}))
    assert same.sent_raw == raw and same.changes == []


def test_skip_reasons() -> None:
    assert "side effects" in exchange_skip_reason(_x(path="/v1/files", endpoint="other"))
    assert "side effects" in exchange_skip_reason(_x(method="DELETE", path="/v1/vector_stores/vs_1"))
    assert "side effects" in exchange_skip_reason(_x(path="/v1/threads/t/runs", endpoint="other"))
    assert "not replayable" in exchange_skip_reason(_x(method="GET", path="/v1/models", endpoint="models"))
    assert exchange_skip_reason(_x(body={}, request_body=None)) == "no request body recorded"
    assert exchange_skip_reason(_x()) is None
    p = _p(models={"gpt-4o": "x"}, endpoints=["embeddings"])
    assert "not supported" in provider_skip_reason(_x(), p)
    assert "not mapped" in provider_skip_reason(_x(model="o3", endpoint="embeddings"), p)
