"""Compatibility scorecard: the seeds' checklist turned into per-cell pass / fail / not-applicable checks.

Every check is a nullable boolean per cell (True pass, False fail, null not applicable); the
scorecard counts them per provider. A check fails for a provider as soon as one cell fails it;
``pass_rate`` says how often. Per-model and per-provider checks (models listed, cold start) count
models and providers instead of cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from parity.evals.load import cell_key
from parity.evals.metrics import groups
from parity.evals.metrics.compat_checks import (
    ALPHA,
    BRANCHED_CODES,
    CATALOGUE,
    CELL_CHECKS,
    CHECKS,
    COLD_START_MS,
    PRODUCTION_ARM,
    RATE_LIMIT_CODES,
)
from parity.evals.metrics.outcome import succeeded
from parity.replayer.facts import COLUMNS as FACTS
from parity.replayer.facts import ERROR_KEYS

# (the checks, what they protect and their severity: parity.evals.metrics.compat_checks)
_CLIENT_TYPES = ["invalid_request_error", "authentication_error", "permission_error", "not_found_error"]


# The load_cells columns the per-cell checks read when a cell carries chk_* facts.
FACT_INPUTS = (
    *("exchange_id", "provider", "repeat", "endpoint", "stream", "status", "error_type", "provider_model"),
    "sdk_valid",
    *("sdk_error", "stream_complete", "tokens_estimated", "completion_tokens", "finish_reason", *FACTS),
)
_KEYS = ["exchange_id", "provider", "repeat"]
# the wire facts, read as they are
_WIRE = ("chk_done", "chk_unnamed_events", "chk_usage_choices", "chk_chunk_keys_missing", "chk_error_keys")


def _fact_rows(cells: pl.DataFrame) -> pl.DataFrame:
    """The scorecard columns, read off each cell's ``chk_*`` facts (``parity.replayer.facts``)."""
    return cells.select(
        *[c for c in FACT_INPUTS if c not in FACTS],
        (pl.col("chk_tool_calls").fill_null(0) > 0).alias("has_calls"),
        pl.col("chk_tool_args_ok").alias("tool_args_ok"),
        pl.col("chk_n_choices").cast(pl.Int64).alias("n_choices"),
        pl.col("chk_usage").alias("has_usage"),
        pl.col("chk_error").alias("has_error"),
        pl.col("chk_max_tokens").cast(pl.Int64).alias("max_tokens"),
        pl.col("chk_n").cast(pl.Int64).alias("n"),
        pl.col("chk_include_usage").alias("include_usage"),
        pl.col("chk_stop_hit").alias("_stop_hit"),
        pl.col("chk_sse_bad_lines").cast(pl.Int64).alias("raw_bad_lines"),
        pl.col("chk_error_json").alias("error_json_ok"),
        pl.col("chk_error_type").alias("error_kind"),
        pl.col("chk_error_code").alias("error_code"),
        pl.col("chk_retry_after").alias("retry_advertised"),
        pl.col("chk_should_retry").alias("should_retry"),
        *[pl.col(c) for c in _WIRE],
    )


def _transient(col: str) -> pl.Expr:
    """Statuses that depend on load or luck rather than on the request: 408, 409, 429 and 5xx."""
    st = pl.col(col)
    return st.is_in([408, 409, 429]) | (st >= 500)


def _with_production(df: pl.DataFrame) -> pl.DataFrame:
    """Each cell joined (once) with production's answer to the same exchange: its status, error code
    and type (``p_*``), and which checks production's own answer fails (``p|<check>``)."""
    judged = [c for c in CELL_CHECKS if CATALOGUE[c].basis != "production"]
    prod = (
        df.filter(pl.col("provider") == PRODUCTION_ARM)
        .select(
            "exchange_id",
            pl.col("status").alias("p_status"),
            pl.col("error_code").alias("p_code"),
            pl.col("error_kind").alias("p_type"),
            *[(pl.col(c) == False).alias(f"p|{c}") for c in judged],  # noqa: E712
        )
        .unique("exchange_id", keep="first")
    )
    return df.join(prod, on="exchange_id", how="left")


