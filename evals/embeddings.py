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
    a = (x @ x.T)[iu]
    b = (y @ y.T)[iu]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def embedding_pairs(emb: pl.DataFrame, baseline: str, by: Sequence[str]) -> pl.DataFrame:
    """Per non-baseline group: mean cosine to the baseline vectors (same dims) and structure Spearman.

    ``emb`` is ``load.load_embeddings`` output: one row per candidate cell with ``cosine`` and,
    for the sampled exchanges, both arms' vectors ``v`` / ``vb`` (one list per input).
    """
    by = list(by)
    schema = {c: pl.Utf8 for c in by} | {
        "embedding_cosine_mean": pl.Float64,
        "embedding_structure_spearman": pl.Float64,
    }
    if emb.is_empty():
        return pl.DataFrame(schema=schema)
    out = emb.group_by(by).agg(pl.col("cosine").mean().alias("embedding_cosine_mean"))
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
        r = structure_spearman(_matrix(g["v"]), _matrix(g["vb"])) if g.height else None
        rho.append(dict(zip(by, key, strict=True)) | {"embedding_structure_spearman": r})
    rho_df = pl.DataFrame(rho, schema={c: pl.Utf8 for c in by} | {"embedding_structure_spearman": pl.Float64})
    return out.join(rho_df, on=by, how="left").select(list(schema))
