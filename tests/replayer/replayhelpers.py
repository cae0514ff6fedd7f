"""Helpers for replayer tests: exchange rows, fake-provider processes, providers files."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from parity.store.segments import segment_root, write_segment

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path("/work/shared/corpus/openai-real/exchanges.jsonl")
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def make_exchange(**overrides) -> dict:
    """An ``exchanges`` row: by default a 200 streamed chat request with include_usage."""
    xid = overrides.pop("id", None) or uuid.uuid4().hex
    body = overrides.pop("body", None)
    if body is None:
        body = {
            "model": overrides.get("model", "gpt-4o-mini"),
            "messages": [{"role": "user", "content": f"Say hello to {xid}."}],
            "stream": overrides.get("stream", True),
            "temperature": 0.2,
            "store": True,
        }
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
    row = {
        "id": xid,
        "recorded_at": T0,
        "endpoint": "chat.completions",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": body.get("model") if isinstance(body, dict) else None,
        "stream": bool(body.get("stream")) if isinstance(body, dict) else False,
        "status": 200,
        "request_body": json.dumps(body, separators=(",", ":")) if body != {} else None,
        "request_content_type": "application/json",
        "request_headers": json.dumps({"content-type": "application/json"}),
        "response_body": json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello there friend."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }
        ),
        "ttfb_ms": 80.0,
        "ttft_ms": 120.0,
        "latency_ms": 300.0,
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "finish_reason": "stop",
        "stream_complete": True,
        "source": "test",
    }
    row.update(overrides)
    return row


def make_chat_workload(n: int, start: datetime = T0, gap_s: float = 1.0, **overrides) -> list[dict]:
    return [make_exchange(recorded_at=start + timedelta(seconds=i * gap_s), **overrides) for i in range(n)]


def multipart_body(
    model: str = "whisper-1", boundary: str = "----parityBoundary7MA4YWxk"
) -> tuple[bytes, str]:
    """A realistic transcription upload (binary audio bytes in the middle)."""
    audio = bytes(range(256)) * 8 + b"\r\n--not-a-boundary\r\n" + os.urandom(64)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + audio
        + b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="response_format"\r\n\r\njson\r\n'.encode(),
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def write_exchanges(db: Path, rows: list[dict]) -> None:
    write_segment(segment_root(db), "exchanges", rows, "test")


class FakeProc:
    """A fake provider running as its own process, logging requests to a JSONL file."""

    def __init__(self, tmp: Path, name: str, profile: str, **sets) -> None:
        self.log = tmp / f"fake-{name}.jsonl"
        args = [
            sys.executable,
            "-m",
            "parity.fake.server",
            "--port",
            "0",
            "--profile",
            profile,
            "--request-log",
            str(self.log),
        ]
        for k, v in sets.items():
            args += ["--set", f"{k}={v}"]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"fake provider did not start: {line!r} {self.proc.stderr.read()}")
        self.base_url = line.split("listening on ", 1)[1].split()[0]

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("body_b64"):
                rec["raw"] = base64.b64decode(rec["body_b64"])
            out.append(rec)
        return out

    def posts(self) -> list[dict]:
        return [r for r in self.requests() if r["method"] == "POST"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def providers_file(tmp: Path, text: str, name: str = "providers.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def fake_table(name: str, fp: FakeProc, extra: str = "", models: str | None = '{ "*" = "*" }') -> str:
    """A provider table for a fake process (``extra`` is appended: keys, then sub-tables)."""
    head = f'[{name}]\nbase_url = "{fp.base_url}"\n'
    if models:
        head += f"models = {models}\n"
    return f"\n{head}{extra}\n"
