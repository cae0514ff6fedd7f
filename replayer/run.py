"""``parity replay`` end to end: plan, send (paced, limited, journaled), store, summarise.

Process layout: this process runs one asyncio loop that only sends and stamps (see
``parity.replayer.client``); a post-processor process (``parity.replayer.worker``) builds and writes
every row. Run states in ``run_events``: started | resumed | finished | stopped | failed.
Resume semantics are documented in ``parity.replayer.journal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import aiohttp

from parity.replayer import journal as journal_mod
from parity.replayer import preflight
from parity.replayer.config import Config, load_config
from parity.replayer.costs import cost_of
from parity.replayer.errors import ReplayError, RunStateError, SelectionError
from parity.replayer.failures import Diagnosis, diagnose, load_outcomes
from parity.replayer.journal import Journal
from parity.replayer.mapping import recorded_model
from parity.replayer.pacing import Pacing
from parity.replayer.plan import Group, Plan, build_plan, format_plan
from parity.replayer.progress import Progress, ProviderStats, percentile, summary_table
from parity.replayer.resume import RunState, load_plan, run_state, save_plan
from parity.replayer.runner import Runner
from parity.replayer.select import Selection, by_ids, select
from parity.replayer.sweep import Sweep
from parity.replayer.worker import PostProcessor, WorkerInit
from parity.store.export import compact_store
from parity.store.segments import segment_root, write_segment
from parity.store.store import NoStoreError, require_store
from parity.store.version import __version__
from parity.wire.errors import EXIT_PROVIDER_DEAD

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LAG_WARN_MS = 10.0


@dataclass
class RunOptions:
    """Everything ``parity replay`` was asked to do."""

    db: str
    providers: str
    run_id: str
    selection: Selection = field(default_factory=Selection)
    pacing: Pacing = field(default_factory=Pacing)
    repeat: int = 1
    max_cost: float | None = None
    dry_run: bool = False
    resume: bool = False
    only: list[str] | None = None
    progress: bool = True
    compact: bool = True  # merge the run's results into sorted files when it finishes
    # check keys, base_urls, models and endpoints before sending anything (parity.replayer.preflight)
    preflight: bool = True
    sweep: Sweep | None = None  # a capacity sweep (parity.replayer.sweep) instead of one pacing
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


@dataclass
class RunOutcome:
    """How a run ended."""

    state: str
    note: str | None
    exit_code: int
    sent: int = 0
    summaries: list[dict] = field(default_factory=list)
    send_cpu_s: float | None = None  # CPU this process used while sending


def versions() -> dict:
    """Versions that shape the measurements, stored with every run."""
    try:
        sdk = importlib.metadata.version("openai")
    except importlib.metadata.PackageNotFoundError:
        sdk = None
    return {
        "parity": __version__,
        "python": platform.python_version(),
        "openai": sdk,
        "aiohttp": aiohttp.__version__,
    }


def run_config(opts: RunOptions, cfg: Config, listed: dict[str, list[str] | None], n_exchanges: int) -> dict:
    """The ``config`` JSON stored with run events (never keys or header values)."""
    providers = {}
    for name, p in cfg.providers.items():
        providers[name] = {**p.public(), "models_listed": listed.get(name)}
    return {
        "run_id": opts.run_id,
        "selection": {**opts.selection.public(), "exchanges": n_exchanges},
        "pacing": {"mode": f"sweep-{opts.sweep.by}"} if opts.sweep else opts.pacing.public(),
        **({"sweep": opts.sweep.public()} if opts.sweep else {}),
        "repeat": opts.repeat,
        "seed": opts.selection.seed,
        "max_cost": opts.max_cost,
        "providers": providers,
        "recorded": {"pricing": cfg.recorded.public()},
        "versions": versions(),
    }


def write_event(root, run_id: str, state: str, config: dict | None = None, note: str | None = None) -> None:
    """Append one ``run_events`` row (a tiny segment, written at once)."""
    row = {
        "run_id": run_id,
        "at": datetime.now(UTC),
        "state": state,
        "config": json.dumps(config) if config is not None else None,
        "note": note,
    }
    write_segment(root, "run_events", [row], "replay")


def _remaining_groups(plan: Plan, state: RunState) -> list[Group]:
    groups = []
    for g in plan.groups:
        cells = [c for c in g.cells if c.key not in state.done]
        for c in cells:
            c.resent = c.key in state.in_flight
        if cells:
            groups.append(Group(g.exchange, g.repeat, cells))
    return groups


def _load_exchanges(opts: RunOptions, root, state: RunState) -> list:
    if not opts.resume:
        exchanges = select(opts.db, opts.selection)
        if not exchanges:
            raise SelectionError(f"no exchanges in {opts.db} match the selection")
        return exchanges
    ids = load_plan(root, opts.run_id)
    if ids is None:
        raise RunStateError(
            f"run {opts.run_id!r} has no saved plan to resume (was it started by parity replay?)"
        )
    return by_ids(opts.db, ids)


def _apply_stored(opts: RunOptions, state: RunState, cfg: Config) -> None:
    """On resume, keep the run's repeat, seed and providers."""
    stored = state.config or {}
    opts.repeat = int(stored.get("repeat", opts.repeat))
    opts.selection.seed = int(stored.get("seed", opts.selection.seed))
    if opts.max_cost is None and stored.get("max_cost") is not None:
        opts.max_cost = stored["max_cost"]
    names = set(stored.get("providers") or {})
    if names and names != set(cfg.providers):
        raise RunStateError(
            f"--resume: run {opts.run_id!r} used providers {sorted(names)}, the providers file now gives "
            f"{sorted(cfg.providers)}; resume with the same providers"
        )


