"""Write the three notebooks of this folder, without outputs: ``python notebooks/build.py``.

Edit the cells here, not in Jupyter, so the committed notebooks stay output-free and reviewable.
Every notebook starts with a ``parameters`` cell (papermill) reading the store path and the run
from ``PARITY_DB`` / ``PARITY_RUN``, says in its first output which run it reads, and refuses a run
that did not finish (``PARITY_ALLOW_INCOMPLETE=1`` reads it anyway). They use only the public
``parity.evals`` API (and its pure modules) and DuckDB SQL over the documented views of
``parity.store.store.connect``. ``tests/report/test_notebooks.py`` runs them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMETERS = """\
import os

DB = os.environ.get("PARITY_DB", "parity.duckdb")
RUN = os.environ.get("PARITY_RUN", "latest")  # a run (parity ls lists them), or latest: the newest one
ALLOW_INCOMPLETE = os.environ.get("PARITY_ALLOW_INCOMPLETE") == "1"  # also read a stopped or failed run"""

# Notebook 01 is about the recordings: by default every recorded exchange, not one run's selection.
EXPLORE_PARAMETERS = PARAMETERS.replace(
    'os.environ.get("PARITY_RUN", "latest")  # a run (parity ls lists them), or latest: the newest one',
    'os.environ.get("PARITY_RUN", "all")  # all: every recorded exchange; a run or latest: the ones it replayed',
)

SETUP = """\
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from parity.store.store import connect

pl.Config.set_tbl_rows(30)
pl.Config.set_tbl_cols(20)
pl.Config.set_fmt_str_lengths(60)
con = connect(DB)


def sql(query: str, **params) -> pl.DataFrame:
    \"\"\"Run DuckDB SQL over the store's views (exchanges, results, attempts, runs) as a polars frame.\"\"\"
    return pl.from_arrow(con.sql(query, params=params or None).arrow().read_all())"""

PICK_RUN = """\
class RunRefused(Exception):
    \"\"\"The run asked for is not in the store, or did not finish (set PARITY_ALLOW_INCOMPLETE=1 to read it).\"\"\"


# Every run of the store, newest first: its state from run_events (as parity ls shows it), its last note
# and how many providers answered in it.
RUNS = sql(
    \"\"\"
    WITH res AS (SELECT run_id, max(started_at) AS last_sent,
                        count(DISTINCT provider) FILTER (WHERE provider <> 'recorded') AS providers
                 FROM results GROUP BY run_id),
         notes AS (SELECT run_id, arg_max(note, "at") AS note FROM run_events GROUP BY run_id)
    SELECT run_id, runs.state, runs.started_at, runs.finished_at, res.last_sent,
           coalesce(res.providers, 0) AS providers, notes.note
    FROM res FULL JOIN runs USING (run_id) LEFT JOIN notes USING (run_id)
    ORDER BY coalesce(runs.started_at, res.last_sent) DESC NULLS LAST
    \"\"\"
)
UNFINISHED = {
    "started": "did not finish (it is still running, or was killed)",
    "resumed": "did not finish (it is still running, or was killed)",
    "stopped": "stopped before the end",
    "failed": "failed",
}


def pick_run(run: str, allow_incomplete: bool = False) -> str:
    \"\"\"The run to read (``latest``: the newest), after saying which it is; RunRefused for one that did not finish.\"\"\"
    if RUNS.is_empty():
        raise RunRefused(f"{DB} holds no replay run yet: replay one first (parity replay --run NAME ...)")
    rows = RUNS if run == "latest" else RUNS.filter(pl.col("run_id") == run)
    if rows.is_empty():
        raise RunRefused(f"no run {run!r} in {DB}; its runs, newest first: {', '.join(RUNS['run_id'].head(10))}")
    r = rows.row(0, named=True)
    if r["state"] in UNFINISHED and not allow_incomplete:
        finished = RUNS.filter(pl.col("state") == "finished")["run_id"].to_list()
        other = f"set PARITY_RUN to a finished run ({', '.join(finished[:5])})" if finished else "no run of this store finished"
        raise RunRefused(
            f"run {r['run_id']} {UNFINISHED[r['state']]}" + (f" ({r['note']})" if r["note"] else "")
            + f". Resume it with parity replay --run {r['run_id']} --resume, {other}, "
            "or set PARITY_ALLOW_INCOMPLETE=1 to read it as it is."
        )
    when = r["finished_at"] or r["last_sent"]
    when = f"{when:%Y-%m-%d %H:%M} UTC" if when else "at an unknown time"
    print(f"run {r['run_id']}: {r['state'] or 'state not recorded'} {when}, {r['providers']} providers (store {DB})")
    return r["run_id"]"""

