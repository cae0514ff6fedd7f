"""Running the fake: CLI subprocess, signals, request log, async/in-process use, determinism."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from fakehelpers import HTTP, post_raw, wav_bytes

from parity.fake.cli import main
from parity.fake.server import FakeProvider

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name three rivers."}]}


def _spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "parity.fake.server", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_logs_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "requests.jsonl"
    proc, line = _spawn(
        "--profile",
        "fast",
        "--set",
        "ttft_ms=5",
        "--set",
        "itl_ms=0",
        "--seed",
        "7",
        "--request-log",
        str(log),
    )
    try:
        assert line.startswith("fake-provider listening on http://127.0.0.1:") and line.endswith(
            "/v1 (profile fast)\n"
        )
        base = line.split()[3]
        client = openai.OpenAI(base_url=base, api_key="sk-secret", max_retries=0, http_client=HTTP)
        r = client.chat.completions.create(**CHAT)
        assert r.choices[0].message.content
        HTTP.post(
            base + "/audio/transcriptions",
            files={"file": ("a.wav", wav_bytes(0.5))},
            data={"model": "whisper-1"},
        )
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one stdout line, already read
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["path"] for r in recs] == ["/v1/chat/completions", "/v1/audio/transcriptions"]
    assert recs[0]["body"] == CHAT and recs[0]["method"] == "POST" and recs[0]["received_at"] > 0
    assert "authorization" not in recs[0]["headers"] and "sk-secret" not in log.read_text()
    assert recs[1]["body"] is None and b"RIFF" in base64.b64decode(recs[1]["body_b64"])


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--set", "nope=1"],
        ["--set", "ttft_ms"],
        ["--profile", "nope"],
        ["--set", "error_kinds=418"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert main(["--list-profiles", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"openai-like", "fast", "slow", "flaky", "cold-start", "quirky", "instant"} <= set(listed)


def test_async_context_manager_and_requests() -> None:
    async def run() -> None:
        async with FakeProvider("fast", time_scale=0.01, seed=3) as fp:
            client = openai.AsyncOpenAI(base_url=fp.base_url, api_key="k", max_retries=0)
            r1, r2 = await asyncio.gather(
                client.chat.completions.create(**CHAT),
                client.chat.completions.create(**CHAT, stream=True),
            )
            text = "".join([c.choices[0].delta.content or "" async for c in r2 if c.choices])
            assert text == r1.choices[0].message.content
            bodies = [q["body"] for q in fp.requests]
            assert CHAT in bodies and {**CHAT, "stream": True} in bodies  # identical payloads recorded
            await client.close()

    asyncio.run(run())


def test_running_helper_base_url_and_port_reuse() -> None:
    with FakeProvider.running("instant", port=0) as fp:
        assert fp.base_url == f"http://127.0.0.1:{fp.port}/v1" and fp.port > 0
        port = fp.port
        assert post_raw(fp, "/chat/completions", CHAT).status_code == 200
    with FakeProvider.running("instant", port=port) as again:
        assert again.port == port
        with pytest.raises(OSError), FakeProvider.running("instant", port=port):
            pass  # a taken port is reported to the caller, not swallowed in the thread


def test_determinism_across_servers_and_seeds() -> None:
    def answer(seed: int, body: dict) -> str:
        with FakeProvider.running("instant", seed=seed) as fp:
            return post_raw(fp, "/chat/completions", body).json()["choices"][0]["message"]["content"]

    a = answer(1, CHAT)
    assert a == answer(1, CHAT)
    assert a != answer(2, CHAT)
    assert a != answer(1, {**CHAT, "messages": [{"role": "user", "content": "Name four rivers."}]})
    assert a != answer(1, {**CHAT, "temperature": 0.2})  # every body field feeds the hash...
    assert a.startswith(answer(1, {**CHAT, "max_tokens": 3}))  # ...except length knobs: a cut is a prefix


def test_request_log_holds_no_credentials(tmp_path: Path) -> None:
    """Headers and query parameters that carry keys are left out of the log; the rest is kept as sent."""
    secret = "sk-fake-log-canary-0123456789"
    log = tmp_path / "requests.jsonl"
    with FakeProvider.running("instant", request_log=log) as fp:
        for headers, query in (
            ({"Authorization": f"Bearer {secret}"}, "?case=a%20b"),
            ({"x-api-key": secret, "x-goog-api-key": secret}, "?key=" + secret + "&case=c"),
            ({"api-key": secret, "Cookie": f"s={secret}"}, "?api_key=" + secret),
        ):
            r = httpx.post(f"{fp.base_url}/chat/completions{query}", json=CHAT, headers=headers)
            assert r.status_code == 200
        logged = [q["query"] for q in fp.requests]
    text = log.read_text()
    assert secret not in text and secret not in json.dumps(fp.requests)
    assert logged == ["case=a b", "case=c", ""]  # aiohttp's query_string, as before
    assert all("x-api-key" not in json.loads(line)["headers"] for line in text.splitlines())
