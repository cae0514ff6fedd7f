"""Embedding agreement with the baseline: cosine when dimensions match, similarity structure otherwise.

Cosine of vectors from different models means nothing, but two good models should agree on which
inputs are close: the structure score is the Spearman correlation between the two arms' pairwise
cosine-similarity matrices over the run's embedded inputs (a deterministic sample of at most
``MAX_STRUCTURE`` inputs, since the matrices grow quadratically; vectors are only loaded for them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

MAX_STRUCTURE = 500


def _matrix(s: pl.Series) -> np.ndarray:
    m = np.asarray(s.to_list(), dtype=float)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)


def structure_spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman correlation of the upper triangles of the two (row-normalised) cosine matrices."""
    if len(x) < 3:
        return None
    iu = np.triu_indices(len(x), k=1)
    # One BLAS thread: at most 500 x 500, and an idle OpenBLAS worker spins on a core the
    # evaluation's other thread needs.
    with threadpool_limits(limits=1, user_api="blas"):
        a = (x @ x.T)[iu]
        b = (y @ y.T)[iu]
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return None
        return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def embedding_pairs(
    emb: pl.DataFrame, baseline: str, by: Sequence[str], memo: dict | None = None
) -> pl.DataFrame:
    """Per non-baseline group: mean cosine to the baseline vectors (same dims) and structure Spearman.

    ``emb`` is ``load.load_embeddings`` output: one row per candidate cell with ``cosine`` and,
    for the sampled exchanges, both arms' vectors ``v`` / ``vb`` (one list per input). ``memo``,
    shared by the calls of several levels, keeps each structure score by the inputs it was
    computed on: a provider whose embeddings lie in one group gets that group's score unrecomputed.
    """
    by = list(by)
    schema = {c: pl.Utf8 for c in by} | {
        "embedding_cosine_mean": pl.Float64,
        "embedding_structure_spearman": pl.Float64,
    }
    if emb.is_empty():
        return pl.DataFrame(schema=schema)
    # summed in one fixed order (the cells arrive in the store's thread order): the same run gives
    # the same mean to the last digit
    out = (
        emb.select(*by, "exchange_id", "repeat", "cosine")
        .sort([*by, "exchange_id", "repeat"], nulls_last=True)
        .group_by(by, maintain_order=True)
        .agg(pl.col("cosine").mean().alias("embedding_cosine_mean"))
    )
    sample = (
        emb.filter(
            pl.col("v").is_not_null()
            & pl.col("vb").is_not_null()
            & (pl.col("v").list.len() == pl.col("vb").list.len())
        )
        .sort("repeat")
        .unique([*by, "exchange_id"], keep="first")
        .with_columns(pl.int_ranges(pl.col("v").list.len()).alias("idx"))
        .explode(["v", "vb", "idx"])
    )
    rho = []
    for key, g in sample.partition_by(by, as_dict=True).items() if not sample.is_empty() else []:
        g = g.filter(pl.col("v").list.len() == pl.col("v").list.len().mode().first())
        g = g.filter(pl.col("vb").list.len() == pl.col("vb").list.len().mode().first())
        if g.height > MAX_STRUCTURE:
            g = (
                g.with_columns(pl.concat_str("exchange_id", "idx").hash(7).alias("_h"))
                .sort("_h")
                .head(MAX_STRUCTURE)
            )
        arm = dict(zip(by, key, strict=True)).get("provider")
        inputs = (arm, tuple(g["exchange_id"].to_list()), tuple(g["idx"].to_list()))
        if memo is not None and inputs in memo:
            r = memo[inputs]
        else:
            r = structure_spearman(_matrix(g["v"]), _matrix(g["vb"])) if g.height else None
            if memo is not None:
                memo[inputs] = r
        rho.append(dict(zip(by, key, strict=True)) | {"embedding_structure_spearman": r})
    rho_df = pl.DataFrame(rho, schema={c: pl.Utf8 for c in by} | {"embedding_structure_spearman": pl.Float64})
    return out.join(rho_df, on=by, how="left").select(list(schema))


def embedding_cells(outputs: pl.DataFrame, baseline: str) -> pl.DataFrame:
    """Per non-baseline embedding cell with vectors (``load.load_outputs``' ``vectors``, the
    embedding sample): both arms' dimensions, the mean cosine to the baseline's vectors (first
    repeat) when shapes match, and both arms' vectors ``v`` / ``vb`` for the structure score."""
    schema = {
        "exchange_id": pl.Utf8,
        "provider": pl.Utf8,
        "repeat": pl.Int32,
        "endpoint": pl.Utf8,
        "model": pl.Utf8,
        "dim": pl.Int64,
        "dim_b": pl.Int64,
        "cosine": pl.Float64,
        "v": pl.List(pl.List(pl.Float64)),
        "vb": pl.List(pl.List(pl.Float64)),
    }
    if "vectors" not in outputs.columns:
        return pl.DataFrame(schema=schema)
    e = outputs.filter(pl.col("vectors").is_not_null()).select(
        "exchange_id", "provider", "repeat", "endpoint", "model", pl.col("vectors").alias("v")
    )
    base = (
        e.filter(pl.col("provider") == baseline)
        .sort("repeat")
        .unique("exchange_id", keep="first")
        .select("exchange_id", pl.col("v").alias("vb"))
    )
    cand = e.filter(pl.col("provider") != baseline).join(base, on="exchange_id", how="inner")
    if cand.is_empty():
        return pl.DataFrame(schema=schema)
    dims, dims_b, cos = [], [], []
    for v, vb in zip(cand["v"].to_list(), cand["vb"].to_list(), strict=True):
        a = _array(v)
        b = _array(vb)
        dims.append(a.shape[1] if a is not None and a.ndim == 2 and len(a) else None)
        dims_b.append(b.shape[1] if b is not None and b.ndim == 2 and len(b) else None)
        if a is None or b is None or a.ndim != 2 or a.shape != b.shape or not len(a):
            cos.append(None)
            continue
        na = np.linalg.norm(a, axis=1)
        nb = np.linalg.norm(b, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.sum(a * b, axis=1) / (na * nb)
        cos.append(float(np.mean(c)) if np.all(np.isfinite(c)) else None)
    return cand.with_columns(
        pl.Series("dim", dims, dtype=pl.Int64),
        pl.Series("dim_b", dims_b, dtype=pl.Int64),
        pl.Series("cosine", cos, dtype=pl.Float64),
        pl.col("v").cast(pl.List(pl.List(pl.Float64))),
        pl.col("vb").cast(pl.List(pl.List(pl.Float64))),
    ).select(list(schema))


def _array(v: list | None) -> np.ndarray | None:
    """Rows of one cell's vectors as a 2-D array; None when they are ragged or missing."""
    if v is None:
        return None
    try:
        return np.asarray(v, dtype=float)
    except (ValueError, TypeError):
        return None
