"""Undo a body's content-encoding (gzip, deflate, br, zstd), whole or read by read.

A corrupt, truncated or unknown encoding is never a silent partial: the caller gets what could be
decoded and an error saying why.
"""

from __future__ import annotations

import gzip
import zlib


def decode_body(raw: bytes, encoding: str | None) -> tuple[bytes, str | None]:
    """Undo content-encoding (gzip, deflate, br, zstd); returns (bytes, error or None).

    A corrupt or truncated body gives back the raw bytes with an error, never a silent partial.
    """
    enc = (encoding or "").strip().lower()
    if not raw or enc in ("", "identity"):
        return raw, None
    try:
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(raw), None
        if enc == "deflate":
            try:
                return zlib.decompress(raw), None
            except zlib.error:
                return zlib.decompress(raw, -zlib.MAX_WBITS), None
        if enc == "br":
            import brotli

            return brotli.decompress(raw), None
        if enc == "zstd":
            return _zstd_frames(raw), None
    except Exception as e:  # corrupt or truncated compressed body: keep the raw bytes
        return raw, f"undecodable {enc} body: {e}"
    return raw, f"unknown content-encoding {enc}"


def _zstd_frames(raw: bytes) -> bytes:
    """All zstd frames of ``raw``; a cut frame is an error (decompressobj alone would return b'')."""
    import zstandard

    out, data = [], raw
    while data:
        d = zstandard.ZstdDecompressor().decompressobj()
        out.append(d.decompress(data))
        if not d.eof:
            raise ValueError("truncated zstd frame")
        data = d.unused_data
    return b"".join(out)


class _Incremental:
    """Decode one content-encoding read by read; ``finished`` says whether the stream ended cleanly."""

    def __init__(self, enc: str) -> None:
        self.enc = enc
        self._d = None
        if enc in ("gzip", "x-gzip"):
            self._d = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
        elif enc == "br":
            import brotli

            self._d = brotli.Decompressor()
        elif enc == "zstd":
            import zstandard

            self._d = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> bytes:
        if self.enc == "deflate" and self._d is None:  # zlib-wrapped per the RFC, raw in some servers
            try:
                d = zlib.decompressobj()
                out = d.decompress(data)
                self._d = d
                return out
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        if self.enc == "br":
            return self._d.process(data)
        # gzip members and zstd frames may be concatenated (RFC 1952 2.2, RFC 8878 3): after the
        # end of one, go on with a fresh decoder on whatever follows, in this read or the next.
        multi = self.enc in ("gzip", "x-gzip", "zstd")
        if multi and data and self._d.eof:
            self._d = self._fresh()
        out = self._d.decompress(data)
        while multi and self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = self._fresh()
            out += self._d.decompress(rest)
        return out

    def _fresh(self):
        if self.enc == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj()
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)

    @property
    def finished(self) -> bool:
        if self._d is None:
            return False
        if self.enc == "br":
            return self._d.is_finished()
        return bool(self._d.eof)


def decode_chunks(
    chunks: list[tuple[float, bytes]], encoding: str | None
) -> tuple[list[tuple[float, bytes]], str | None]:
    """Undo content-encoding read by read, keeping each read's arrival time."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return chunks, None
    if enc not in ("gzip", "x-gzip", "deflate", "br", "zstd"):
        return chunks, f"unknown content-encoding {enc}"
    dec = _Incremental(enc)
    out: list[tuple[float, bytes]] = []
    try:
        for t, data in chunks:
            piece = dec.feed(data)
            if piece:
                out.append((t, piece))
    except Exception as e:  # corrupt compressed stream: keep what decoded, say so
        return out, f"undecodable {enc} stream: {e}"
    if chunks and not dec.finished:
        return out, f"{enc} stream ended before its end marker"
    return out, None
