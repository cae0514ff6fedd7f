"""The mitmproxy addon: capture OpenAI API exchanges without touching them.

Works inside ``parity record`` and under plain ``mitmdump -s recorder/addon.py --set parity_db=...``.
Hooks only take references and timestamps and hand a :class:`~parity.recorder.capture.Capture`
to the background writer; every hook swallows its own errors, so a recorder bug can
never fail or delay the traffic it watches.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from mitmproxy import ctx, http

if __package__ in (None, "") and importlib.util.find_spec("parity") is None:
    # loaded by path from a checkout with ``mitmdump -s recorder/addon.py``, parity not installed:
    # the checkout's root holds the ``parity`` package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity.recorder.capture import Capture
from parity.recorder.recordings import recording_row, without_userinfo
from parity.recorder.redact import Redactor
from parity.recorder.redact import build as build_redactor
from parity.recorder.redaction_rules import RedactionError
from parity.recorder.writer_proc import ProcessWriter
from parity.store.segments import segment_root, store_salt
from parity.store.store import init_catalog
from parity.store.writer import BatchWriter
from parity.wire.endpoints import classify

log = logging.getLogger("parity.recorder")
_perf = time.perf_counter
_KEY = "parity"


class Recorder:
    """Records every exchange through the proxy into the parity store."""

    def __init__(self) -> None:
        self.writer: BatchWriter | ProcessWriter | None = None
        self.salt = b""
        self.recorder_id = f"{os.uname().nodename}-{os.getpid()}"
        self.errors = 0
        # Option values cached in configure(): ctx.options lookups cost more than the hooks.
        self._max_body = 32 * 1024 * 1024
        self._tag: str | None = None
        self._skip_other = False
        self._redactor: Redactor | None = None
        self._live: dict[int, Capture] = {}  # in flight, so a stop can still record them

    def load(self, loader) -> None:
        loader.add_option("parity_db", str, "", "Path of the parity store (e.g. parity.duckdb).")
        loader.add_option("parity_tag", str, "", "Tag stored with every exchange (e.g. the app or release).")
        loader.add_option("parity_spill_dir", str, "", "Where exchanges go when the store cannot be written.")
        loader.add_option("parity_max_body_bytes", int, 32 * 1024 * 1024, "Bodies above this are truncated.")
        loader.add_option("parity_flush_interval", float, 0.5, "Seconds between store flushes (<= 1).")
        loader.add_option(
            "parity_record_other", bool, True, "Also record non-OpenAI paths as endpoint 'other'."
        )
        loader.add_option(
            "parity_writer",
            str,
            "process",
            "Where rows are built and written: 'process' (a child process, off the proxy's GIL) "
            "or 'thread' (a thread in the proxy process).",
            choices=["process", "thread"],
        )
        loader.add_option(
            "parity_redact",
            str,
            "",
            "TOML file of regex rules redacting message content before it is stored "
            "([[rule]] name, pattern, replacement).",
        )
        loader.add_option(
            "parity_redact_builtin",
            str,
            "",
            "Comma list of built-in redaction rules: email, phone, credit_card, ipv4, openai_key.",
        )
        loader.add_option(
            "parity_redact_hook",
            str,
            "",
            "Redaction hook, module:function or path/to/file.py:function (str -> str), run after the rules.",
        )

    def configure(self, updated) -> None:
        from mitmproxy import exceptions

        opts = ctx.options
        if "parity_flush_interval" in updated and not 0 < opts.parity_flush_interval <= 1:
            raise exceptions.OptionsError("parity_flush_interval must be in (0, 1] seconds")
        if "parity_max_body_bytes" in updated and opts.parity_max_body_bytes < 0:
            raise exceptions.OptionsError("parity_max_body_bytes must be >= 0")
        self._max_body = opts.parity_max_body_bytes
        self._tag = opts.parity_tag or None
        self._skip_other = not opts.parity_record_other
        redaction = {"parity_redact", "parity_redact_builtin", "parity_redact_hook"} & set(updated)
        if redaction:
            try:  # built (and its hook imported) here only to check it: rows are redacted by the writer
                self._redactor = build_redactor(
                    opts.parity_redact or None, opts.parity_redact_builtin, opts.parity_redact_hook or None
                )
            except RedactionError as e:
                raise exceptions.OptionsError(str(e)) from None
        if "parity_db" in updated and opts.parity_db:
            self._open(opts.parity_db)
        elif redaction and self.writer is not None:  # new rules: a new writer and a new recordings row
            self._open(opts.parity_db)

    def _open(self, db: str) -> None:
        if self.writer:
            self.writer.close()
        root = segment_root(db)
        try:
            init_catalog(db)
        except Exception as e:  # recording must start even if the catalog is unusable
            # A warning, not an error: mitmproxy exits on errors logged before it is running.
            log.warning("store catalog %s not initialised (%s); segments still go to %s", db, e, root)
        try:
            self.salt = store_salt(root)
        except Exception:
            self.salt = b"parity-unsalted"
        spill = ctx.options.parity_spill_dir or None
        # A frozen mitmproxy binary cannot spawn a plain Python child: use the thread there.
        use_process = ctx.options.parity_writer == "process" and not getattr(sys, "frozen", False)
        writer_cls = ProcessWriter if use_process else BatchWriter
        self.writer = writer_cls(
            root,
            spill_dir=Path(spill) if spill else None,
            interval=ctx.options.parity_flush_interval,
            writer_id=uuid.uuid4().hex[:8],
            redactor=self._redactor,
        )
        self.writer.error_level = logging.WARNING  # until running(): see BatchWriter.error_level
        self.writer.start()
        self.writer.put("recordings", self._recording(db))
        # A writer thread (or the process writer's sender) runs Python beside the event loop: hand
        # the GIL back to the loop sooner than the default 5 ms so it never shows in the traffic.
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.001)
        log.info("parity: recording into %s (spill: %s)", root, self.writer.spill_dir)
        if self._redactor is not None:
            d = self._redactor.describe()
            names = [r["name"] for r in d["rules"]] + ([f"hook {d['hook']}"] if d["hook"] else [])
            log.info("parity: redacting message content before storage: %s (%s)", ", ".join(names), d["hash"])

    def _recording(self, db: str) -> dict:
        """This start's ``recordings`` row: settings only, never a header or a key."""
        o = ctx.options
        options = {
            "source": "proxy",
            "mode": [without_userinfo(m) for m in getattr(o, "mode", [])],
            "listen": f"{getattr(o, 'listen_host', '')}:{getattr(o, 'listen_port', '')}",
            "spill_dir": str(self.writer.spill_dir),
            "max_body_bytes": o.parity_max_body_bytes,
            "flush_interval": o.parity_flush_interval,
            "record_other": o.parity_record_other,
            "writer": "process" if isinstance(self.writer, ProcessWriter) else "thread",
        }
        redaction = self._redactor.describe() if self._redactor else None
        return recording_row(self.recorder_id, self._tag, db, options, redaction)

    def running(self) -> None:
        if not self.writer:
            log.warning("parity: no --set parity_db=PATH given; nothing will be recorded")
        else:
            self.writer.error_level = logging.ERROR

    def done(self) -> None:
        if not self.writer:
            return
        for cap in list(self._live.values()):  # still in flight at shutdown: record what was seen
            cap.t_end = _perf()
            cap.error = "the recorder stopped before the exchange finished"
            cap.error_kind = "recorder_stopped"
            self.writer.put("exchanges", cap)
        self._live.clear()
        stats = self.writer.close()
        log.log(
            logging.ERROR if stats.spilled or stats.lost else logging.INFO,
            "parity: wrote %d exchanges (%d spilled, %d re-imported, %d lost)",
            stats.written,
            stats.spilled,
            stats.reimported,
            stats.lost,
        )
        self.writer = None

    # --- hooks: references and timestamps only, never raising ---
    def request(self, flow: http.HTTPFlow) -> None:
        try:
            if self.writer is None:
                return
            req = flow.request
            if self._skip_other and classify(req.method, req.path) == "other":
                return
            cap = Capture(
                wall_start=time.time(),
                t_start=_perf(),
                method=req.method,
                path=req.path,
                host=req.host,
                request_headers=req.headers,
                request_raw=req.raw_content,
                max_body_bytes=self._max_body,
                tag=self._tag,
                recorder_id=self.recorder_id,
                salt=self.salt,
            )
            flow.metadata[_KEY] = cap
            self._live[id(cap)] = cap
        except Exception:
            self._oops("request")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        try:
            cap: Capture | None = flow.metadata.get(_KEY)
            resp = flow.response
            if cap is None or resp is None:
                return
            cap.t_headers = _perf()
            cap.status = resp.status_code
            headers = cap.response_headers = resp.headers
            if "text/event-stream" in headers.get("content-type", "").lower():
                cap.chunks = []
                resp.stream = _tee(cap, self._max_body)
            else:
                length = headers.get("content-length")
                if length and length.isdigit() and int(length) > self._max_body:
                    cap.chunks = []  # too big to buffer: stream it, keep the first max_body bytes
                    resp.stream = _tee(cap, self._max_body)
        except Exception:
            self._oops("responseheaders")

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            cap = self._ended(flow)
            if cap is None:
                return
            if cap.chunks is None and flow.response is not None:
                cap.body = flow.response.raw_content  # cut to max_body on the writer thread
            self.writer.put("exchanges", cap)
        except Exception:
            self._oops("response")

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            cap = self._ended(flow)
            if cap is None:
                return
            msg = flow.error.msg if flow.error else "unknown error"
            cap.error = msg
            cap.client_disconnected = "client disconnected" in msg.lower()
            if flow.response is not None:
                if cap.status is None:
                    cap.status = flow.response.status_code
                    cap.response_headers = flow.response.headers
                if cap.chunks is None and cap.body is None:
                    cap.body = flow.response.raw_content
            self.writer.put("exchanges", cap)
        except Exception:
            self._oops("error")

    def _ended(self, flow: http.HTTPFlow) -> Capture | None:
        """The capture of a flow that has just ended, its end time stamped (None: the flow was not
        captured, or there is no writer to take it)."""
        cap: Capture | None = flow.metadata.pop(_KEY, None)
        if cap is None:
            return None
        self._live.pop(id(cap), None)
        if self.writer is None:
            return None
        cap.t_end = _perf()
        return cap

    def _oops(self, hook: str) -> None:
        self.errors += 1
        log.exception(
            "parity: %s hook failed (traffic unaffected; %d recorder errors so far)", hook, self.errors
        )


def _tee(cap: Capture, limit: int):
    """A stream callable that forwards each read untouched and keeps a timestamped copy."""
    chunks = cap.chunks
    append = chunks.append

    def tee(data: bytes) -> bytes:
        if data:
            n = cap.streamed_bytes = cap.streamed_bytes + len(data)
            if n <= limit:
                append((_perf(), data))
            elif not cap.truncated:
                cap.truncated = True
                keep = limit - (n - len(data))
                if keep > 0:
                    append((_perf(), data[:keep]))
        return data

    return tee


addons = [Recorder()]
