"""A recorded ``exchanges`` row for tests that need traffic in a store without recording it.

Imported by name (``from rowkit import make_exchange``): tests/support is on pytest's pythonpath.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
# a minimal chat request and its answer, as files to import hold them
CHAT_REQ = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CHAT_RESP = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


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
