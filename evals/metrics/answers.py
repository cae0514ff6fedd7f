"""Quality against the baseline's answer: text, finish reason, refusals, JSON, tool calls, embeddings.

Vectorised polars/rapidfuzz for text; a Python pass only over the cells that asked for structured
output or made tool calls (JSON parsing and JSON-schema validation have no vectorised form),
with one compiled validator per distinct schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache

import jsonschema
import numpy as np
import polars as pl
from rapidfuzz import fuzz, utils
from rapidfuzz.process import cpdist

try:  # optional accelerator; jsonschema stays the reference
    import fastjsonschema as _fast
except ImportError:  # pragma: no cover
    _fast = None

from parity.evals.metrics.embeddings import embedding_pairs
from parity.evals.metrics.outcome import succeeded

GROUP = ("provider", "endpoint", "model")
REFUSAL_RE = (
    r"(?i)^\W*(i'm sorry|i am sorry|sorry, (but )?i|i can(no|')t (help|assist|comply|provide|do that)|"
    r"i'm (not able|unable) to|i am (not able|unable) to|i won't be able|as an ai\b)"
)
KEYS = ["exchange_id", "provider", "repeat"]


# Keywords of JSON Schema 2019-09/2020-12 that fastjsonschema (drafts 4-7) does not know.
_NEW_KEYWORDS = (
    "prefixItems",
    "unevaluated",
    "dependentRequired",
    "dependentSchemas",
    "$dynamic",
    "$anchor",
    "Contains",
)


@lru_cache(maxsize=4096)
def _validator(schema_text: str) -> Callable[[object], bool] | None:
    """A compiled ``is_valid`` for one schema (None when the schema itself is invalid).

    jsonschema is the reference; fastjsonschema, when installed, is ~15x faster and is used for
    schemas that only use draft-7 vocabulary (what structured outputs and tool schemas use).
    """
    try:
        schema = json.loads(schema_text)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except (json.JSONDecodeError, jsonschema.SchemaError, TypeError):
        return None
    declared = str(schema.get("$schema", "")) if isinstance(schema, dict) else ""
    if (
        _fast is not None
        and "2019" not in declared
        and "2020" not in declared
        and not any(k in schema_text for k in _NEW_KEYWORDS)
    ):
        try:
            fn = _fast.compile(schema)

            def fast_ok(value: object) -> bool:
                try:
                    fn(value)
                    return True
                except _fast.JsonSchemaException:
                    return False

            return fast_ok
        except Exception:  # noqa: BLE001 - any compile problem: fall back to the reference validator
            pass
    return cls(schema).is_valid


@lru_cache(maxsize=4096)
def _tool_schemas(tools_text: str) -> dict[str, str | None]:
    """Tool name -> its parameters schema (JSON text) from a request's ``tools`` (chat or responses)."""
    try:
        tools = json.loads(tools_text)
    except json.JSONDecodeError:
        return {}
    out: dict[str, str | None] = {}
    for t in tools if isinstance(tools, list) else []:
        if not isinstance(t, dict):
            continue
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        name = fn.get("name")
        if isinstance(name, str):
            params = fn.get("parameters")
            out[name] = json.dumps(params, sort_keys=True) if isinstance(params, dict) else None
    return out


def check_json(text: str | None, schema_text: str | None) -> tuple[bool, bool | None]:
    """(parses as JSON, conforms to the schema — None when no schema was given)."""
    try:
        value = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return False, (False if schema_text else None)
    if text is None:
        return False, (False if schema_text else None)
    if not schema_text:
        return True, None
    v = _validator(schema_text)
    return True, (None if v is None else v(value))


def parse_tool_calls(calls_text: str | None) -> list[tuple[str | None, str | None]]:
    """[(name, arguments text)] from chat ``tool_calls`` or Responses ``function_call`` items."""
    try:
        calls = json.loads(calls_text) if calls_text else []
    except json.JSONDecodeError:
        return [(None, None)]
    out = []
    for c in calls if isinstance(calls, list) else []:
        fn = c.get("function") if isinstance(c, dict) and isinstance(c.get("function"), dict) else c
        if not isinstance(fn, dict):
            out.append((None, None))
            continue
        args = fn.get("arguments")
        out.append(
            (fn.get("name"), args if isinstance(args, str) else None)
        )  # the wire format is a JSON string
    return out


