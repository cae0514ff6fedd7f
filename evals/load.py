"""Every query evals runs against the store; filtering and JSON extraction happen inside DuckDB.

Each loader reads only the columns its question needs (latency never touches ``response_body``),
and pulls the few JSON fields it needs out of bodies with DuckDB's vectorised JSON functions,
so Python sees small typed columns, not documents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import duckdb
import polars as pl

from parity.evals.errors import EvalError
from parity.evals.metrics.compat_checks import RATE_LIMIT_CODES
from parity.evals.metrics.outcome import SUCCEEDED_SQL
from parity.evals.window import Window
from parity.replayer.facts import COLUMNS as FACTS
from parity.store.frames import scan
from parity.store.segments import segment_root
from parity.store.store import StoreError, connect, live_files, sql_string, store_of, table_scan

Store = str | os.PathLike | duckdb.DuckDBPyConnection
# The store's views cast JSON columns to DuckDB's JSON type, which parses every document once
# just to validate it; loaders that extract from bodies read this plain-text scan instead.
RAW_RESULTS = "evals_results_text"
RAW_META = "evals_results_footers"  # the results segments' Parquet metadata (row groups, null counts)
TEXT_ENDPOINTS = ("chat.completions", "responses", "completions")
# A cell's place in the samples (0 .. 999,999): the stored key (parity.replayer.sampling), the same for
# every arm of an exchange; a sample is a prefix of each compacted results file.
SAMPLE_KEY = "sample_key"


@contextmanager
def open_store(db: Store, window: Window | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to ``db`` (a store path, or an open connection which is left open), narrowed to
    the exchanges of ``window`` when one is given (``narrow``)."""
    if isinstance(db, duckdb.DuckDBPyConnection):
        if window is not None:
            raise EvalError("a time window (--since/--until) needs the store's path, not an open connection")
        yield db
        return
    try:
        con = connect(db)
    except StoreError as e:
        raise EvalError(str(e)) from e
    try:
        with suppress(duckdb.Error):  # Jupyter kernels without ipywidgets reject this setting
            con.execute("SET enable_progress_bar = false")
        # Every query that needs an order says ORDER BY; without this DuckDB keeps the files' row order
        # at a cost (a third of the cells' read)
        con.execute("SET preserve_insertion_order = false")
        # DuckDB's reads run beside the polars and numpy steps on the other thread (parity.evals.api):
        # all but one core to DuckDB leaves those steps a core instead of contending for every one
        con.execute(f"SET threads = {max(1, (os.cpu_count() or 2) - 1)}")
        con.execute(
            f"CREATE OR REPLACE VIEW {RAW_RESULTS} AS SELECT * FROM {table_scan(segment_root(db), 'results')}"
        )
        files = live_files(db, "results")
        footers = (
            "SELECT * FROM parquet_metadata([" + ", ".join(sql_string(f) for f in files) + "])"
            if files
            else "SELECT NULL::VARCHAR AS file_name, NULL::VARCHAR AS path_in_schema, "
            "NULL::BIGINT AS stats_null_count, NULL::BIGINT AS row_group_num_rows WHERE false"
        )
        con.execute(f"CREATE OR REPLACE VIEW {RAW_META} AS {footers}")
        if window is not None:
            narrow(con, window)
        yield con
    finally:
        con.close()


def narrow(con: duckdb.DuckDBPyConnection, window: Window) -> int:
    """Make every query of ``con`` (and its cursors) see only the cells, attempts and exchanges of the
    exchanges recorded inside ``window``: production's time, the same for every arm, so the pairs
    stay whole. The connection is evals' own in-memory one; returns the exchanges kept."""
    where = " AND ".join(
        f"{{col}} {op} ${name}" for name, op in (("since", ">="), ("until", "<")) if getattr(window, name)
    )
    params = {k: v for k, v in (("since", window.since), ("until", window.until)) if v is not None}
    if not where:
        return -1
    con.execute(
        f"""CREATE TABLE evals_window AS
            SELECT id AS exchange_id FROM exchanges WHERE {where.format(col="recorded_at")}
            UNION SELECT exchange_id FROM results WHERE provider = 'recorded' AND {where.format(col="started_at")}""",
        params,
    )
    for view in ("results", "attempts", RAW_RESULTS):
        con.execute(f"ALTER VIEW {view} RENAME TO {view}_unwindowed")
        con.execute(
            f"CREATE VIEW {view} AS SELECT * FROM {view}_unwindowed "
            "WHERE exchange_id IN (SELECT exchange_id FROM evals_window)"
        )
    return con.sql("SELECT count(*) FROM evals_window").fetchall()[0][0]