def replay(opts: RunOptions) -> RunOutcome:
    """Run ``parity replay``; raises ReplayError for anything wrong before sending."""
    if not _RUN_ID.match(opts.run_id):
        raise RunStateError(f"--run {opts.run_id!r}: use letters, digits, '.', '_' or '-' (max 128)")
    if opts.repeat < 1:
        raise ReplayError("--repeat must be >= 1")
    cfg = load_config(opts.providers, opts.only)
    try:
        require_store(opts.db)  # results go into an existing store only: a typo'd --db creates nothing
    except NoStoreError as e:
        raise ReplayError(str(e)) from None
    root = segment_root(opts.db)
    state = run_state(opts.db, root, opts.run_id)
    if state.exists and not opts.resume:
        raise RunStateError(
            f"run {opts.run_id!r} already exists in {opts.db}; use --resume or another --run name"
        )
    if opts.resume and not state.exists:
        raise RunStateError(f"--resume: no run {opts.run_id!r} in {opts.db}")
    if opts.resume:
        if opts.sweep or (state.config or {}).get("sweep"):
            raise RunStateError(
                f"--resume: run {opts.run_id!r} is a sweep, whose steps are timed loads; a resumed step "
                "would offer a different load. Start a new run (its finished steps are stored)."
            )
        _apply_stored(opts, state, cfg)
    if opts.sweep:
        opts.sweep.check()
    if opts.dry_run:
        return _dry_run(opts, cfg, root, state)
    exchanges = _load_exchanges(opts, root, state)
    plan = build_plan(exchanges, cfg, opts.repeat, opts.selection.seed)
    if not plan.groups:
        raise SelectionError(
            f"nothing to replay: all {len(exchanges)} selected exchanges are skipped "
            f"(run with --dry-run to see why)"
        )
    if opts.preflight:
        _preflight(opts, cfg, plan)
    else:
        cfg.check_keys()
    post = PostProcessor()
    post.launch(hide_env=tuple(p.api_key_env for p in cfg.providers.values() if p.api_key_env))
    try:
        return _run(opts, cfg, root, state, post, exchanges, plan)
    except BaseException:
        post.abort()
        raise


def _preflight(opts: RunOptions, cfg: Config, plan: Plan, spend: bool = True) -> list[preflight.Report]:
    """Check every provider the plan sends to; PreflightError (nothing sent, nothing written) on a failure."""
    t = time.perf_counter()
    reports = preflight.check(cfg, preflight.needs_for(cfg, preflight.plan_pairs(plan)), spend)
    stream = opts.out if opts.dry_run else opts.err
    stream.write(
        f"Preflight ({time.perf_counter() - t:.1f} s; what it sends: parity providers check --help):\n"
    )
    stream.write("".join(f"  {line}\n" for r in reports for line in r.lines()))
    why = preflight.refusal(reports)
    if why and not opts.dry_run:
        raise preflight.PreflightError(why)
    return reports