RESOLVE_RUN = PICK_RUN + "\n\n\nRUN = pick_run(RUN, ALLOW_INCOMPLETE)"

EXPLORE_RESOLVE_RUN = (
    PICK_RUN
    + """


if RUN == "all":
    RUN = None
    print(f"every recorded exchange of {DB} (set PARITY_RUN to a run to see only the exchanges it replayed)")
else:
    RUN = pick_run(RUN, ALLOW_INCOMPLETE)"""
)

EXPLORE = [
    new_markdown_cell(
        "# Explore the recordings\n\n"
        "What did `parity record` capture? Endpoints and models, traffic over time, status codes and errors, "
        "recorded latency and token counts. Set `PARITY_DB` (and optionally `PARITY_RUN` to look only at the "
        "exchanges a replay run selected) before starting Jupyter, or edit the next cell."
    ),
    new_code_cell(EXPLORE_PARAMETERS, metadata={"tags": ["parameters"]}),
    new_code_cell(SETUP),
    new_code_cell(EXPLORE_RESOLVE_RUN),
    new_code_cell(
        """\
# Restrict to the exchanges of one replay run when RUN is set.
scope = "TRUE" if RUN is None else "id IN (SELECT exchange_id FROM results WHERE run_id = $run)"
params = {} if RUN is None else {"run": RUN}
ex = sql(
    f\"\"\"
    SELECT id, recorded_at, endpoint, model, stream, status, error_type, ttft_ms, latency_ms,
           prompt_tokens, completion_tokens, user_agent, tag
    FROM exchanges WHERE {scope}
    \"\"\",
    **params,
)
print(f"{ex.height} exchanges from {ex['recorded_at'].min()} to {ex['recorded_at'].max()}")"""
    ),
    new_markdown_cell("## Endpoints and models"),
    new_code_cell(
        """\
ex.group_by("endpoint", "model").agg(
    pl.len().alias("n"),
    (pl.col("status") == 200).mean().round(3).alias("ok_rate"),
    pl.col("stream").mean().round(2).alias("stream_share"),
    pl.col("prompt_tokens").median().alias("prompt_p50"),
    pl.col("completion_tokens").median().alias("completion_p50"),
).sort("n", descending=True)"""
    ),
    new_markdown_cell("## Traffic over time"),
    new_code_cell(
        """\
per_min = (
    ex.filter(pl.col("recorded_at").is_not_null())
    .group_by(pl.col("recorded_at").dt.truncate("1m").alias("minute"))
    .len()
    .sort("minute")
)
fig, ax = plt.subplots(figsize=(10, 3))
ax.bar(per_min["minute"].to_list(), per_min["len"].to_list(), width=1 / 1440, color="#0072B2")
ax.set_ylabel("requests per minute")
ax.set_title("Recorded traffic")
fig.autofmt_xdate()
plt.show()"""
    ),
    new_markdown_cell("## Status codes and errors"),
    new_code_cell(
        """\
ex.group_by("status", "error_type").len().sort("len", descending=True)"""
    ),
    new_markdown_cell(
        "## Recorded latency\n\nTime to first token (streamed requests) and end-to-end latency of the production answers."
    ),
    new_code_cell(
        """\
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for ax, col, label in zip(axes, ["ttft_ms", "latency_ms"], ["time to first token (ms)", "end-to-end (ms)"]):
    v = ex.filter(pl.col("status") == 200)[col].drop_nulls().to_numpy()
    if len(v):
        ax.hist(v, bins=np.logspace(np.log10(max(v.min(), 1)), np.log10(v.max() + 1), 40), color="#4a4a4a")
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("requests")
plt.tight_layout()
plt.show()"""
    ),
    new_markdown_cell("## Prompt and completion lengths"),
    new_code_cell(
        """\
tok = ex.filter(pl.col("prompt_tokens").is_not_null() & pl.col("completion_tokens").is_not_null())
fig, ax = plt.subplots(figsize=(6, 4))
for (endpoint,), g in tok.partition_by(["endpoint"], as_dict=True).items():
    ax.scatter(g["prompt_tokens"] + 1, g["completion_tokens"] + 1, s=10, alpha=0.6, label=endpoint)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("prompt tokens")
ax.set_ylabel("completion tokens")
ax.legend(fontsize=8)
plt.show()"""
    ),
    new_markdown_cell("## Who sends the traffic"),
    new_code_cell("""ex.group_by("user_agent", "tag").len().sort("len", descending=True).head(15)"""),
]