def window_exchanges(con: duckdb.DuckDBPyConnection) -> pl.Series | None:
    """The exchanges ``narrow`` kept on ``con`` (None when it was not narrowed)."""
    if not con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'evals_window'").fetchall()[0][0]:
        return None
    return frame(con, "SELECT exchange_id FROM evals_window")["exchange_id"]


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> pl.DataFrame:
    """Run one query and return a polars DataFrame; DuckDB errors become EvalError."""
    try:
        # via Arrow: much faster than the relation's own .pl() for wide string columns
        return pl.from_arrow(con.sql(sql, params=params or None).arrow().read_all())
    except duckdb.Error as e:
        raise EvalError(f"store query failed: {str(e).splitlines()[0]}") from e


def results_text(con: duckdb.DuckDBPyConnection) -> str:
    """The results relation to extract JSON from: the plain-text scan when evals opened the store."""
    rows = con.sql(f"SELECT count(*) FROM duckdb_views() WHERE view_name = '{RAW_RESULTS}'").fetchall()
    return RAW_RESULTS if rows[0][0] else "results"


def resolve_run(con: duckdb.DuckDBPyConnection, run: str | None) -> str:
    """The run id to evaluate: ``run`` itself, or the newest run for None / ``"latest"``."""
    if run not in (None, "", "latest"):  # a named run: a count of its rows, not a scan of every run
        if frame(con, "SELECT count(*) AS n FROM results WHERE run_id = $run", {"run": run})["n"][0]:
            return run
    runs = frame(
        con,
        "SELECT run_id, max(started_at) AS t, count(*) AS n FROM results GROUP BY run_id ORDER BY t DESC NULLS LAST",
    )
    known = runs["run_id"].to_list()
    if not known:
        raise EvalError("the store holds no results yet; replay a run first")
    if run in (None, "", "latest"):
        return known[0]
    if run not in known:
        raise EvalError(f"no results for run {run!r}; runs in this store: {', '.join(known[:10])}")
    return run


def run_config(con: duckdb.DuckDBPyConnection, run: str) -> dict:
    """The run's config JSON (empty dict when the run has no run_events)."""
    df = frame(con, "SELECT CAST(config AS VARCHAR) AS c FROM runs WHERE run_id = $run", {"run": run})
    if df.is_empty() or df["c"][0] is None:
        return {}
    try:
        return json.loads(df["c"][0])
    except json.JSONDecodeError as e:
        raise EvalError(f"run {run!r} has an unreadable config: {e}") from e


# A cell's token counts and the replayer's cost of it (parity.evals.metrics.spend prices cells from these).
USAGE_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "tokens_estimated",
    "cost_usd",
    "cost_estimated",
)
# The results columns load_cells reads, as stored (model and provider_model are derived).
_CELL_COLUMNS = (
    *("exchange_id", "provider", "repeat", "endpoint", "recorded_model", "model", "stream", "status"),
    *("error_type", "started_at", "attempts", "rate_limit_wait_ms", "ttft_ms", "latency_ms", "itl_mean_ms"),
    *USAGE_COLUMNS,
    *("finish_reason", "sdk_valid", "sdk_error", "stream_complete", *FACTS, "sample_key"),
)
XID_SEED = 20261126  # xid: polars' hash of the exchange id, the same for every frame of one evaluation


def xid_of(col: str = "exchange_id") -> pl.Expr:
    """The integer exchange key frames are joined on (``xid``)."""
    return pl.col(col).hash(XID_SEED)


def cell_key() -> pl.Expr:
    """The integer key of a cell (exchange, provider, repeat), for lookups across frames: the
    columns' own hashes combined (a third of the cost of hashing them as one struct)."""
    return (
        xid_of()
        ^ pl.col("provider").cast(pl.Utf8).hash(XID_SEED + 1)
        ^ pl.col("repeat").cast(pl.Int64).hash(XID_SEED + 2)
    )


