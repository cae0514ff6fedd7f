"""Helpers for the hardening tests: misbehaving providers, exchange rows, store reads, senders.

Imported by name (``from faultkit import ...``), as ``tests/replayer`` does with ``replayhelpers``:
this folder has no ``__init__.py`` and no fixtures of its own live here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from rowkit import make_exchange

from parity.store.segments import segment_root, write_segment
from parity.store.store import query

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
XID = re.compile(r"xid-[0-9a-f]{12}")


# ---------------------------------------------------------------- rows


def exchange_row(stream: bool, n: int = 0) -> dict:
    """A recorded 200 chat exchange whose request names its own id (``xid-...``)."""
    xid = f"xid-{uuid.uuid4().hex[:12]}"
    body: dict = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Say hello to {xid}."}],
        "stream": stream,
        "temperature": 0.2,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return make_exchange(id=xid, body=body, recorded_at=T0 + timedelta(seconds=n))


def write_rows(db: Path, rows: list[dict]) -> None:
    write_segment(segment_root(db), "exchanges", rows, "faultkit")


# ---------------------------------------------------------------- misbehaving providers

_CHUNK = {"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}


def sse(delta: dict, finish: str | None = None) -> bytes:
    obj = {**_CHUNK, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class FaultServer:
    """An OpenAI-shaped server on 127.0.0.1 that misbehaves on every POST, on its own thread.

    ``hang``: non-streamed requests are never answered; streamed ones get their headers and one
    chunk, then nothing (both until the client goes away or 60 s pass).
    ``reset``: non-streamed requests are read and the connection dropped without an answer;
    streamed ones get two chunks, then the connection is aborted.
    ``garbage``: 200 ``text/event-stream`` of non-JSON ``data:`` lines and random bytes (streamed),
    or a 200 ``application/json`` body that is not JSON (non-streamed).

    ``hits`` counts the POSTs received per exchange id (read from the request body).
    """

    def __init__(self, behaviour: str, chunk_delay_s: float = 0.0) -> None:
        assert behaviour in ("hang", "reset", "garbage")
        self.behaviour = behaviour
        self.chunk_delay_s = chunk_delay_s
        self.hits: Counter = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.hits)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "no models here"}}, status=404)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        m = XID.search(raw.decode("utf-8", "replace"))
        with self._lock:
            self.hits[m.group(0) if m else "?"] += 1
        try:
            stream = bool(json.loads(raw).get("stream"))
        except ValueError:
            stream = False
        return await getattr(self, "_" + self.behaviour)(request, stream)

    async def _stall(self, request: web.Request, limit_s: float = 60.0) -> None:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if request.transport is None or request.transport.is_closing():
                return
            await asyncio.sleep(0.05)

    async def _start_stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "x-request-id": "req_fault"})
        await resp.prepare(request)
        return resp

    async def _hang(self, request: web.Request, stream: bool) -> web.StreamResponse:
        if stream:
            resp = await self._start_stream(request)
            await resp.write(sse({"role": "assistant", "content": "Hel"}))
            await self._stall(request)
            return resp
        await self._stall(request)
        return web.Response(status=504)  # only if the client waited the whole 60 s

    async def _reset(self, request: web.Request, stream: bool) -> web.StreamResponse:
        if stream:
            resp = await self._start_stream(request)
            for piece in ("Hel", "lo"):
                await resp.write(sse({"content": piece}))
                await asyncio.sleep(self.chunk_delay_s)
            request.transport.abort()
            return resp
        request.transport.abort()
        return web.Response()

    async def _garbage(self, request: web.Request, stream: bool) -> web.StreamResponse:
        rng = random.Random(len(request.path))
        if not stream:
            return web.Response(
                body=b'{"choices": [{"message": {"content": "trunc\xff\xfe', content_type="application/json"
            )
        resp = await self._start_stream(request)
        pieces = [
            b"data: {not json at all\n\n",
            b"data: \xff\xfe\x00\x01 binary\n\n",
            bytes(rng.randrange(256) for _ in range(64)) + b"\n\n",
            b"event: surprise\ndata: [1, 2\n\n",
            b'data: {"choices": 42}\n\n',
            b":" + b"x" * 100 + b"\r\n\r\n",
            b"data: [DONE]\n\n",
        ]
        for p in pieces:
            await resp.write(p)
            await asyncio.sleep(self.chunk_delay_s)
        await resp.write_eof()
        return resp

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/{tail:.*}", self._post)
        return app

    def start(self) -> FaultServer:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def go() -> None:
                self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
                await self._runner.setup()
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                await site.start()
                self.port = self._runner.addresses[0][1]

            self._loop.run_until_complete(go())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"fault-{self.behaviour}", daemon=True)
        self._thread.start()
        assert ready.wait(10), "fault server did not start"
        return self

    def stop(self) -> None:
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


@contextlib.contextmanager
def fault_servers(*behaviours: str, chunk_delay_s: float = 0.0) -> Iterator[dict[str, FaultServer]]:
    servers = {b: FaultServer(b, chunk_delay_s).start() for b in behaviours}
    try:
        yield servers
    finally:
        for s in servers.values():
            s.stop()


# ---------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def kill9_tree(proc: subprocess.Popen) -> list[int]:
    """SIGKILL ``proc`` and its direct children (by PID); returns the children's PIDs."""
    kids = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    for k in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(k, signal.SIGKILL)
    proc.wait(10)
    return kids


def parity_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "parity.cli", *args]


# ---------------------------------------------------------------- sending through recorders


def chat_body(marker: str, stream: bool) -> dict:
    body: dict = {
        "model": "gpt-4o-mini",
        "user": marker,
        "messages": [{"role": "user", "content": f"hardening {marker}"}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def send_all(targets: list[tuple[str, str, bool]], concurrency: int = 8) -> dict[str, int]:
    """POST every ``(base_url, marker, stream)``; returns marker -> HTTP status (0 = transport error)."""
    import aiohttp

    out: dict[str, int] = {}
    it = iter(targets)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            for base, marker, stream in it:
                try:
                    async with session.post(
                        base + "/chat/completions", json=chat_body(marker, stream)
                    ) as resp:
                        data = await resp.read()
                        ok = resp.status == 200 and (not stream or b"[DONE]" in data)
                        out[marker] = resp.status if ok else -resp.status
                except (aiohttp.ClientError, OSError, TimeoutError):
                    out[marker] = 0

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def markers_in_store(db: Path, prefix: str) -> list[tuple[str, int, str]]:
    """(marker, rows, recorder_id) for every recorded request whose ``user`` starts with ``prefix``."""
    return query(
        db,
        "SELECT request_body->>'$.user' AS u, count(*), any_value(recorder_id) FROM exchanges "
        "WHERE request_body->>'$.user' LIKE ? GROUP BY u",
        [prefix + "%"],
    )
