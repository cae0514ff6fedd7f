"""How the fake provider answers: OpenAI-shaped errors, injected failures, JSON and paced event streams.

:class:`Replies` is a mixin of :class:`~parity.fake.server.FakeProvider`: the endpoint handlers
(``endpoints.py``) build what to say and call :meth:`Replies._send_json` or
:meth:`Replies._stream`, which send it at the times the profile's timing asks for.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

from . import wire as W
from .base import ApiError, Ctx, Job, Pacer, SSEResponse, abort, sleep_until
from .profiles import Profile

# Error `type`s of the error_envelope quirk: the SDK exception class names some gateways send.
_ENVELOPE_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class Replies:
    """Sending a reply: errors, injected failures, JSON after the generation time, SSE on deadlines."""

    profile: Profile
    _streams: int  # streams started, for the stream_breaks quirk
    _pacer: Pacer

    def _error_body(self, exc: ApiError) -> dict[str, Any]:
        """OpenAI's error object, or the profile's deviating one."""
        p = self.profile
        if p.error_envelope:  # e.g. LiteLLM-style gateways: exception class names, the status as text
            code: Any = exc.status if p.int_error_codes else str(exc.status)
            kind = _ENVELOPE_TYPES.get(exc.status, "InternalServerError" if exc.status >= 500 else "APIError")
            return {"error": {"message": exc.message, "type": kind, "code": code}}
        code = exc.status if p.int_error_codes else exc.code
        return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": code}}

    def _error_response(self, exc: ApiError) -> web.Response:
        headers = {"x-request-id": "req_" + os.urandom(16).hex(), **exc.headers}
        return web.Response(
            status=exc.status,
            body=W.dumps(self._error_body(exc)).encode(),
            content_type="application/json",
            headers=headers,
        )

    def _raise_injected(self, ctx: Ctx) -> None:
        if ctx.error == "429":
            after = self.profile.retry_after_s
            raise ApiError(
                429,
                f"Rate limit reached for requests on this fake provider. Please try again in {after:g}s.",
                type="requests",
                code="rate_limit_exceeded",
                headers={
                    "retry-after": f"{after:g}",
                    "retry-after-ms": str(int(after * 1000)),
                    "x-ratelimit-limit-requests": "60",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{after:g}s",
                },
            )
        if ctx.error == "500":
            raise ApiError(
                500,
                "The server had an error while processing your request. Sorry about that!",
                type="server_error",
            )
        if ctx.error == "503":
            raise ApiError(503, "The server is overloaded or not ready yet.", type="server_error")

    def _broken(self, request: web.Request, steps: list[bytes]) -> list[bytes]:
        """The stream_breaks quirk: a few steps, then an in-stream error and the end (no [DONE])."""
        body = self._error_body(
            ApiError(500, "The server had an error while processing your request.", type="server_error")
        )
        event = (
            b""
            if self.profile.responses_no_event_lines or request.path != "/v1/responses"
            else b"event: error\n"
        )
        keep = min(self.profile.break_after_chunks, len(steps) - 1)
        return steps[:keep] + [event + b"data: " + W.dumps(body).encode() + b"\n\n"]

    def _headers(self, ctx: Ctx, processing_s: float) -> dict[str, str]:
        return {
            "x-request-id": ctx.request_id,
            "openai-version": "2020-10-01",
            "openai-processing-ms": str(int(processing_s * 1000)),
        }

    async def _send_json(
        self, request: web.Request, ctx: Ctx, obj: Any, steps: int = 1
    ) -> web.StreamResponse:
        """Reply with JSON once the whole generation (TTFT + steps-1 ITLs) would have finished."""
        self._raise_injected(ctx)
        loop = asyncio.get_running_loop()
        total = ctx.offsets(max(1, steps))[-1]
        await sleep_until(loop, ctx.t0 + total)
        if ctx.error == "reset":
            abort(request)
            return web.Response()
        if self.profile.extra_fields and isinstance(obj, dict):
            obj = {**obj, "provider": "fake-provider", "x_fake_seq": ctx.seq}
        body = obj.encode() if isinstance(obj, str) else W.dumps(obj).encode()
        ctype = "text/plain" if isinstance(obj, str) else "application/json"
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers=self._headers(ctx, total))

    async def _stream(
        self, request: web.Request, ctx: Ctx, steps: list[bytes], preamble: bytes = b""
    ) -> web.StreamResponse:
        """Write SSE steps on absolute deadlines: step 0 at t0+TTFT, then one ITL apart."""
        self._raise_injected(ctx)
        p = self.profile
        if p.stream_breaks:
            self._streams += 1
            if (self._streams + p.seed) % p.break_every == 0:
                steps = self._broken(request, steps)
        loop = asyncio.get_running_loop()
        resp = SSEResponse(headers=self._headers(ctx, ctx.ttft))
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        n = len(steps)
        # Steps written before an injected reset (which then happens when the next one is due).
        end = min(self.profile.reset_after_chunks, max(n - 1, 0)) if ctx.error == "reset" else n
        deadlines = [ctx.t0 + o for o in ctx.offsets(n)]
        try:
            if preamble:  # e.g. response.created: sent as soon as the request is accepted
                writer = await resp.prepare(request)
                await resp.write(preamble)
            await sleep_until(loop, deadlines[0])
            if not preamble:
                writer = await resp.prepare(request)
            if end == n == 1:
                await resp.write_eof(steps[0])
                return resp
            if end > 0:
                await resp.write(steps[0])  # the headers go out in the same packet
            stop = end if end < n else n - 1
            if stop > 1:
                if request.transport is None:
                    return resp  # the connection is already gone
                done = loop.create_future()
                chunked = bool(getattr(writer, "chunked", False))
                self._pacer.push(Job(request.transport, chunked, steps, deadlines, stop, done))
                if not await done:
                    return resp  # the client went away
            if end < n:
                await sleep_until(loop, deadlines[end])
                abort(request)
                return resp
            await sleep_until(loop, deadlines[-1])
            await resp.write_eof(steps[-1])  # last chunk and the chunked terminator together
        except ConnectionError:
            pass  # the client went away; nothing to clean up
        return resp
