"""Fake OpenAI-compatible provider: the aiohttp app, its lifecycle, and what happens to a request before it is answered.

Routing, the error middleware, the request log, authentication, parsing and validation, cold starts,
injected errors and timing plans live here; the endpoint handlers are ``endpoints.py``, sending the
reply ``replies.py``, the command line ``cli.py`` (``python -m parity.fake.server`` runs it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from parity.wire.credentials import SECRET_HEADERS, SECRET_QUERY, clean_query

from . import content as C
from . import wire as W
from .base import ApiError, Ctx, Pacer, header_num, parse_multipart
from .endpoints import Endpoints
from .profiles import ERROR_KINDS, Profile, get_profile
from .replies import Replies

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
# The request log never holds credentials: the recorder's lists of secret headers and parameters.
_HIDDEN_HEADERS = frozenset(SECRET_HEADERS)


def _log_query(query: str) -> str:
    """The query string as sent, or without its credential parameters when it has any."""
    if not query or not any(k.lower() in SECRET_QUERY for k, _ in parse_qsl(query, keep_blank_values=True)):
        return query
    return clean_query(query) or ""


def _bad_key(request: web.Request) -> ApiError:
    """OpenAI's 401 for a wrong key, quoting the presented key in full (as some providers do)."""
    auth = request.headers.get("Authorization", "")
    key = (
        (auth[7:].strip() if auth.startswith("Bearer ") else auth)
        or request.headers.get("api-key")
        or request.headers.get("x-api-key")
        or next((request.query[k] for k in ("key", "api_key", "api-key") if request.query.get(k)), "")
    )
    return ApiError(
        401,
        f"Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


# Replies before Endpoints: its _send_json/_stream replace the stubs Endpoints declares.
class FakeProvider(Replies, Endpoints):
    """A fake OpenAI-compatible HTTP provider; use `async with` or `FakeProvider.running(...)`."""

    def __init__(
        self,
        profile: str | Profile = "openai-like",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        request_log: str | Path | None = None,
        record_requests: bool = True,
        **overrides: Any,
    ) -> None:
        if seed is not None:
            overrides["seed"] = seed
        self.profile = get_profile(profile, **overrides)
        self.host, self.port = host, port
        self.request_log = Path(request_log) if request_log else None
        self.requests: list[dict[str, Any]] = []  # every request, when record_requests (tests)
        self.record_requests = record_requests
        self._seq = 0
        self._streams = 0  # streams started, for the stream_breaks quirk
        # cold starts are per model, as on serverless hosts that scale each model to zero on its own
        self._active: dict[str, int] = {}  # model -> requests in flight
        self._last_activity: dict[str, float] = {}  # model -> start or end of its latest request
        self._log_file: Any = None
        self._runner: web.AppRunner | None = None
        self._pacer: Pacer
        self._slots: asyncio.Semaphore | None = None  # the capacity model (profile.slots > 0)
        self.busy = 0  # slots in use
        self.waiting = 0  # requests queued for a slot

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:PORT."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, e.g. http://127.0.0.1:PORT/v1."""
        return self.url + "/v1"

    def build_app(self) -> web.Application:
        """The aiohttp application (routes + error middleware)."""
        app = web.Application(middlewares=[self._guard], client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/audio/transcriptions", self._audio)
        app.router.add_post("/v1/audio/translations", self._audio)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)
        app.router.add_get("/v1/fake-images/{name}", self._image_file)
        return app

    async def start(self) -> None:
        """Bind and start serving (port 0 picks a free port, stored in .port)."""
        if self.request_log:
            self._log_file = open(self.request_log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        # No access log: it costs as much CPU as a small streamed response.
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        self._pacer = Pacer(asyncio.get_running_loop())
        self._slots = asyncio.Semaphore(self.profile.slots) if self.profile.slots > 0 else None
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving and close the request log."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def running(cls, profile: str | Profile = "openai-like", **kwargs: Any) -> Iterator[FakeProvider]:
        """Run a provider on its own event loop in a background thread (for sync code and tests)."""
        fp = cls(profile, **kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(fp.start())
            except BaseException as exc:  # report bind errors etc. to the caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-provider", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            loop.close()
            raise failure[0]
        try:
            yield fp
        finally:
            try:
                asyncio.run_coroutine_threadsafe(fp.stop(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                if not thread.is_alive():
                    loop.close()

    # --- request pipeline -------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Turn every failure into an OpenAI-shaped error, and track idleness for cold starts."""
        try:
            return await handler(request)
        except ApiError as exc:
            return self._error_response(exc)
        except web.HTTPException as exc:
            if exc.status in (404, 405):  # OpenAI answers a wrong method like a wrong path: 404
                return self._error_response(ApiError(404, f"Invalid URL ({request.method} {request.path})"))
            return self._error_response(ApiError(exc.status, exc.reason or "Request error"))
        except ConnectionError:
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return self._error_response(
                ApiError(500, "The server had an error while processing your request.", type="server_error")
            )
        finally:
            if request.get("fake_slot") and self._slots is not None:
                self.busy -= 1
                self._slots.release()
            model = request.get("fake_model")
            if model is not None:  # set by _begin once the model is known
                self._active[model] -= 1
                self._last_activity[model] = asyncio.get_running_loop().time()

    def _is_cold(self, request: web.Request, model: str, now: float) -> bool:
        """Whether this request to ``model`` starts it cold; counts it in flight until it ends."""
        p = self.profile
        last, self._last_activity[model] = self._last_activity.get(model), now
        busy = self._active.get(model, 0)
        self._active[model] = busy + 1
        request["fake_model"] = model
        if p.cold_start_ms <= 0:
            return False
        if last is None:
            return True  # the model's first request
        idle = p.ms("cold_idle_s")
        return idle > 0 and busy == 0 and now - last >= idle

    def _record(self, request: web.Request, raw: bytes, seq: int, is_json: bool) -> None:
        if not self.record_requests and self._log_file is None:
            return
        rec: dict[str, Any] = {
            "seq": seq,
            "method": request.method,
            "path": request.path,
            "query": _log_query(request.query_string),
            "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS},
            "received_at": time.time(),
        }
        try:
            rec["body"] = json.loads(raw) if raw and is_json else None
        except ValueError:
            rec["body"] = None
        if raw and rec["body"] is None:
            rec["body_b64"] = base64.b64encode(raw).decode()
        if self.record_requests:
            self.requests.append(rec)
        if self._log_file is not None:
            self._log_file.write(W.dumps(rec) + "\n")

    async def _begin(
        self, request: web.Request, required: tuple[str, ...] = (), multipart: bool = False
    ) -> Ctx:
        """Number, log, authenticate, parse and validate a request; plan its timing and errors."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        p = self.profile
        self._seq += 1
        seq = self._seq
        post = request.method == "POST"
        raw = await request.read() if request.body_exists else b""
        ctype = request.content_type
        self._record(request, raw, seq, "json" in ctype)
        if p.require_key:
            auth = request.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:].strip()) and not request.headers.get("api-key"):
                raise ApiError(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
        error = self._pick_error(request, seq)
        if error == "401":
            raise _bad_key(request)
        body: dict[str, Any] = {}
        if post and multipart:
            if ctype != "multipart/form-data":
                raise ApiError(
                    400, f"Invalid Content-Type header ({ctype or 'none'}), expected multipart/form-data."
                )
            body = parse_multipart(request.headers["Content-Type"], raw)
        elif post:
            if "json" not in ctype:
                raise ApiError(
                    400, f"Invalid Content-Type header ({ctype or 'none'}), expected application/json."
                )
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, _BAD_JSON) from None
            if not isinstance(body, dict):
                raise ApiError(400, "Invalid request body: expected a JSON object.")
        for name in required:
            if body.get(name) is None or body.get(name) == "":
                if name == "model":
                    raise ApiError(400, "you must provide a model parameter")
                raise ApiError(
                    400,
                    f"Missing required parameter: '{name}'.",
                    param=name,
                    code="missing_required_parameter",
                )
        model = body.get("model", "")
        if "model" in required:
            if not isinstance(model, str):
                raise ApiError(
                    400, "Invalid type for 'model': expected a string.", param="model", code="invalid_type"
                )
            if not p.accepts_model(model):
                raise self.unknown_model(model)
        cold = post and self._is_cold(request, model if isinstance(model, str) else "", loop.time())
        rng = random.Random(C.stable_hash(p.seed, seq, "timing"))
        ttft_ms = header_num(request, "x-fake-ttft-ms")
        itl_ms = header_num(request, "x-fake-itl-ms")
        if ttft_ms is None:
            ttft_ms = p.sample_ttft_ms(rng) if post else 0.0
        if cold:
            ttft_ms += p.ms("cold_start_ms")
        tokens = header_num(request, "x-fake-tokens")
        chunk_tokens = header_num(request, "x-fake-chunk-tokens")
        itl_s = (p.ms("itl_ms") if itl_ms is None else itl_ms) / 1000.0
        service = p.ms("service_ms") / 1000.0 if p.service_ms > 0 else None
        queued, slow = (await self._take_slot(request)) if post and self._slots is not None else (0.0, 1.0)
        return Ctx(
            seq=seq,
            t0=t0,
            body=body,
            model=model if isinstance(model, str) else "",
            ttft=queued + ttft_ms * slow / 1000.0,
            itl=itl_s * slow,
            jitter=p.ms("itl_jitter_ms") / 1000.0 if itl_ms is None else 0.0,
            queued=queued,
            service=None if service is None else service * slow,
            rng=rng,
            error=error,
            tokens=max(1, int(tokens)) if tokens is not None else None,
            chunk_tokens=max(1, int(chunk_tokens)) if chunk_tokens else p.chunk_tokens,
            request_id="req_" + os.urandom(16).hex(),
        )

    async def _take_slot(self, request: web.Request) -> tuple[float, float]:
        """Wait for a free slot (FIFO); returns (seconds waited, the KV-cache slowdown factor)."""
        p, slots = self.profile, self._slots
        assert slots is not None
        if p.queue_limit and self.waiting >= p.queue_limit and slots.locked():
            after = p.retry_after_s
            raise ApiError(
                429,
                f"The server is at capacity ({p.slots} slots busy, {self.waiting} requests queued). "
                f"Please try again in {after:g}s.",
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": f"{after:g}", "retry-after-ms": str(int(after * 1000))},
            )
        loop = asyncio.get_running_loop()
        t = loop.time()
        self.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.waiting -= 1
        request["fake_slot"] = True
        others = self.busy
        self.busy += 1
        return loop.time() - t, 1.0 + p.kv_slowdown * others / p.slots

    def _pick_error(self, request: web.Request, seq: int) -> str | None:
        """Injected failure for request #seq: header, then schedule, then seeded rate."""
        p = self.profile
        forced = request.headers.get("x-fake-error")
        if forced is not None:
            forced = forced.strip().lower()
            if forced in ("", "none", "0"):
                return None
            if forced not in ERROR_KINDS:
                raise ApiError(
                    400, f"Invalid header x-fake-error: {forced!r} (401, 429, 500, 503, reset or none)."
                )
            return forced
        for num, kind in p.error_schedule:
            if num == seq:
                return kind
        if p.error_every > 0 and (seq + p.seed) % p.error_every == 0:
            return self._pick_kind(seq)
        if p.error_rate > 0 and C.stable_hash(p.seed, seq, "err") / 2.0**64 < p.error_rate:
            return self._pick_kind(seq)
        return None

    def _pick_kind(self, seq: int) -> str | None:
        p = self.profile
        kinds = [k for k, w in p.error_kinds if w > 0]
        weights = [w for _, w in p.error_kinds if w > 0]
        return random.Random(C.stable_hash(p.seed, seq, "kind")).choices(kinds, weights)[0] if kinds else None

    def unknown_model(self, model: Any) -> ApiError:
        """OpenAI's 404 model_not_found, or the unknown_model_400 quirk's generic 400."""
        if self.profile.unknown_model_400:
            return ApiError(400, f"Invalid model name passed in model={model}.")
        return ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )


if __name__ == "__main__":
    from .cli import main

    sys.exit(main())
