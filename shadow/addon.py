"""The shadow mitmproxy addon: mirror (a deterministic sample of) live requests to candidate providers.

Loaded beside the recorder, after it: ``parity record --shadow providers.toml`` or
``mitmdump -s recorder/addon.py -s shadow/addon.py --set parity_db=... --set parity_shadow=providers.toml``.
Production is never touched: the hooks only look at the recorder's capture, and once production's
exchange has finished hand it to the shadow process (``parity.shadow.handoff``), which sends the
mirrors. A request is mirrored when its endpoint is replayable and free of side effects, and its
sample key (a hash of the exchange id, ``parity.replayer.sampling``) falls in the sample: every
candidate sees the same requests, and the share stays the same across restarts. See docs/shadow.md.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

from mitmproxy import ctx, exceptions, http

if __package__ in (None, "") and importlib.util.find_spec("parity") is None:
    # loaded by path from a checkout (``mitmdump -s shadow/addon.py``) with parity not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parity.replayer.sampling import SPACE, sample_key
from parity.shadow.handoff import ShadowHandle, ShadowInit, wait_for_writers
from parity.wire.endpoints import REPLAYABLE, classify, has_side_effects

log = logging.getLogger("parity.shadow")
_REC = "parity"  # the recorder's capture in flow.metadata
_KEY = "parity_shadow"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
OPTIONS = (
    "parity_shadow",
    "parity_shadow_sample",
    "parity_shadow_run",
    "parity_shadow_max_cost",
    "parity_shadow_queue",
    "parity_shadow_drain_s",
    "parity_shadow_status_s",
    "parity_shadow_journal_mb",
    "parity_shadow_respawn_s",
    "parity_shadow_nice",
)


def parse_max_cost(value: str) -> float | None:
    """``--shadow-max-cost`` in USD ('' = no cap)."""
    if not value.strip():
        return None
    try:
        v = float(value)
    except ValueError:
        raise exceptions.OptionsError(f"parity_shadow_max_cost {value!r}: expected a number of USD") from None
    if not v >= 0:
        raise exceptions.OptionsError("parity_shadow_max_cost must be >= 0")
    return v


def _number(value: str, name: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise exceptions.OptionsError(f"{name} {value!r}: expected a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise exceptions.OptionsError(f"{name} {value!r}: expected a finite number")
    return v


def check_run(db: str, run_id: str) -> None:
    """Refuse to add mirrors to a run that a replay made (a shadow run continues)."""
    from parity.store.store import connect

    try:
        con = connect(db)
        try:
            rows = con.execute(
                "SELECT CAST(config AS VARCHAR) FROM runs WHERE run_id = ?", [run_id]
            ).fetchall()
        finally:
            con.close()
    except Exception:  # noqa: BLE001 (a new or unreadable store: the shadow process will say)
        return
    if rows and rows[0][0] and '"shadow"' not in rows[0][0]:
        raise exceptions.OptionsError(
            f"run {run_id!r} in {db} is a replay run, not a shadow run; choose another --shadow-run NAME"
        )


class Shadow:
    """Hands finished production exchanges to the shadow process."""

    def __init__(self) -> None:
        self.handle: ShadowHandle | None = None
        self._threshold = SPACE
        self._spec: tuple | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "parity_shadow",
            str,
            "",
            "Providers file (the replay one): mirror live requests to its providers.",
        )
        # numbers as text: mitmproxy's ``--set`` cannot parse float options
        loader.add_option(
            "parity_shadow_sample", str, "1", "Share of requests mirrored, in (0, 1] (by a hash of the id)."
        )
        loader.add_option(
            "parity_shadow_run", str, "shadow", "Name of the shadow run (a restart continues it)."
        )
        loader.add_option(
            "parity_shadow_max_cost", str, "", "Stop mirroring once the candidates cost this many USD."
        )
        loader.add_option(
            "parity_shadow_queue", int, 1000, "Exchanges waiting for the shadow process; more are dropped."
        )
        loader.add_option(
            "parity_shadow_drain_s", str, "10", "At a stop, seconds mirrors in flight may still finish."
        )
        loader.add_option(
            "parity_shadow_status_s", str, "10", "Seconds between stored counters of the shadow run."
        )
        loader.add_option(
            "parity_shadow_journal_mb", str, "64", "The shadow journal starts afresh past this size (MB)."
        )
        loader.add_option(
            "parity_shadow_respawn_s",
            str,
            "30",
            "A shadow process that died is replaced at most this often (s).",
        )
        loader.add_option(
            "parity_shadow_nice",
            int,
            19,
            "Priority of the shadow process: 19 = idle (only CPU nothing else wants), 0..18 = that nice level.",
        )

    def configure(self, updated) -> None:
        if not set(OPTIONS + ("parity_db",)) & set(updated):
            return
        o = ctx.options
        if not o.parity_shadow:
            self._close()
            return
        n = self._check(o)
        if not getattr(o, "parity_db", ""):
            return  # checked now, started once the recorder has its store (``running`` warns if never)
        check_run(o.parity_db, o.parity_shadow_run)
        spec = tuple(getattr(o, k) for k in OPTIONS + ("parity_db",))
        if spec == self._spec and self.handle is not None:
            return
        self._close()
        from parity.store.segments import segment_root

        # a shadow process of a recorder killed a moment ago finishes within seconds; a live one is another
        # recorder mirroring into the same run, which would double-count and rebuild its cells
        busy = wait_for_writers(segment_root(o.parity_db), o.parity_shadow_run, 15.0)
        if busy:
            raise exceptions.OptionsError(
                f"run {o.parity_shadow_run!r} is being mirrored by another shadow process (pid "
                f"{', '.join(map(str, busy))}); give this recorder another --shadow-run"
            )
        from parity.recorder.redact import build as build_redactor

        redactor = build_redactor(
            getattr(o, "parity_redact", "") or None,
            getattr(o, "parity_redact_builtin", ""),
            getattr(o, "parity_redact_hook", "") or None,
        )
        init = ShadowInit(
            db=o.parity_db,
            root=str(segment_root(o.parity_db)),
            providers=str(Path(o.parity_shadow).resolve()),
            run_id=o.parity_shadow_run,
            sample=n["sample"],
            max_cost=n["max_cost"],
            redactor=redactor,
            drain_s=n["drain_s"],
            status_s=n["status_s"],
            journal_max_bytes=int(n["journal_mb"] * (1 << 20)),
            respawn_s=max(n["respawn_s"], 0.0),
            nice=o.parity_shadow_nice,
        )
        self._threshold = int(n["sample"] * SPACE)
        self.handle = ShadowHandle(init, bound=o.parity_shadow_queue)
        self.handle.start()
        self._spec = spec

    @staticmethod
    def _check(o) -> dict:
        """Every shadow option, the providers file and its keys: one clear error before any traffic."""
        n = {
            "sample": _number(o.parity_shadow_sample, "parity_shadow_sample"),
            "drain_s": _number(o.parity_shadow_drain_s, "parity_shadow_drain_s"),
            "status_s": _number(o.parity_shadow_status_s, "parity_shadow_status_s"),
            "journal_mb": _number(o.parity_shadow_journal_mb, "parity_shadow_journal_mb"),
            "respawn_s": _number(o.parity_shadow_respawn_s, "parity_shadow_respawn_s"),
            "max_cost": parse_max_cost(o.parity_shadow_max_cost),
        }
        if not 0 < n["sample"] <= 1:
            raise exceptions.OptionsError(f"parity_shadow_sample {o.parity_shadow_sample}: must be in (0, 1]")
        if not _RUN_ID.match(o.parity_shadow_run):
            raise exceptions.OptionsError(
                f"parity_shadow_run {o.parity_shadow_run!r}: use letters, digits, '.', '_' or '-' (max 128)"
            )
        if o.parity_shadow_queue < 1:
            raise exceptions.OptionsError("parity_shadow_queue must be >= 1")
        if not 0 <= o.parity_shadow_nice <= 19:
            raise exceptions.OptionsError("parity_shadow_nice must be 0..19")
        if n["status_s"] <= 0 or n["drain_s"] < 0 or n["journal_mb"] <= 0:
            raise exceptions.OptionsError(
                "parity_shadow_status_s and parity_shadow_journal_mb must be > 0, parity_shadow_drain_s >= 0"
            )
        from parity.replayer.config import load_config
        from parity.replayer.errors import ReplayError

        try:
            load_config(o.parity_shadow).check_keys()
        except ReplayError as e:
            raise exceptions.OptionsError(f"--shadow: {e}") from None
        return n

    def running(self) -> None:
        if ctx.options.parity_shadow and self.handle is None:
            log.warning("parity: parity_shadow is set but there is no store (parity_db): nothing is mirrored")

    def _close(self) -> None:
        if self.handle is not None:
            h, self.handle = self.handle, None
            code = h.close(timeout=h.init.drain_s + 30.0)
            c = h.counts
            log.info(
                "parity: shadow run %r: %d requests seen, %d sampled, %d dropped (queue full); "
                "shadow process exit %s",
                h.init.run_id,
                c["seen"],
                c["sampled"],
                c["queue_full"],
                code,
            )

    def done(self) -> None:
        self._close()

    # --- hooks: a look at the recorder's capture, a deque append; never raising ---
    def request(self, flow: http.HTTPFlow) -> None:
        try:
            h = self.handle
            cap = flow.metadata.get(_REC)
            if h is None or cap is None:
                return
            if classify(cap.method, cap.path) not in REPLAYABLE or has_side_effects(cap.method, cap.path):
                return
            h.counts["seen"] += 1
            if not cap.id:
                cap.id = os.urandom(16).hex()  # the exchange's id, so the mirrors pair with its row
            if self._threshold < SPACE and sample_key(cap.id) >= self._threshold:
                return
            h.counts["sampled"] += 1
            flow.metadata[_KEY] = cap
        except Exception:
            log.exception("parity shadow: request hook failed (traffic unaffected)")

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            cap = flow.metadata.pop(_KEY, None)
            if cap is not None and self.handle is not None:
                self.handle.offer(cap)
        except Exception:
            log.exception("parity shadow: response hook failed (traffic unaffected)")

    error = response  # production failed: its request is still mirrored (the arm shows the failure)


addons = [Shadow()]
