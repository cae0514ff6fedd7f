"""Content redaction (recorder/redact.py): rules, hook, JSON/SSE/multipart, rows, the writer and the addon."""

from __future__ import annotations

import json
import pickle
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import exceptions
from mitmproxy.http import Request, Response
from mitmproxy.test import taddons, tflow

from parity.recorder.addon import Recorder
from parity.recorder.capture import Capture, build_row
from parity.recorder.redact import build
from parity.recorder.redact_text import HOOK_ERROR
from parity.recorder.redaction_rules import BUILTIN, RedactionError, luhn
from parity.store.segments import segment_root
from parity.store.store import connect, init_catalog
from parity.store.writer import BatchWriter

ALL = ",".join(BUILTIN)
PII = {
    "email": "jane.roe+work@mail.example.org",
    "phone": "+1 (415) 555-0100",
    "credit_card": "4111 1111 1111 1111",
    "ipv4": "192.168.10.254",
    "openai_key": "sk-proj-AbCdEf0123456789ghijKLMN",
}


def chat_sse(pieces: list[str], key: str = "content") -> str:
    events = []
    for p in pieces:
        delta = (
            {"content": p}
            if key == "content"
            else {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
        )
        events.append(
            {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
        )
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def sse_texts(raw: str, path) -> list[str]:
    out = []
    for line in raw.splitlines():
        if line.startswith("data: {"):
            out.append(path(json.loads(line[6:])))
    return out


# --- rules ---
@pytest.mark.parametrize(("name", "text"), list(PII.items()))
def test_each_builtin_finds_its_kind(name: str, text: str) -> None:
    r = build(builtin=name)
    assert r.text(f"see {text}, thanks") == f"see [REDACTED:{name}], thanks"


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3 released 2024-01-15 at 10:30",
        "pi is 3.14159265 and e is 2.718281828",
        "card-like 4111 1111 1111 1112 fails the Luhn check",
        "a sk-short key, and task-force",
        "no at sign here example.com",
    ],
)
def test_builtins_leave_ordinary_text_alone(text: str) -> None:
    r = build(builtin="email,credit_card,ipv4,openai_key")
    assert r.text(text) == text


def test_luhn() -> None:
    assert luhn("4111 1111 1111 1111") and luhn("5500-0000-0000-0004")
    assert not luhn("4111 1111 1111 1112") and not luhn("1234")


def test_overlapping_matches_merge_whatever_the_rule_order() -> None:
    a = build(builtin="phone,credit_card")
    b = build(builtin="credit_card,phone")
    text = "pay with 4111 1111 1111 1111 today"
    assert a.text(text) == b.text(text) == "pay with [REDACTED:credit_card] today"


def test_rules_file(tmp_path: Path) -> None:
    f = tmp_path / "rules.toml"
    f.write_text(
        'builtin = ["email"]\n'
        "[[rule]]\nname = \"customer\"\npattern = 'CUST-\\d{6}'\n"
        '[[rule]]\nname = "ticket"\npattern = "TCK[0-9]+"\nreplacement = "<ticket>"\n'
    )
    r = build(f, builtin="phone")
    assert r.text("CUST-123456 TCK99 a@b.io") == "[REDACTED:customer] <ticket> [REDACTED:email]"
    d = r.describe()
    assert [x["name"] for x in d["rules"]] == ["phone", "email", "customer", "ticket"]
    assert d["rules"][2]["pattern"] == "CUST-\\d{6}" and d["rules_file"] == str(f.resolve())
    assert len(d["hash"]) == 16 and d["hash"] != build(builtin="phone").describe()["hash"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[rule]]\nname = "x"\npattern = "(unclosed"\n', "bad regex '(unclosed'"),
        ('[[rule]]\nname = "x"\npattern = "a*"\n', "matches empty text"),
        ('[[rule]]\nname = "x"\n', "needs a name and a non-empty pattern"),
        ('[[rule]]\nname = "x"\npattern = "a"\nflags = "i"\n', "unknown key(s) ['flags']"),
        ('[[rule]]\nname = "x y"\npattern = "a"\n', "use letters, digits"),
        ('[[rule]]\nname = "x"\npattern = "RED"\n', "is matched by rule 'x'"),
        ('builtin = ["emial"]\n', "unknown built-in redaction rule 'emial'"),
        ('rules = "x"\n', "unknown key(s) ['rules']"),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_bad_rules_are_one_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "rules.toml"
    f.write_text(toml)
    with pytest.raises(RedactionError) as e:
        build(f)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_or_broken_hooks_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RedactionError, match="no file"):
        build(hook=str(tmp_path / "nope.py") + ":f")
    with pytest.raises(RedactionError, match="cannot import no_such_module_xyz"):
        build(hook="no_such_module_xyz:f")
    (tmp_path / "h.py").write_text("def f(text):\n    return 1\n\ndef g(a, b):\n    return a\n")
    with pytest.raises(RedactionError, match="has no function missing"):
        build(hook=f"{tmp_path / 'h.py'}:missing")
    with pytest.raises(RedactionError, match="must return a str"):
        build(hook=f"{tmp_path / 'h.py'}:f")
    with pytest.raises(RedactionError, match="failed on a test string"):
        build(hook=f"{tmp_path / 'h.py'}:g")
    with pytest.raises(RedactionError, match="module:function"):
        build(hook="nocolon")
    assert build() is None and build(builtin="") is None


