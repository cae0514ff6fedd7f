"""What the report shows beyond the summary figures: per-request samples for the charts, the tests
behind the verdict colours of error rate and cost, the worst answer disagreements and the
request/response snippets of the appendix. Read-only, through ``parity.evals.load``'s queries.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import duckdb
import numpy as np
import polars as pl
from scipy import stats as sps

from parity.evals import load
from parity.evals.api import Evaluation
from parity.evals.errors import EvalError
from parity.evals.metrics import answers, reliability, spend, stats, timing
from parity.evals.metrics.outcome import succeeded
from parity.evals.summarise import rows as frame_rows

ALPHA = 0.05
TEXT_LIMIT = 3000  # characters of an answer shown (and diffed) side by side
SNIPPET_LIMIT = 1600  # characters of a request / response body in the appendix
MAX_SCATTER = 600  # request dots per provider in the cost chart


@dataclass
class Samples:
    """Per-request data for the charts and the verdict tests of one run."""

    metrics: pl.DataFrame  # per cell: timing metrics, cold flag, tokens, status
    itl: pl.DataFrame  # per sampled streamed cell: provider, itl_ms list
    cold: pl.DataFrame  # per provider: cold / warm medians and the one-sided p
    costs: pl.DataFrame | None  # per cell: cost_usd (recomputed from the run's pricing)
    tests: dict[str, dict[str, dict]] = field(default_factory=dict)  # provider -> name -> test result
    disagreements: list[dict] = field(default_factory=list)
    appendix: list[dict] = field(default_factory=list)
    run_info: dict = field(default_factory=dict)
    traffic: dict = field(default_factory=dict)


@dataclass
class Report:
    """An evaluation plus everything the report draws from it."""

    ev: Evaluation
    samples: Samples
    idle_s: float = 60.0
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @cached_property
    def summary(self) -> list[dict]:
        """Summary rows, the baseline first."""
        rs = frame_rows(self.ev.summary)
        return sorted(rs, key=lambda r: (r["provider"] != self.ev.baseline, r["provider"]))

    @property
    def candidates(self) -> list[dict]:
        return [r for r in self.summary if r["provider"] != self.ev.baseline]

    @property
    def base_row(self) -> dict:
        return next((r for r in self.summary if r["provider"] == self.ev.baseline), {})


def gather(
    con: duckdb.DuckDBPyConnection,
    ev: Evaluation,
    idle_s: float = 60.0,
    itl_sample: int = 10000,
    worst: int = 3,
) -> Samples:
    """Load everything the report draws for ``ev``'s run (``worst`` disagreements per provider)."""
    run, base = ev.run, ev.baseline
    cells = load.load_cells(con, run)
    metrics = reliability.mark_cold(timing.request_metrics(cells), idle_s)
    costs = None
    try:
        tables = spend.pricing_map(ev.config)
        costs = spend.request_costs(cells, spend.price_frame(tables, cells), load.load_usage_extras(con, run))
    except EvalError:  # invalid pricing: the cost figures say so; no cost chart
        costs = None
    s = Samples(
        metrics=metrics,
        itl=load.load_itl(con, run, itl_sample),
        cold=reliability.cold_start(metrics, ["provider"], idle_s),
        costs=costs,
    )
    s.tests = verdict_tests(metrics, costs, base)
    checked = answers.answer_checks(load.load_outputs(con, run))
    s.disagreements = worst_disagreements(con, run, answers.compare_cells(checked, base), base, worst)
    s.run_info = _one_row(con, "SELECT * EXCLUDE (config) FROM runs WHERE run_id = $run", {"run": run})
    s.traffic = _one_row(
        con,
        """SELECT min(recorded_at) AS first, max(recorded_at) AS last, count(*) AS n FROM exchanges
           WHERE id IN (SELECT DISTINCT exchange_id FROM results WHERE run_id = $run)""",
        {"run": run},
    )
    return s


