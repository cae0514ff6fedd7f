"""LLM-as-judge: pairwise candidate vs baseline, both orders, verdicts cached in the store.

Each (pair, order) is keyed by a hash of judge, model, rubric, order, request and both answers;
a key already in the ``judgments`` table is never asked again, so re-running costs nothing.
The two orders cancel position bias: a pair is a win (loss) only when both orders prefer the
candidate (baseline); any disagreement or tie is a tie.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from parity.evals.errors import EvalError
from parity.evals.metrics import stats

DEFAULT_RUBRIC = """You compare two AI assistant answers to the same request.
Judge which answer serves the user better: correct, complete, follows the instructions and the
requested format, helpful and no longer than needed. Do not prefer an answer for its position
or its length alone. Reply with exactly one word: A, B or TIE."""
MAX_CHARS = 12000  # per request / answer shown to the judge


@dataclass(frozen=True)
class Judge:
    """Where the judge model is reached (the key itself stays in the environment)."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None

    def client(self):  # noqa: ANN201 - openai.OpenAI, imported lazily
        from openai import OpenAI

        key = "none"
        if self.api_key_env:
            key = os.environ.get(self.api_key_env) or ""
            if not key:
                raise EvalError(f"judge {self.name!r}: environment variable {self.api_key_env} is not set")
        return OpenAI(base_url=self.base_url, api_key=key, max_retries=2, timeout=120.0)


def resolve_judge(spec: str, config: dict, providers: str | os.PathLike | None = None) -> Judge:
    """``NAME[:MODEL]`` -> Judge, from the providers TOML (if given) or the run config."""
    name, _, model = spec.partition(":")
    entry: dict = {}
    if providers:
        from parity.replayer.config import load_config
        from parity.replayer.errors import ConfigError

        try:
            cfg = load_config(providers)
        except ConfigError as e:
            raise EvalError(str(e)) from e
        p = cfg.providers.get(name)
        if p is None:
            raise EvalError(
                f"judge {name!r} is not a provider in {providers}; have {', '.join(cfg.providers)}"
            )
        entry = {"base_url": p.base_url, "api_key_env": p.api_key_env, "models": p.models}
    else:
        entry = (config.get("providers") or {}).get(name) or {}
        if not entry.get("base_url"):
            raise EvalError(f"judge {name!r} is not a provider of this run; pass --providers FILE")
    if not model:
        mapped = [m for m in (entry.get("models") or {}).values() if m and m != "*"]
        if not mapped:
            raise EvalError(f"judge {name!r}: say which model judges, e.g. --judge {name}:MODEL")
        model = mapped[0]
    return Judge(name=name, base_url=entry["base_url"], model=model, api_key_env=entry.get("api_key_env"))


def judgment_key(
    judge: Judge, rubric: str, order: str, prompt: str | None, baseline: str, candidate: str
) -> str:
    """Cache key of one verdict."""
    blob = json.dumps([judge.name, judge.model, rubric, order, prompt or "", baseline, candidate])
    return hashlib.sha256(blob.encode()).hexdigest()


def _message(prompt: str | None, first: str, second: str) -> str:
    return (
        f"[Request]\n{(prompt or '(not recorded)')[:MAX_CHARS]}\n\n"
        f"[Answer A]\n{first[:MAX_CHARS]}\n\n[Answer B]\n{second[:MAX_CHARS]}\n\nWhich answer is better: A, B or TIE?"
    )


def parse_verdict(text: str | None, order: str) -> str:
    """Map the judge's A / B / TIE to candidate / baseline / tie (``ab``: A is the baseline)."""
    m = re.search(r"\b(TIE|A|B)\b", (text or "").upper())
    if not m:
        return "error"
    word = m.group(1)
    if word == "TIE":
        return "tie"
    a_is_baseline = order == "ab"
    return "baseline" if (word == "A") == a_is_baseline else "candidate"


