"""Helpers for the sweep tests: recorded real chat traffic in a store, fake servers of known capacity."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from parity.procs import stop_proc
from parity.store.segments import segment_root, write_segment

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path("/work/shared/corpus/openai-real/exchanges.jsonl")
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def _row(body: dict, response: dict | None, i: int) -> dict:
    usage = (response or {}).get("usage") or {}
    return {
        "id": uuid.uuid4().hex,
        "recorded_at": T0 + timedelta(seconds=i),
        "endpoint": "chat.completions",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "status": 200,
        "request_body": json.dumps(body, separators=(",", ":")),
        "request_content_type": "application/json",
        "request_headers": json.dumps({"content-type": "application/json"}),
        "response_body": json.dumps(response) if response else None,
        "ttft_ms": 300.0,
        "latency_ms": 900.0,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cached_tokens": 0,
        "finish_reason": "stop",
        "stream_complete": True,
        "source": "test",
    }


def real_chat_rows(n: int = 24) -> list[dict]:
    """``exchanges`` rows of real recorded OpenAI chat requests (the shared corpus), streamed and not;
    synthetic chat rows when the corpus is absent."""
    rows: list[dict] = []
    if CORPUS.exists():
        for line in CORPUS.read_text().splitlines():
            r = json.loads(line)
            body = r["request"].get("body_json")
            if (
                r["endpoint"] != "chat.completions"
                or r["provider"] != "api.openai.com"
                or r["response"]["status"] != 200
                or not isinstance(body, dict)
                or "input_audio" in json.dumps(body)
            ):
                continue
            resp = r["response"].get("body_json")
            rows.append(_row(body, resp if isinstance(resp, dict) else None, len(rows)))
            if len(rows) >= n:
                return rows
    while len(rows) < n:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question {len(rows)}?"}]}
        rows.append(_row(body, None, len(rows)))
    return rows


def write_exchanges(db: Path, rows: list[dict]) -> None:
    write_segment(segment_root(db), "exchanges", rows, "test")


class Server:
    """A fake provider process of known capacity: ``slots`` requests at a time, each ``service_ms`` long."""

    def __init__(self, slots: int, service_ms: float, *sets: str) -> None:
        self.capacity = slots / (service_ms / 1000.0)
        args = [sys.executable, "-m", "parity.fake.server", "--port", "0", "--profile", "instant"]
        args += ["--slots", str(slots), "--service-ms", str(service_ms), "--set", "ttft_ms=20"]
        for s in sets:
            args += ["--set", s]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"fake provider did not start: {line!r}")
        self.base_url = line.split("listening on ", 1)[1].split()[0]

    def table(self, name: str, pricing: str = "") -> str:
        return f'\n[{name}]\nbase_url = "{self.base_url}"\nmodels = {{ "*" = "*" }}\n{pricing}\n'

    def stop(self) -> None:
        stop_proc(self.proc, timeout=5)
