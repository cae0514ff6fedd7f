"""The shadow process: ``python -m parity.shadow.process FD``, started by the shadow addon.

Reads the run's setup and then batches of finished production exchanges from the pipe ``FD``
(``parity.shadow.handoff``), mirrors them (``parity.shadow.mirror``), and has its builder child
(``parity.shadow.builder``) write every row. The run is a normal run in the store: ``run_events``
(started or resumed, then ``mirroring``/``capped`` with the counters while they change, ``stopped``),
``results`` (the production arm as provider ``recorded``, the candidates beside it) and ``attempts``.

Stops: ``close`` from the recorder lets mirrors in flight finish (up to ``drain_s``); end of file
(the recorder died, e.g. ``kill -9``) cancels them at once, counted as ``lost_in_flight``. Either
way the rows built so far are written and the final counters stored. A restart waits until an
earlier shadow process of the same run has exited, then reads the run's journals: captures whose
rows never reached the store are built now (no mirror is sent twice), mirrors dispatched but never
completed are counted as lost in flight; the journals are then removed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

from parity.replayer import journal as journal_mod
from parity.replayer.config import Config, load_config
from parity.replayer.journal import Journal, decode_capture
from parity.replayer.resume import RunState, run_state
from parity.replayer.run import RunOptions, run_config
from parity.replayer.select import by_ids
from parity.replayer.worker import lower_priority
from parity.shadow import builder
from parity.shadow.handoff import ShadowInit, read_msg, wait_for_writers
from parity.shadow.mirror import Mirror
from parity.shadow.status import CAPPED, MIRRORING, RESUMED, STARTED, STOPPED, Counters
from parity.store.store import connect

log = logging.getLogger("parity.shadow")
COMPACT_EVERY_S = 600.0  # how often a running shadow run's segments are merged


def latest_config(db: str, run_id: str) -> dict:
    """The run's latest stored config ({} for a new run)."""
    con = connect(db)
    try:
        rows = con.execute("SELECT CAST(config AS VARCHAR) FROM runs WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def shadow_config(init: ShadowInit, cfg: Config, listed: dict) -> dict:
    """The run's config as a replay stores it (providers, pricing, versions), plus how it mirrors."""
    opts = RunOptions(db=init.db, providers=init.providers, run_id=init.run_id)
    config = run_config(opts, cfg, listed, 0)
    config["pacing"] = {"mode": "shadow"}
    config["selection"] = {"shadow": True, "sample": init.sample}
    return config


class ShadowRun:
    """One start of a shadow run inside the shadow process."""

    def __init__(self, init: ShadowInit, cfg: Config) -> None:
        self.init, self.cfg = init, cfg
        self.root = Path(init.root)
        self.changed = True
        self.stop_kind: str | None = None  # close | eof
        self._stopped = asyncio.Event()
        self.config: dict = {}

    def _event(self, state: str, note: str | None = None) -> None:
        config = {**self.config, "shadow": self.counters.public()}
        self.mirror._submit(builder.event, state, config, note)

    async def run(self, fin) -> None:
        init, cfg = self.init, self.cfg
        busy = wait_for_writers(self.root, init.run_id, init.drain_s + 30.0)
        if busy:  # another recorder mirrors into this run: two writers would count and rebuild each other's
            log.error(
                "parity shadow: run %r is being mirrored by process %s; not mirroring", init.run_id, busy
            )
            return
        state = run_state(init.db, self.root, init.run_id)
        last = latest_config(init.db, init.run_id) if state.exists else {}
        c = self.counters = Counters.from_public(last.get("shadow"))
        c.sample, c.max_cost, c.state, c.spent_usd = init.sample, init.max_cost, MIRRORING, state.spent
        for _, name, _ in state.in_flight:  # dispatched, never completed: the journal's word for lost
            c.add("dropped", f"{name}: lost_in_flight")
        for name in {k[1] for k in state.done} | {k[1] for k in state.in_flight}:
            # every mirror sent is stored (or journaled, built below) or lost: the exact count after a crash
            done = sum(1 for k in state.done if k[1] == name)
            c.mirrored[name] = done + c.dropped.get(f"{name}: lost_in_flight", 0)
        earlier = journal_mod.run_files(self.root, init.run_id)
        journal = Journal(self.root, init.run_id)

        def new_pool() -> concurrent.futures.ProcessPoolExecutor:
            return concurrent.futures.ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=builder.init,
                initargs=(init.run_id, init.root, cfg.providers, cfg.recorded, os.getpid()),
            )

        self.mirror = m = Mirror(
            cfg, c, journal, new_pool(), init.redactor, init.max_cost, self._changed, new_pool
        )
        try:
            self.config = shadow_config(init, cfg, await m.open())
            note = None
            if state.exists:
                note = (
                    f"{len(state.unstored)} journaled mirrors restored; {len(state.in_flight)} lost in flight"
                )
            self._event(RESUMED if state.exists else STARTED, note)
            await self._recover(state, earlier)
            loop = asyncio.get_running_loop()
            threading.Thread(target=self._read, args=(fin, loop), daemon=True).start()
            ticker = asyncio.ensure_future(self._ticker())
            await self._stopped.wait()
            ticker.cancel()
            await m.drain(init.drain_s if self.stop_kind == "close" else 0.0)
            why = "the recorder stopped" if self.stop_kind == "close" else "the recorder process went away"
            self._event(STOPPED, "; ".join(n for n in (why, m.cap_note) if n))
            await asyncio.gather(*list(m.building), return_exceptions=True)
            stats = await m._submit(builder.close)
            await m._submit(builder.compact, init.db, 0.0)
        finally:
            await m.close()
            m.pool.shutdown(wait=True, cancel_futures=False)
            m.journal.close()
        if not stats.get("spilled") and not stats.get("lost"):
            m.journal.path.unlink(missing_ok=True)  # every row is in the store; counters include the lost
        mirrored = sum(c.mirrored.values())
        log.info(
            "parity shadow: run %r stopped: %d mirrors sent, %d dropped, $%.4f spent",
            init.run_id,
            mirrored,
            sum(c.dropped.values()),
            c.spent_usd,
        )

    async def _recover(self, state: RunState, earlier: list[Path]) -> None:
        """Build the journaled mirrors whose rows the store lacks; then drop the earlier journals."""
        m = self.mirror
        if state.unstored:
            caps = [decode_capture(line) for line in state.unstored]
            xs = {x.id: x for x in by_ids(self.init.db, sorted({cap.exchange_id for cap in caps}))}
            recorded = set(state.recorded_done)
            futs = []
            for cap in caps:
                x = xs.get(cap.exchange_id)
                if x is None:  # the recorder's row itself was lost: nothing to pair it with
                    m.c.add("dropped", f"{cap.provider}: lost_in_flight")
                    continue
                if x.id not in recorded:
                    recorded.add(x.id)
                    futs.append(m._submit(builder.recorded, x))
                fut = m._submit(builder.build, cap, x)
                fut.add_done_callback(lambda f, name=cap.provider: m._built(f, name, 0.0))
                futs.append(fut)
            await asyncio.gather(*futs, return_exceptions=True)
        if earlier:
            await m._submit(builder.flush)
            for p in earlier:
                p.unlink(missing_ok=True)

    def _read(self, fin, loop: asyncio.AbstractEventLoop) -> None:
        """Reader thread: hand each batch to the loop; the end says how to stop."""
        while True:
            msg = read_msg(fin)
            if msg is None or msg[0] == "close":
                if msg is not None:
                    loop.call_soon_threadsafe(self.mirror.proxy_counts, msg[1])
                loop.call_soon_threadsafe(self._stop, "close" if msg else "eof")
                return
            if msg[0] == "caps":
                loop.call_soon_threadsafe(self.mirror.accept, msg[1], msg[2])

    def _stop(self, kind: str) -> None:
        self.stop_kind = kind
        self._stopped.set()

    def _changed(self) -> None:
        self.changed = True

    async def _ticker(self) -> None:
        capped = False
        compacted = time.monotonic()
        while True:
            await asyncio.sleep(self.init.status_s)
            if time.monotonic() - compacted > COMPACT_EVERY_S:  # a continuous run: keep evaluation fast
                compacted = time.monotonic()
                self.mirror._submit(builder.compact, self.init.db, 60.0)
            if self.mirror.journal.size() > self.init.journal_max_bytes:  # a continuous run: keep it small
                await self.mirror.rotate(Journal(self.root, self.init.run_id))
            if self.changed or (self.counters.state == CAPPED and not capped):
                self.changed = False
                capped = self.counters.state == CAPPED
                self._event(self.counters.state, self.mirror.cap_note if capped else None)


def main(fd: int) -> int:
    """Entry point of the shadow process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the recorder decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in ("httpx", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
    fin = os.fdopen(fd, "rb")
    first = read_msg(fin)
    if not first or first[0] != "init":
        return 2
    init: ShadowInit = first[1]
    if init.nice >= 19:  # the default: run only on CPU nobody else wants (as the replayer's post-processor)
        lower_priority()
    else:
        with contextlib.suppress(OSError):
            os.nice(init.nice)
    cfg = load_config(init.providers)
    asyncio.run(ShadowRun(init, cfg).run(fin))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
