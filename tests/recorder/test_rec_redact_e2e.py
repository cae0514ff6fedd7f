"""Redaction end to end: a real ``parity record`` with rules and a hook, the openai SDK, the fake provider.

The originals must appear in no file the recorder writes (segments, spill, catalog, its log),
while the app gets the untouched traffic.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import openai
import pyarrow.parquet as pq
import pytest

from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

KEY = "sk-proj-RedactE2eKey0123456789abcdef"
EMAIL = "maria.lopez@corp-mail.example"
SPILL_EMAIL = "spill.person@corp-mail.example"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
CUSTOMER = "CUST-482913"
ZEBRA = "ZEBRA-7781"
BOOM = "BOOM-TRIGGER secret-payload-99"
ORIGINALS = [EMAIL, SPILL_EMAIL, PHONE, CARD, CUSTOMER, ZEBRA, "secret-payload-99", KEY]

RULES = """
builtin = ["credit_card"]

[[rule]]
name = "customer"
pattern = 'CUST-\\d{6}'
"""
HOOK = """
import re

def scrub(text):
    if "BOOM-TRIGGER" in text:
        raise RuntimeError("hook exploded on " + text)
    return re.sub(r"ZEBRA-\\d+", "[REDACTED:zebra]", text)
"""
MAIL_TOOL = {
    "type": "function",
    "function": {
        "name": "send_mail",
        "parameters": {
            "type": "object",
            "properties": {"to": {"type": "string", "format": "email"}, "body": {"type": "string"}},
            "required": ["to", "body"],
        },
    },
}


def wav_bytes(seconds: float = 0.2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", (i * 37) % 2000 - 1000) for i in range(int(8000 * seconds))))
    return buf.getvalue()


def files_under(*roots: Path) -> list[Path]:
    out = []
    for r in roots:
        if r.is_file():
            out.append(r)
        elif r.exists():
            out += [p for p in r.rglob("*") if p.is_file()]
    return out


def leaks(files: list[Path], needles: list[str]) -> list[str]:
    """Where any needle occurs: raw bytes of every file, and every decoded value of Parquet files."""
    hits = []
    for f in files:
        data = f.read_bytes()
        hits += [f"{f}: {n}" for n in needles if n.encode() in data]
        if f.suffix == ".parquet":
            for col in pq.read_table(f).to_pylist():
                text = json.dumps(
                    col, default=lambda v: v.decode("latin-1") if isinstance(v, bytes) else str(v)
                )
                text += "".join(v.decode("latin-1") for v in col.values() if isinstance(v, bytes))
                hits += [f"{f} (decoded): {n}" for n in needles if n in text or json.dumps(n)[1:-1] in text]
    return hits


def chat(client: openai.OpenAI, content: str, **kw):
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **kw
    )


def test_record_with_rules_and_hook(run_recorder, tmp_path: Path) -> None:
    from parity.fake.server import FakeProvider

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    hook = tmp_path / "hooks.py"
    hook.write_text(HOOK)
    spill = tmp_path / "spill-redact"
    with FakeProvider.running(profile="instant", port=0) as fp:
        rec = run_recorder(
            fp.url,
            "--flush-interval",
            "0.2",
            "--redact",
            str(rules),
            "--redact-builtin",
            "email,phone",
            "--redact-builtin",
            "openai_key",
            "--redact-hook",
            f"{hook}:scrub",
            spill_dir=spill,
        )
        root = Path(str(rec.db) + ".d")
        client = openai.OpenAI(base_url=rec.base_url, api_key=KEY, max_retries=0)
        answer = chat(client, f"Mail {EMAIL}, call {PHONE}, card {CARD}, account {CUSTOMER}, code {ZEBRA}.")
        assert answer.choices[0].message.content  # the app is served as usual
        stream = chat(
            client,
            f"send a note to {EMAIL}",
            tools=[MAIL_TOOL],
            tool_choice={"type": "function", "function": {"name": "send_mail"}},
            stream=True,
        )
        pieces = [
            c.choices[0].delta.tool_calls[0].function.arguments
            for c in stream
            if c.choices and c.choices[0].delta.tool_calls
        ]
        streamed_email = json.loads("".join(pieces))["to"]  # made up by the provider, split over events
        assert "@" in streamed_email and not any(streamed_email in p for p in pieces)
        list(client.responses.create(model="gpt-4o-mini", input=f"greet {CUSTOMER}", stream=True))
        client.embeddings.create(model="text-embedding-3-small", input=[f"profile of {EMAIL}", "plain"])
        audio = wav_bytes()
        client.audio.transcriptions.create(
            model="whisper-1", file=("clip.wav", audio, "audio/wav"), prompt=f"caller {PHONE}"
        )
        chat(client, BOOM)  # the hook raises on this text
        deadline = time.monotonic() + 10
        while not list((root / "exchanges").glob("seg-*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)

        # The store breaks: rows go to the spill folder, which must hold no original either.
        table = root / "exchanges"
        moved = table.with_name("exchanges.moved")
        table.rename(moved)
        table.write_text("not a folder")
        chat(client, f"spilled: write to {SPILL_EMAIL} about {CUSTOMER}")
        deadline = time.monotonic() + 15
        while "total spilled" not in rec.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "total spilled" in rec.log(), rec.log()[-2000:]
        spilled = files_under(spill)
        assert any(p.suffix == ".parquet" for p in spilled)
        assert leaks(spilled, ORIGINALS + [streamed_email]) == []
        table.unlink()
        moved.rename(table)
        deadline = time.monotonic() + 15
        while "re-imported" not in rec.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert rec.stop() == 0

    log = rec.log()
    assert "redacting message content before storage" in log
    assert "hook" in log and "raised RuntimeError" in log
    files = files_under(rec.db, root, spill)
    assert len(files) > 8
    assert leaks(files, ORIGINALS + [streamed_email]) == []
    assert not [n for n in ORIGINALS + [streamed_email] if n in log]

    con = connect(rec.db)
    rows = con.execute(
        "SELECT endpoint, CAST(request_body AS VARCHAR), request_raw, CAST(response_body AS VARCHAR), response_raw, "
        "redactions, request_redactions, error_type, error_message, recorder_id FROM exchanges ORDER BY recorded_at"
    ).fetchall()
    assert len(rows) == 7
    for _ep, req, _raw, resp, _sse, n, _nreq, _et, _em, _rid in rows:
        assert n is not None and n >= 0
        for text in (req, resp):
            if text is not None:
                json.loads(text)  # still valid JSON
    first = rows[0]
    body = json.loads(first[1])
    assert body["messages"][0]["content"] == (
        "Mail [REDACTED:email], call [REDACTED:phone], card [REDACTED:credit_card], "
        "account [REDACTED:customer], code [REDACTED:zebra]."
    )
    assert set(body) >= {"model", "messages"} and first[6] == 5

    tools = next(r for r in rows if r[4] and "send_mail" in r[4])
    args = []
    for line in tools[4].splitlines():
        if line.startswith("data: {"):
            ev = json.loads(line[6:])
            for ch in ev.get("choices") or []:
                for tc in (ch.get("delta") or {}).get("tool_calls") or []:
                    args.append((tc.get("function") or {}).get("arguments") or "")
    assert json.loads("".join(args))["to"] == "[REDACTED:email]"  # the split e-mail, found across events
    assert not any("@" in a for a in args)
    assert json.loads(tools[3])["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"].startswith(
        '{"to":"[REDACTED:email]"'
    )

    responses = next(r for r in rows if r[0] == "responses")
    assert "[REDACTED:customer]" in responses[1] and responses[6] == 1
    audio_row = next(r for r in rows if r[0] == "audio.transcriptions")
    assert audio in audio_row[2] and b"caller [REDACTED:phone]" in audio_row[2]
    boom = next(r for r in rows if r[1] and "hook-error" in r[1])
    assert json.loads(boom[1])["messages"][0]["content"] == "[REDACTED:hook-error]"
    assert boom[7] == "redaction_error" and "RuntimeError" in boom[8]

    [(rid, tag, db, opts)] = con.execute(
        "SELECT recorder_id, tag, db, CAST(options AS VARCHAR) FROM recordings"
    ).fetchall()
    assert rid == first[9] and db == str(rec.db)
    red = json.loads(opts)["redaction"]
    assert [r["name"] for r in red["rules"]] == ["email", "phone", "openai_key", "credit_card", "customer"]
    assert red["rules"][-1]["pattern"] == "CUST-\\d{6}" and red["rules_file"] == str(rules)
    assert red["hook"] == f"{hook}:scrub" and len(red["hook_sha256"]) == 64 and red["hash"]
    assert KEY not in opts


def test_bad_rules_stop_the_recorder_with_one_line(tmp_path: Path, proc_kit) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "ssn"\npattern = "\\\\d{3}-(\\\\d{2}"\n')
    db = tmp_path / "x.duckdb"
    port = proc_kit.free_port()
    argv = [sys.executable, "-m", "parity.recorder.cli", "record", "--upstream", "http://127.0.0.1:9"]
    argv += ["--listen", f"127.0.0.1:{port}", "--db", str(db), "--confdir", str(tmp_path / "conf")]
    out = subprocess.run([*argv, "--redact", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "redaction rule 'ssn': bad regex" in out.stderr
    assert not (tmp_path / "x.duckdb.d" / "exchanges").exists()  # nothing started
    out = subprocess.run(
        [*argv, "--redact-hook", f"{tmp_path}/missing.py:f"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "no file" in out.stderr and out.stderr.strip().count("\n") == 0


def test_import_redacts_too(tmp_path: Path) -> None:
    entry = {
        "startedDateTime": "2026-01-02T03:04:05Z",
        "time": 10,
        "request": {
            "method": "POST",
            "url": "https://api.openai.com/v1/chat/completions",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "postData": {
                "mimeType": "application/json",
                "text": json.dumps({"model": "m", "messages": [{"role": "user", "content": f"hi {EMAIL}"}]}),
            },
        },
        "response": {
            "status": 200,
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "content": {
                "mimeType": "application/json",
                "text": json.dumps({"choices": [{"message": {"content": PHONE}}]}),
            },
        },
        "timings": {"wait": 5},
    }
    har = tmp_path / "t.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": [entry]}}))
    db = tmp_path / "i.duckdb"
    cmd = [sys.executable, "-m", "parity.recorder.cli", "import", str(har), "--db", str(db)]
    bad = subprocess.run([*cmd, "--redact-builtin", "emial"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown built-in redaction rule 'emial'" in bad.stderr
    ok = subprocess.run([*cmd, "--redact-builtin", "email,phone"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert leaks(files_under(db, Path(str(db) + ".d")), [EMAIL, PHONE]) == []
    con = connect(db)
    [(req, resp, n, nreq)] = con.execute(
        "SELECT CAST(request_body AS VARCHAR), CAST(response_body AS VARCHAR), redactions, request_redactions "
        "FROM exchanges"
    ).fetchall()
    assert "[REDACTED:email]" in req and "[REDACTED:phone]" in resp and (n, nreq) == (2, 1)
    [(opts,)] = con.execute("SELECT CAST(options AS VARCHAR) FROM recordings").fetchall()
    assert json.loads(opts)["source"] == "import"
    assert [r["name"] for r in json.loads(opts)["redaction"]["rules"]] == ["email", "phone"]