def check_tools(calls_text: str | None, tools_text: str | None) -> dict:
    """Validity of one answer's tool calls against the request's tools, and a canonical signature."""
    calls = parse_tool_calls(calls_text)
    schemas = _tool_schemas(tools_text) if tools_text else {}
    names_ok = args_json = args_schema = True
    sig = []
    for name, args in calls:
        names_ok &= name in schemas
        try:
            parsed = json.loads(args) if args is not None else None
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            args_json = args_schema = False
            sig.append((str(name), "\0invalid"))
            continue
        sig.append((str(name), json.dumps(parsed, sort_keys=True)))
        schema = schemas.get(name)
        if name not in schemas:
            args_schema = False
        elif schema:
            v = _validator(schema)
            args_schema &= v is None or v(parsed)
    sig.sort()
    return {
        "tool_name_valid": names_ok,
        "tool_args_json": args_json,
        "tool_args_schema": args_schema,
        "tool_names": "\n".join(n for n, _ in sig),
        "tool_sig": json.dumps(sig),
    }


def answer_checks(outputs: pl.DataFrame) -> pl.DataFrame:
    """Per cell of ``load.load_outputs`` (the quality sample): refusal, JSON validity / schema
    conformance and tool-call validity, for every arm."""
    ok = succeeded()
    df = outputs.with_columns(
        (ok & pl.col("format_type").is_in(["json_object", "json_schema"]))
        .fill_null(False)
        .alias("json_asked"),
        (ok & pl.col("tool_calls").is_not_null()).fill_null(False).alias("has_tools"),
        (
            pl.col("refusal").is_not_null()
            | pl.col("text").str.slice(0, 300).str.contains(REFUSAL_RE).fill_null(False)
        )
        .and_(ok)
        .alias("refusal_detected"),
    )
    j = df.filter(pl.col("json_asked")).select(*KEYS, "text", "format_schema")
    jrows = [check_json(t, s) for t, s in zip(j["text"].to_list(), j["format_schema"].to_list(), strict=True)]
    jdf = j.select(KEYS).with_columns(
        pl.Series("json_valid", [r[0] for r in jrows], dtype=pl.Boolean),
        pl.Series("json_schema_valid", [r[1] for r in jrows], dtype=pl.Boolean),
    )
    t = df.filter(pl.col("has_tools")).select(*KEYS, "tool_calls", "tools")
    trows = [check_tools(c, s) for c, s in zip(t["tool_calls"].to_list(), t["tools"].to_list(), strict=True)]
    tschema = {
        "tool_name_valid": pl.Boolean,
        "tool_args_json": pl.Boolean,
        "tool_args_schema": pl.Boolean,
        "tool_names": pl.Utf8,
        "tool_sig": pl.Utf8,
    }
    tdf = pl.concat([t.select(KEYS), pl.DataFrame(trows, schema=tschema)], how="horizontal")
    tdf = tdf.with_columns(
        (pl.col("tool_name_valid") & pl.col("tool_args_json") & pl.col("tool_args_schema")).alias(
            "tool_valid"
        )
    )
    return df.join(jdf, on=KEYS, how="left").join(tdf, on=KEYS, how="left")


