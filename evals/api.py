"""The public entry points: store + run in, one polars DataFrame per question out.

``evaluate`` loads what the asked questions need once and runs the pure functions of
``timing``, ``spend``, ``answers``, ``scorecard`` and ``judging`` at two levels: provider x endpoint
x model (the question tables) and provider (the summary figures).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import duckdb
import polars as pl

from parity.evals import load
from parity.evals.errors import EvalError
from parity.evals.load import Store
from parity.evals.metrics import answers, evidence, groups, judging, scorecard, spend, stats, timing
from parity.evals.metrics.embeddings import embedding_cells
from parity.evals.metrics.outcome import succeeded
from parity.evals.summarise import rows, summarise

QUESTIONS = ("latency", "cost", "quality", "compat")
BY_GROUP = list(timing.GROUP)
BY_PROVIDER = ["provider"]


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
    month: spend.MonthBasis | None = None  # the basis of cost_month_usd (None: cost not asked)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able: {"run", "baseline", "slos", "providers": {name: {figure: value}}, question rows...}."""
        provs = {}
        for r in rows(self.summary):
            provs[r.pop("provider")] = r
        return {
            "run": self.run,
            "baseline": self.baseline,
            "slos": self.slos,
            "providers": provs,
            "latency": rows(self.latency),
            "reliability": rows(self.reliability),
            "cost": rows(self.cost),
            "breakeven": rows(self.breakeven),
            "quality": rows(self.quality),
            "compat": rows(self.compat),
            "judge": rows(self.judge) if self.judge is not None else None,
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
) -> Evaluation:
    """Evaluate ``run`` (None/"latest" = newest) against ``baseline``; see Evaluation for the frames.

    Bounded work at scale: pooled ITL uses at most ``itl_sample`` streamed requests per provider,
    answer quality at most ``quality_sample`` exchanges (embedding agreement at most
    ``embedding_sample``) and the judge at most ``max_judge_pairs`` pairs per provider
    (deterministic samples by ``sample_key``, the same exchanges for every arm; None = all).
    Latency, cost and the scorecard always use every cell. ``monthly_requests``: the traffic a
    month, for ``cost_month_usd`` (``spend.month_basis``).
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
        timing.parse_slos(slos),
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
) -> Evaluation:
    clock = time.perf_counter()
    secs: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        secs[name] = round(now - clock, 3)
        clock = now

    root = load.store_root(db)
    with ExitStack() as stack:
        bg = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        pre: dict[str, Future] = {}
        opened: Future = Future()  # the store, as the second thread opens it
        rel_later: Future = Future()  # the provider reliability the scorecard reads, computed below
        try:
            # Two threads work side by side. The second opens the store, resolves the run, then
            # on its own cursor loads the ITL sample and computes its pooled percentiles, then the
            # bodies (quality, and the scorecard when some cell lacks its facts), then the traffic
            # and the cost. This one reads the cells meanwhile (a named run's before the store is
            # even open: the read needs no connection), then computes reliability, latency and
            # (from the facts) the scorecard. DuckDB, polars and numpy release the GIL; DuckDB
            # leaves this thread a core.
            pre["itl"] = bg.submit(_open_then_itl, stack, db, run, questions, itl_sample, opened)
            early = root is not None and run not in (None, "", "latest")
            scanned = load.scan_cells(root, run) if early else None
            con, cur, run, config, key = opened.result()
            cells = _served(load.load_cells(con, run, root, scanned), config)
            del scanned
            arms = sorted(cells["provider"].unique().drop_nulls().to_list())
            if baseline not in arms:
                raise EvalError(
                    f"baseline {baseline!r} has no results in run {run!r}; arms: {', '.join(arms)}"
                )
            ev = Evaluation(run=run, baseline=baseline, config=config, slos=slo, seconds=secs)
            xids = cells["xid"].unique()  # the run's exchanges (the cost's traffic matches them)
            n_exchanges = len(xids)
            n_emb = cells.filter(pl.col("endpoint") == "embeddings")["xid"].n_unique()
            facts = cells.select(*scorecard.FACT_INPUTS) if "compat" in questions else None
            # do the facts answer the whole scorecard, or must some cells' bodies be read?
            for_scorecard = facts is not None and bool(
                facts.select((pl.col("chk_error").is_null() | scorecard.error_facts_missing()).any()).item()
            )
            facts_here = None
            if not for_scorecard:  # then this thread computes the scorecard, after the latency
                facts_here, facts = facts, None
            if "quality" in questions or judge or for_scorecard:
                thr = load.sample_threshold(n_exchanges, quality_sample)
                emb_thr = load.sample_threshold(
                    n_emb, min(embedding_sample, quality_sample or embedding_sample)
                )
                sample = (thr, emb_thr, key, for_scorecard)
                pre["bodies"] = bg.submit(
                    _from_bodies, cur, run, baseline, questions, config, rel_later, facts, sample, n_emb
                )
            del facts
            cells = groups.with_key(cells, BY_GROUP)  # the question tables' groups, as one integer
            if "cost" in questions:  # after the bodies: this thread has the latency to do meanwhile
                pre["cost"] = bg.submit(
                    _cost,
                    cur,
                    run,
                    cells.select(*spend.COST_INPUTS, *groups.keys_of(cells, BY_GROUP)),
                    xids,
                    config,
                    baseline,
                    monthly_requests,
                )
            metrics = timing.mark_cold(timing.request_metrics(cells), idle_s)
            rel_sums = timing.reliability_sums(metrics, BY_GROUP, slo)  # the provider level is their total
            rel_p = timing.reliability(metrics, BY_PROVIDER, slo, idle_s, sums=rel_sums)
            rel_later.set_result(rel_p)
            ev.reliability = timing.reliability(metrics, BY_GROUP, slo, idle_s, sums=rel_sums)
            lap("load_cells")
            pct_p = cmp_p = pl.DataFrame()
            if "latency" in questions:
                pairs = timing.pair_differences(metrics, baseline)  # both levels test these pairs
                grouped = stats.value_groups(metrics, BY_GROUP, list(timing.METRICS))
                itl = pre["itl"].result()
                runs: dict = {}  # sorted paired differences, from the groups to the providers
                pct_g, cmp_g = _latency_level(metrics, itl, grouped, pairs, runs, baseline, BY_GROUP)
                ev.latency = _join(pct_g, cmp_g, [*BY_GROUP, "metric"])
                pct_p, cmp_p = _latency_level(metrics, itl, grouped, pairs, runs, baseline, BY_PROVIDER)
                del pairs, grouped, itl
                lap("latency")
            q_p = compat_p = None
            if facts_here is not None:  # every cell carries its facts: no body is needed
                cc = scorecard.cell_checks(None, load.load_attempts_429(con, run), None, facts_here)
                ev.compat = scorecard.scorecard(cc, config, rel_p, BY_PROVIDER)
                compat_p = scorecard.compat_summary(ev.compat)
                del cc, facts_here
                lap("compat")
            cost_p = None
            if "cost" in questions:
                ev.cost, cost_p, ev.breakeven, ev.month = pre["cost"].result()
                lap("cost_wait")
            del cells, metrics
            if "bodies" in pre:
                got = pre["bodies"].result()
                secs.update(got["seconds"])
                lap("bodies_wait")
                ev.quality, q_p = got["quality"], got["quality_p"]
                if got["compat"] is not None:
                    ev.compat, compat_p = got["compat"], got["compat_p"]
                if judge:
                    if isinstance(db, duckdb.DuckDBPyConnection):
                        raise EvalError(
                            "the judge caches verdicts in the store: pass the store path, not a connection"
                        )
                    pairs = _judge_pairs(con, run, baseline, got["compared"], max_judge_pairs)
                    ev.judge = run_judge(con, db, run, baseline, judge, config, pairs, providers, rubric)
                    lap("judge")
            if ev.compat is not None and not ev.compat.is_empty():  # both sides of every finding
                ev.compat = evidence.attach(con, run, ev.compat)
                lap("evidence")
        finally:
            for f in pre.values():
                f.cancel()
            if not rel_later.done():  # else the scorecard would wait for it forever
                rel_later.set_exception(EvalError("the evaluation stopped before reliability"))
            bg.shutdown(wait=True)  # never close the store under a running query
    ev.summary = summarise(baseline, pct_p, cmp_p, rel_p, cost_p, ev.breakeven, q_p, compat_p, ev.judge)
    lap("summary")
    return ev


def _from_bodies(
    cur: duckdb.DuckDBPyConnection,
    run: str,
    baseline: str,
    questions: tuple[str, ...],
    config: dict,
    rel_p: Future,
    facts: pl.DataFrame | None,
    sample: tuple[int, int, str, bool],
    n_emb: int,
) -> dict:
    """Quality, and the scorecard when some cell's scorecard columns need its body (``facts``
    given): what needs the bodies (runs on the second thread).

    ``rel_p``: the provider-level reliability (cold-start rows), set by the first thread meanwhile;
    ``sample``: the quality and embedding sample thresholds, the sample key's SQL, and whether
    some cells' scorecard columns must come from their bodies."""
    t0 = time.perf_counter()
    out: dict = {"quality": None, "quality_p": None, "compat": None, "compat_p": None, "seconds": {}}
    thr, emb_thr, key, for_scorecard = sample
    outputs = load.load_outputs(cur, run, thr, emb_thr, key=key, for_scorecard=for_scorecard)
    t1 = time.perf_counter()
    checked = answers.answer_checks(outputs)
    out["compared"] = compared = answers.compare_cells(checked, baseline)
    if "quality" in questions:
        emb = embedding_cells(outputs, baseline) if n_emb else None
        memo: dict = {}  # structure scores, computed once for the inputs both levels share
        out["quality"] = answers.quality_table(checked, compared, emb, baseline, BY_GROUP, memo)
        out["quality_p"] = answers.quality_table(checked, compared, emb, baseline, BY_PROVIDER, memo)
        del emb
    del checked
    t2 = time.perf_counter()
    if "compat" in questions and facts is not None:
        legacy = facts["chk_error"].null_count() > 0
        streams = load.load_stream_checks(cur, run, thr, key) if legacy else None
        cc = scorecard.cell_checks(outputs, load.load_attempts_429(cur, run), streams, facts)
        del outputs
        out["compat"] = scorecard.scorecard(cc, config, rel_p.result(), BY_PROVIDER)
        out["compat_p"] = scorecard.compat_summary(out["compat"])
    t3 = time.perf_counter()
    out["seconds"] = {
        "bg_load_outputs": round(t1 - t0, 3),
        "bg_quality": round(t2 - t1, 3),
        "bg_compat": round(t3 - t2, 3),
    }
    return out


