"""Small aiohttp upstreams for wire cases the fake provider does not produce.

``WireUpstream`` answers any path; the request header ``x-wire`` picks a behaviour
(compressed bodies, a stream that lingers after [DONE], a reset, an in-stream error,
bodies that are not UTF-8 or not JSON). ``CorpusUpstream`` answers each request with a
recorded response from ``corpus/openai-real``. Both run on their own loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import zstandard
from aiohttp import web

from parity.fake.base import abort

WORDS = ["Hello", " from", " the", " wire", " upstream", "."]
TEXT_HELLO = "".join(WORDS)
BINARY_OTHER = bytes(range(256)) * 4  # served by /other/*: must reach the client untouched


def chat_body(model: str = "gpt-4o-mini", text: str = "".join(WORDS)) -> dict:
    return {
        "id": "chatcmpl-wire",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
    }


def chat_chunk(
    delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True
) -> bytes:
    obj: dict[str, Any] = {
        "id": "chatcmpl-wire",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        if choices
        else [],
    }
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chat_events() -> list[bytes]:
    """A complete chat stream: role, words, finish, usage, [DONE]."""
    evs = [chat_chunk({"role": "assistant", "content": ""})]
    evs += [chat_chunk({"content": w}) for w in WORDS]
    evs.append(chat_chunk({}, "stop"))
    evs.append(
        chat_chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}, choices=False)
    )
    evs.append(b"data: [DONE]\n\n")
    return evs


class _Compressor:
    def __init__(self, enc: str) -> None:
        self.enc = enc
        if enc == "gzip":
            self._c = zlib.compressobj(wbits=31)
        elif enc == "br":
            self._c = brotli.Compressor()
        else:
            self._c = zstandard.ZstdCompressor().compressobj()

    def chunk(self, data: bytes) -> bytes:
        """Compress ``data`` and flush, so each chunk can be decoded as it arrives."""
        if self.enc == "gzip":
            return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)
        if self.enc == "br":
            return self._c.process(data) + self._c.flush()
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def end(self) -> bytes:
        if self.enc == "gzip":
            return self._c.flush()
        if self.enc == "br":
            return self._c.finish()
        return self._c.flush()


def compress(data: bytes, enc: str) -> bytes:
    if enc == "gzip":
        return gzip.compress(data)
    if enc == "br":
        return brotli.compress(data)
    return zstandard.ZstdCompressor().compress(data)


class _Threaded:
    """Run an aiohttp app on its own loop in a daemon thread."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.port = 0
        self.requests: list[dict] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        raise NotImplementedError

    @contextlib.contextmanager
    def running(self) -> Iterator[_Threaded]:
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        async def start() -> None:
            self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            ready.set()
            loop.run_forever()

        t = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        t.start()
        ready.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            t.join(10)
            loop.close()


class WireUpstream(_Threaded):
    """Any path; ``x-wire`` header chooses the behaviour (see module docstring)."""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            {"method": request.method, "path": request.path_qs, "headers": dict(request.headers), "body": raw}
        )
        wire = request.headers.get("x-wire", "")
        if request.path.startswith("/other"):
            return web.Response(
                body=BINARY_OTHER, headers={"content-type": "application/x-thing", "x-other": "1"}
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        stream = bool(body.get("stream"))
        if wire == "nonutf8":
            return web.Response(body=b'\xff\xfe{"broken": "\xc3\x28"}', content_type="application/json")
        if wire == "badjson":
            return web.Response(body=b'{"id": "chatcmpl-x", "choices": [', content_type="application/json")
        if wire == "textplain":
            return web.Response(text="plain words", content_type="text/plain")
        if wire == "big":
            return web.json_response(chat_body(text="x" * 200_000))
        if wire == "error500text":
            return web.Response(status=500, text="upstream exploded", content_type="text/html")
        if wire in ("gzip", "br", "zstd"):
            if stream:
                return await self._stream(request, chat_events(), enc=wire)
            data = compress(json.dumps(chat_body()).encode(), wire)
            return web.Response(
                body=data, headers={"content-type": "application/json", "content-encoding": wire}
            )
        if wire == "linger":  # [DONE] sent, then the stream stays open: the SDK closes first
            return await self._stream(request, chat_events(), linger=1.5)
        if wire == "reset":
            return await self._stream(request, chat_events()[:3], reset=True)
        if wire == "midstream-error":
            err = {"error": {"message": "The model crashed mid-stream", "type": "server_error", "code": None}}
            evs = chat_events()[:3] + [b"data: " + json.dumps(err).encode() + b"\n\n"]
            return await self._stream(request, evs)
        if wire == "slowstream":  # for client disconnects mid-stream
            return await self._stream(request, chat_events(), gap=0.3)
        if stream:
            return await self._stream(request, chat_events())
        return web.json_response(chat_body(body.get("model", "gpt-4o-mini")))

    async def _stream(
        self,
        request: web.Request,
        events: list[bytes],
        enc: str | None = None,
        linger: float = 0.0,
        reset: bool = False,
        gap: float = 0.01,
    ) -> web.StreamResponse:
        headers = {"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_wire"}
        if enc:
            headers["content-encoding"] = enc
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        comp = _Compressor(enc) if enc else None
        try:
            for ev in events:
                await resp.write(comp.chunk(ev) if comp else ev)
                await asyncio.sleep(gap)
            if reset:
                abort(request)
                return resp
            if linger:
                await asyncio.sleep(linger)
            await resp.write_eof(comp.end() if comp else b"")
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp


class CorpusUpstream(_Threaded):
    """Answers a request carrying ``x-corpus-id`` with that record's recorded response."""

    def __init__(self, records: dict[str, dict], ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context)
        self.records = records

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        return await self.answer(request, self.records[request.headers["x-corpus-id"]])

    async def answer(self, request: web.Request, rec: dict) -> web.StreamResponse:
        """``rec``'s recorded response: status, headers, and the JSON body or the SSE in a few chunks."""
        resp = rec["response"]
        headers = {  # a few corpus headers are lists (a quirk of their source cassettes): keep the first
            k: v[0] if isinstance(v, list) else v
            for k, v in (resp.get("headers") or {}).items()
            if k.lower() != "content-length"
        }
        if resp.get("sse") is not None:
            headers.setdefault("content-type", "text/event-stream")
            out = web.StreamResponse(status=resp["status"], headers=headers)
            await out.prepare(request)
            data = resp["sse"].encode()
            step = max(1, len(data) // 4)
            for i in range(0, len(data), step):  # a few chunks, boundaries anywhere
                await out.write(data[i : i + step])
                await asyncio.sleep(0.002)
            await out.write_eof()
            return out
        body = resp.get("body_json")
        payload = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            headers["content-type"] = headers.get("content-type") or "application/json"
        return web.Response(status=resp["status"], body=payload, headers=headers)