COMPARE = [
    new_markdown_cell(
        "# Compare providers\n\n"
        "Every provider of a replay run against the baseline (the recorded production answers): latency "
        "distributions and paired differences, reliability, answer quality and the compatibility scorecard. "
        "The figures come from the public `parity.evals` API; the plots from SQL over the store's views."
    ),
    new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
    new_code_cell(
        SETUP + "\nfrom matplotlib.ticker import FuncFormatter, NullFormatter\n\nfrom parity import evals"
    ),
    new_code_cell(RESOLVE_RUN),
    new_code_cell(
        """\
ev = evals.evaluate(con, RUN)  # baseline: "recorded"; every evals function takes the store path or `con`
BASELINE = ev.baseline
ev.summary.select(
    "provider", "n_cells", "error_rate", "ttft_p50_ms", "ttft_median_diff_ms", "ttft_p_adjusted", "e2e_p95_delta_pct",
    "significant_slower", "significant_faster", "cost_month_usd", "cost_delta_pct", "quality_score", "compat_failures",
)"""
    ),
    new_markdown_cell("What each figure means (`evals.FIGURES`):"),
    new_code_cell(
        """\
for name in ("ttft_median_diff_ms", "ttft_p_adjusted", "e2e_p95_delta_pct", "significant_slower", "quality_score"):
    print(f"{name:22} {evals.FIGURES[name]}")"""
    ),
    new_markdown_cell("## Latency distributions"),
    new_code_cell(
        """\
cells = sql(
    \"\"\"SELECT provider, exchange_id, "repeat", ttft_ms, latency_ms AS e2e_ms
       FROM results WHERE run_id = $run AND status = 200\"\"\",
    run=RUN,
)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, col, label in zip(axes, ["ttft_ms", "e2e_ms"], ["time to first token (ms)", "end-to-end latency (ms)"]):
    for (provider,), g in sorted(cells.partition_by(["provider"], as_dict=True).items()):
        v = np.sort(g[col].drop_nulls().to_numpy())
        if len(v):
            ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=f"{provider} (n={len(v)})",
                    color="#4a4a4a" if provider == BASELINE else None, linewidth=2)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)
    ax.set_ylabel("share of requests")
    ax.axhline(0.5, color="#999", linestyle=":")
    ax.axhline(0.95, color="#999", linestyle=":")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()"""
    ),
    new_markdown_cell(
        "## Paired differences\n\nEach request's latency minus the baseline's latency for the same exchange: the distribution behind the paired test."
    ),
    new_code_cell(
        """\
paired = sql(
    \"\"\"
    WITH b AS (SELECT exchange_id, ttft_ms AS ttft_b, latency_ms AS e2e_b FROM results
               WHERE run_id = $run AND provider = $base AND status = 200 AND "repeat" = 0)
    SELECT r.provider, r.ttft_ms - b.ttft_b AS ttft_diff, r.latency_ms - b.e2e_b AS e2e_diff
    FROM results r JOIN b USING (exchange_id)
    WHERE r.run_id = $run AND r.provider <> $base AND r.status = 200
    \"\"\",
    run=RUN,
    base=BASELINE,
)
fig, ax = plt.subplots(figsize=(10, 3.5))
groups = sorted(paired.partition_by(["provider"], as_dict=True).items())
data = [g["e2e_diff"].drop_nulls().to_numpy() for _, g in groups]
if groups:
    ax.boxplot(data, orientation="horizontal", showfliers=False)
    ax.set_yticks(range(1, len(groups) + 1), [k[0] for k, _ in groups])
ax.axvline(0, color="#333")
ax.set_xlabel("end-to-end latency minus baseline's, same request (ms)")
plt.show()
paired.group_by("provider").agg(pl.col("ttft_diff").median(), pl.col("e2e_diff").median(), pl.len()).sort("provider")"""
    ),
    new_markdown_cell("## Latency percentiles with confidence intervals (per endpoint and model)"),
    new_code_cell(
        """\
ev.latency.filter(pl.col("metric").is_in(["ttft_ms", "e2e_ms"])).select(
    "provider", "endpoint", "model", "metric", "n", "p50", "p50_ci_low", "p50_ci_high", "p95", "p95_delta_pct",
    "median_diff", "p_adjusted",
).sort("metric", "endpoint", "model", "provider")"""
    ),
    new_markdown_cell("## Reliability"),
    new_code_cell(
        """\
ev.reliability.group_by("provider").agg(
    pl.col("n_cells").sum(), pl.col("n_ok").sum(),
    (1 - pl.col("n_ok").sum() / pl.col("n_cells").sum()).round(4).alias("error_rate"),
).sort("provider")"""
    ),
    new_markdown_cell("## Quality against the baseline"),
    new_code_cell(
        """\
quality = ev.summary.filter(~pl.col("is_baseline")).select(
    "provider", "quality_score", "text_similarity_mean", "exact_match_rate", "finish_reason_agreement",
    "json_valid_rate", "tool_call_valid_rate", "new_refusal_rate",
)
# parts where 1 is best (new_refusal_rate is shown in the table only)
parts = [c for c in quality.columns[2:-1] if quality[c].null_count() < quality.height]
fig, ax = plt.subplots(figsize=(10, 3.5))
width = 0.8 / max(quality.height, 1)
for i, row in enumerate(quality.iter_rows(named=True)):
    ax.bar(np.arange(len(parts)) + i * width, [row[p] or 0 for p in parts], width, label=row["provider"])
ax.set_xticks(np.arange(len(parts)) + 0.4 - width / 2, parts, rotation=20, ha="right")
ax.set_ylim(0, 1)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
quality"""
    ),
    new_markdown_cell(
        "## Compatibility scorecard\n\n`evals.compat` returns one row per provider and check; pivoted here to one column per provider."
    ),
    new_code_cell(
        """\
card = ev.compat.with_columns(
    pl.when(pl.col("result") == "n/a").then(pl.lit("n/a"))
    .otherwise(pl.format("{} {}/{}", pl.col("result"), pl.col("passed"), pl.col("passed") + pl.col("failed")))
    .alias("cell")
)
card.pivot(on="provider", index="check", values="cell")"""
    ),
    new_code_cell(
        """\
# Example exchanges behind the failures, with the provider's answer
fails = card.filter(pl.col("result") == "fail").explode("examples").drop_nulls("examples")
ids = fails["examples"].unique().to_list()
if ids:
    display(sql(
        \"\"\"SELECT exchange_id, provider, status, left(CAST(response_body AS VARCHAR), 200) AS response
           FROM results WHERE run_id = $run AND list_contains($ids, exchange_id) ORDER BY exchange_id, provider\"\"\",
        run=RUN, ids=ids,
    ))"""
    ),
]