def compare_cells(checked: pl.DataFrame, baseline: str) -> pl.DataFrame:
    """Each non-baseline cell next to the baseline's answer (its first repeat) for the same exchange.

    Similarity is rapidfuzz's ``ratio`` (normalised Indel similarity) after ``default_process``
    (lower case, non-alphanumerics to spaces, trimmed), in [0, 1]; one empty answer scores 0.
    """
    cols = [
        *(
            "text",
            "finish_reason",
            "refusal_detected",
            "tool_names",
            "tool_sig",
            "has_tools",
            "error_type",
            "status",
        )
    ]
    base = (
        checked.filter(pl.col("provider") == baseline)
        .sort("repeat")
        .unique("exchange_id", keep="first")
        .select("exchange_id", *[pl.col(c).alias(f"{c}_b") for c in cols])
    )
    checks = [
        "json_asked",
        "json_valid",
        "json_schema_valid",
        "tool_valid",
        "tool_name_valid",
        "tool_args_json",
        "tool_args_schema",
    ]
    keep = ["exchange_id", "provider", "repeat", "endpoint", "model", "status", *cols[:-1], *checks]
    cand = (
        checked.filter(pl.col("provider") != baseline).select(keep).join(base, on="exchange_id", how="inner")
    )
    both_ok = succeeded() & succeeded("_b")
    text_ep = pl.col("endpoint").is_in(["chat.completions", "responses", "completions"])
    has_a = pl.col("text").fill_null("").str.strip_chars() != ""
    has_b = pl.col("text_b").fill_null("").str.strip_chars() != ""
    cand = cand.with_columns(
        (both_ok & text_ep).fill_null(False).alias("_cmp"), has_a.alias("_ha"), has_b.alias("_hb")
    )
    mask = cand.select(pl.col("_cmp") & pl.col("_ha") & pl.col("_hb")).to_series().to_numpy()
    sim = np.full(cand.height, np.nan)
    if mask.any():
        sub = cand.filter(pl.Series(mask))
        sim[mask] = (
            cpdist(
                sub["text"].to_list(),
                sub["text_b"].to_list(),
                scorer=fuzz.ratio,
                processor=utils.default_process,
                workers=-1,
            )
            / 100.0
        )
    tools_either = pl.col("has_tools").fill_null(False) | pl.col("has_tools_b").fill_null(False)
    some_text = pl.col("_cmp") & (pl.col("_ha") | pl.col("_hb"))
    out = cand.with_columns(pl.Series("_sim", sim).fill_nan(None)).with_columns(
        pl.when(some_text).then(pl.coalesce("_sim", pl.lit(0.0))).alias("text_similarity"),
        pl.when(some_text)
        .then(pl.col("text").fill_null("") == pl.col("text_b").fill_null(""))
        .alias("exact_match"),
        pl.when(pl.col("_cmp") & pl.col("_hb"))
        .then(pl.col("text").fill_null("").str.len_chars() / pl.col("text_b").str.len_chars())
        .alias("length_ratio"),
        pl.when(both_ok & pl.col("finish_reason_b").is_not_null())
        .then(pl.col("finish_reason").fill_null("") == pl.col("finish_reason_b"))
        .alias("finish_agree"),
        pl.when(both_ok & text_ep)
        .then(pl.col("refusal_detected") & ~pl.col("refusal_detected_b").fill_null(False))
        .alias("new_refusal"),
        pl.when(both_ok & tools_either)
        .then(pl.col("tool_names").fill_null("") == pl.col("tool_names_b").fill_null(""))
        .alias("tool_names_agree"),
        pl.when(both_ok & tools_either)
        .then(pl.col("tool_sig").fill_null("") == pl.col("tool_sig_b").fill_null(""))
        .alias("tool_call_agree"),
    )
    return out.drop("_sim", "_cmp", "_ha", "_hb", *[f"{c}_b" for c in cols if c not in ("text", "status")])