def _as_production(df: pl.DataFrame) -> pl.DataFrame:
    """A provider is not failed where production's own answer to the exchange fails the same check:
    its value becomes null there, and ``asprod|<check>`` marks the cell (counted as same_as_production)."""
    judged = [c for c in CELL_CHECKS if CATALOGUE[c].basis != "production"]
    theirs = pl.col("provider") != PRODUCTION_ARM
    masks = {c: (theirs & pl.col(f"p|{c}").fill_null(False) & pl.col(c).is_not_null()) for c in judged}
    return df.with_columns(
        *[m.alias(f"asprod|{c}") for c, m in masks.items()],
        *[pl.when(m).then(None).otherwise(pl.col(c)).alias(c) for c, m in masks.items()],
    ).drop([f"p|{c}" for c in judged])


def cell_checks(cells: pl.DataFrame, attempts_429: pl.DataFrame | None = None) -> pl.DataFrame:
    """One nullable boolean column per per-cell check.

    ``cells`` is ``load.load_cells`` output (with the ``chk_*`` facts every stored cell carries);
    ``attempts_429`` is ``load.load_attempts_429`` output (the 429s retried past).
    """
    ok = succeeded()
    text_ep = pl.col("endpoint").is_in(["chat.completions", "completions", "responses"])
    stream = pl.col("stream").fill_null(False)
    err = pl.col("status") >= 400
    # on the error kind and code as they are (null for most cells), not on a million built strings
    rate_limited = pl.any_horizontal(
        pl.col("error_kind", "error_code").str.contains("rate_limit").fill_null(False)
    )
    df = _fact_rows(cells)
    if attempts_429 is not None and not attempts_429.is_empty():
        # a lookup by the cell's hash: a join would copy every column of a million cells
        cell = cell_key()
        a = attempts_429.select(cell.alias("_h"), "advertised_429", "code_429")
        df = df.with_columns(
            cell.replace_strict(a["_h"], a[c], default=None, return_dtype=pl.Boolean).alias(c)
            for c in ("advertised_429", "code_429")
        )
    else:
        df = df.with_columns(pl.lit(None, pl.Boolean).alias(c) for c in ("advertised_429", "code_429"))
    final_429 = pl.col("status") == 429
    chat_stream = ok & stream & pl.col("endpoint").is_in(["chat.completions", "completions"])
    keys_missing = pl.col("chk_chunk_keys_missing")
    code = pl.col("error_code")
    df = df.with_columns(
        pl.when(ok & pl.col("sdk_valid").is_not_null()).then(pl.col("sdk_valid")).alias("sdk_valid"),
        pl.when(ok & stream).then(pl.col("stream_complete").fill_null(False)).alias("stream_terminated"),
        pl.when(ok & stream & pl.col("raw_bad_lines").is_not_null())
        .then(pl.col("raw_bad_lines") == 0)
        .alias("stream_wellformed"),
        pl.when(ok & text_ep).then(pl.col("finish_reason").is_not_null()).alias("finish_reason_present"),
        pl.when(
            ok
            & pl.col("endpoint").is_in(["chat.completions", "completions", "responses", "embeddings"])
            & (~stream | pl.col("include_usage") | (pl.col("endpoint") == "responses"))
        )
        .then(pl.col("has_usage") & ~pl.col("tokens_estimated").fill_null(False))
        .alias("usage_present"),
        pl.when(ok & pl.col("has_calls")).then(pl.col("tool_args_ok")).alias("tool_args_json"),
        pl.when(err).then(pl.col("error_json_ok")).alias("error_json"),
        pl.when(pl.col("has_error") & (ok | err))
        .then(
            ~ok
            & ~(rate_limited & ~final_429)
            & ~(pl.col("error_kind").is_in(_CLIENT_TYPES).fill_null(False) & (pl.col("status") >= 500))
        )
        .alias("error_status"),
        pl.when(final_429 | pl.col("advertised_429").is_not_null())
        .then(
            pl.col("advertised_429").fill_null(True)
            & (~final_429 | pl.col("retry_advertised").fill_null(False))
        )
        .alias("retry_after_429"),
        pl.when(final_429)
        .then((pl.col("should_retry").str.to_lowercase() != "false").fill_null(True))
        .alias("retryable_429"),
        pl.when(
            ok
            & pl.col("max_tokens").is_not_null()
            & pl.col("completion_tokens").is_not_null()
            & ~pl.col("tokens_estimated").fill_null(False)
        )
        .then(pl.col("completion_tokens") <= pl.col("max_tokens"))
        .alias("max_tokens_respected"),
        pl.when(ok).then(~pl.col("_stop_hit")).alias("stop_respected"),
        pl.when(
            ok
            & pl.col("n").fill_null(1).gt(1)
            & pl.col("endpoint").is_in(["chat.completions", "completions"])
        )
        .then(pl.col("n_choices").fill_null(0) >= pl.col("n"))
        .alias("n_choices"),
        pl.when(
            ok & stream & (pl.col("endpoint") == "responses") & pl.col("chk_unnamed_events").is_not_null()
        )
        .then(pl.col("chk_unnamed_events") == 0)
        .alias("sse_event_names"),
        pl.when(
            chat_stream & pl.col("include_usage").fill_null(False) & pl.col("chk_usage_choices").is_not_null()
        )
        .then(pl.col("chk_usage_choices") == 0)
        .alias("usage_chunk_shape"),
        pl.when(chat_stream & keys_missing.is_not_null())
        .then(~keys_missing.str.contains("finish_reason"))
        .alias("chunk_finish_reason_key"),
        pl.when(chat_stream & keys_missing.is_not_null())
        .then(~keys_missing.str.contains("logprobs"))
        .alias("chunk_logprobs_key"),
        pl.when(err & pl.col("chk_error_keys").is_not_null())
        .then(pl.all_horizontal(pl.col("chk_error_keys").str.contains(f"{k}:") for k in ERROR_KEYS))
        .alias("error_fields_present"),
        # the final answer's code and every kept 429's
        pl.when(err | pl.col("code_429").is_not_null())
        .then(
            pl.when(err)
            .then(
                pl.when(final_429)
                .then(code.is_in(RATE_LIMIT_CODES).fill_null(False))
                .otherwise(code.is_null() | code.str.contains(r"^[a-z][a-z0-9_.]*$").fill_null(False))
            )
            .otherwise(True)
            & pl.col("code_429").fill_null(True)
        )
        .alias("error_code_known"),
    )
    # then, with one join, what only production's answer to the same exchange can tell
    df = _with_production(df)
    # a 4xx production answered too, and not a transient one: the provider's error is compared with it
    compared = err & ~_transient("status") & (pl.col("p_status") >= 400) & ~_transient("p_status")
    compared = compared.fill_null(False) & (pl.col("provider") != PRODUCTION_ARM)
    df = df.with_columns(
        pl.when(compared).then(pl.col("status") == pl.col("p_status")).alias("error_status_match"),
        pl.when(compared & pl.col("p_code").is_in(BRANCHED_CODES).fill_null(False))
        .then((code == pl.col("p_code")).fill_null(False))
        .alias("error_code_match"),
        pl.when(compared & pl.col("p_type").is_not_null())
        .then((pl.col("error_kind") == pl.col("p_type")).fill_null(False))
        .alias("error_type_match"),
        pl.when(
            (pl.col("provider") != PRODUCTION_ARM)
            & (pl.col("p_status") >= 400).fill_null(False)
            & ~_transient("p_status").fill_null(True)
            & pl.col("status").is_not_null()
            & ~_transient("status").fill_null(True)
        )
        .then(pl.col("status") >= 400)
        .alias("rejects_like_production"),
    )
    return _as_production(df)


