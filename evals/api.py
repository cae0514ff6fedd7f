"""The public entry points: store + run in, one polars DataFrame per question out.

``evaluate`` loads what the asked questions need once and runs the pure functions of
``timing``, ``spend``, ``answers``, ``scorecard`` and ``judging`` at two levels: provider x endpoint
x model (the question tables) and provider (the summary figures).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from parity.evals import judge_run, load, window
from parity.evals.errors import EvalError
from parity.evals.load import Store
from parity.evals.metrics import (
    answers,
    capacity,
    evidence,
    groups,
    scorecard,
    spend,
    stats,
    timing,
)
from parity.evals.metrics import (
    reliability as rel,
)
from parity.evals.metrics.embeddings import embedding_cells
from parity.evals.summarise import rows, summarise

QUESTIONS = ("latency", "cost", "quality", "compat")
BY_GROUP = list(timing.GROUP)
BY_PROVIDER = ["provider"]
LEVELS = (BY_GROUP, BY_PROVIDER)  # the question tables, then the summary figures


@dataclass
class Evaluation:
    """Every frame of one evaluation; question tables are per provider x endpoint x model."""

    run: str
    baseline: str
    config: dict
    slos: dict[str, float]
    latency: pl.DataFrame | None = None
    reliability: pl.DataFrame | None = None
    cost: pl.DataFrame | None = None
    breakeven: pl.DataFrame | None = None
    quality: pl.DataFrame | None = None
    compat: pl.DataFrame | None = None
    judge: pl.DataFrame | None = None
    summary: pl.DataFrame | None = None
    sweep: pl.DataFrame | None = None  # per provider and step of a capacity sweep (empty otherwise)
    capacity: pl.DataFrame | None = None  # per provider: the sweep's capacity
    month: spend.MonthBasis | None = None  # the basis of cost_month_usd (None: cost not asked)
    seconds: dict[str, float] = field(default_factory=dict)
    window: window.Window | None = None  # the exchanges the figures are about (None: the whole run)

    def to_dict(self) -> dict:
        """JSON-able: {"run", "baseline", "slos", "providers": {name: {figure: value}}, question rows...}."""
        provs = {}
        for r in rows(self.summary):
            provs[r.pop("provider")] = r
        return {
            "run": self.run,
            "baseline": self.baseline,
            "slos": self.slos,
            "window": self.window.to_dict() if self.window else None,
            "providers": provs,
            "latency": rows(self.latency),
            "reliability": rows(self.reliability),
            "cost": rows(self.cost),
            "breakeven": rows(self.breakeven),
            "quality": rows(self.quality),
            "compat": rows(self.compat),
            "judge": rows(self.judge) if self.judge is not None else None,
            "sweep": rows(self.sweep),
            "capacity": rows(self.capacity),
            "statistics": stats.PROCEDURES,
            "unsupported_endpoints": unsupported_endpoints(self.config),
            "cost_month": None
            if self.month is None
            else {
                "basis": self.month.basis,
                "note": self.month.note,
                "requests_per_month": self.month.requests,
            },
        }


def unsupported_endpoints(config: dict) -> list[dict]:
    """Endpoints a provider does not serve (every request 404/405 while another endpoint worked), as
    the replay diagnosed them: reported apart, with the providers.toml line that skips them."""
    return list(((config.get("failures") or {}).get("unsupported_endpoints")) or [])


def _served(cells: pl.DataFrame, config: dict) -> pl.DataFrame:
    """The cells less those sent to an endpoint their provider does not serve: a configuration fact
    reported apart (``unsupported_endpoints``), not a measure of the provider's reliability."""
    gone = unsupported_endpoints(config)
    if not gone:
        return cells
    key = pl.concat_str("provider", pl.lit("\x1f"), "endpoint")
    return cells.filter(~key.is_in([f"{u['provider']}\x1f{u['endpoint']}" for u in gone]).fill_null(True))


