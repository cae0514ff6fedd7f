"""What went wrong on the wire, in words a user can act on, naming the host and port.

A transport failure is stored as ``error_type`` ``connection_error`` or ``timeout`` (the families
the retry policy reads) with an ``error_message`` that starts with one of :data:`REASONS`
followed by ``at host:port``, e.g. ``connection refused at 127.0.0.1:9999: ClientConnectorError: ...``.
:func:`reason_of` reads the reason back (``connection refused at 127.0.0.1:9999``).
"""

from __future__ import annotations

import errno
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp

REASONS = (
    "connection refused",
    "DNS failure",
    "TLS error",
    "connection reset",
    "connection closed",
    "host unreachable",
    "connect timeout",
    "read timeout",
    "timeout",
    "body cut off",
    "connection error",
)
_RESET = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
# aiohttp < 3.10 has no DNS or connect/read timeout classes: () matches nothing.
_DNS = (getattr(aiohttp, "ClientConnectorDNSError", socket.gaierror), socket.gaierror)
_CONNECT_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", ())
_READ_TIMEOUT = getattr(aiohttp, "SocketTimeoutError", ())


def host_port(url: str) -> str:
    """``host:port`` of a URL, the scheme's default port filled in."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def _causes(e: BaseException) -> list[BaseException]:
    """The exception, the OS error aiohttp wraps, and its causes (no loops)."""
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in out and len(out) < 6:
        out.append(cur)
        cur = getattr(cur, "os_error", None) or cur.__cause__ or cur.__context__
    return out


def _phrase(e: BaseException) -> str:
    chain = _causes(e)
    if isinstance(e, _CONNECT_TIMEOUT):
        return "connect timeout"
    if isinstance(e, _READ_TIMEOUT):
        return "read timeout"
    if isinstance(e, TimeoutError):
        return "timeout"
    if any(isinstance(c, _DNS) for c in chain):
        return "DNS failure"
    if any(
        isinstance(c, (aiohttp.ClientSSLError, ssl.SSLError, aiohttp.ServerFingerprintMismatch))
        for c in chain
    ):
        return "TLS error"
    if any(
        isinstance(c, ConnectionRefusedError) or getattr(c, "errno", None) == errno.ECONNREFUSED
        for c in chain
    ):
        return "connection refused"
    if any(
        isinstance(c, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))
        or getattr(c, "errno", None) in _RESET
        for c in chain
    ):
        return "connection reset"
    if any(getattr(c, "errno", None) in _UNREACHABLE for c in chain):
        return "host unreachable"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "connection closed"
    if isinstance(e, aiohttp.ClientPayloadError):
        return "body cut off"
    return "connection error"


def describe(e: BaseException, url: str, timeout_s: float | None = None) -> str:
    """The ``error_message`` of a transport failure: reason, ``at host:port``, then the detail."""
    where = host_port(url)
    host, port = getattr(e, "host", None), getattr(e, "port", None)
    if isinstance(host, str) and host and isinstance(port, int):
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    phrase = _phrase(e)
    if phrase == "timeout" and timeout_s is not None:
        detail = f"no complete answer within {timeout_s:g} s ({type(e).__name__})"
    else:
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return f"{phrase} at {where}: {detail}"[:2000]


def reason_of(message: str | None) -> str | None:
    """``reason at host:port`` from a message written by :func:`describe`, else None."""
    if not message:
        return None
    for phrase in REASONS:
        if message.startswith(phrase + " at "):
            return message.split(": ", 1)[0]
    return None