def load_cells(con: duckdb.DuckDBPyConnection, run: str) -> pl.DataFrame:
    """One row per result cell with the scalar timing, token and status columns and the ``chk_*``
    facts (no bodies): the store's results frame (``parity.store.frames``, a third of the SQL
    view's cost for this wide read), narrowed to the connection's window if it has one."""
    try:
        lf = scan(store_of(con), "results").filter(pl.col("run_id") == run).select(_CELL_COLUMNS)
        kept = window_exchanges(con)
        if kept is not None:
            lf = lf.filter(pl.col("exchange_id").is_in(kept.implode()))
        df = lf.collect()
    except (StoreError, pl.exceptions.PolarsError, OSError) as e:
        raise EvalError(f"reading the results failed: {str(e).splitlines()[0]}") from e
    df = df.with_columns(
        xid_of().alias("xid"),
        cell_key().alias("_cell"),
        pl.coalesce("recorded_model", "model").alias("model"),
        pl.col("model").alias("provider_model"),
    ).drop("recorded_model")
    # met a 429 on any attempt (the few cells in attempts), matched on the cell's key
    hit = frame(
        con,
        """SELECT DISTINCT exchange_id, provider, "repeat" FROM attempts WHERE run_id = $run AND status = 429""",
        {"run": run},
    ).select(cell_key().alias("_cell"))["_cell"]
    df = df.with_columns(
        ((pl.col("status") == 429).fill_null(False) | pl.col("_cell").is_in(hit.implode())).alias("saw_429")
    )
    if df["_cell"].n_unique() < df.height:
        # A cell written twice (e.g. re-sent after a resume): the later answer counts.
        df = df.sort("started_at", nulls_last=False).unique(subset="_cell", keep="last")
    return df.drop("_cell")


def load_usage_extras(con: duckdb.DuckDBPyConnection, run: str) -> pl.DataFrame:
    """Images generated and audio seconds, for the cells whose price depends on them."""
    return frame(
        con,
        f"""
        SELECT exchange_id, provider, "repeat",
               CASE WHEN endpoint = 'images.generations'
                    THEN json_array_length(response_body, '$.data') END AS images,
               CASE WHEN endpoint LIKE 'audio.%' THEN coalesce(
                    TRY_CAST(response_body->>'$.duration' AS DOUBLE),
                    TRY_CAST(response_body->>'$.usage.seconds' AS DOUBLE)) END AS audio_seconds
        FROM {results_text(con)}
        WHERE run_id = $run AND {SUCCEEDED_SQL}
          AND endpoint IN ('images.generations', 'audio.transcriptions', 'audio.translations')
        """,
        {"run": run},
    )


def load_itl(
    con: duckdb.DuckDBPyConnection, run: str, max_requests: int = 10000, key: str = SAMPLE_KEY
) -> pl.DataFrame:
    """Per-token ITL lists of streamed successes; a deterministic sample of exchanges when large.

    The same exchanges are kept for every provider (sample key, see ``sample_column``, below one
    threshold), and every group of a provider is sampled at the same rate, so pooled figures stay
    unbiased.
    """
    counts = frame(
        con,
        f"SELECT provider, count(*) AS n FROM results WHERE run_id = $run AND {SUCCEEDED_SQL} AND stream GROUP BY provider",
        {"run": run},
    )
    biggest = int(counts["n"].max() or 0)
    frac = 1.0 if biggest <= max_requests else max_requests / biggest
    thr = int(frac * 1_000_000)
    # the threshold is written into the SQL (not a parameter) so DuckDB can skip row groups by it
    return frame(
        con,
        f"""
        SELECT provider, endpoint, coalesce(recorded_model, model) AS model, exchange_id, "repeat", itl_ms
        FROM results
        WHERE run_id = $run AND {key} < {int(thr)} AND {SUCCEEDED_SQL} AND stream AND len(itl_ms) > 0
        """,
        {"run": run},
    )


# JSON paths pulled out of every body in one parse (multi-path extraction parses a document once).
_BODY_PATHS = (
    "$.choices[0].message.content",  # 1
    "$.choices[0].message.refusal",  # 2
    "$.choices[0].message.tool_calls",  # 3
    "$.choices[0].finish_reason",  # 4
    "$.choices[0].text",  # 5
    "$.status",  # 6
    "$.incomplete_details.reason",  # 7
)
_REQ_PATHS = (
    "$.response_format.type",  # 1
    "$.response_format.json_schema.schema",  # 2
    "$.text.format.type",  # 3
    "$.text.format.schema",  # 4
    "$.tools",  # 5
)