def test_module_hook_and_pickling(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "parity_test_hooks.py").write_text(
        "import re\ndef scrub(text):\n    return re.sub(r'ZEBRA-\\d+', '[REDACTED:zebra]', text)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = build(builtin="email", hook="parity_test_hooks:scrub")
    again = pickle.loads(pickle.dumps(r))  # what the writer process receives
    assert again.text("ZEBRA-12 x@y.io") == r.text("ZEBRA-12 x@y.io") == "[REDACTED:zebra] [REDACTED:email]"
    assert again.describe() == r.describe() and r.describe()["hook_sha256"]


# --- formats ---
def test_json_values_not_keys_and_untouched_bodies_stay_exact() -> None:
    r = build(builtin="email")
    body = '{"model": "m", "a@b.io": ["write to a@b.io", {"n": 1, "x": null}]}'
    row = {"request_body": body}
    r.apply_row(row)
    assert json.loads(row["request_body"]) == {
        "model": "m",
        "a@b.io": ["write to [REDACTED:email]", {"n": 1, "x": None}],
    }
    assert row["redactions"] == row["request_redactions"] == 1
    # identifiers and enums are not content: the request's model, a response's id; user keys are
    row = {
        "request_body": '{"model": "a@b.io", "metadata": {"id": "c@d.io"}}',
        "response_body": '{"id": "e@f.io", "choices": [{"message": {"role": "assistant", "content": "g@h.io"}}]}',
    }
    r.apply_row(row)
    assert json.loads(row["request_body"]) == {"model": "a@b.io", "metadata": {"id": "[REDACTED:email]"}}
    assert json.loads(row["response_body"])["id"] == "e@f.io" and "g@h.io" not in row["response_body"]
    clean = '{"model" : "m",  "messages": []}'  # odd spacing kept byte for byte
    row = {"request_body": clean}
    r.apply_row(row)
    assert row["request_body"] is clean and row["redactions"] == 0


def test_a_split_email_is_found_across_stream_events() -> None:
    r = build(builtin="email")
    pieces = ["Write to jo", "hn.do", "e@exam", "ple.com", " today. Or x@y.io"]
    row = {"response_content_type": "text/event-stream", "response_raw": chat_sse(pieces)}
    r.apply_row(row)
    texts = sse_texts(row["response_raw"], lambda e: e["choices"][0]["delta"]["content"])
    assert texts == ["Write to [REDACTED:email]", "", "", "", " today. Or [REDACTED:email]"]
    assert row["response_raw"].endswith("data: [DONE]\n\n")
    # tool-call arguments too, kept apart from the content channel
    args = ['{"to": "bob', "@corp", '.com", "cc": "', 'x@y.io"}']
    row = {"response_content_type": "text/event-stream", "response_raw": chat_sse(args, key="args")}
    r.apply_row(row)
    got = "".join(
        sse_texts(
            row["response_raw"], lambda e: e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        )
    )
    assert json.loads(got) == {"to": "[REDACTED:email]", "cc": "[REDACTED:email]"}
    assert row["redactions"] == 2 and row["request_redactions"] == 0


def test_responses_stream_channels_and_plain_lines() -> None:
    r = build(builtin="email")
    ev = [
        {
            "type": "response.output_text.delta",
            "item_id": "m1",
            "output_index": 0,
            "content_index": 0,
            "delta": "mail a",
        },
        {
            "type": "response.output_text.delta",
            "item_id": "m1",
            "output_index": 0,
            "content_index": 0,
            "delta": "@b.io now",
        },
        {
            "type": "response.output_text.done",
            "item_id": "m1",
            "output_index": 0,
            "content_index": 0,
            "text": "mail a@b.io now",
        },
    ]
    raw = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in ev) + ": keep-alive c@d.io\n\n"
    row = {"response_content_type": "text/event-stream; charset=utf-8", "response_raw": raw}
    r.apply_row(row)
    out = row["response_raw"]
    assert "@" not in out and out.count("event: response.output_text.") == 3
    assert ": keep-alive [REDACTED:email]" in out
    assert "mail [REDACTED:email] now" in out