COST = [
    new_markdown_cell(
        "# Cost projection\n\n"
        "What the recorded traffic would cost per month on each provider, where a flat per-request price beats a "
        "per-token one, and how the answer moves with traffic volume and prompt length. Prices come from the "
        "run's config (the providers file at replay time). $/month needs a basis: `MONTHLY_REQUESTS` (N x the "
        "mean cost per recorded request) or a recording spanning at least 24 hours; otherwise the cost of "
        "1,000 requests is shown."
    ),
    new_code_cell(
        PARAMETERS
        + '\nMONTHLY_REQUESTS = float(os.environ["PARITY_MONTHLY_REQUESTS"]) if os.environ.get("PARITY_MONTHLY_REQUESTS") else None',
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(SETUP + "\nimport json\n\nfrom parity import evals\nfrom parity.evals.metrics import spend"),
    new_code_cell(RESOLVE_RUN),
    new_markdown_cell("## The run's cost figures (`evals.cost`, `evals.breakeven`)"),
    new_code_cell(
        """\
ev = evals.evaluate(con, RUN, questions=("cost",), monthly_requests=MONTHLY_REQUESTS)
print("$/month basis:", ev.month.basis or f"none ({ev.month.note})")
ev.summary.select(
    "provider", "n_success", "cost_total_usd", "cost_priced_share", "cost_per_1k_usd", "cost_month_usd",
    "cost_delta_pct", "cost_delta_basis", "cost_estimated_share",
)"""
    ),
    new_code_cell("""evals.breakeven(con, RUN)"""),
    new_markdown_cell(
        "## What-if: every arm's price on the recorded traffic\n\n"
        "Cost = prompt × input price + completion × output price + per-request price, for each recorded request, "
        "at the price the arm charges for the model the request maps to (its price for that model, else its "
        "default: `spend.resolve_price`); scaled to a month by the same basis as above (none: the cost of 1,000 "
        "requests instead). An arm with no price for any recorded model is listed with `no price`."
    ),
    new_code_cell(
        """\
config = json.loads(sql("SELECT CAST(config AS VARCHAR) AS c FROM runs WHERE run_id = $run", run=RUN)["c"][0] or "{}")
tables = spend.pricing_map(config)
arms = ["recorded", *(config.get("providers") or {})]
traffic = sql(
    \"\"\"SELECT recorded_at, model, coalesce(prompt_tokens, 0) AS p, coalesce(completion_tokens, 0) AS c
       FROM exchanges WHERE id IN (SELECT exchange_id FROM results WHERE run_id = $run) AND status = 200\"\"\",
    run=RUN,
)
by_model = traffic.group_by("model").agg(pl.len().alias("n"), pl.col("p").sum(), pl.col("c").sum()).sort("n", descending=True)
# requests a month / requests recorded (parity.evals.metrics.spend.month_basis); no basis: per 1,000 requests
month = (ev.month.requests or 1000) / max(traffic.height, 1)
per = "cost_month_usd" if ev.month.requests else "cost_per_1k_usd"


def per_request(price, p, c):
    \"\"\"USD of one request (arrays work too) at a parity Pricing.\"\"\"
    return (p * price.input_per_1m + c * price.output_per_1m) / 1e6 + price.per_request


def arm_cost(arm: str, prompt_scale: float = 1.0) -> tuple[float | None, float]:
    \"\"\"(USD of the recorded requests the arm has a price for, or None; the share of requests priced).\"\"\"
    total, priced = 0.0, 0
    for m in by_model.iter_rows(named=True):
        price = spend.resolve_price(tables, config, arm, m["model"]) if m["model"] else None
        if price is not None:
            tokens = m["p"] * prompt_scale * price.input_per_1m + m["c"] * price.output_per_1m
            total += tokens / 1e6 + m["n"] * price.per_request
            priced += m["n"]
    return (total if priced else None), priced / max(traffic.height, 1)


rows = []
for arm in arms:
    usd, share = arm_cost(arm)
    rows.append({"arm": arm, "price": "no price" if usd is None else f"{share:.0%} of requests priced",
                 "requests": traffic.height, "cost_selection_usd": usd, per: None if usd is None else usd * month})
whatif = pl.DataFrame(rows, schema={"arm": pl.Utf8, "price": pl.Utf8, "requests": pl.Int64,
                                    "cost_selection_usd": pl.Float64, per: pl.Float64})
whatif.sort(per, nulls_last=True)"""
    ),
    new_markdown_cell("## Monthly cost against traffic volume"),
    new_code_cell(
        """\
volume = np.array([0.25, 0.5, 1, 2, 4, 8])
fig, ax = plt.subplots(figsize=(8, 4))
for row in whatif.drop_nulls(per).iter_rows(named=True):
    ax.plot(volume, row[per] * volume, marker="o", label=row["arm"])
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("traffic volume (x the month's)" if per == "cost_month_usd" else "thousands of requests")
ax.set_ylabel("USD per month" if per == "cost_month_usd" else "USD per 1,000 requests")
ax.legend(fontsize=8)
plt.show()
if whatif[per].null_count():
    print("not drawn (no price):", ", ".join(whatif.filter(pl.col(per).is_null())["arm"]))"""
    ),
    new_markdown_cell(
        "## Cost per request against prompt length\n\nFor the most frequent recorded model. Where the per-token "
        "line crosses the flat per-request line is the break-even prompt length."
    ),
    new_code_cell(
        """\
model = by_model["model"][0] if by_model.height else None
c_med = float(traffic["c"].median() or 0)
x = np.logspace(0, np.log10(max(float(traffic["p"].max() or 10), 10) * 4), 100)
fig, ax = plt.subplots(figsize=(9, 4))
for arm in arms:
    price = spend.resolve_price(tables, config, arm, model) if model else None
    if price is not None:
        ax.plot(x, per_request(price, x, c_med) * 1000, label=arm)
ax.vlines(traffic["p"] + 1, 0, 0.05, transform=ax.get_xaxis_transform(), color="#999", label="recorded prompts")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel(f"prompt tokens of a {model} request (completion fixed at the median, {c_med:.0f})")
ax.set_ylabel("USD per 1,000 requests")
ax.legend(fontsize=8)
plt.show()"""
    ),
    new_markdown_cell("## Sensitivity: prompts grow by half"),
    new_code_cell(
        """\
sensitivity = []
for arm in arms:
    today, grown = arm_cost(arm)[0], arm_cost(arm, 1.5)[0]
    sensitivity.append({"arm": arm, "month_today": None if today is None else today * month,
                        "month_prompts_x1_5": None if grown is None else grown * month})
pl.DataFrame(sensitivity, schema={"arm": pl.Utf8, "month_today": pl.Float64, "month_prompts_x1_5": pl.Float64}).with_columns(
    (pl.col("month_prompts_x1_5") / pl.col("month_today") - 1).alias("change")
).sort("month_today", nulls_last=True)"""
    ),
]

NOTEBOOKS = {
    "01_explore_recordings.ipynb": EXPLORE,
    "02_compare_providers.ipynb": COMPARE,
    "03_cost_projection.ipynb": COST,
}


def build(folder: Path = HERE) -> list[Path]:
    """Write every notebook (no outputs) into ``folder``; returns the paths."""
    out = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for i, c in enumerate(nb.cells):
            c["id"] = f"{name[:2]}-{i:02d}"  # stable ids: rebuilding gives identical files
        path = folder / name
        nbformat.write(nb, path)
        out.append(path)
    return out


if __name__ == "__main__":
    for p in build():
        print("wrote", p)