def _paths(paths: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


def _maybe_unsent(con: duckdb.DuckDBPyConnection, run: str) -> bool:
    """Could any cell lack ``sent_body``? From the segments' footers (null counts) when evals opened
    the store, which costs no scan; else by counting."""
    exists = con.sql(f"SELECT count(*) FROM duckdb_views() WHERE view_name = '{RAW_META}'").fetchall()[0][0]
    if not exists:
        sql = "SELECT count(*) AS n FROM results WHERE run_id = $run AND sent_body IS NULL"
        return bool(frame(con, sql, {"run": run})["n"][0])
    df = frame(
        con,
        f"""
        SELECT count(DISTINCT file_name) FILTER (
                   WHERE path_in_schema = 'sent_body' AND coalesce(stats_null_count, 1) > 0) AS nulls,
               count(DISTINCT file_name) - count(DISTINCT file_name) FILTER (
                   WHERE path_in_schema = 'sent_body') AS without
        FROM {RAW_META} WHERE row_group_num_rows > 0
        """,
    )
    return bool(df["nulls"][0] or df["without"][0])


def sample_threshold(n_exchanges: int, max_exchanges: int | None) -> int:
    """Threshold on the sample key keeping ~``max_exchanges`` exchanges (all when None)."""
    if max_exchanges is None or n_exchanges <= max_exchanges:
        return 1_000_000
    return max(1, int(max_exchanges / n_exchanges * 1_000_000))


def load_outputs(
    con: duckdb.DuckDBPyConnection,
    run: str,
    sample_thr: int = 1_000_000,
    emb_thr: int = 1_000_000,
    *,
    key: str = SAMPLE_KEY,
) -> pl.DataFrame:
    """What only the bodies can tell, for the cells of the quality sample (``sample_thr`` on the
    sample key): answer text, refusal, tool calls and finish reason, the request's response format and
    tools, and embedding vectors for the smaller ``emb_thr`` sample. The sample is a prefix of each
    compacted results file (``SAMPLE_KEY``), which DuckDB reads without decompressing the other bodies.

    Bodies are parsed once (multi-path extraction); Responses-only paths are extracted from the few
    rows they concern.
    """
    # Cells stored without the body they sent (multipart) fall back to the recorded request. Parquet
    # null counts answer "are there any" without reading the column; the exchanges scan only if so.
    unsent = _maybe_unsent(con, run)
    req = (
        f"""SELECT id AS exchange_id, json_extract_string(request_body, {_paths(_REQ_PATHS)}) AS q0
            FROM exchanges WHERE id IN (SELECT exchange_id FROM results WHERE run_id = $run AND sent_body IS NULL)"""
        if unsent
        else "SELECT NULL::VARCHAR AS exchange_id, NULL::VARCHAR[] AS q0 WHERE false"
    )
    return frame(
        con,
        f"""
        WITH base AS (
            SELECT exchange_id, provider, "repeat", endpoint, stream, status, error_type,
                   coalesce(recorded_model, model) AS model, model AS provider_model, finish_reason,
                   json_extract_string(response_body, {_paths(_BODY_PATHS)}) AS b,
                   json_extract_string(sent_body, {_paths(_REQ_PATHS)}) AS q,
                   CASE WHEN endpoint = 'embeddings' AND {SUCCEEDED_SQL} AND {key} < {int(emb_thr)}
                        THEN TRY_CAST(json_extract(response_body, '$.data[*].embedding') AS FLOAT[][]) END AS vectors,
                   CASE WHEN endpoint = 'responses' THEN response_body END AS rbody
            FROM {results_text(con)}
            WHERE run_id = $run AND {key} < {int(sample_thr)}),
        req AS ({req}),
        cells AS (
            SELECT base.* EXCLUDE (q), coalesce(q, q0) AS q
            FROM base LEFT JOIN req USING (exchange_id))
        SELECT exchange_id, provider, "repeat", endpoint, stream, status, error_type, model, provider_model,
               CASE WHEN endpoint = 'responses' THEN array_to_string(
                        json_extract_string(rbody, '$.output[*].content[*].text'), '')
                    WHEN endpoint = 'completions' THEN b[5] ELSE b[1] END AS text,
               CASE WHEN endpoint = 'responses' THEN nullif(array_to_string(
                        json_extract_string(rbody, '$.output[*].content[*].refusal'), ''), '')
                    ELSE b[2] END AS refusal,
               CASE WHEN endpoint = 'responses' THEN nullif(CAST(CAST(list_filter(
                        json_extract(rbody, '$.output[*]'), lambda x: x->>'type' = 'function_call') AS JSON) AS VARCHAR), '[]')
                    WHEN json_array_length(b[3]) > 0 THEN b[3] END AS tool_calls,
               CASE WHEN endpoint = 'responses' THEN CASE
                        WHEN b[6] = 'completed' THEN 'stop'
                        WHEN b[7] = 'max_output_tokens' THEN 'length'
                        ELSE coalesce(b[7], b[6]) END
                    ELSE coalesce(b[4], finish_reason) END AS finish_reason,
               coalesce(q[1], q[3]) AS format_type,
               coalesce(q[2], q[4]) AS format_schema,
               q[5] AS tools,
               vectors
        FROM cells
        """,
        {"run": run},
    )


def load_attempts_429(con: duckdb.DuckDBPyConnection, run: str) -> pl.DataFrame:
    """Per cell that met a 429 on any attempt: did every 429 advertise a retry delay, and did every
    one whose body was kept carry one of OpenAI's rate-limit codes (``code_429``; null when no body
    was kept, as in stores written before attempts kept their error bodies)?"""
    codes = ", ".join(f"'{c}'" for c in RATE_LIMIT_CODES)
    has_body = "response_body" in frame(con, "SELECT * FROM attempts LIMIT 0").columns
    code = (
        f"""bool_and(CASE WHEN response_body IS NOT NULL
                     THEN coalesce(json_extract_string(TRY_CAST(response_body AS JSON), '$.error.code') IN ({codes}), false)
                     END)"""
        if has_body
        else "NULL::BOOLEAN"
    )
    return frame(
        con,
        f"""
        SELECT exchange_id, provider, "repeat", bool_and(retry_after_ms IS NOT NULL) AS advertised_429,
               {code} AS code_429
        FROM attempts WHERE run_id = $run AND status = 429 GROUP BY ALL
        """,
        {"run": run},
    )


def load_traffic(con: duckdb.DuckDBPyConnection, run: str, xids: pl.Series | None = None) -> pl.DataFrame:
    """The recorded exchanges behind the run: time, endpoint, model and token counts.

    ``xids``, the run's ``xid`` values (``xid_of``) when the caller has them, spare scanning the
    results for the run's ids: when the run covers most of the recorded exchanges (the usual
    case), every exchange's few columns are read and matched by hash, which costs a fifth.
    """
    cols = "id AS exchange_id, recorded_at, endpoint, model, prompt_tokens, completion_tokens"
    if xids is not None:
        total = frame(con, "SELECT count(*) AS n FROM exchanges")["n"][0]
        if total <= 4 * len(xids):
            df = frame(con, f"SELECT {cols} FROM exchanges")
            return df.filter(xid_of().is_in(xids.implode()))
    return frame(
        con,
        f"""
        SELECT {cols}
        FROM exchanges WHERE id IN (SELECT DISTINCT exchange_id FROM results WHERE run_id = $run)
        """,
        {"run": run},
    )


def load_prompts(con: duckdb.DuckDBPyConnection, run: str, provider: str) -> pl.DataFrame:
    """The request a judge needs to see (messages / input / prompt as JSON text), per exchange."""
    return frame(
        con,
        """
        WITH b AS (
            SELECT r.exchange_id, coalesce(r.sent_body, e.request_body) AS body
            FROM results r LEFT JOIN exchanges e ON e.id = r.exchange_id
            WHERE r.run_id = $run AND r.provider = $p
            QUALIFY row_number() OVER (PARTITION BY r.exchange_id ORDER BY r."repeat") = 1)
        SELECT exchange_id,
               CAST(coalesce(body->'$.messages', body->'$.input', body->'$.prompt') AS VARCHAR) AS prompt,
               body->>'$.instructions' AS instructions
        FROM b
        """,
        {"run": run, "p": provider},
    )


def load_judgments(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Cached judge verdicts by key (errors are not cached)."""
    return frame(con, "SELECT key, verdict, raw FROM judgments WHERE verdict IS DISTINCT FROM 'error'")