def plan(pairs: pl.DataFrame, judge: Judge, rubric: str) -> pl.DataFrame:
    """One task per (pair, order) with its cache key. ``pairs``: exchange_id, provider, prompt, text, text_b."""
    rows = []
    for r in pairs.iter_rows(named=True):
        for order in ("ab", "ba"):
            key = judgment_key(judge, rubric, order, r["prompt"], r["text_b"], r["text"])
            rows.append(r | {"order": order, "key": key})
    schema = pairs.schema | {"order": pl.Utf8, "key": pl.Utf8}
    return pl.DataFrame(rows, schema=schema)


def ask(judge: Judge, rubric: str, tasks: pl.DataFrame, concurrency: int = 4) -> list[dict]:
    """Call the judge for every task; a failed call is a verdict "error" (never cached)."""
    client = judge.client()

    def one(r: dict) -> dict:
        first, second = (r["text_b"], r["text"]) if r["order"] == "ab" else (r["text"], r["text_b"])
        try:
            resp = client.chat.completions.create(
                model=judge.model,
                temperature=0,
                max_tokens=16,
                messages=[
                    {"role": "system", "content": rubric},
                    {"role": "user", "content": _message(r["prompt"], first, second)},
                ],
            )
            raw = resp.choices[0].message.content if resp.choices else None
            verdict = parse_verdict(raw, r["order"])
        except Exception as e:  # noqa: BLE001 - a judge failure is data, like any provider failure
            raw, verdict = f"{type(e).__name__}: {e}", "error"
        return {"key": r["key"], "verdict": verdict, "raw": raw}

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, tasks.iter_rows(named=True)))


def judgment_rows(
    tasks: pl.DataFrame, answers: list[dict], run: str, baseline: str, judge: Judge
) -> list[dict]:
    """Rows for the ``judgments`` table."""
    now = datetime.now(UTC)
    by_key = {a["key"]: a for a in answers}
    rows = []
    for t in tasks.iter_rows(named=True):
        a = by_key[t["key"]]
        rows.append(
            {
                "key": t["key"],
                "run_id": run,
                "exchange_id": t["exchange_id"],
                "provider": t["provider"],
                "baseline": baseline,
                "judge": f"{judge.name}:{judge.model}",
                "order": t["order"],
                "verdict": a["verdict"],
                "raw": a["raw"],
                "at": now,
            }
        )
    return rows


def combine(tasks: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
    """Per pair: win / tie / loss from its two orders (pairs with an error in either order are dropped)."""
    v = tasks.join(verdicts.select("key", "verdict"), on="key", how="left")
    per = v.group_by("provider", "exchange_id").agg(
        pl.col("verdict").drop_nulls().alias("v"), pl.col("verdict").is_null().any().alias("_missing")
    )
    per = per.filter(
        ~pl.col("_missing") & (pl.col("v").list.len() == 2) & ~pl.col("v").list.contains("error")
    )
    return per.with_columns(
        pl.when(pl.col("v").list.eval(pl.element() == "candidate").list.all())
        .then(pl.lit("win"))
        .when(pl.col("v").list.eval(pl.element() == "baseline").list.all())
        .then(pl.lit("loss"))
        .otherwise(pl.lit("tie"))
        .alias("outcome")
    ).drop("v", "_missing")


def judge_table(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Per provider: judged pairs, win / tie / loss rates with Wilson CIs."""
    t = outcomes.group_by("provider").agg(
        pl.len().alias("judge_n"),
        (pl.col("outcome") == "win").sum().alias("wins"),
        (pl.col("outcome") == "tie").sum().alias("ties"),
        (pl.col("outcome") == "loss").sum().alias("losses"),
    )
    n = t["judge_n"].to_numpy()
    cols = {}
    for name, k in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
        lo, hi = stats.wilson(t[k].to_numpy(), n)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols[f"judge_{name}_rate"] = t[k].to_numpy() / n
        cols[f"judge_{name}_rate_ci_low"] = lo
        cols[f"judge_{name}_rate_ci_high"] = hi
    return t.with_columns(pl.Series(k, v) for k, v in cols.items()).sort("provider")


def store_root(db: str | os.PathLike) -> Path:
    """Segment folder of the store at ``db`` (judgments are appended there)."""
    from parity.store.segments import segment_root

    return segment_root(db)
