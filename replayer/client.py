"""The timing client: one aiohttp session per provider, raw reads stamped as they arrive.

This is the hot path, so it does the least possible per read: ``perf_counter_ns()`` and
two list appends. SSE parsing, JSON, validation and token counting all happen later in
the post-processor (``replayer.post``), which sees exactly the same ``(time, bytes)``
reads, so event times are the same as if the parser had run inline. No SDK here: the
OpenAI SDK would add hidden retries and its own overhead; it is used only to validate.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from dataclasses import dataclass, field

import aiohttp

from parity.replayer.config import ProviderConfig
from parity.replayer.mapping import Prepared, build_headers
from parity.replayer.retry import retry_delay_s, server_delay_s, should_retry
from parity.replayer.transport import describe
from parity.wire.credentials import REDACTED

_DONE_TAILS = (b"[DONE]\n\n", b"[DONE]\r\n\r\n", b"[DONE]\r\r")


@dataclass(slots=True)
class Attempt:
    """One HTTP attempt: ``perf_counter_ns`` stamps, status, raw reads."""

    wall: float  # time.time() when sent
    t0: int  # perf_counter_ns() just before the request was handed to aiohttp
    t_hdr: int | None = None  # response headers received
    t_end: int | None = None  # body finished (or failed)
    status: int | None = None
    raw_headers: tuple = ()
    times: list[int] = field(default_factory=list)  # arrival of each read
    chunks: list[bytes] = field(default_factory=list)
    error_type: str | None = None  # client-side failure: connection_error, timeout, stream_broken
    error_message: str | None = None  # transport failures: parity.replayer.transport.describe
    retry_after_ms: float | None = None
    waited_ms: float | None = None  # backoff slept after this attempt


@dataclass(slots=True)
class Capture:
    """Everything the hot path measured for one cell, handed to the post-processor."""

    exchange_id: str
    provider: str
    repeat: int
    resent: bool = False
    schedule_lag_ms: float | None = None
    limiter_wait_ms: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)


class ProviderClient:
    """Sends prepared requests to one provider over one keep-alive session."""

    def __init__(self, provider: ProviderConfig, api_key: str | None) -> None:
        self.provider = provider
        self.headers = build_headers(provider, api_key)
        # Providers may quote the key back (OpenAI's 401 does): it must not reach the journal or the store.
        key = (api_key or "").strip()
        self._secret = key.encode() if len(key) >= 8 else None
        self.timeout = aiohttp.ClientTimeout(
            total=provider.timeout_s, sock_connect=provider.connect_timeout_s
        )
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the session (keep-alive pool sized to the provider's concurrency)."""
        connector = aiohttp.TCPConnector(
            limit=self.provider.concurrency or 0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # never send cookies a provider set
            auto_decompress=True,
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def list_models(self, timeout_s: float = 5.0) -> list[str] | None:
        """Model ids from ``GET {base_url}/models``, None when that fails."""
        assert self.session is not None
        try:
            async with self.session.get(
                self.provider.base_url + "/models",
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return None
        return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]

    async def attempt(self, req: Prepared) -> Attempt:
        """One HTTP attempt; failures are recorded in the Attempt, never raised."""
        assert self.session is not None
        headers = dict(self.headers)
        headers["content-type"] = req.content_type
        a = Attempt(wall=time.time(), t0=time.perf_counter_ns())
        clock = time.perf_counter_ns
        try:
            async with self.session.post(
                req.url, data=req.body, headers=headers, timeout=self.timeout
            ) as resp:
                a.t_hdr = clock()
                a.status = resp.status
                a.raw_headers = resp.raw_headers
                times, chunks = a.times, a.chunks
                done = False
                async for data in resp.content.iter_any():
                    times.append(clock())
                    chunks.append(data)
                    if data.endswith(_DONE_TAILS):
                        done = True
                        break
                if done and not resp.content.at_eof():
                    # The SDK stops at [DONE]; give a server that keeps the body open a moment, no more.
                    try:
                        rest = await asyncio.wait_for(resp.content.read(), 1.0)
                        if rest:
                            times.append(clock())
                            chunks.append(rest)
                    except TimeoutError:
                        resp.close()
                a.t_end = clock()
        except TimeoutError as e:
            a.t_end = clock()
            a.error_type = "timeout"
            a.error_message = describe(e, req.url, self.provider.timeout_s)
        except (aiohttp.ClientError, OSError) as e:
            a.t_end = clock()
            a.error_type = "stream_broken" if a.chunks else "connection_error"
            a.error_message = describe(e, req.url)
        if self._secret is not None:
            scrub_attempt(a, self._secret)
        return a

    async def send(self, req: Prepared, cap: Capture) -> Capture:
        """Send with the SDK's retry policy; every attempt is kept in ``cap.attempts``."""
        p = self.provider
        for n in range(p.max_retries + 1):
            a = await self.attempt(req)
            cap.attempts.append(a)
            h = header_dict(a.raw_headers) if a.status is not None and a.status >= 300 else {}
            if h:
                delay = server_delay_s(h)
                a.retry_after_ms = None if delay is None else delay * 1000.0
            if n >= p.max_retries:
                break
            if not should_retry(
                a.status, h, a.error_type, body_started=a.status is not None and a.status < 300
            ):
                break
            delay = retry_delay_s(n, h, p.max_retry_after_s)
            a.waited_ms = delay * 1000.0
            await asyncio.sleep(delay)
        return cap


async def open_clients(providers: dict) -> tuple[dict[str, ProviderClient], dict[str, list[str] | None]]:
    """One open session per provider of ``providers`` (name -> provider config), and each provider's
    listed models (None where listing failed)."""
    clients: dict[str, ProviderClient] = {}
    for name, p in providers.items():
        c = ProviderClient(p, p.api_key())
        await c.open()
        clients[name] = c
    names = list(clients)
    listed = await asyncio.gather(*(clients[n].list_models() for n in names))
    return clients, dict(zip(names, listed, strict=True))


async def close_clients(clients: dict[str, ProviderClient]) -> None:
    """Close every session ``open_clients`` opened."""
    for c in clients.values():
        await c.close()


def scrub_attempt(a: Attempt, secret: bytes) -> None:
    """Replace every echo of ``secret`` in what ``a`` received (body, headers, error message) by [REDACTED].

    An echo split between two reads is handled by joining those reads into one, stamped with
    the time of the later read (when the echoed bytes had all arrived).
    """
    red = REDACTED.encode()
    if a.error_message and secret.decode() in a.error_message:
        a.error_message = a.error_message.replace(secret.decode(), REDACTED)
    if any(secret in v for _, v in a.raw_headers):
        a.raw_headers = tuple((k, v.replace(secret, red)) for k, v in a.raw_headers)
    body = b"".join(a.chunks)
    pos = body.find(secret)
    if pos < 0:
        return
    ends = list(itertools.accumulate(len(c) for c in a.chunks))
    joined = [False] * len(a.chunks)  # read i is joined with read i + 1
    while pos >= 0:
        first = bisect.bisect_right(ends, pos)
        last = bisect.bisect_right(ends, pos + len(secret) - 1)
        joined[first:last] = [True] * (last - first)
        pos = body.find(secret, pos + 1)
    chunks, times, buf = [], [], b""
    for c, t, j in zip(a.chunks, a.times, joined, strict=True):
        buf += c
        if not j:
            chunks.append(buf.replace(secret, red))
            times.append(t)
            buf = b""
    a.chunks, a.times = chunks, times


def header_dict(raw_headers: tuple) -> dict[str, str]:
    """Lower-cased headers from aiohttp's raw (bytes) header pairs."""
    out: dict[str, str] = {}
    for k, v in raw_headers:
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out
