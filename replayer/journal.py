"""Per-run append-only journal: what ``--resume`` trusts after a crash, SIGKILL or Ctrl-C.

Results reach Parquet segments through a batch writer that flushes every ~0.5 s (and
the post-processor may lag behind the sender), so after a kill the store alone can miss
the last completed cells. The sender therefore appends to
``<store>.d/journal/<run_id>.<pid>-<random>.jsonl`` (a new file for every process and every start,
so a resume that happens to get the same process id never re-reads its own earlier lines; opened in append mode, each line handed to
the kernel by one ``write`` at once; no fsync: a written line is in the page cache, which
survives the death of the process — we protect against the process dying, not the machine):

- ``{"k": "d", "x": exchange_id, "p": provider, "r": repeat, "t": unix_time}`` just before a cell's first
  request is sent (the cell is *dispatched*);
- ``{"k": "c", "x": ..., "p": ..., "r": ..., "cap": {...}}`` as soon as its response is
  complete: the full raw capture (every attempt, status, headers, read times and
  bytes), from which the post-processor builds the ``results`` row (the cell is *completed*).

On ``--resume`` the run is rebuilt from the store's ``results`` plus every journal of the
run: a completed cell is never sent again (a journaled capture whose row is not in the
store yet is post-processed and written first); a dispatched but not completed cell was
in flight at the stop and is sent again, marked ``resent = true``; the rest is sent
normally. A provider's concurrency slot is held from dispatch to the completion line, so
at most ``concurrency`` cells per provider can be resent. After a clean finish, once the
post-processor has written every row to segments, the run's journals are deleted.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from parity.replayer.client import Attempt, Capture

Key = tuple[str, str, int]


def journal_dir(root: Path) -> Path:
    """Folder of the run journals inside a store's segment root."""
    return Path(root) / "journal"


def _attempt_json(a: Attempt) -> dict:
    lens = [len(c) for c in a.chunks]
    return {
        "w": a.wall,
        "t0": a.t0,
        "th": a.t_hdr,
        "te": a.t_end,
        "s": a.status,
        "h": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in a.raw_headers],
        "ts": a.times,
        "n": lens,
        "et": a.error_type,
        "em": a.error_message,
        "ra": a.retry_after_ms,
        "wt": a.waited_ms,
    }


def _attempt_from(d: dict, b64: str) -> Attempt:
    body = base64.b64decode(b64)
    chunks, pos = [], 0
    for n in d["n"]:
        chunks.append(body[pos : pos + n])
        pos += n
    return Attempt(
        wall=d["w"],
        t0=d["t0"],
        t_hdr=d["th"],
        t_end=d["te"],
        status=d["s"],
        raw_headers=tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in d["h"]),
        times=list(d["ts"]),
        chunks=chunks,
        error_type=d["et"],
        error_message=d["em"],
        retry_after_ms=d["ra"],
        waited_ms=d["wt"],
    )


def encode_capture(cap: Capture) -> bytes:
    """A capture as one journal line: JSON, with each attempt's body bytes in base64 under ``"b"``.

    The base64 strings are spliced in rather than passed through ``json.dumps``: they need no
    escaping, and scanning ~15 KB per stream would be the most expensive step on the sender.
    """
    head = json.dumps(
        {
            "k": "c",
            "x": cap.exchange_id,
            "p": cap.provider,
            "r": cap.repeat,
            "cap": {
                "resent": cap.resent,
                "lag": cap.schedule_lag_ms,
                "lw": cap.limiter_wait_ms,
                "a": [_attempt_json(a) for a in cap.attempts],
            },
        }
    )
    bodies = b'","'.join(base64.b64encode(b"".join(a.chunks)) for a in cap.attempts)
    return head[:-1].encode() + b', "b": ["' + bodies + b'"]}'


def decode_capture(line: str | bytes | dict) -> Capture:
    """A journal 'c' line (text, bytes or parsed) back into a Capture."""
    rec = line if isinstance(line, dict) else json.loads(line)
    c = rec["cap"]
    return Capture(
        rec["x"],
        rec["p"],
        int(rec["r"]),
        resent=c["resent"],
        schedule_lag_ms=c["lag"],
        limiter_wait_ms=c["lw"],
        attempts=[_attempt_from(a, b) for a, b in zip(c["a"], rec["b"], strict=True)],
    )


class Journal:
    """This process's journal file for one run: one ``os.write`` per line, no user-space buffer."""

    def __init__(self, root: Path, run_id: str) -> None:
        d = journal_dir(root)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = d / f"{run_id}.{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:  # a regular file takes it in one write; loop only for safety
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(line)

    def dispatched(self, key: Key) -> None:
        """Journal a dispatch (before the request is sent)."""
        self._write(
            b'{"k": "d", "x": %s, "p": %s, "r": %d, "t": %r}\n'
            % (json.dumps(key[0]).encode(), json.dumps(key[1]).encode(), key[2], time.time())
        )

    def completed(self, cap: Capture) -> None:
        """Journal a finished cell (its full raw capture)."""
        self._write(encode_capture(cap) + b"\n")

    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def close(self) -> None:
        """Close the file (every line is already written)."""
        os.close(self._fd)


@dataclass
class JournalState:
    """What a run's journals say: dispatched cells and completed captures."""

    dispatched: set[Key] = field(default_factory=set)
    captures: dict[Key, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def run_files(root: Path, run_id: str) -> list[Path]:
    """Every journal file of ``run_id`` (one per process that worked on it)."""
    d = journal_dir(root)
    return sorted(d.glob(f"{run_id}.*.jsonl")) if d.is_dir() else []


def load(root: Path, run_id: str) -> JournalState:
    """Read every journal of ``run_id``; a torn last line (killed mid-write) is ignored."""
    st = JournalState(files=run_files(root, run_id))
    for path in st.files:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                key = (rec["x"], rec["p"], int(rec["r"]))
                if rec.get("k") == "d":
                    st.dispatched.add(key)
                elif rec.get("k") == "c":
                    st.captures[key] = line.rstrip("\n")
    return st


def remove(root: Path, run_id: str) -> int:
    """Delete the run's journals (after a clean finish); returns how many."""
    files = run_files(root, run_id)
    for p in files:
        p.unlink(missing_ok=True)
    return len(files)
