"""Soak: many mixed exchanges through a real ``parity record`` with faults injected along the way.

Everything runs on 127.0.0.1 and every process is started and stopped here, by PID:

- upstream: the fake provider (``parity.fake.server``, profile ``instant``, short answers);
- proxy: ``parity record --flush-interval 0.5 --spill-dir ...`` (``python -m parity.recorder.cli record``);
- client: an aiohttp closed loop (``--concurrency``, default 32) sending chat requests, one third
  with ``stream: true``. Each request carries a unique id in its ``user`` field, so what was sent,
  what the client got back and what the store holds can be matched one by one.

Faults, all counted:

- upstream faults: ``x-fake-error: reset | 500 | 503`` on ``--fault-rate`` of the requests (a reset of
  a stream happens mid-stream, after 3 chunks); these are the only client errors allowed;
- client disconnects: a streamed request read to its first chunk and then closed (``--disconnect-rate``);
- store unwritable for ``--unwritable-s`` (10 s) at 40 % progress: the ``exchanges`` segment folder is
  renamed away and a regular file put at its path (root ignores chmod; this stops root too), then
  restored. The recorder must spill to ``--spill-dir`` and re-import by itself;
- ``kill -9`` of the recorder at 70 % progress, restarted on the same port and store. Clients refused
  while it is down are retried (the request never left); requests cut by the kill are counted as
  "restart window" errors, never as upstream faults. The only rows allowed missing are exchanges the
  client completed in the 2 x flush interval (1 s) before the kill: the proxy hands its queue to its
  writer process once per flush interval, and a SIGKILL loses what was not handed over.

At the end the recorder is stopped gracefully and the store is read through ``parity.store.store.connect``.
Exit code 0 when every check holds, 1 otherwise.

Usage: ``python bench/soak.py [--requests 100000] [--max-seconds 600] [--concurrency 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from parity.procs import free_port, stop_proc

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
PY = sys.executable

FAULTS = ("reset", "500", "503")
PROSE = "Summarise the following note in one sentence. " + "The soak test keeps the proxy busy. " * 8


# ---------------------------------------------------------------- processes


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def start_upstream(work: Path) -> tuple[subprocess.Popen, str]:
    argv = [
        PY,
        "-m",
        "parity.fake.server",
        "--port",
        "0",
        "--profile",
        "instant",
        "--set",
        "answer_min_tokens=8",
        "--set",
        "answer_max_tokens=16",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=open(work / "upstream.log", "ab"),  # noqa: SIM115 (closed with the process)
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        stop_proc(proc)
        raise RuntimeError(f"fake provider did not start: {line!r}")
    base = line.split("listening on ", 1)[1].split()[0]  # http://127.0.0.1:PORT/v1
    return proc, base.rsplit("/v1", 1)[0]


@dataclass
class Recorder:
    proc: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def writer_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"writer process (\d+) started", self.text())]


def recorder_argv(port: int, db: Path, upstream: str, spill: Path, work: Path, flush: float) -> list[str]:
    return [
        PY,
        "-m",
        "parity.recorder.cli",
        "record",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        upstream,
        "--db",
        str(db),
        "--spill-dir",
        str(spill),
        "--flush-interval",
        str(flush),
        "--confdir",
        str(work / "mitmconf"),
        "--quiet",
    ]


def launch_recorder(argv: list[str], log: Path, work: Path) -> Recorder:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(work / "state")}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Recorder(proc, log)


async def wait_up(rec: Recorder, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rec.proc.poll() is not None:
            raise RuntimeError(f"recorder exited with {rec.proc.returncode}:\n{rec.text()[-3000:]}")
        if port_open(port):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"recorder not listening on {port} after {timeout} s")


# ---------------------------------------------------------------- the store made unwritable


def break_table(table: Path) -> Path:
    """Rename the table folder away and put a regular file at its path; returns the moved folder."""
    moved = table.with_name(table.name + ".soak-moved")
    table.rename(moved)
    table.write_text("a file where the exchanges folder was (bench/soak.py)\n")
    return moved


def restore_table(table: Path, moved: Path) -> None:
    table.unlink()
    try:
        moved.rename(table)
    except OSError:  # a writer re-created the folder in the instant between: merge it back
        for p in table.iterdir():
            p.rename(moved / p.name)
        table.rmdir()
        moved.rename(table)


def spill_rows(spill: Path) -> int:
    import pyarrow.parquet as pq

    n = 0
    for p in (spill / "exchanges").glob("seg-*.parquet"):
        with contextlib.suppress(Exception):  # moved away by a re-import meanwhile
            n += pq.ParquetFile(p).metadata.num_rows
    return n


# ---------------------------------------------------------------- load


@dataclass
class Req:
    i: int
    stream: bool
    fault: str | None  # reset | 500 | 503
    disconnect: bool
    t0: float = 0.0
    t1: float = 0.0
    outcome: str = ""  # ok | http_NNN | truncated | transport | disconnected | not_sent
    detail: str = ""
    refused: int = 0


@dataclass
class Soak:
    args: argparse.Namespace
    port: int
    db: Path
    spill: Path
    work: Path
    argv: list[str]
    run: str = field(default_factory=lambda: os.urandom(3).hex())
    reqs: list[Req] = field(default_factory=list)
    recorders: list[Recorder] = field(default_factory=list)
    done: int = 0
    next_i: int = 0
    t_start: float = 0.0
    deadline: float = 0.0
    up: asyncio.Event | None = None
    unwritable: tuple[float, float] | None = None  # wall times
    spill_seen: int = 0
    kill_t: float | None = None
    back_t: float | None = None
    events: list[str] = field(default_factory=list)
    stopped_early: bool = False
    orphans: list[int] = field(default_factory=list)
    t_load: float = 0.0
    t_load_end: float = 0.0

    def uid(self, i: int) -> str:
        return f"soak-{self.run}-{i:07d}"

    def note(self, msg: str) -> None:
        line = f"[{time.time() - self.t_start:7.1f} s] {msg}"
        self.events.append(line)
        print(line, flush=True)

    def plan(self) -> None:
        rng = random.Random(self.args.seed)
        for i in range(self.args.requests):
            stream = i % 3 == 0
            r = rng.random()
            fault = FAULTS[int(r / self.args.fault_rate * 3) % 3] if r < self.args.fault_rate else None
            disconnect = (
                stream and fault is None and rng.random() < self.args.disconnect_rate * 3
            )  # streams are a third of all requests
            self.reqs.append(Req(i, stream, fault, disconnect))

    # --- one request
    async def one(self, session, url: str, q: Req) -> None:
        import aiohttp

        body = {
            "model": "gpt-4o-mini",
            "user": self.uid(q.i),
            "messages": [{"role": "user", "content": f"{PROSE} [{self.uid(q.i)}]"}],
        }
        if q.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"content-type": "application/json", "authorization": "Bearer sk-soak"}
        if q.fault:
            headers["x-fake-error"] = q.fault
        if q.disconnect:
            headers.update({"x-fake-ttft-ms": "5", "x-fake-itl-ms": "40"})
        data = json.dumps(body).encode()
        retry_until = time.monotonic() + 60
        while True:
            q.t0 = time.time()
            try:
                async with session.post(url, data=data, headers=headers) as resp:
                    if q.disconnect:
                        async for chunk in resp.content.iter_any():
                            if b"data:" in chunk:
                                break
                        resp.close()  # drop the connection mid-stream
                        q.outcome = "disconnected"
                    elif q.stream and resp.status == 200:
                        tail = b""
                        async for chunk in resp.content.iter_any():
                            tail = (tail + chunk)[-64:]
                        q.outcome = "ok" if b"[DONE]" in tail else "truncated"
                    else:
                        await resp.read()
                        q.outcome = "ok" if resp.status == 200 else f"http_{resp.status}"
            except aiohttp.ClientConnectorError as e:  # refused: nothing was sent, so send it again
                q.refused += 1
                if time.monotonic() < retry_until:
                    if self.up is not None and not self.up.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.up.wait(), 30)
                    else:
                        await asyncio.sleep(0.05)
                    continue
                q.outcome, q.detail = "transport", f"{type(e).__name__}: {e}"
            except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as e:
                q.outcome, q.detail = "truncated", f"{type(e).__name__}: {e}"
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                q.outcome, q.detail = "transport", f"{type(e).__name__}: {e}"
            q.t1 = time.time()
            return

    async def load(self) -> None:
        import aiohttp

        url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        conn = aiohttp.TCPConnector(limit=self.args.concurrency + 4)
        timeout = aiohttp.ClientTimeout(total=30, sock_connect=2)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

            async def worker() -> None:
                while True:
                    i = self.next_i
                    if i >= len(self.reqs):
                        return
                    if time.monotonic() > self.deadline:
                        self.stopped_early = True
                        return
                    self.next_i += 1
                    await self.one(session, url, self.reqs[i])
                    self.done += 1

            await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))

    # --- fault injection, driven by progress
    async def director(self) -> None:
        n = len(self.reqs)
        t_last, d_last = time.monotonic(), 0
        breaker: asyncio.Task | None = None
        did_kill = False
        while self.done < n and not self.stopped_early:
            await asyncio.sleep(0.1)
            if time.monotonic() - t_last >= 10:
                rate = (self.done - d_last) / (time.monotonic() - t_last)
                self.note(f"{self.done}/{n} done, {rate:.0f} req/s")
                t_last, d_last = time.monotonic(), self.done
            if breaker is None and self.done >= 0.4 * n:
                breaker = asyncio.ensure_future(self.unwritable_phase())
            # The kill comes once the running recorder has re-imported its spill (or 5 s after the
            # store came back), so the re-import is exercised without a restart too.
            if not did_kill and self.done >= 0.7 * n and breaker is not None and breaker.done():
                reimported = "re-imported" in self.recorders[-1].text()
                if reimported or not self.unwritable or time.time() - self.unwritable[1] > 5:
                    did_kill = True
                    await self.kill_phase()
        if breaker is not None:
            await breaker

    async def unwritable_phase(self) -> None:
        table = self.db.parent / (self.db.name + ".d") / "exchanges"
        t0 = time.time()
        moved = break_table(table)
        self.note(f"store unwritable: {table} is now a regular file, for {self.args.unwritable_s:g} s")
        end = time.monotonic() + self.args.unwritable_s
        while time.monotonic() < end:
            self.spill_seen = max(self.spill_seen, spill_rows(self.spill))
            await asyncio.sleep(0.25)
        self.spill_seen = max(self.spill_seen, spill_rows(self.spill))
        restore_table(table, moved)
        self.unwritable = (t0, time.time())
        self.note(f"store writable again; {self.spill_seen} rows seen in the spill folder meanwhile")

    async def kill_phase(self) -> None:
        rec = self.recorders[-1]
        self.up.clear()
        self.kill_t = time.time()
        os.kill(rec.proc.pid, signal.SIGKILL)
        rec.proc.wait(10)
        self.note(f"kill -9 of recorder pid {rec.proc.pid}; restarting it on port {self.port}")
        new = launch_recorder(self.argv, self.work / "recorder-2.log", self.work)
        self.recorders.append(new)
        await wait_up(new, self.port)
        self.back_t = time.time()
        self.up.set()
        self.note(f"recorder back (pid {new.proc.pid}) after {self.back_t - self.kill_t:.2f} s")
        deadline = time.monotonic() + 15  # the killed proxy's writer process must finish and exit
        pids = rec.writer_pids()
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.orphans = [p for p in pids if alive(p)]
        if self.orphans:
            self.note(f"writer process(es) {self.orphans} of the killed recorder still alive after 15 s")

    async def main(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        self.t_start = time.time()
        rec = launch_recorder(self.argv, self.work / "recorder-1.log", self.work)
        self.recorders.append(rec)
        await wait_up(rec, self.port)
        self.note(f"recorder up (pid {rec.proc.pid}) on 127.0.0.1:{self.port}; sending {len(self.reqs)}")
        self.t_load = time.time()
        self.deadline = time.monotonic() + self.args.max_seconds  # the sending time, start-up aside
        await asyncio.gather(self.load(), self.director())
        self.t_load_end = time.time()


# ---------------------------------------------------------------- analysis


def read_store(db: Path, run: str) -> tuple[dict[str, tuple], int]:
    from parity.store.store import connect

    con = connect(db)
    try:
        rows = con.execute(
            "SELECT request_body->>'$.user' AS u, count(*), any_value(status), any_value(error_type), "
            "bool_or(client_disconnected) FROM exchanges WHERE request_body->>'$.user' LIKE ? GROUP BY u",
            [f"soak-{run}-%"],
        ).fetchall()
        total = con.execute("SELECT count(*) FROM exchanges").fetchall()[0][0]
    finally:
        con.close()
    return {u: (n, status, err, disc) for u, n, status, err, disc in rows}, total


def log_numbers(texts: list[str]) -> dict[str, int]:
    spilled = reimported = 0
    for t in texts:
        spilled += max((int(x) for x in re.findall(r"total spilled (\d+)\)", t)), default=0)
        reimported += sum(int(x) for x in re.findall(r"re-imported (\d+) spilled rows", t))
    return {"spilled": spilled, "reimported": reimported}


def report(s: Soak, final_code: int | None) -> int:
    sent = [q for q in s.reqs if q.outcome]
    stored, store_total = read_store(s.db, s.run)
    kill_t = s.kill_t or 0.0
    window = 2 * s.args.flush_interval
    win_lo = kill_t - window

    def in_restart(q: Req) -> bool:  # the request was in flight while the recorder was down
        return s.kill_t is not None and q.t0 <= (s.back_t or kill_t) and q.t1 >= kill_t

    answered = [q for q in sent if q.outcome == "ok" or q.outcome.startswith("http_")]
    faults = [q for q in sent if q.fault]
    fault_errors = [q for q in faults if q.outcome != "ok"]
    fault_not_failed = [q for q in faults if q.outcome == "ok"]
    disconnects = [q for q in sent if q.disconnect]
    plain = [q for q in sent if not q.fault and not q.disconnect]
    restart_errors = [q for q in plain if q.outcome != "ok" and in_restart(q)]
    unexpected = [q for q in plain if q.outcome != "ok" and not in_restart(q)]
    client_errors = [q for q in sent if not q.disconnect and q.outcome != "ok"]
    # Every exchange the proxy certainly handled must be in the store: whatever the client got
    # back (an answer, a truncated stream, its own disconnect), except failures cut by the kill.
    expected = [q for q in sent if not (q.outcome == "transport" and in_restart(q))]
    lost = [q for q in expected if s.uid(q.i) not in stored]
    lost_in_window = [q for q in lost if s.kill_t is not None and win_lo <= q.t1 and q.t0 <= kill_t]
    lost_outside = [q for q in lost if q not in lost_in_window]
    window_allows = [q for q in answered if s.kill_t is not None and win_lo <= q.t1 <= kill_t + 0.05]
    dupes = sum(n - 1 for n, *_ in stored.values() if n > 1)
    recorded = sum(n for n, *_ in stored.values())
    sent_ids = {s.uid(q.i) for q in sent}
    strangers = [u for u in stored if u not in sent_ids]
    restart_recorded = [q for q in restart_errors if s.uid(q.i) in stored]
    disc_recorded = [q for q in disconnects if s.uid(q.i) in stored]
    disc_flagged = [q for q in disc_recorded if stored[s.uid(q.i)][3]]
    nums = log_numbers([r.text() for r in s.recorders])
    spilled = max(nums["spilled"], s.spill_seen)
    final_line = ""
    if s.recorders:
        m = re.findall(r"parity: wrote .*", s.recorders[-1].text())
        final_line = m[-1] if m else "(no final line)"
    leftover_spill = spill_rows(s.spill)
    oldest_lost = max(((kill_t - q.t1) * 1000 for q in lost_in_window), default=0.0)
    disc_missing = [q for q in disconnects if s.uid(q.i) not in stored]
    disc_missing_outside = [q for q in disc_missing if q in lost_outside]
    wall = s.t_load_end - s.t_load
    by_fault = Counter(q.fault for q in faults)
    streamed = sum(q.stream for q in sent)
    refused = sum(q.refused for q in sent)

    rows = [
        (
            "requests planned",
            f"{len(s.reqs):,}" + ("  (stopped early by --max-seconds)" if s.stopped_early else ""),
        ),
        ("requests sent", f"{len(sent):,}  ({streamed:,} streamed)"),
        (
            "  with an injected upstream fault",
            f"{len(faults):,}  ({', '.join(f'{k} {v}' for k, v in sorted(by_fault.items()))})",
        ),
        ("  client disconnects (intended)", f"{len(disconnects):,}"),
        ("answered by the proxy", f"{len(answered):,}  (complete HTTP response, 2xx or the injected 5xx)"),
        (
            "recorded (rows in the store)",
            f"{recorded:,}  (distinct ids {len(stored):,}, duplicates {dupes}, other rows {store_total - recorded})",
        ),
        (
            "spilled",
            f"{spilled:,}  (log: {nums['spilled']:,}; rows seen in the spill folder: {s.spill_seen:,})",
        ),
        ("re-imported", f"{nums['reimported']:,}  (spill rows left at the end: {leftover_spill})"),
        ("kill -9 window", f"{window:g} s before the kill: {len(window_allows):,} exchanges answered in it"),
        (
            "lost",
            f"{len(lost):,}  (inside the kill -9 window {len(lost_in_window):,}, outside it {len(lost_outside):,})",
        ),
        ("  oldest lost, answered before the kill", f"{oldest_lost:.0f} ms" if lost_in_window else "-"),
        ("client errors", f"{len(client_errors):,}  ({len(client_errors) / max(1, len(sent)):.3%} of sent)"),
        (
            "  = injected upstream faults",
            f"{len(fault_errors):,} of {len(faults):,}  ({Counter(q.outcome for q in fault_errors).most_common()})",
        ),
        (
            "  + restart-window errors",
            f"{len(restart_errors):,}  (cut by the kill -9; {len(restart_recorded)} of them recorded anyway)",
        ),
        ("  + unexpected errors", f"{len(unexpected):,}"),
        (
            "client error rate, restart window aside",
            f"{(len(client_errors) - len(restart_errors)) / max(1, len(sent)):.3%}"
            f"  (injected upstream fault rate {len(faults) / max(1, len(sent)):.3%})",
        ),
        (
            "connection refused, retried",
            f"{refused:,}  (while the recorder was down; never sent, sent again)",
        ),
        (
            "disconnects recorded",
            f"{len(disc_recorded):,} of {len(disconnects):,}  ({len(disc_flagged):,} with client_disconnected = true)",
        ),
        ("unwritable store", f"{s.unwritable[1] - s.unwritable[0]:.1f} s" if s.unwritable else "not reached"),
        (
            "recorder down (kill -9 -> listening)",
            f"{s.back_t - s.kill_t:.2f} s" if s.kill_t and s.back_t else "not reached",
        ),
        ("throughput", f"{len(sent) / wall:,.0f} req/s over {wall:.1f} s (concurrency {s.args.concurrency})"),
        ("recorder final log line", final_line.strip()),
        ("recorder exit code", str(final_code)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nsoak results")
    print("-" * (width + 60))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("-" * (width + 60))

    checks = [
        ("nothing lost outside the kill -9 window", not lost_outside),
        ("no duplicates in the store", dupes == 0),
        ("no rows the client never sent", not strangers),
        ("client errors == injected upstream faults (+ restart window only)", not unexpected),
        ("every injected fault reached the client as an error", not fault_not_failed),
        ("every client disconnect recorded (but the kill -9 window)", not disc_missing_outside),
        ("the store failure spilled rows", s.unwritable is None or spilled > 0),
        ("every spilled row re-imported", nums["reimported"] >= spilled and leftover_spill == 0),
        ("recorder stopped cleanly (exit 0)", final_code == 0),
        ("the killed recorder's writer process exited", not s.orphans),
    ]
    ok = True
    for name, good in checks:
        print(f"{'PASS' if good else 'FAIL'}  {name}")
        ok &= good
    for label, qs in (("lost outside the window", lost_outside), ("unexpected", unexpected)):
        for q in qs[:10]:
            print(f"  {label}: {s.uid(q.i)} stream={q.stream} outcome={q.outcome} {q.detail[:120]}")
    for q in disc_missing:
        print(
            f"  disconnect not recorded: {s.uid(q.i)} t0-kill {q.t0 - kill_t:+.3f} s, "
            f"t1-kill {q.t1 - kill_t:+.3f} s, outcome {q.outcome}"
        )
    if fault_not_failed:
        print(f"  faults the client did not see: {[s.uid(q.i) for q in fault_not_failed[:10]]}")
    return 0 if ok else 1


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000, help="exchanges to send (default 100000)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this (default 600)")
    ap.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (default 32)")
    ap.add_argument("--fault-rate", type=float, default=0.03, help="share with x-fake-error (default 0.03)")
    ap.add_argument("--disconnect-rate", type=float, default=0.005, help="client disconnects (default 0.005)")
    ap.add_argument(
        "--unwritable-s", type=float, default=10.0, help="store unwritable this long (default 10)"
    )
    ap.add_argument(
        "--flush-interval", type=float, default=0.5, help="recorder --flush-interval (default 0.5)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", help="keep the store, spill and logs here (default: a temp dir, removed)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.fault_rate < 1 or args.requests < 10:
        raise SystemExit("need 0 < --fault-rate < 1 and --requests >= 10")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="parity-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "store" / "parity.duckdb"
    db.parent.mkdir(exist_ok=True)
    spill = work / "spill"
    upstream = None
    s = None
    code = None
    try:
        upstream, up_url = start_upstream(work)
        port = free_port()
        argv_rec = recorder_argv(port, db, up_url, spill, work, args.flush_interval)
        s = Soak(args, port, db, spill, work, argv_rec)
        s.plan()
        print(
            f"soak: {args.requests:,} requests (1/3 streamed), concurrency {args.concurrency}, "
            f"faults {args.fault_rate:.1%}, disconnects {args.disconnect_rate:.1%}, "
            f"flush interval {args.flush_interval:g} s, work dir {work}",
            flush=True,
        )
        try:
            asyncio.run(s.main())
        finally:
            if s.recorders:
                t = time.monotonic()
                code = stop_proc(s.recorders[-1].proc, timeout=120)
                s.note(f"recorder stopped (exit {code}) in {time.monotonic() - t:.1f} s")
            stop_proc(upstream)
            for r in s.recorders:  # writer processes must have exited with their proxies
                for pid in r.writer_pids():
                    if alive(pid):
                        s.note(f"writer process {pid} still alive after its proxy stopped: killing it")
                        os.kill(pid, signal.SIGKILL)
        return report(s, code)
    finally:
        if s is None or not s.recorders:
            stop_proc(upstream)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
