"""Shared plumbing of the fake provider: errors, request context, validators and the SSE pacer."""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import heapq
import itertools
import math
import random
import socket
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .plans import forced_name


class ApiError(Exception):
    """An error answered with OpenAI's JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}


async def sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep to an absolute loop-clock deadline, so per-chunk work never accumulates as drift."""
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


def abort(request: web.BaseRequest) -> None:
    """Reset the TCP connection (RST via SO_LINGER 0), like a provider dying mid-response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass
class Ctx:
    """Per-request state: numbering, timing plan, injected error, parsed body."""

    seq: int
    t0: float
    body: dict[str, Any]
    model: str
    ttft: float  # seconds
    itl: float
    jitter: float
    rng: random.Random
    error: str | None
    tokens: int | None
    chunk_tokens: int
    request_id: str
    queued: float = 0.0  # seconds spent waiting for a capacity slot (already inside ttft)
    service: float | None = None  # seconds a request holds its slot when the profile fixes it

    def next_itl(self) -> float:
        """One inter-token delay in seconds (jittered when the profile says so)."""
        if not self.jitter:
            return self.itl
        return max(0.0, self.itl + self.rng.gauss(0.0, self.jitter))

    def offsets(self, n: int) -> list[float]:
        """When each of n steps is due, in seconds after t0: TTFT, then ITLs or an even spread to the
        end of a fixed service time."""
        if self.service is None:
            out = [self.ttft]
            for _ in range(1, n):
                out.append(out[-1] + self.next_itl())
            return out
        first = self.queued + min(self.ttft - self.queued, self.service)
        end = self.queued + self.service
        if n <= 1:
            return [end]
        gap = (end - first) / (n - 1)
        return [first + i * gap for i in range(n)]


def header_num(request: web.BaseRequest, name: str) -> float | None:
    """A non-negative number from a per-request override header (None when absent)."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"Invalid header {name}: {raw!r} is not a number.") from None
    if value < 0 or not math.isfinite(value):
        raise ApiError(400, f"Invalid header {name}: must be >= 0.")
    return value


def int_param(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int = 1 << 31) -> int | None:
    """An integer body parameter within [lo, hi], or a 400 like OpenAI's."""
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if not lo <= value <= hi:
        raise ApiError(
            400, f"Invalid '{name}': {value} is out of range [{lo}, {hi}].", param=name, code="invalid_value"
        )
    return value


def stop_list(value: Any) -> list[str]:
    """The `stop` parameter as a list (a string or up to 4 strings)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value) and len(value) <= 4:
        return value
    raise ApiError(400, "Invalid 'stop': expected a string or an array of up to 4 strings.", param="stop")


def function_tools(tools: Any, nested: bool) -> list[dict[str, Any]]:
    """Function tools as {name, parameters}; `nested` is the chat shape {"function": {...}}."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ApiError(
            400, "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type"
        )
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue  # built-in tools (web_search, ...) are accepted and never called
        fn = tool.get("function") if nested else tool
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            where = f"tools[{i}].function.name" if nested else f"tools[{i}].name"
            raise ApiError(
                400, f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter"
            )
        out.append({"name": fn["name"], "parameters": fn.get("parameters")})
    return out


def check_forced(tool_choice: Any, tools: list[dict[str, Any]]) -> None:
    """400 when tool_choice names a function that is not among the tools."""
    name = forced_name(tool_choice)
    if name is not None and name not in {t["name"] for t in tools}:
        raise ApiError(
            400,
            f"Invalid value for 'tool_choice': no function named '{name}' was specified in 'tools'.",
            param="tool_choice",
        )


def parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """multipart/form-data fields; files as {"filename", "data", "content_type"}, `x[]` as lists."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not msg.is_multipart():
        raise ApiError(400, "Could not parse multipart form data.")
    fields: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            fields[name] = {
                "filename": part.get_filename(),
                "data": payload,
                "content_type": part.get_content_type(),
            }
        elif name.endswith("[]"):
            fields.setdefault(name[:-2], []).append(payload.decode("utf-8", "replace"))
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields


class SSEResponse(web.StreamResponse):
    """StreamResponse that sends its headers together with the first chunk (one packet)."""

    _send_headers_immediately = False


class Job:
    """The middle steps of one stream, written by the pacer straight to the transport."""

    __slots__ = ("transport", "chunked", "steps", "deadlines", "i", "stop", "done")

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        chunked: bool,
        steps: list[bytes],
        deadlines: list[float],
        stop: int,
        done: asyncio.Future[bool],
    ) -> None:
        self.transport, self.chunked, self.steps, self.deadlines = transport, chunked, steps, deadlines
        self.i, self.stop, self.done = 1, stop, done

    def advance(self, now: float) -> bool:
        """Write every step due by `now` in one write; True while steps remain for the pacer."""
        transport = self.transport
        if transport.is_closing():
            if not self.done.done():
                self.done.set_result(False)
            return False
        i, j = self.i, self.i + 1
        while j < self.stop and self.deadlines[j] <= now:  # overdue steps share one syscall
            j += 1
        data = self.steps[i] if j == i + 1 else b"".join(self.steps[i:j])
        # Own chunked framing: aiohttp's async write path costs more than the syscall itself.
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)  # type: ignore[attr-defined]
        self.i = j
        if j < self.stop:
            return True
        if not self.done.done():
            self.done.set_result(True)
        return False


class Pacer:
    """One loop timer for all streams: a heap of (deadline, job), fired on absolute loop time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Job]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._order = itertools.count()

    def push(self, job: Job) -> None:
        """Schedule the job's next step."""
        when = job.deadlines[job.i]
        heapq.heappush(self._heap, (when, next(self._order), job))
        if self._timer is None or when < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            if job.advance(now):
                heapq.heappush(heap, (job.deadlines[job.i], next(self._order), job))
        if heap:
            self._timer = self._loop.call_at(heap[0][0], self._fire)