def _latency_level(
    metrics: pl.DataFrame,
    itl: dict,
    grouped: pl.DataFrame,
    pairs: pl.DataFrame,
    runs: dict,
    baseline: str,
    by: list[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Percentiles and the comparisons with the baseline at one level (``itl``: ``_itl``'s pooled
    ITL rows by level; ``grouped``: the value lists of the finest groups; ``pairs``: the paired
    differences both levels test)."""
    pct = timing.percentiles(metrics, None, by, grouped=grouped, itl_rows=itl[tuple(by)])
    return pct, timing.compare(metrics, pct, baseline, by, pairs=pairs, sorted_pairs=runs, grouped=grouped)


def _open_then_itl(
    stack: ExitStack,
    db: Store,
    run: str | None,
    questions: tuple[str, ...],
    itl_sample: int,
    opened: Future,
) -> dict | None:
    """Open the store (closed with ``stack``), resolve the run and set ``opened`` to (connection,
    this thread's cursor, run, config, sample key); then the pooled ITL rows (``_itl``) when
    latency is asked (runs on the second thread, while the first reads the cells)."""
    try:
        con = stack.enter_context(load.open_store(db))
        run = load.resolve_run(con, run)
        config = load.run_config(con, run)
        key = load.run_sample_column(con, run)
        if not isinstance(db, duckdb.DuckDBPyConnection):
            con.execute(f"SET threads = {max(1, (os.cpu_count() or 2) - 1)}")
        cur = con.cursor()
        stack.callback(cur.close)
    except BaseException as e:
        opened.set_exception(e)
        raise
    opened.set_result((con, cur, run, config, key))
    return _itl(cur, run, itl_sample, key) if "latency" in questions else None


def _itl(cur: duckdb.DuckDBPyConnection, run: str, itl_sample: int, key: str) -> dict:
    """The pooled ITL rows of both levels (runs on the second thread while the cells are read)."""
    itl = load.load_itl(cur, run, itl_sample, key)
    if itl.is_empty():
        return {tuple(BY_GROUP): None, tuple(BY_PROVIDER): None}
    levels = (BY_GROUP, BY_PROVIDER)  # the provider level reads the groups' sorted tokens
    return dict(zip((tuple(by) for by in levels), timing.itl_levels(itl, levels), strict=True))


def _cost(
    cur: duckdb.DuckDBPyConnection,
    run: str,
    cells: pl.DataFrame,
    xids: pl.Series,
    config: dict,
    baseline: str,
    monthly_requests: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, spend.MonthBasis]:
    """The cost tables at both levels, the break-even table and the monthly projection's basis
    (runs on the second thread)."""
    tables = spend.pricing_map(config)
    priced_units = cells.select(
        pl.col("endpoint").is_in(["images.generations", "audio.transcriptions", "audio.translations"]).sum()
    ).item()
    extras = load.load_usage_extras(cur, run) if priced_units else None
    traffic = _traffic(load.load_traffic(cur, run, xids), cells)
    costs = spend.request_costs(cells, spend.price_frame(tables, cells), extras)
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


def _judge_pairs(
    con: duckdb.DuckDBPyConnection, run: str, baseline: str, compared: pl.DataFrame, limit: int | None
) -> pl.DataFrame:
    """Candidate/baseline text pairs to judge: first repeat, both successful with non-empty text."""
    c = (
        compared.filter(
            pl.col("endpoint").is_in(load.TEXT_ENDPOINTS)
            & succeeded()
            & (pl.col("text").fill_null("") != "")
            & (pl.col("text_b").fill_null("") != "")
        )
        .sort("repeat")
        .unique(["provider", "exchange_id"], keep="first")
        .select("exchange_id", "provider", "text", "text_b")
    )
    if limit is not None:
        c = (
            c.with_columns(pl.col("exchange_id").hash(11).alias("_h"))
            .sort("_h")
            .group_by("provider")
            .head(limit)
            .drop("_h")
        )
    prompts = load.load_prompts(con, run, baseline)
    prompts = prompts.with_columns(
        pl.when(pl.col("instructions").is_not_null())
        .then(
            pl.concat_str(
                pl.lit("[instructions] "), "instructions", pl.lit("\n"), pl.col("prompt").fill_null("")
            )
        )
        .otherwise(pl.col("prompt"))
        .alias("prompt")
    ).drop("instructions")
    return (
        c.join(prompts, on="exchange_id", how="left")
        .sort("provider", "exchange_id")
        .select("exchange_id", "provider", "prompt", "text", "text_b")
    )


def run_judge(
    con: duckdb.DuckDBPyConnection,
    db: str | os.PathLike,
    run: str,
    baseline: str,
    spec: str,
    config: dict,
    pairs: pl.DataFrame,
    providers: str | os.PathLike | None = None,
    rubric: str | None = None,
) -> pl.DataFrame:
    """Judge every pair in both orders, asking only for verdicts not yet cached; returns the rates."""
    from parity.store.segments import write_segment

    j = judging.resolve_judge(spec, config, providers)
    rubric = rubric or judging.DEFAULT_RUBRIC
    tasks = judging.plan(pairs, j, rubric)
    cached = load.load_judgments(con)
    todo = tasks.filter(~pl.col("key").is_in(cached["key"].implode())).unique("key", keep="first")
    got = judging.ask(j, rubric, todo) if todo.height else []
    if got:
        write_segment(
            judging.store_root(db),
            "judgments",
            judging.judgment_rows(todo, got, run, baseline, j),
            f"judge{os.getpid()}",
        )
        if all(a["verdict"] == "error" for a in got):
            raise EvalError(f"judge {j.name!r} failed on every call; first: {got[0]['raw']}")
    fresh = pl.DataFrame(got, schema={"key": pl.Utf8, "verdict": pl.Utf8, "raw": pl.Utf8})
    verdicts = pl.concat([cached.select("key", "verdict"), fresh.select("key", "verdict")]).unique(
        "key", keep="last"
    )
    table = judging.judge_table(judging.combine(tasks, verdicts))
    return table.with_columns(
        pl.lit(len(got), pl.Int64).alias("judge_calls"),
        pl.lit(sum(a["verdict"] == "error" for a in got), pl.Int64).alias("judge_errors"),
        pl.lit(f"{j.name}:{j.model}").alias("judge"),
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
