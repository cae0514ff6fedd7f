"""The shadow run's row builder: a child of the shadow process, at idle priority, that writes rows.

The shadow process's loop only sends mirrors and stamps their reads (as the replayer's sender);
turning a finished mirror into ``results`` and ``attempts`` rows (SSE parsing, SDK validation,
cost) and writing Parquet happen here, through the replayer's own ``build_result`` and
``recorded_result``, so a shadow cell is the same row a replay would have stored. Runs as the single
worker of a ``ProcessPoolExecutor``: calls run in the order they were submitted.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from parity.replayer.client import Capture
from parity.replayer.config import PricingTable, ProviderConfig
from parity.replayer.mapping import prepare
from parity.replayer.run import write_event
from parity.replayer.select import Exchange
from parity.replayer.worker import lower_priority
from parity.store.segments import as_root
from parity.store.writer import BatchWriter

_S: dict = {}  # this worker's run, providers and writer (set by init)


def init(
    run_id: str, root: str, providers: dict[str, ProviderConfig], recorded: PricingTable, parent: int
) -> None:
    """Pool initializer: lower the priority, open the writer, leave when ``parent`` (the shadow process) dies."""
    lower_priority()
    import parity.replayer.results  # noqa: F401  (load the SDK once, before the first mirror)

    writer = BatchWriter(as_root(root), interval=1.0, writer_id=f"shadow{os.getpid()}")
    writer.start()
    _S.update(run_id=run_id, root=root, providers=providers, recorded=recorded, writer=writer)
    threading.Thread(target=_orphan_watch, args=(parent, writer), daemon=True).start()


def _orphan_watch(parent: int, writer: BatchWriter) -> None:
    """The shadow process was killed (``kill -9``): write what was handed over, then leave.

    (Its pool would never tell this process to stop; the journal covers anything not handed over.)
    ``parent`` is given, not read here: the shadow process may die while this one is still starting.
    """
    while os.getppid() == parent:
        time.sleep(1.0)
    writer.close()
    os._exit(0)


def build(cap: Capture, x: Exchange) -> dict:
    """Write one mirror's results and attempts rows; returns its summary (status, error, cost)."""
    from parity.replayer.results import build_result

    p: ProviderConfig = _S["providers"][cap.provider]
    try:
        row, attempts, summary = build_result(_S["run_id"], cap, x, prepare(x, p), p.pricing)
    except Exception as e:  # a bug here costs one row, not the run
        last = cap.attempts[-1] if cap.attempts else None
        row = {
            "run_id": _S["run_id"],
            "exchange_id": cap.exchange_id,
            "provider": cap.provider,
            "repeat": cap.repeat,
            "endpoint": x.endpoint,
            "attempts": len(cap.attempts),
            "status": last.status if last else None,
            "error_type": "replayer_error",
            "error_message": f"{type(e).__name__}: {e}"[:2000],
        }
        attempts = []
        summary = {"key": (cap.exchange_id, cap.provider, cap.repeat), "error_type": "replayer_error"}
    w: BatchWriter = _S["writer"]
    w.put("results", row)
    for a in attempts:
        w.put("attempts", a)
    return {k: summary.get(k) for k in ("status", "error_type", "cost_usd")} | {"provider": cap.provider}


def recorded(x: Exchange) -> None:
    """Write the production arm's row for a mirrored exchange."""
    from parity.replayer.results import recorded_result

    _S["writer"].put("results", recorded_result(_S["run_id"], x, _S["recorded"]))


def event(state: str, config: dict | None, note: str | None) -> None:
    """Append one ``run_events`` row (written at once, off the sender's loop)."""
    write_event(as_root(_S["root"]), _S["run_id"], state, config, note)


def compact(db: str, min_age_s: float) -> dict:
    """Merge the run's results and attempts segments (a continuous run writes one per flush);
    never fails the run: the segments stay readable as they are."""
    from parity.store.export import compact_store

    try:
        return compact_store(db, min_age_s=min_age_s, tables=("results", "attempts"), run_id=_S["run_id"])
    except Exception as e:  # noqa: BLE001 (a full disk, a permission: `parity compact` can do it later)
        return {"error": f"{type(e).__name__}: {e}"}


def flush() -> None:
    """Write everything queued now."""
    _S["writer"].flush()


def close() -> dict:
    """Flush and stop the writer; its counters."""
    return dataclasses.asdict(_S["writer"].close())
