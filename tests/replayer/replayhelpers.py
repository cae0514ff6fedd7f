"""Helpers for replayer tests: exchange rows, fake-provider processes, providers files."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from rowkit import T0, make_exchange  # noqa: F401 (re-exported: the replayer tests import it from here)

from parity.procs import stop_proc
from parity.store.segments import segment_root, write_segment

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path("/work/shared/corpus/openai-real/exchanges.jsonl")


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
        stop_proc(self.proc, timeout=5)


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