def _dry_run(opts: RunOptions, cfg: Config, root, state: RunState) -> RunOutcome:
    exchanges = _load_exchanges(opts, root, state)
    plan = build_plan(exchanges, cfg, opts.repeat, opts.selection.seed)
    pacing = json.dumps({"mode": f"sweep-{opts.sweep.by}"} if opts.sweep else opts.pacing.public())
    opts.out.write(format_plan(plan, cfg, pacing) + "\n")
    if opts.sweep and plan.groups:
        from parity.replayer.sweep_plan import format_sweep

        opts.out.write("\n" + format_sweep(opts.sweep, plan, opts.max_cost) + "\n")
    if opts.preflight and plan.groups:  # free requests only: GET /models and empty-body probes
        why = preflight.refusal(_preflight(opts, cfg, plan, spend=False))
        if why:
            opts.out.write("note: a real run would stop here (or pass --no-preflight)\n")
        return RunOutcome("dry-run", None, 0)
    for p in cfg.providers.values():
        if p.api_key_env:
            with contextlib.suppress(ReplayError):
                p.api_key()
                continue
            opts.out.write(f"note: {p.api_key_env} is not set; a real run would stop here\n")
    return RunOutcome("dry-run", None, 0)


def _run(
    opts: RunOptions, cfg: Config, root, state: RunState, post: PostProcessor, exchanges: list, plan: Plan
) -> RunOutcome:
    for w in cfg.warnings:
        opts.err.write(f"warning: {w}\n")
    if opts.max_cost is not None and any(c.estimate is None for c in plan.cells()):
        opts.err.write("warning: some requests have no price; --max-cost cannot count them\n")
    groups = _remaining_groups(plan, state)
    if not opts.resume:
        save_plan(root, opts.run_id, [x.id for x in exchanges])
    recorded_ids = [x.id for x in plan.replayable if x.id not in state.recorded_done]
    journal = Journal(root, opts.run_id)
    init = WorkerInit(
        run_id=opts.run_id,
        root=str(root),
        exchanges={x.id: x for x in plan.replayable},
        providers=cfg.providers,
        recorded_pricing=cfg.recorded,
        recorded_ids=recorded_ids,
        captures=state.unstored,
        journal=str(journal.path),
    )
    totals: dict[str, int] = {n: 0 for n in cfg.providers}
    for c in (c for g in groups for c in g.cells if not opts.sweep):  # a sweep counts as it sends
        totals[c.provider] += 1
    unstored = [decode_key(line) for line in state.unstored]
    for key in unstored:
        totals[key[1]] += 1
    progress = Progress(totals, stream=opts.err, enabled=opts.progress and not opts.sweep)
    if opts.sweep:
        from parity.replayer.sweep_runner import SweepRunner

        runner: Runner = SweepRunner(
            cfg, opts.sweep, groups, post, init, journal, progress, max_cost=opts.max_cost, err=opts.err
        )
    else:
        runner = Runner(
            cfg,
            opts.pacing,
            groups,
            post,
            init,
            journal,
            progress,
            spent=state.spent,
            max_cost=opts.max_cost,
            awaiting=dict.fromkeys(unstored, 0.0),
        )
    t0 = time.monotonic()
    opened: dict = {}

    def on_open(listed: dict) -> None:
        """Record the run's start (with the listed models) once the sessions are open."""
        config = opened["config"] = run_config(opts, cfg, listed, len(exchanges))
        note = None
        if opts.resume:
            note = (
                f"{len(state.in_flight)} requests in flight at the stop are sent again; "
                f"{len(state.unstored)} journaled results restored"
            )
        write_event(root, opts.run_id, "resumed" if opts.resume else "started", config, note)

    # Long-lived objects (exchanges, plan) leave the GC's view, so collections during sending stay short.
    gc.collect()
    gc.freeze()
    try:
        asyncio.run(runner.run(on_open))
    except KeyboardInterrupt:
        runner.stop_reason = "interrupted"
    finally:
        gc.unfreeze()
        journal.close()
    stats = runner.post_stats
    return _finish(opts, cfg, plan, runner, root, stats, time.monotonic() - t0, opened.get("config"))


def decode_key(line: str) -> tuple[str, str, int]:
    """The cell key of a journal line."""
    rec = json.loads(line)
    return (rec["x"], rec["p"], int(rec["r"]))


def _compact(opts: RunOptions) -> None:
    """Merge the run's results and attempts segments (one per writer flush) into one file each,
    results sorted by sample key, so evaluation opens a few files and reads its samples
    without the other bodies. Other runs' segments are left alone. Never fails the run: the
    segments stay readable as they are."""
    t = time.perf_counter()
    try:
        done = compact_store(opts.db, min_age_s=0.0, tables=("results", "attempts"), run_id=opts.run_id)
    except Exception as e:  # noqa: BLE001 (a full disk, a permission: the run itself is complete)
        print(
            f"parity replay: compaction skipped ({type(e).__name__}: {e}); run `parity compact`",
            file=opts.err,
        )
        return
    files, rows = done.get("results", (0, 0))
    if files:
        print(
            f"compacted {files:,} results segments ({rows:,} rows) in {time.perf_counter() - t:.1f} s",
            file=opts.err,
        )


