"""The mitmproxy addon: capture OpenAI API exchanges without touching them.

Works inside ``parity record`` and under plain ``mitmdump -s recorder/addon.py --set parity_db=...``.
Hooks only take references and timestamps and hand a :class:`~recorder.capture.Capture`
to the background writer; every hook swallows its own errors, so a recorder bug can
never fail or delay the traffic it watches.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

from mitmproxy import ctx, http

if __package__ in (None, ""):  # loaded by path with ``mitmdump -s``: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.capture import Capture
from recorder.endpoints import classify
from recorder.segments import segment_root
from recorder.store import init_catalog
from recorder.writer import BatchWriter

log = logging.getLogger("parity.recorder")
_perf = time.perf_counter
_KEY = "parity"


def _store_salt(root: Path) -> bytes:
    """A per-store random salt for key fingerprints, created once, owner-only."""
    p = root / ".salt"
    try:
        return p.read_bytes()
    except FileNotFoundError:
        salt = secrets.token_bytes(16)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(salt)
        return salt
    except OSError:
        return b"parity-unsalted"


class Recorder:
    """Records every exchange through the proxy into the parity store."""

    def __init__(self) -> None:
        self.writer: BatchWriter | None = None
        self.salt = b""
        self.recorder_id = f"{os.uname().nodename}-{os.getpid()}"
        self.errors = 0

    def load(self, loader) -> None:
        loader.add_option("parity_db", str, "", "Path of the parity store (e.g. parity.duckdb).")
        loader.add_option("parity_tag", str, "", "Tag stored with every exchange (e.g. the app or release).")
        loader.add_option("parity_spill_dir", str, "", "Where exchanges go when the store cannot be written.")
        loader.add_option("parity_max_body_bytes", int, 32 * 1024 * 1024, "Bodies above this are truncated.")
        loader.add_option("parity_flush_interval", float, 0.5, "Seconds between store flushes (<= 1).")
        loader.add_option(
            "parity_record_other", bool, True, "Also record non-OpenAI paths as endpoint 'other'."
        )

    def configure(self, updated) -> None:
        if "parity_flush_interval" in updated and not 0 < ctx.options.parity_flush_interval <= 1:
            from mitmproxy import exceptions

            raise exceptions.OptionsError("parity_flush_interval must be in (0, 1] seconds")
        if "parity_db" in updated and ctx.options.parity_db:
            self._open(ctx.options.parity_db)

    def _open(self, db: str) -> None:
        if self.writer:
            self.writer.close()
        root = segment_root(db)
        try:
            init_catalog(db)
        except Exception as e:  # recording must start even if the catalog is unusable
            log.error("store catalog %s not initialised (%s); segments still go to %s", db, e, root)
        try:
            self.salt = _store_salt(root)
        except Exception:
            self.salt = b"parity-unsalted"
        spill = ctx.options.parity_spill_dir or None
        self.writer = BatchWriter(
            root,
            spill_dir=Path(spill) if spill else None,
            interval=ctx.options.parity_flush_interval,
            writer_id=uuid.uuid4().hex[:8],
        )
        self.writer.start()
        log.info("parity: recording into %s", root)

    def running(self) -> None:
        if not self.writer:
            log.warning("parity: no --set parity_db=PATH given; nothing will be recorded")

    def done(self) -> None:
        if self.writer:
            stats = self.writer.close()
            log.info(
                "parity: wrote %d exchanges (%d spilled, %d re-imported, %d lost)",
                stats.written,
                stats.spilled,
                stats.reimported,
                stats.lost,
            )
            self.writer = None

    # --- hooks: cheap, never raising ---
    def request(self, flow: http.HTTPFlow) -> None:
        try:
            if not self.writer:
                return
            req = flow.request
            if not ctx.options.parity_record_other and classify(req.method, req.path) == "other":
                return
            raw = req.raw_content
            limit = ctx.options.parity_max_body_bytes
            cut = raw is not None and len(raw) > limit
            flow.metadata[_KEY] = Capture(
                wall_start=time.time(),
                t_start=_perf(),
                method=req.method,
                path=req.path,
                host=req.pretty_host,
                request_headers={k.lower(): v for k, v in req.headers.items()},
                request_raw=raw[:limit] if cut else raw,
                request_truncated=cut,
                tag=ctx.options.parity_tag or None,
                recorder_id=self.recorder_id,
                salt=self.salt,
                id=uuid.uuid4().hex,
            )
        except Exception:
            self._oops("request")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            cap: Capture | None = flow.metadata.get(_KEY)
            if cap is None or flow.response is None:
                return
            cap.t_headers = _perf()
            resp = flow.response
            cap.status = resp.status_code
            cap.response_headers = {k.lower(): v for k, v in resp.headers.items()}
            ctype = cap.response_headers.get("content-type", "")
            limit = ctx.options.parity_max_body_bytes
            try:
                big = int(cap.response_headers.get("content-length", "0")) > limit
            except ValueError:
                big = False
            if "text/event-stream" in ctype or big:
                cap.chunks = []
                resp.stream = _tee(cap, limit)
        except Exception:
            self._oops("responseheaders")

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            cap: Capture | None = flow.metadata.pop(_KEY, None)
            if cap is None or not self.writer:
                return
            cap.t_end = _perf()
            if cap.chunks is None and flow.response is not None:
                body = flow.response.raw_content
                limit = ctx.options.parity_max_body_bytes
                if body is not None and len(body) > limit:
                    body, cap.truncated = body[:limit], True
                cap.body = body
            self.writer.put("exchanges", cap)
        except Exception:
            self._oops("response")

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            cap: Capture | None = flow.metadata.pop(_KEY, None)
            if cap is None or not self.writer:
                return
            cap.t_end = _perf()
            msg = flow.error.msg if flow.error else "unknown error"
            cap.error = msg
            cap.client_disconnected = "client disconnected" in msg.lower()
            if flow.response is not None and cap.status is None:
                cap.status = flow.response.status_code
            self.writer.put("exchanges", cap)
        except Exception:
            self._oops("error")

    def _oops(self, hook: str) -> None:
        self.errors += 1
        log.exception(
            "parity: %s hook failed (traffic unaffected; %d recorder errors so far)", hook, self.errors
        )


def _tee(cap: Capture, limit: int):
    """A stream callable that forwards each read untouched and keeps a timestamped copy."""
    chunks = cap.chunks

    def tee(data: bytes) -> bytes:
        if data:
            cap.streamed_bytes += len(data)
            if cap.streamed_bytes <= limit:
                chunks.append((_perf(), data))
            else:
                cap.truncated = True
        return data

    return tee


addons = [Recorder()]