def _one_row(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> dict:
    df = load.frame(con, sql, params)
    return df.row(0, named=True) if df.height else {}


def _bonferroni(ps: dict[str, float]) -> tuple[dict[str, float], int]:
    """Adjusted p per key and the family size (see ``stats.bonferroni``)."""
    keys = list(ps)
    adj, m = stats.bonferroni(np.array([ps[k] for k in keys], dtype=float))
    return {k: float(a) for k, a in zip(keys, adj, strict=True)}, m


def verdict_tests(
    metrics: pl.DataFrame, costs: pl.DataFrame | None, baseline: str
) -> dict[str, dict[str, dict]]:
    """Per candidate: exact McNemar test of failures and a test of total cost (ratio of sums), both
    paired with the baseline's answer to the same exchange; p-values Bonferroni-adjusted over the
    providers, and the cost's interval at the same adjusted level, so its colour is exactly "the
    family-wise interval excludes 0"."""
    out: dict[str, dict[str, dict]] = {}
    base_ok = (
        metrics.filter(pl.col("provider") == baseline)
        .sort("repeat")
        .unique("exchange_id", keep="first")
        .select("exchange_id", succeeded().fill_null(False).alias("ok_b"))
    )
    err_p: dict[str, float] = {}
    for (prov,), g in (
        metrics.filter(pl.col("provider") != baseline).partition_by(["provider"], as_dict=True).items()
    ):
        j = g.select("exchange_id", succeeded().fill_null(False).alias("ok")).join(base_ok, on="exchange_id")
        worse = int((~j["ok"] & j["ok_b"]).sum())
        better = int((j["ok"] & ~j["ok_b"]).sum())
        p = float(sps.binomtest(worse, worse + better, 0.5).pvalue) if worse + better else 1.0
        err_p[prov] = p
        out.setdefault(prov, {})["errors"] = {
            "n_pairs": j.height,
            "worse": worse,
            "better": better,
            "p_value": p,
        }
    adj, _ = _bonferroni(err_p)
    for prov, p in adj.items():
        t = out[prov]["errors"]
        t["p_adjusted"] = p
        t["tone"] = _tone(p, t["better"] - t["worse"])
    if costs is None:
        return out
    ok = costs.filter(succeeded() & pl.col("cost_usd").is_not_null())
    per = ok.group_by("provider", "exchange_id").agg(pl.col("cost_usd").mean().alias("c"))
    b = per.filter(pl.col("provider") == baseline).select("exchange_id", pl.col("c").alias("c_b"))
    cost_p: dict[str, float] = {}
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (prov,), g in (
        per.filter(pl.col("provider") != baseline)
        .join(b, on="exchange_id")
        .partition_by(["provider"], as_dict=True)
        .items()
    ):
        pairs[prov] = (g["c"].to_numpy(), g["c_b"].to_numpy())
        r = cost_ratio(*pairs[prov])
        if r is not None:
            cost_p[prov] = r["p_value"]
            out.setdefault(prov, {})["cost"] = r
    adj, m = _bonferroni(cost_p)
    for prov, p in adj.items():
        t = out[prov]["cost"]
        fw = cost_ratio(*pairs[prov], alpha=ALPHA / max(m, 1))
        t |= {
            "p_adjusted": p,
            "adj_ci_level": 1 - ALPHA / max(m, 1),
            "delta_pct_adj_ci_low": fw["delta_pct_ci_low"],
            "delta_pct_adj_ci_high": fw["delta_pct_ci_high"],
            "adjustment": "bonferroni",
            "tone": _tone(p, -t["delta_pct"]),
        }
    return out


def cost_ratio(c: np.ndarray, c_b: np.ndarray, alpha: float = ALPHA) -> dict | None:
    """Total cost over the same exchanges relative to the baseline's: the ratio of sums with a
    delta-method 1 - alpha CI and the two-sided z-test of "no change" it inverts (the interval
    excludes 0 exactly when p < alpha; None with < 3 pairs)."""
    n = len(c)
    if n < 3 or c_b.sum() <= 0:
        return None
    ratio = c.sum() / c_b.sum()
    z = c - ratio * c_b  # linearisation of the ratio estimator
    se = float(np.std(z, ddof=1) / (np.sqrt(n) * c_b.mean()))
    if se > 0:
        p = float(2 * sps.norm.sf(abs(ratio - 1) / se))
    else:
        p = 0.0 if ratio != 1 else 1.0
    half = float(sps.norm.ppf(1 - alpha / 2)) * se
    return {
        "n_pairs": n,
        "delta_pct": (ratio - 1) * 100,
        "delta_pct_ci_low": (ratio - half - 1) * 100,
        "delta_pct_ci_high": (ratio + half - 1) * 100,
        "p_value": p,
    }


def _tone(p: float | None, gain: float | None) -> str:
    """better / worse when significant (``gain`` > 0 means better), else same."""
    if p is None or gain is None or not p < ALPHA or gain == 0:
        return "same"
    return "better" if gain > 0 else "worse"


_TOKENS = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def side_by_side(a: str, b: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Word-level diff as (op, text) segments: left has eq/del, right has eq/ins. Texts stay raw;
    the template escapes them."""
    ta, tb = _TOKENS.findall(a), _TOKENS.findall(b)
    left: list[tuple[str, str]] = []
    right: list[tuple[str, str]] = []

    def put(side: list[tuple[str, str]], op: str, text: str) -> None:
        if not text:
            return
        if side and side[-1][0] == op:
            side[-1] = (op, side[-1][1] + text)
        else:
            side.append((op, text))

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if tag == "equal":
            put(left, "eq", "".join(ta[i1:i2]))
            put(right, "eq", "".join(tb[j1:j2]))
        else:
            put(left, "del", "".join(ta[i1:i2]))
            put(right, "ins", "".join(tb[j1:j2]))
    return left, right


def _clip(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit:,} more characters]"


def worst_disagreements(
    con: duckdb.DuckDBPyConnection, run: str, compared: pl.DataFrame, baseline: str, per_provider: int
) -> list[dict]:
    """The ``per_provider`` answers least similar to the baseline's, per provider, with a word diff."""
    if per_provider <= 0 or compared.is_empty():
        return []
    worst = (
        compared.filter(pl.col("text_similarity").is_not_null())
        .sort("text_similarity", "exchange_id", "repeat")
        .group_by("provider", maintain_order=True)
        .head(per_provider)
        .sort("provider", "text_similarity")
    )
    if worst.is_empty():
        return []
    prompts = load.load_prompts(con, run, baseline)
    prompt = dict(zip(prompts["exchange_id"].to_list(), prompts["prompt"].to_list(), strict=True))
    out = []
    for r in worst.iter_rows(named=True):
        a, b = _clip(r["text_b"], TEXT_LIMIT), _clip(r["text"], TEXT_LIMIT)
        left, right = side_by_side(a, b)
        out.append(
            {
                "provider": r["provider"],
                "exchange_id": r["exchange_id"],
                "repeat": r["repeat"],
                "endpoint": r["endpoint"],
                "model": r["model"],
                "similarity": r["text_similarity"],
                "prompt": _clip(_prompt_text(prompt.get(r["exchange_id"])), 600),
                "baseline_segments": left,
                "provider_segments": right,
            }
        )
    return out


def _prompt_text(raw: str | None) -> str:
    """The last user message (or the prompt / input) of a request as plain text."""
    if not raw:
        return ""
    try:
        v = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw
    if isinstance(v, list):
        for m in reversed(v):
            if isinstance(m, dict) and m.get("role") in ("user", None):
                c = m.get("content")
                if isinstance(c, list):
                    c = " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
                return str(c)
        return json.dumps(v, ensure_ascii=False)
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _shrink(v: object, depth: int = 0) -> object:
    """Long number lists (embeddings) and long strings shortened, for a readable snippet."""
    if isinstance(v, list):
        if len(v) > 8 and all(isinstance(x, int | float) for x in v):
            return [*v[:6], f"… {len(v) - 6} more numbers"]
        return [_shrink(x, depth + 1) for x in v[:20]] + (
            [f"… {len(v) - 20} more items"] if len(v) > 20 else []
        )
    if isinstance(v, dict):
        return {k: _shrink(x, depth + 1) for k, x in v.items()}
    if isinstance(v, str) and len(v) > 800:
        return v[:800] + f" … [{len(v) - 800:,} more characters]"
    return v


def snippet(text: str | None, limit: int = SNIPPET_LIMIT) -> str:
    """A JSON body pretty-printed and shortened (or the raw text, shortened)."""
    if text is None:
        return ""
    try:
        text = json.dumps(_shrink(json.loads(text)), indent=1, ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        pass
    return _clip(text, limit)


def appendix(con: duckdb.DuckDBPyConnection, run: str, ids: list[str], baseline: str) -> list[dict]:
    """For each exchange id: the request and every arm's first answer, as short snippets (ids not in
    the run are left out)."""
    if not ids:
        return []
    res = load.frame(
        con,
        """
        SELECT exchange_id, provider, "repeat", endpoint, coalesce(recorded_model, model) AS model,
               model AS sent_model, status, error_type, error_message, stream,
               CAST(response_body AS VARCHAR) AS response_body, left(response_raw, 4000) AS response_raw,
               CAST(sent_body AS VARCHAR) AS sent_body
        FROM results WHERE run_id = $run AND list_contains($ids, exchange_id)
        QUALIFY row_number() OVER (PARTITION BY exchange_id, provider ORDER BY "repeat") = 1
        """,
        {"run": run, "ids": ids},
    )
    exch = load.frame(
        con,
        """SELECT id, recorded_at, CAST(request_body AS VARCHAR) AS request_body, request_content_type,
                  request_bytes FROM exchanges WHERE list_contains($ids, id)""",
        {"ids": ids},
    )
    rec = {r["id"]: r for r in exch.iter_rows(named=True)}
    by_id: dict[str, list[dict]] = {}
    for r in res.iter_rows(named=True):
        by_id.setdefault(r["exchange_id"], []).append(r)
    out = []
    for eid in ids:
        arms = by_id.get(eid)
        if not arms:
            continue
        arms.sort(key=lambda r: (r["provider"] != baseline, r["provider"]))
        e = rec.get(eid) or {}
        body = e.get("request_body") or next((a["sent_body"] for a in arms if a["sent_body"]), None)
        if body is None:
            kind = e.get("request_content_type") or "not JSON"
            request = f"(request body {kind}, {e.get('request_bytes') or '?'} bytes: not shown)"
        else:
            request = snippet(body)
        out.append(
            {
                "exchange_id": eid,
                "endpoint": arms[0]["endpoint"],
                "model": arms[0]["model"],
                "recorded_at": e.get("recorded_at"),
                "request": request,
                "answers": [
                    {
                        "provider": a["provider"],
                        "status": a["status"],
                        "error": " ".join(x for x in (a["error_type"], a["error_message"]) if x),
                        "sent_model": a["sent_model"],
                        "response": snippet(a["response_body"] or a["response_raw"]),
                    }
                    for a in arms
                ],
            }
        )
    return out
