"""What a run already has: its events, its completed cells (store + journals), its saved plan."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from parity.replayer.journal import Key, journal_dir
from parity.replayer.journal import load as load_journal
from parity.store.store import connect


@dataclass
class RunState:
    """A run's progress as found in the store and its journals."""

    exists: bool = False
    config: dict | None = None
    done: set[Key] = field(default_factory=set)
    in_flight: set[Key] = field(default_factory=set)
    recorded_done: set[str] = field(default_factory=set)
    spent: float = 0.0
    unstored: list[str] = field(default_factory=list)  # journaled captures whose rows are not in the store


def plan_path(root: Path, run_id: str) -> Path:
    """Where a run's selected exchange ids are kept."""
    return journal_dir(root) / f"{run_id}.plan.json"


def save_plan(root: Path, run_id: str, exchange_ids: list[str]) -> None:
    """Keep the selected exchange ids, so a resume replays exactly the same set."""
    p = plan_path(root, run_id)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "exchange_ids": exchange_ids}))
    os.replace(tmp, p)


def load_plan(root: Path, run_id: str) -> list[str] | None:
    """The run's saved exchange ids, None if it has none."""
    p = plan_path(root, run_id)
    if not p.is_file():
        return None
    return json.loads(p.read_text())["exchange_ids"]


def run_state(db: str, root: Path, run_id: str) -> RunState:
    """Read a run's events, its results and its journals."""
    st = RunState()
    con = connect(db)
    try:
        events = con.execute(
            'SELECT state, CAST(config AS VARCHAR) FROM run_events WHERE run_id = ? ORDER BY "at"', [run_id]
        ).fetchall()
        if events:
            st.exists = True
            configs = [c for _, c in events if c]
            st.config = json.loads(configs[0]) if configs else None
        rows = con.execute(
            'SELECT exchange_id, provider, "repeat", cost_usd FROM results WHERE run_id = ?', [run_id]
        ).fetchall()
    finally:
        con.close()
    for xid, prov, rep, cost in rows:
        if prov == "recorded":
            st.recorded_done.add(xid)
            continue
        key = (xid, prov, int(rep))
        if key not in st.done:
            st.done.add(key)
            st.spent += cost or 0.0
    jr = load_journal(root, run_id)
    for key, line in jr.captures.items():
        if key not in st.done:
            st.done.add(key)
            st.unstored.append(line)
    st.in_flight = jr.dispatched - st.done
    return st
