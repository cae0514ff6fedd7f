"""The LLM judge over a run: which answer pairs it reads, and asking it only what the store has not
cached (the verdicts are written back as ``judgments`` segments)."""

from __future__ import annotations

import os

import duckdb
import polars as pl

from parity.evals import load
from parity.evals.errors import EvalError
from parity.evals.metrics import judging
from parity.evals.metrics.outcome import succeeded


def judge_pairs(
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


def run(
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