def evaluate(
    db: Store,
    run: str | None = None,
    baseline: str = "recorded",
    slos: str | dict | None = None,
    *,
    questions: tuple[str, ...] = QUESTIONS,
    judge: str | None = None,
    providers: str | os.PathLike | None = None,
    rubric: str | None = None,
    max_judge_pairs: int | None = 300,
    idle_s: float = 60.0,
    itl_sample: int = 10000,
    quality_sample: int | None = 20_000,
    embedding_sample: int = 2_000,
    monthly_requests: float | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
) -> Evaluation:
    """Evaluate ``run`` (None/"latest" = newest) against ``baseline``; see Evaluation for the frames.

    Bounded work at scale: pooled ITL uses at most ``itl_sample`` streamed requests per provider,
    answer quality at most ``quality_sample`` exchanges (embedding agreement at most
    ``embedding_sample``) and the judge at most ``max_judge_pairs`` pairs per provider
    (deterministic samples by ``sample_key``, the same exchanges for every arm; None = all).
    Latency, cost and the scorecard always use every cell. ``monthly_requests``: the traffic a
    month, for ``cost_month_usd`` (``spend.month_basis``). ``since`` / ``until``: only the exchanges
    production recorded in that window (``parity.evals.window``: an ISO time or a duration back
    from now such as ``"1h"``); every figure is then about those exchanges.
    """
    if monthly_requests is not None and not monthly_requests > 0:
        raise EvalError(f"monthly requests must be a positive number, not {monthly_requests!r}")
    unknown = set(questions) - set(QUESTIONS)
    if unknown:
        raise EvalError(f"unknown question(s) {sorted(unknown)}; known: {', '.join(QUESTIONS)}")
    return _evaluate(
        db,
        run,
        baseline,
        rel.parse_slos(slos),
        questions,
        judge,
        providers,
        rubric,
        max_judge_pairs,
        idle_s,
        itl_sample,
        quality_sample,
        embedding_sample,
        monthly_requests,
        window.window(since, until),
    )


def _evaluate(
    db: Store,
    run: str | None,
    baseline: str,
    slo: dict[str, float],
    questions: tuple[str, ...],
    judge: str | None,
    providers: str | os.PathLike | None,
    rubric: str | None,
    max_judge_pairs: int | None,
    idle_s: float,
    itl_sample: int,
    quality_sample: int | None,
    embedding_sample: int,
    monthly_requests: float | None = None,
    win: window.Window | None = None,
) -> Evaluation:
    """The evaluation, one named step after another; ``Evaluation.seconds`` times each step."""
    clock = time.perf_counter()
    secs: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        secs[name] = round(now - clock, 3)
        clock = now

    # Steps that read the store (the pooled ITL tokens, the bodies for quality, the cost's traffic)
    # run one after another on a second thread, each on its own cursor, beside the in-memory steps
    # below; DuckDB releases the GIL while it reads. Each is a function of its inputs, collected
    # where its result is needed.
    if win is not None and isinstance(db, duckdb.DuckDBPyConnection):
        raise EvalError("a time window (--since/--until) needs the store's path, not an open connection")
    with load.open_store(db) as con, ThreadPoolExecutor(max_workers=1) as beside:
        run = load.resolve_run(con, run)
        if win is not None:
            load.narrow(con, win)
        config = load.run_config(con, run)
        ev = Evaluation(run=run, baseline=baseline, config=config, slos=slo, seconds=secs, window=win)
        wants_bodies = "quality" in questions or judge is not None
        if "latency" in questions:
            itl_rows = beside.submit(_pooled_itl, con, run, itl_sample)
        lap("open")

        cells = _served(load.load_cells(con, run), config)
        arms = sorted(cells["provider"].unique().drop_nulls().to_list())
        if win is not None and not arms:
            raise EvalError(f"run {run!r} has no exchange in the window: no {win.describe()}")
        if baseline not in arms:
            raise EvalError(f"baseline {baseline!r} has no results in run {run!r}; arms: {', '.join(arms)}")
        cells = groups.with_key(cells, BY_GROUP)  # the question tables' groups, as one integer
        if wants_bodies:  # after the cells: the two largest reads of the store do not compete
            n_emb = cells.filter(pl.col("endpoint") == "embeddings")["xid"].n_unique()
            samples = (  # the quality and embedding samples' thresholds on the sample key
                load.sample_threshold(cells["xid"].n_unique(), quality_sample),
                load.sample_threshold(n_emb, min(embedding_sample, quality_sample or embedding_sample)),
            )
            bodies = beside.submit(_quality, con, run, baseline, samples, n_emb > 0)
        if "cost" in questions:
            costs = beside.submit(_cost, con, run, cells, config, baseline, monthly_requests)
        metrics = rel.mark_cold(timing.request_metrics(cells), idle_s)
        lap("cells")

        ev.reliability, rel_p = rel.reliability_levels(metrics, LEVELS, slo, idle_s)
        lap("reliability")

        ev.sweep = capacity.sweep_rows(metrics, config, slo, baseline)  # empty unless a sweep
        ev.capacity = capacity.capacity_rows(ev.sweep, config)
        lap("capacity")

        pct_p = cmp_p = pl.DataFrame()
        if "latency" in questions:
            (pct_g, cmp_g), (pct_p, cmp_p) = timing.latency_levels(
                metrics, itl_rows.result(), baseline, LEVELS
            )
            ev.latency = _join(pct_g, cmp_g, [*BY_GROUP, "metric"])
            lap("latency")

        compat_p = None
        if "compat" in questions:
            checks = scorecard.cell_checks(
                cells.select(*scorecard.FACT_INPUTS), load.load_attempts_429(con, run)
            )
            ev.compat = scorecard.scorecard(checks, config, rel_p, BY_PROVIDER)
            compat_p = scorecard.compat_summary(ev.compat)
            if not ev.compat.is_empty():  # both sides of every finding
                ev.compat = evidence.attach(con, run, ev.compat)
            lap("compat")

        cost_p = None
        if "cost" in questions:
            ev.cost, cost_p, ev.breakeven, ev.month = costs.result()
            lap("cost_wait")

        q_p = None
        if wants_bodies:
            ev.quality, q_p, compared = bodies.result()
            lap("quality_wait")
            if "quality" not in questions:
                ev.quality = q_p = None
            if judge:
                if isinstance(db, duckdb.DuckDBPyConnection):
                    raise EvalError(
                        "the judge caches verdicts in the store: pass the store path, not a connection"
                    )
                pairs = judge_run.judge_pairs(con, run, baseline, compared, max_judge_pairs)
                ev.judge = judge_run.run(con, db, run, baseline, judge, config, pairs, providers, rubric)
                lap("judge")

    ev.summary = summarise(baseline, pct_p, cmp_p, rel_p, cost_p, ev.breakeven, q_p, compat_p, ev.judge)
    ev.summary = capacity.fill_summary(ev.summary, ev.capacity)
    lap("summary")
    return ev