def _diagnose(opts: RunOptions, cfg: Config) -> Diagnosis | None:
    """The run's failures from the store; None (and a warning) if the store cannot say."""
    try:
        return diagnose(load_outcomes(opts.db, opts.run_id), cfg.providers)
    except Exception as e:  # noqa: BLE001 (the results are written; only the summary is lost)
        opts.err.write(f"warning: could not summarise the run's failures ({type(e).__name__}: {e})\n")
        return None


def _finish(
    opts: RunOptions,
    cfg: Config,
    plan: Plan,
    runner: Runner,
    root,
    stats: dict | None,
    elapsed: float,
    config: dict | None = None,
) -> RunOutcome:
    left = runner.progress.stats
    incomplete = sum(s.total - s.done for s in left.values())
    if runner.stop_reason == "interrupted":
        state, note, code = (
            "stopped",
            f"interrupted with {incomplete} requests left; resume with --resume",
            130,
        )
    elif runner.failed:
        state, note, code = "failed", runner.failed + "; resume with --resume", 1
    elif runner.stop_reason == "max_cost":
        state, note, code = "stopped", runner.stop_note, 0
    elif incomplete:
        state, note, code = "stopped", f"{incomplete} requests left unfinished; resume with --resume", 1
    else:
        state, note, code = "finished", None, 0
    if stats and (stats.get("spilled") or stats.get("lost")):
        note = (note + "; " if note else "") + f"store writes failed: {stats}"
    diag = _diagnose(opts, cfg)
    dead = diag.dead_note() if diag else None
    if dead:
        note = (note + "; " if note else "") + dead
        code = EXIT_PROVIDER_DEAD if code == 0 else code
    extra: dict = {"failures": diag.public()} if diag else {}
    steps = getattr(runner, "steps", None)
    if steps is not None and config is not None and "sweep" in config:
        extra["sweep"] = {**config["sweep"], "steps": steps}
    # the latest config is the run's (``runs.config``): evals read it
    config = {**config, **extra} if config is not None and extra else None
    write_event(root, opts.run_id, state, config, note)
    if state == "finished" and stats and not stats.get("spilled") and not stats.get("lost"):
        journal_mod.remove(root, opts.run_id)
    if state == "finished" and opts.compact:
        _compact(opts)
    skipped: dict[str, int] = {}
    for _, prov, reason in plan.skipped:
        label = reason if prov is None else f"{prov}: {reason}"
        skipped[label] = skipped.get(label, 0) + 1
    recorded = ProviderStats(total=len(plan.replayable))
    for x in plan.replayable:
        ok = x.status is not None and 200 <= x.status < 300
        cost = cost_of(
            cfg.recorded,
            recorded_model(x),
            x.endpoint,
            ok,
            None,
            x.prompt_tokens,
            x.completion_tokens,
            x.cached_tokens,
        )
        recorded.add(
            {
                "status": x.status,
                "error_type": x.error_type,
                "ttft_ms": x.ttft_ms,
                "latency_ms": x.latency_ms,
                "cost_usd": cost,
                "completion_tokens": x.completion_tokens,
            }
        )
    opts.out.write(
        summary_table(opts.run_id, state, note, elapsed, left, recorded, skipped, runner.lags) + "\n"
    )
    if steps:
        from parity.replayer.sweep_plan import format_steps

        opts.out.write("\n" + format_steps(steps) + "\n")
    if diag and diag.providers:
        opts.out.write("\n" + "\n".join(diag.lines()) + "\n")
    if dead:
        opts.err.write(f"parity replay: {dead}; the results are stored (exit {EXIT_PROVIDER_DEAD})\n")
    p99 = percentile(runner.lags, 99)
    if p99 is not None and p99 > LAG_WARN_MS:
        opts.err.write(
            f"warning: schedule lag p99 {p99:.1f} ms > {LAG_WARN_MS:g} ms: the sender could not keep "
            "the planned times (CPU-bound or provider limits); arrival times are less faithful\n"
        )
    return RunOutcome(state, note, code, runner.sent, runner.summaries, runner.send_cpu_s)