def scorecard(
    cells: pl.DataFrame, config: dict, cold: pl.DataFrame | None = None, by: Sequence[str] = ("provider",)
) -> pl.DataFrame:
    """Long table: provider x check -> result, passed, failed, not_applicable, pass_rate, examples, detail."""
    by = list(by)
    counts = [pl.len().alias("_n")]
    for c in CELL_CHECKS:  # a boolean's sum counts its trues; the rest of the non-null ones failed
        counts += [pl.col(c).sum().alias(f"{c}|passed"), pl.col(c).null_count().alias(f"{c}|not_applicable")]
        if f"asprod|{c}" in cells.columns:
            counts.append(pl.col(f"asprod|{c}").sum().alias(f"{c}|asprod"))
    n = pl.col("_n").cast(pl.Int64)
    wide = cells.group_by(by).agg(counts)
    wide = wide.with_columns(
        *[pl.col(f"{c}|{k}").cast(pl.Int64) for c in CELL_CHECKS for k in ("passed", "not_applicable")],
        *[
            (n - pl.col(f"{c}|passed").cast(pl.Int64) - pl.col(f"{c}|not_applicable").cast(pl.Int64)).alias(
                f"{c}|failed"
            )
            for c in CELL_CHECKS
        ],
    ).drop("_n")
    # examples (and the SDK's first error) only for the checks that failed somewhere
    failing = [c for c in CELL_CHECKS if wide[f"{c}|failed"].sum() > 0]
    # the first failing ids in id order: the same whatever order the store returns rows in
    extra = [
        pl.col("exchange_id").filter(pl.col(c) == False).sort().head(3).alias(f"{c}|examples")  # noqa: E712
        for c in failing
    ]
    if "sdk_valid" in failing:
        invalid = pl.col("sdk_valid") == False  # noqa: E712
        extra.append(
            pl.col("sdk_error")
            .filter(invalid)
            .sort_by(pl.col("exchange_id").filter(invalid))
            .first()
            .alias("_sdk_error")
        )
    if extra:
        wide = wide.join(cells.group_by(by).agg(extra), on=by, how="left", nulls_equal=True)
    pm = [*by, "provider_model"]  # the models sent: distinct pairs by one hashed key, then listed
    # a model is expected in the listing when production served its request (not one it rejected)
    served = pl.col("provider_model").is_not_null()
    if "p_status" in cells.columns:
        served = served & ~(pl.col("p_status") >= 400).fill_null(False)
    pairs = groups.agg(groups.with_key(cells.select(*pm, served.alias("_s")).filter("_s").drop("_s"), pm), pm)
    sent = pairs.group_by(by).agg(pl.col("provider_model").sort())
    rows = []
    for r in wide.iter_rows(named=True):
        for c in CELL_CHECKS:
            detail = r.get("_sdk_error") if c == "sdk_valid" else None
            row = _row(
                r,
                by,
                c,
                r[f"{c}|passed"],
                r[f"{c}|failed"],
                r[f"{c}|not_applicable"] - (r.get(f"{c}|asprod") or 0),
                r.get(f"{c}|examples"),
                detail,
            )
            rows.append(row | {"same_as_production": int(r.get(f"{c}|asprod") or 0)})
    rows += _models_listed(sent, config, by)
    if cold is not None:
        rows += _cold(cold, by)
    out = pl.DataFrame(rows, schema=_SCHEMA | {c: pl.Utf8 for c in by}, infer_schema_length=None)
    order = {c: i for i, c in enumerate(CHECKS)}
    return (
        out.with_columns(pl.col("check").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
        .sort([*by, "_o"])
        .drop("_o")
        .select(*by, *_SCHEMA)
    )


_SCHEMA = {
    "check": pl.Utf8,
    "result": pl.Utf8,
    "passed": pl.Int64,
    "failed": pl.Int64,
    "not_applicable": pl.Int64,
    "pass_rate": pl.Float64,
    "examples": pl.List(pl.Utf8),
    "detail": pl.Utf8,
    "severity": pl.Utf8,
    "basis": pl.Utf8,
    "same_as_production": pl.Int64,
}


def _row(
    key: dict,
    by: list[str],
    check: str,
    passed: int,
    failed: int,
    na: int,
    examples: list,
    detail: str | None,
) -> dict:
    applicable = passed + failed
    info = CATALOGUE[check].severity == "info"
    result = "n/a" if applicable == 0 else ("info" if info else "fail") if failed else "pass"
    return {c: key[c] for c in by} | {
        "check": check,
        "result": result,
        "passed": passed,
        "failed": failed,
        "not_applicable": na,
        "pass_rate": passed / applicable if applicable else None,
        "examples": list(examples or []),
        "detail": detail,
        "severity": CATALOGUE[check].severity,
        "basis": CATALOGUE[check].basis,
        "same_as_production": 0,
    }


def _models_listed(sent: pl.DataFrame, config: dict, by: list[str]) -> list[dict]:
    """``sent``: per group, the models sent (``provider_model``)."""
    providers = config.get("providers") or {}
    rows = []
    for r in sent.iter_rows(named=True):
        listed = (providers.get(r["provider"]) or {}).get("models_listed")
        models = sorted(set(r["provider_model"]))
        if listed is None:
            rows.append(_row(r, by, "models_listed", 0, 0, len(models), [], None))
            continue
        missing = [m for m in models if m not in set(listed)]
        rows.append(
            _row(r, by, "models_listed", len(models) - len(missing), len(missing), 0, missing[:3], None)
        )
    return rows


def _cold(cold: pl.DataFrame, by: list[str]) -> list[dict]:
    rows = []
    for r in cold.iter_rows(named=True):
        p = r.get("cold_start_p_value")
        if p is None:
            rows.append(_row(r, by, "cold_start", 0, 0, 1, [], None))
            continue
        bad = p < ALPHA and (r.get("cold_start_delta_ms") or 0) > COLD_START_MS
        detail = f"cold p50 {r['cold_p50_ms']:.0f} ms vs warm {r['warm_p50_ms']:.0f} ms (n={r['n_cold']}/{r['n_warm']})"
        rows.append(_row(r, by, "cold_start", 0 if bad else 1, 1 if bad else 0, 0, [], detail))
    return rows


def compat_summary(card: pl.DataFrame, by: Sequence[str] = ("provider",)) -> pl.DataFrame:
    """Per provider: compat_failures = failing checks failed, compat_applicable = failing checks that
    applied, compat_score = their passed share, compat_info = informational checks that found a
    difference; and one figure per check, ``compat.<check>`` = the cells (models, providers) that
    failed it. Each is null where nothing applied: a provider that answered nothing has no
    compatibility figures, not a clean scorecard."""
    by = list(by)
    failing = pl.col("severity") == "failure"
    applied = pl.col("result") != "n/a"
    summary = (
        card.group_by(by)
        .agg(
            (failing & (pl.col("result") == "pass")).sum().alias("compat_passed"),
            (pl.col("result") == "fail").sum().alias("compat_failures"),
            (failing & applied).sum().alias("compat_applicable"),
            (pl.col("result") == "info").sum().alias("compat_info"),
            pl.col("check").filter(pl.col("result") == "fail").alias("compat_failed_checks"),
        )
        .with_columns(
            pl.when(pl.col("compat_applicable") > 0).then(pl.col(c)).alias(c)
            for c in ("compat_passed", "compat_failures", "compat_info")
        )
        .with_columns((pl.col("compat_passed") / pl.col("compat_applicable")).alias("compat_score"))
    )
    per_check = card.select(*by, "check", pl.when(applied).then(pl.col("failed")).alias("failed")).pivot(
        on="check", index=by, values="failed"
    )
    per_check = per_check.rename({c: f"compat.{c}" for c in per_check.columns if c not in by})
    return summary.join(per_check, on=by, how="left", nulls_equal=True)