def quality_table(
    checked: pl.DataFrame,
    compared: pl.DataFrame,
    embeddings: pl.DataFrame | None,
    baseline: str,
    by: Sequence[str] = GROUP,
    memo: dict | None = None,
) -> pl.DataFrame:
    """Per group: validity rates (every arm), agreement with the baseline (other arms) and the score.

    ``embeddings`` is ``load.load_embeddings`` output (None or empty when the run has none);
    ``memo`` is handed to ``embedding_pairs`` (shared by the levels of one evaluation).
    """
    by = list(by)
    ok = succeeded()
    valid = checked.group_by(by).agg(
        ok.sum().alias("n_success"),
        pl.col("refusal_detected").filter(ok).mean().alias("refusal_rate"),
        pl.col("json_asked").sum().alias("n_json"),
        pl.col("json_valid").filter(pl.col("json_asked")).mean().alias("json_valid_rate"),
        pl.col("json_schema_valid").filter(pl.col("json_asked")).mean().alias("json_schema_valid_rate"),
        pl.col("has_tools").sum().alias("n_tool_answers"),
        pl.col("tool_valid").filter(pl.col("has_tools")).mean().alias("tool_call_valid_rate"),
        pl.col("tool_name_valid").filter(pl.col("has_tools")).mean().alias("tool_name_valid_rate"),
        pl.col("tool_args_json").filter(pl.col("has_tools")).mean().alias("tool_args_json_rate"),
        pl.col("tool_args_schema").filter(pl.col("has_tools")).mean().alias("tool_args_schema_rate"),
    )
    agree = compared.group_by(by).agg(
        pl.col("text_similarity").count().alias("n_text_compared"),
        pl.col("exact_match").mean().alias("exact_match_rate"),
        pl.col("text_similarity").mean().alias("text_similarity_mean"),
        pl.col("text_similarity").std().alias("_sd"),
        pl.col("length_ratio").median().alias("length_ratio_median"),
        pl.col("finish_agree").mean().alias("finish_reason_agreement"),
        pl.col("new_refusal").mean().alias("new_refusal_rate"),
        pl.col("tool_call_agree").count().alias("n_tool_compared"),
        pl.col("tool_names_agree").mean().alias("tool_names_agreement"),
        pl.col("tool_call_agree").mean().alias("tool_call_agreement"),
    )
    z = 1.959963984540054
    half = z * pl.col("_sd") / pl.col("n_text_compared").cast(pl.Float64).sqrt()
    agree = agree.with_columns(
        (pl.col("text_similarity_mean") - half).alias("text_similarity_ci_low"),
        (pl.col("text_similarity_mean") + half).alias("text_similarity_ci_high"),
    ).drop("_sd")
    out = valid.join(agree, on=by, how="left")
    if embeddings is not None and not embeddings.is_empty():
        out = out.join(embedding_pairs(embeddings, baseline, by, memo), on=by, how="left")
    else:
        out = out.with_columns(
            pl.lit(None, pl.Float64).alias("embedding_cosine_mean"),
            pl.lit(None, pl.Float64).alias("embedding_structure_spearman"),
        )
    return add_quality_score(out, baseline).sort(by)


def quality_levels(
    checked: pl.DataFrame,
    compared: pl.DataFrame,
    embeddings: pl.DataFrame | None,
    baseline: str,
    levels: Sequence[Sequence[str]],
) -> list[pl.DataFrame]:
    """``quality_table`` at each of ``levels``; the embeddings' structure scores, which depend only on
    the inputs a group shares, are computed once for all levels."""
    memo: dict = {}
    return [quality_table(checked, compared, embeddings, baseline, by, memo) for by in levels]


SCORE_PARTS = (
    "text_similarity_mean",
    "finish_reason_agreement",
    "json_conformance",
    "tool_call_valid_rate",
    "tool_call_agreement",
    "embedding_similarity",
    "no_new_refusal",
)


def add_quality_score(df: pl.DataFrame, baseline: str) -> pl.DataFrame:
    """quality_score = unweighted mean of the SCORE_PARTS that apply (null for the baseline itself)."""
    parts = df.with_columns(
        pl.coalesce("json_schema_valid_rate", "json_valid_rate").alias("json_conformance"),
        pl.coalesce("embedding_cosine_mean", pl.col("embedding_structure_spearman").clip(0, 1)).alias(
            "embedding_similarity"
        ),
        (1 - pl.col("new_refusal_rate")).alias("no_new_refusal"),
    )
    score = pl.mean_horizontal(*[pl.col(c) for c in SCORE_PARTS])
    return parts.with_columns(
        pl.when(pl.col("provider") != baseline).then(score).alias("quality_score")
    ).drop("json_conformance", "embedding_similarity", "no_new_refusal")
