"""Transport failures are typed and name host:port; the end-of-run diagnosis judges providers
from their cells (real 127.0.0.1 sockets for the transport, plain outcomes for the diagnosis)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from parity.procs import free_port
from parity.replayer.client import Capture, ProviderClient
from parity.replayer.config import parse_config
from parity.replayer.failures import CellOutcome, diagnose
from parity.replayer.mapping import Prepared
from parity.replayer.transport import describe, reason_of


def _server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A raw TCP server on 127.0.0.1 whose connections ``handle`` answers; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        srv.close()


def _reset(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    conn.close()


def _close(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _plain_http(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    conn.close()


def _silent(conn: socket.socket) -> None:
    conn.recv(65536)
    threading.Event().wait(3)
    conn.close()


def _cut(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"id":')
    conn.close()


def _attempt(base_url: str, **keys) -> tuple[str | None, str | None, int]:
    """Send one chat request with parity's client (its retries included); the final attempt's error."""
    table = {"base_url": base_url, "models": {"*": "*"}, "max_retries": 1, **keys}
    p = parse_config({"p": table}).providers["p"]
    req = Prepared(base_url + "/chat/completions", b'{"model":"m"}', "application/json", "m", False)

    async def go() -> Capture:
        c = ProviderClient(p, None)
        await c.open()
        try:
            return await c.send(req, Capture("x", "p", 0))
        finally:
            await c.close()

    cap = asyncio.run(go())
    return cap.attempts[-1].error_type, cap.attempts[-1].error_message, len(cap.attempts)


def test_connection_refused_names_host_and_port() -> None:
    port = free_port()
    etype, msg, n = _attempt(f"http://127.0.0.1:{port}/v1")
    assert etype == "connection_error" and n == 2  # retried, as the SDK does
    assert reason_of(msg) == f"connection refused at 127.0.0.1:{port}"
    assert "ClientConnectorError" in msg


@pytest.mark.parametrize(
    ("handler", "scheme", "etype", "reason", "attempts"),
    [
        (_reset, "http", "connection_error", "connection reset", 2),
        (_close, "http", "connection_error", "connection closed", 2),
        (_plain_http, "https", "connection_error", "TLS error", 2),
        (_silent, "http", "timeout", "timeout", 2),
        (_cut, "http", "stream_broken", "body cut off", 1),  # a body that started is never retried
    ],
)
def test_transport_failures_are_typed(handler, scheme, etype, reason, attempts) -> None:
    for port in _server(handler):
        got_type, msg, n = _attempt(f"{scheme}://127.0.0.1:{port}/v1", timeout_s=0.5)
        assert (got_type, n) == (etype, attempts), msg
        assert reason_of(msg) == f"{reason} at 127.0.0.1:{port}", msg
        if reason == "timeout":
            assert "no complete answer within 0.5 s" in msg


def test_dns_and_connect_timeout_reasons() -> None:
    """Failures 127.0.0.1 cannot produce, built as aiohttp raises them."""
    key = ConnectionKey("nosuch.invalid", 443, True, True, None, None, None, None)
    dns = aiohttp.ClientConnectorError(key, socket.gaierror(-2, "Name or service not known"))
    assert reason_of(describe(dns, "https://nosuch.invalid/v1")) == "DNS failure at nosuch.invalid:443"
    timeout = aiohttp.ConnectionTimeoutError("Connection timeout to host https://10.9.9.9:8443/v1")
    assert reason_of(describe(timeout, "https://10.9.9.9:8443/v1")) == "connect timeout at 10.9.9.9:8443"
    cert = aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("self-signed"))
    assert reason_of(describe(cert, "https://nosuch.invalid/v1")) == "TLS error at nosuch.invalid:443"
    assert reason_of("ClientOSError: something else") is None and reason_of(None) is None


def _o(provider: str, endpoint: str, status: int | None, n: int, **kw) -> CellOutcome:
    return CellOutcome(provider, endpoint, status, kw.pop("error_type", None), n=n, **kw)


PROVIDERS = parse_config(
    {
        "beta": {"base_url": "http://127.0.0.1:1/v1", "models": {"*": "*"}},
        "root": {"base_url": "http://127.0.0.1:2", "models": {"*": "*"}},
        "v1": {"base_url": "http://127.0.0.1:3/v1", "models": {"*": "*"}, "endpoints": ["chat.completions"]},
    }
).providers


def test_top_reasons_with_counts() -> None:
    d = diagnose(
        [
            _o("beta", "chat.completions", 200, 37),
            _o("beta", "chat.completions", 429, 2, error_type="requests", code="rate_limit_exceeded"),
            _o("beta", "chat.completions", 200, 1, error_type="stream_broken"),
        ],
        PROVIDERS,
    )
    assert d.providers["beta"].line() == "beta: 3/40 failed: 2x 429 rate_limit_exceeded, 1x stream_broken"
    assert d.dead == [] and d.dead_note() is None


def test_a_missing_model_is_not_a_wrong_base_url_nor_an_unsupported_endpoint() -> None:
    d = diagnose(
        [
            _o("beta", "chat.completions", 200, 5),
            _o("beta", "embeddings", 404, 3, error_type="invalid_request_error", code="model_not_found"),
            _o(
                "root", "chat.completions", 404, 4, error_type="invalid_request_error", code="model_not_found"
            ),
        ],
        PROVIDERS,
    )
    assert d.unsupported == [] and d.providers["root"].hint is None
    assert d.providers["beta"].line() == "beta: 3/8 failed: 404 model_not_found"
    assert d.dead_note() == "provider answered no request: root (404 model_not_found)"


def test_wrong_base_url_hint_depends_on_the_path() -> None:
    cells = [_o(p, "chat.completions", 404, 2, error_type="invalid_request_error") for p in ("root", "v1")]
    d = diagnose(cells, PROVIDERS)
    assert d.providers["root"].hint == "base_url http://127.0.0.1:2 has no /v1? every request got 404"
    assert d.providers["v1"].hint == "every request got 404: is base_url http://127.0.0.1:3/v1 right?"
    assert [v.name for v in d.dead] == ["root", "v1"]


def test_requests_production_failed_too_do_not_make_a_provider_dead() -> None:
    d = diagnose(
        [_o("beta", "chat.completions", 400, 3, error_type="invalid_request_error", rec_ok=False)], PROVIDERS
    )
    assert d.dead == [] and d.providers["beta"].failed == 3


def test_unsupported_endpoint_needs_another_endpoint_that_works() -> None:
    """405 on one path while chat works: unsupported; the hint keeps the provider's other endpoints."""
    d = diagnose(
        [
            _o("v1", "chat.completions", 200, 4),
            _o("v1", "embeddings", 405, 2, error_type="invalid_request_error", message="Method Not Allowed"),
        ],
        PROVIDERS,
    )
    (u,) = d.unsupported
    assert (u.provider, u.endpoint, u.cells, u.reason) == ("v1", "embeddings", 2, "405 Method Not Allowed")
    assert 'set endpoints = ["chat.completions"] in [v1]' in u.line()
    assert d.providers["v1"].failed == 0 and d.public()["unsupported_endpoints"][0]["error_type"] == (
        "unsupported_endpoint"
    )