def _read(con: duckdb.DuckDBPyConnection, loader, *args):
    """``loader(cursor, *args)`` on a cursor of its own (a step run beside the others)."""
    with con.cursor() as cur:
        return loader(cur, *args)


def _pooled_itl(con: duckdb.DuckDBPyConnection, run: str, itl_sample: int) -> list[pl.DataFrame] | None:
    """The pooled ITL rows of both levels, from at most ``itl_sample`` streamed requests per provider."""
    return timing.pooled_itl(_read(con, load.load_itl, run, itl_sample), LEVELS)


def _quality(
    con: duckdb.DuckDBPyConnection,
    run: str,
    baseline: str,
    samples: tuple[int, int],
    embeddings: bool,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The quality tables at both levels and the compared cells (the judge's pairs), from the bodies
    of a deterministic sample of exchanges (the same exchanges for every arm; ``samples``: the
    quality and embedding thresholds on the sample key), read on a cursor of its own."""
    with con.cursor() as cur:
        outputs = load.load_outputs(cur, run, *samples)
    checked = answers.answer_checks(outputs)
    compared = answers.compare_cells(checked, baseline)
    emb = embedding_cells(outputs, baseline) if embeddings else None
    by_group, by_provider = answers.quality_levels(checked, compared, emb, baseline, LEVELS)
    return by_group, by_provider, compared


def _cost(
    con: duckdb.DuckDBPyConnection,
    run: str,
    cells: pl.DataFrame,
    config: dict,
    baseline: str,
    monthly_requests: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, spend.MonthBasis]:
    """The cost tables at both levels, the break-even table and the monthly projection's basis (reads
    the store on a cursor of its own)."""
    tables = spend.pricing_map(config)
    xids = cells["xid"].unique()  # the run's exchanges (the cost's traffic matches them)
    priced_units = cells.select(
        pl.col("endpoint").is_in(["images.generations", "audio.transcriptions", "audio.translations"]).sum()
    ).item()
    extras = _read(con, load.load_usage_extras, run) if priced_units else None
    traffic = _traffic(_read(con, load.load_traffic, run, xids), cells)
    costs = spend.request_costs(
        cells.select(*spend.COST_INPUTS, *groups.keys_of(cells, BY_GROUP)),
        spend.price_frame(tables, cells),
        extras,
    )
    month = spend.month_basis(traffic, len(xids), monthly_requests)
    sums = spend.cost_sums(costs, baseline, BY_GROUP)  # the provider level is their total
    return (
        spend.cost_rollup(sums, month, BY_GROUP),
        spend.cost_rollup(sums, month, BY_PROVIDER),
        spend.breakeven(tables, config, traffic),
        month,
    )


def _join(left: pl.DataFrame, right: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    if right.is_empty():
        return left
    return left.join(right, on=on, how="left")


def _traffic(traffic: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    """The recorded exchanges, or the recorded arm's cells when the exchanges are not in this store."""
    if not traffic.is_empty():
        return traffic
    rec = cells.filter((pl.col("provider") == "recorded") & (pl.col("repeat") == 0))
    return rec.select(
        "exchange_id",
        pl.col("started_at").alias("recorded_at"),
        "endpoint",
        "model",
        "prompt_tokens",
        "completion_tokens",
    )


def _one(db: Store, run: str | None, baseline: str, question: str, **kw) -> Evaluation:
    return evaluate(db, run, baseline, questions=(question,), **kw)


def latency(
    db: Store, run: str | None = None, baseline: str = "recorded", *, itl_sample: int = 10000
) -> pl.DataFrame:
    """Per provider x endpoint x model x metric: n, p50/p90/p95/p99 with CIs, deltas and paired test vs baseline."""
    return _one(db, run, baseline, "latency", itl_sample=itl_sample).latency


def reliability(
    db: Store, run: str | None = None, slos: str | dict | None = None, *, idle_s: float = 60.0
) -> pl.DataFrame:
    """Per provider x endpoint x model: error / 429 / retry rates, goodput against ``slos``, cold start."""
    return evaluate(db, run, _any_baseline(db, run), slos, questions=(), idle_s=idle_s).reliability


def cost(
    db: Store, run: str | None = None, baseline: str = "recorded", *, monthly_requests: float | None = None
) -> pl.DataFrame:
    """Per provider x endpoint x model: total, per success, per month, delta vs baseline."""
    return _one(db, run, baseline, "cost", monthly_requests=monthly_requests).cost


def breakeven(db: Store, run: str | None = None) -> pl.DataFrame:
    """Per model, token-priced vs flat-priced arm: break-even prompt length and the traffic beyond it."""
    return evaluate(db, run, _any_baseline(db, run), questions=("cost",)).breakeven


def quality(db: Store, run: str | None = None, baseline: str = "recorded") -> pl.DataFrame:
    """Per provider x endpoint x model: agreement with the baseline's answers and validity rates."""
    return _one(db, run, baseline, "quality").quality


def quality_cells(db: Store, run: str | None = None, baseline: str = "recorded") -> pl.DataFrame:
    """Per non-baseline cell: similarity, exact match, length ratio, agreement flags and validity checks."""
    with load.open_store(db) as con:
        run = load.resolve_run(con, run)
        return answers.compare_cells(answers.answer_checks(load.load_outputs(con, run)), baseline)


def compat(db: Store, run: str | None = None, *, idle_s: float = 60.0) -> pl.DataFrame:
    """Scorecard: provider x check -> pass / fail / n/a with counts and example exchange ids."""
    return evaluate(db, run, _any_baseline(db, run), questions=("compat",), idle_s=idle_s).compat


def judge(
    db: str | os.PathLike,
    run: str | None,
    judge: str,
    baseline: str = "recorded",
    *,
    providers: str | os.PathLike | None = None,
    rubric: str | None = None,
    max_pairs: int | None = 300,
) -> pl.DataFrame:
    """LLM-as-judge win / tie / loss rates vs baseline (Wilson CIs); verdicts cached in the store."""
    ev = evaluate(
        db,
        run,
        baseline,
        questions=(),
        judge=judge,
        providers=providers,
        rubric=rubric,
        max_judge_pairs=max_pairs,
    )
    return ev.judge


def summary(
    db: Store, run: str | None = None, baseline: str = "recorded", slos: str | dict | None = None, **kw
) -> pl.DataFrame:
    """One row per provider with every figure of ``evals.FIGURES``."""
    return evaluate(db, run, baseline, slos, **kw).summary


def summary_dict(
    db: Store, run: str | None = None, baseline: str = "recorded", slos: str | dict | None = None, **kw
) -> dict:
    """JSON-able summary: run, baseline, per-provider figures and every question's rows."""
    return evaluate(db, run, baseline, slos, **kw).to_dict()


def _any_baseline(db: Store, run: str | None) -> str:
    """Baseline for baseline-free questions: recorded if present, else the first arm."""
    with load.open_store(db) as con:
        r = load.resolve_run(con, run)
        arms = load.frame(
            con, "SELECT DISTINCT provider FROM results WHERE run_id = $run ORDER BY 1", {"run": r}
        )
    names = arms["provider"].to_list()
    return "recorded" if "recorded" in names else names[0]