def test_multipart_text_parts_only() -> None:
    r = build(builtin="phone")
    b = "XyZb0undary"
    audio = bytes(range(256)) * 4 + b"call 415 555 0100"  # binary file bytes are not text: kept
    raw = (
        f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
        + audio
        + f'\r\n--{b}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ncall 415 555 0100\r\n'.encode()
        + f'--{b}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--{b}--\r\n'.encode()
    )
    row = {"request_raw": raw, "request_content_type": f"multipart/form-data; boundary={b}"}
    r.apply_row(row)
    out = row["request_raw"]
    assert audio in out and b'name="prompt"\r\n\r\ncall [REDACTED:phone]\r\n--' in out
    assert out.replace(b"call [REDACTED:phone]\r\n--", b"call 415 555 0100\r\n--") == raw
    assert row["request_redactions"] == 1


def test_exact_byte_copies_and_undecodable_bodies() -> None:
    r = build(builtin="email")
    body = '{"q": "a@b.io \\ud800"}'
    row = {"request_body": body, "request_raw": body.encode(), "response_raw_bytes": b"\xff\xfe x@y.io \xff"}
    r.apply_row(row)
    assert row["request_raw"] is None  # the exact copy of a body that changed is not kept
    assert row["response_raw_bytes"] == b"\xff\xfe [REDACTED:email] \xff"
    row = {"response_raw": "data: plain a@b.io", "error_message": "unknown user a@b.io"}
    r.apply_row(row)
    assert row["response_raw"] == "data: plain [REDACTED:email]"
    assert row["error_message"] == "unknown user [REDACTED:email]" and row["redactions"] == 2


def test_a_failing_hook_stores_a_placeholder_and_says_so(tmp_path: Path, caplog) -> None:
    (tmp_path / "h.py").write_text(
        "def f(text):\n    if 'BOOM' in text:\n        raise ValueError('secret ' + text)\n    return text.replace('ZEBRA', 'Z')\n"
    )
    r = build(hook=f"{tmp_path / 'h.py'}:f")
    row = {
        "request_body": json.dumps({"messages": [{"content": "BOOM my secret"}, {"content": "ZEBRA ok"}]}),
        "error_message": None,
    }
    r.apply_row(row)
    body = json.loads(row["request_body"])
    assert body["messages"] == [{"content": HOOK_ERROR}, {"content": "Z ok"}]
    assert row["error_type"] == "redaction_error" and "ValueError" in row["error_message"]
    assert "my secret" not in json.dumps(row) and "my secret" not in caplog.text
    r.apply_row({"request_body": '{"a": "BOOM"}'})
    assert caplog.text.count("raised ValueError") == 1  # logged once, counted after
    assert r.hook_errors == 2
    row = {"error_type": "http_400", "error_message": "BOOM"}
    r.apply_row(row)
    assert row["error_type"] == "http_400" and row["error_message"].startswith(
        HOOK_ERROR + " [redaction hook"
    )


# --- properties ---
PIECES = st.sampled_from([*PII.values(), " ", ".", "@", "-", "1", "a", "x.y", "555", "\n", "é", "[", "]"])
TEXT = st.lists(
    st.one_of(PIECES, st.text(string.ascii_letters + string.digits + " .@-+()", max_size=12)), max_size=12
).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4),
    max_leaves=20,
)
R = build(builtin=ALL)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(PIECES, TEXT), min_size=1, max_size=10))
def test_redacting_twice_equals_once(parts: list[str]) -> None:
    once = R.text("".join(parts))
    assert R.text(once) == once
    apart = R.text(" | ".join(parts)).split(" | ")  # a value standing on its own is always found
    for part, out in zip(parts, apart, strict=True):
        if part in PII.values():
            assert out.startswith("[REDACTED:") and out.endswith("]"), (part, out)


@settings(max_examples=200, deadline=None)
@given(JSON, st.lists(TEXT, max_size=6))
def test_json_stays_valid_and_idempotent(doc, pieces) -> None:
    row = {
        "request_body": json.dumps(doc),
        "response_content_type": "text/event-stream",
        "response_raw": chat_sse(pieces),
    }
    R.apply_row(row)
    out = json.loads(row["request_body"])
    assert _keys(out) == _keys(doc)  # keys are never touched
    again = dict(row, redactions=None)
    R.apply_row(again)
    assert again["request_body"] == row["request_body"] and again["response_raw"] == row["response_raw"]
    streamed = "".join(sse_texts(row["response_raw"], lambda e: e["choices"][0]["delta"]["content"]))
    assert streamed == R.text("".join(pieces))  # the stream reads as the redacted whole text


