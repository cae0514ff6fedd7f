"""Evaluate a replay run: latency, cost, quality and compatibility per provider, vs a baseline.

Public API (every function takes a store path or an open ``parity.store.store.connect`` connection)::

    evaluate(db, run=None, baseline="recorded", slos=None, *, questions, judge, providers, rubric) -> Evaluation
    latency(db, run, baseline)      reliability(db, run, slos)     cost(db, run, baseline)
    breakeven(db, run)              quality(db, run, baseline)     quality_cells(db, run, baseline)
    compat(db, run)
    judge(db, run, judge, baseline, *, providers, rubric, max_pairs)
    summary(db, run, baseline, slos) -> one row per provider with every figure of FIGURES
    summary_dict(db, run, baseline, slos) -> the same plus every question's rows, JSON-able

The pure functions behind them (``timing``, ``spend``, ``answers``, ``embeddings``, ``scorecard``,
``judging``, ``stats``) take polars DataFrames, so notebooks can run them on any selection.

Errors: every failure evals reports is an ``EvalError``.
"""

from parity.evals.api import (
    QUESTIONS,
    Evaluation,
    breakeven,
    compat,
    cost,
    evaluate,
    judge,
    latency,
    quality,
    quality_cells,
    reliability,
    summary,
    summary_dict,
)
from parity.evals.errors import EvalError
from parity.evals.figures import FIGURES

__all__ = [
    "FIGURES",
    "QUESTIONS",
    "EvalError",
    "Evaluation",
    "breakeven",
    "compat",
    "cost",
    "evaluate",
    "judge",
    "latency",
    "quality",
    "quality_cells",
    "reliability",
    "summary",
    "summary_dict",
]