def _keys(doc) -> list:
    if isinstance(doc, dict):
        return [(k, _keys(v)) for k, v in doc.items()]
    if isinstance(doc, list):
        return [_keys(v) for v in doc]
    return []


# --- where it runs ---
def test_the_writer_redacts_before_writing(migrated_store: Path, tmp_path: Path) -> None:
    cap = Capture(
        wall_start=1.7e9,
        t_start=0.0,
        method="POST",
        path="/v1/chat/completions",
        host="api.openai.com",
        request_headers={"content-type": "application/json"},
        request_raw=json.dumps({"model": "m", "messages": [{"role": "user", "content": "a@b.io"}]}).encode(),
        status=200,
        response_headers={"content-type": "application/json"},
        body=b'{"choices": [{"message": {"content": "hi a@b.io"}}]}',
    )
    assert "a@b.io" in build_row(Capture(**{**cap.__dict__}))["request_body"]
    w = BatchWriter(
        segment_root(migrated_store), spill_dir=tmp_path / "spill", redactor=build(builtin="email")
    )
    w.start(background=False)
    w.put("exchanges", cap)
    w.put("exchanges", build_row(Capture(**{**cap.__dict__, "id": "prebuilt"})))  # a row built elsewhere
    w.close()
    rows = (
        connect(migrated_store)
        .execute(
            "SELECT CAST(request_body AS VARCHAR), CAST(response_body AS VARCHAR), redactions, request_redactions FROM exchanges"
        )
        .fetchall()
    )
    assert len(rows) == 2
    for req, resp, n, nreq in rows:
        assert "a@b.io" not in req + resp and (n, nreq) == (2, 1)


def _flow():
    body = {"model": "m", "messages": [{"role": "user", "content": "ring +1 415 555 0100"}]}
    req = Request.make(
        "POST",
        "http://api.example/v1/chat/completions",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )
    return tflow.tflow(req=req)


def test_addon_options_and_recordings_row(tmp_path: Path) -> None:
    r = Recorder()
    db = tmp_path / "parity.duckdb"
    with taddons.context(r) as tctx:
        with pytest.raises(exceptions.OptionsError, match="unknown built-in redaction rule 'nope'"):
            tctx.configure(r, parity_redact_builtin="nope")
        bad = tmp_path / "bad.toml"
        bad.write_text('[[rule]]\nname = "x"\npattern = "[z"\n')
        with pytest.raises(exceptions.OptionsError, match="bad regex"):
            tctx.configure(r, parity_redact=str(bad), parity_db=str(db))
        assert r.writer is None  # nothing started
        tctx.configure(
            r,
            parity_db=str(db),
            parity_spill_dir=str(tmp_path / "spill"),
            parity_writer="thread",
            parity_redact_builtin="phone",
            parity_tag="t1",
        )
        f = _flow()
        r.request(f)
        f.response = Response.make(200, b'{"ok": true}', {"content-type": "application/json"})
        r.responseheaders(f)
        r.response(f)
        r.done()
    con = connect(db)
    [(body, n)] = con.execute("SELECT CAST(request_body AS VARCHAR), redactions FROM exchanges").fetchall()
    assert "555" not in body and "[REDACTED:phone]" in body and n == 1
    [(rid, tag, opts)] = con.execute(
        "SELECT recorder_id, tag, CAST(options AS VARCHAR) FROM recordings"
    ).fetchall()
    opts = json.loads(opts)
    assert rid == r.recorder_id and tag == "t1" and opts["writer"] == "thread"
    assert opts["redaction"]["rules"][0]["name"] == "phone" and opts["redaction"]["hash"]


def test_older_store_without_the_new_columns_opens(tmp_path: Path) -> None:
    """A store written before redaction existed: no recordings folder, no redactions columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from parity.store.schema import EXCHANGES

    db = tmp_path / "old.duckdb"
    init_catalog(db)
    root = segment_root(db)
    old = pa.schema([f for f in EXCHANGES if f.name not in ("redactions", "request_redactions")])
    for p in (root / "exchanges").glob("_schema-*.parquet"):  # the seed an older version wrote
        p.unlink()
    pq.write_table(old.empty_table(), root / "exchanges" / "_schema-000000000000.parquet")
    pq.write_table(
        pa.Table.from_pylist([{"id": "old", "endpoint": "chat.completions"}], schema=old),
        root / "exchanges" / "seg-0-old-000001.parquet",
    )
    for p in (root / "recordings").glob("*"):
        p.unlink()
    (root / "recordings").rmdir()
    con = connect(db)
    assert con.execute("SELECT id FROM exchanges").fetchall() == [("old",)]
    assert con.execute("SELECT count(*) FROM recordings").fetchall() == [(0,)]
