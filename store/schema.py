"""Column contracts for every table parity stores (Arrow schemas, one per table).

The store keeps each table as immutable Parquet segments; these schemas are the
single source of truth for their columns. New columns may be appended (readers use
``union_by_name``); existing columns are never renamed or retyped.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
JSON = pa.string()  # JSON text; the views cast it to DuckDB's JSON type

EXCHANGES = pa.schema(
    [
        ("id", pa.string()),  # unique exchange id (uuid4 hex; "har-..."/"flow-..." for imports)
        ("recorded_at", TS),  # when the request started, UTC
        ("endpoint", pa.string()),  # chat.completions, responses, embeddings, ... or other
        ("method", pa.string()),
        ("path", pa.string()),  # URL path without query, e.g. /v1/chat/completions
        ("query", pa.string()),  # raw query string with secret parameters removed, or null
        ("model", pa.string()),
        ("stream", pa.bool_()),
        ("status", pa.int32()),  # HTTP status, null when no response arrived
        ("request_body", JSON),  # JSON request body, or null when not JSON
        ("request_raw", pa.binary()),  # raw request bytes when not JSON (multipart audio), else null
        ("request_content_type", pa.string()),
        ("request_headers", JSON),  # allow-listed request headers (never credentials)
        ("response_body", JSON),  # JSON body; for streams the reassembled non-streamed shape
        ("response_raw", pa.string()),  # raw SSE text for streams / raw text when not JSON
        ("response_raw_bytes", pa.binary()),  # raw body when it is not valid UTF-8
        ("response_content_type", pa.string()),
        ("response_headers", JSON),  # headers that matter: request id, processing ms, rate limits
        ("ttfb_ms", pa.float64()),  # request start -> response headers
        ("ttft_ms", pa.float64()),  # request start -> first event with content or a tool call
        ("latency_ms", pa.float64()),  # request start -> last byte / last event
        ("chunk_offsets_ms", pa.list_(pa.float64())),  # arrival of every SSE event, ms from start
        ("n_events", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("error_type", pa.string()),  # see the README's exchanges table
        ("error_message", pa.string()),
        ("stream_complete", pa.bool_()),  # [DONE] or a terminal Responses event seen
        ("client_disconnected", pa.bool_()),
        ("truncated", pa.bool_()),  # a body exceeded max_body_bytes and was cut
        ("request_bytes", pa.int64()),
        ("response_bytes", pa.int64()),  # decoded body size (bytes on the wire when it was cut)
        ("upstream_host", pa.string()),
        ("api_key_fingerprint", pa.string()),  # salted hash prefix, never the key
        ("request_id", pa.string()),  # x-request-id of the upstream response
        ("sdk_retry_count", pa.int32()),  # x-stainless-retry-count sent by the client
        ("user_agent", pa.string()),
        ("tag", pa.string()),
        ("recorder_id", pa.string()),  # which recorder process wrote it
        ("source", pa.string()),  # proxy | har | flow
        ("redactions", pa.int32()),  # replacements made by content redaction; null when it was off
        ("request_redactions", pa.int32()),  # of which in request_body / request_raw (what a replay sends)
    ]
)

# One row per recorder (or import) start: how it was configured, redaction rules included.
RECORDINGS = pa.schema(
    [
        ("recorder_id", pa.string()),  # as in exchanges.recorder_id
        ("started_at", TS),
        ("tag", pa.string()),
        ("db", pa.string()),  # the store path as given
        ("options", JSON),  # mode, limits, writer, redaction (rules, patterns, hook, hash), versions
    ]
)

RUN_EVENTS = pa.schema(
    [
        ("run_id", pa.string()),
        ("at", TS),
        ("state", pa.string()),  # started | resumed | finished | stopped | failed
        ("config", JSON),  # selection, pacing, providers (never keys), versions
        ("note", pa.string()),
    ]
)

RESULTS = pa.schema(
    [
        ("run_id", pa.string()),
        ("exchange_id", pa.string()),
        ("provider", pa.string()),  # provider name from the config, or "recorded"
        ("repeat", pa.int32()),
        ("endpoint", pa.string()),
        ("model", pa.string()),  # model actually sent
        ("recorded_model", pa.string()),
        ("stream", pa.bool_()),
        ("started_at", TS),  # wall-clock send time of the answering attempt
        ("attempts", pa.int32()),  # number of HTTP attempts, 1 = no retry
        ("rate_limit_wait_ms", pa.float64()),  # time spent waiting on 429/5xx backoff, not in latency
        ("schedule_lag_ms", pa.float64()),  # actual - planned send time (--as-recorded / --rate)
        ("resent", pa.bool_()),  # sent again after a resume (was in flight at a crash)
        ("status", pa.int32()),  # HTTP status of the final attempt, null = no response
        ("error_type", pa.string()),
        ("error_message", pa.string()),
        ("ttfb_ms", pa.float64()),
        ("ttft_ms", pa.float64()),
        ("latency_ms", pa.float64()),
        ("chunk_offsets_ms", pa.list_(pa.float64())),
        ("itl_ms", pa.list_(pa.float64())),  # per-token inter-token latencies (see README)
        ("itl_mean_ms", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("tokens_estimated", pa.bool_()),
        ("cost_usd", pa.float64()),
        ("cost_estimated", pa.bool_()),
        ("sdk_valid", pa.bool_()),
        ("sdk_error", pa.string()),
        ("stream_complete", pa.bool_()),
        ("finish_reason", pa.string()),
        ("response_headers", JSON),
        ("response_body", JSON),
        ("response_raw", pa.string()),
        ("sent_body", JSON),  # exact JSON body sent, or null for multipart
        ("sent_raw", pa.binary()),  # exact multipart bytes sent
        ("changes", JSON),  # list of declared changes applied to the recorded body
        # compatibility facts the post-processor computed (replayer/facts.py); null in older rows
        ("chk_usage", pa.bool_()),
        ("chk_error", pa.bool_()),
        ("chk_tool_calls", pa.int32()),
        ("chk_tool_args_ok", pa.bool_()),
        ("chk_n_choices", pa.int32()),
        ("chk_sse_bad_lines", pa.int32()),
        ("chk_max_tokens", pa.int64()),
        ("chk_n", pa.int32()),
        ("chk_include_usage", pa.bool_()),
        ("chk_stop_hit", pa.bool_()),
        ("chk_error_json", pa.bool_()),
        ("chk_error_type", pa.string()),
        ("chk_error_code", pa.string()),
        ("chk_retry_after", pa.bool_()),
        ("chk_should_retry", pa.string()),
        ("chk_done", pa.bool_()),
        ("chk_unnamed_events", pa.int32()),
        ("chk_usage_choices", pa.int32()),
        ("chk_chunk_keys_missing", pa.string()),
        ("chk_error_keys", pa.string()),
        ("sample_key", pa.int32()),  # parity.replayer.sampling.sample_key(exchange_id); null in older rows
    ]
)

ATTEMPTS = pa.schema(
    [
        ("run_id", pa.string()),
        ("exchange_id", pa.string()),
        ("provider", pa.string()),
        ("repeat", pa.int32()),
        ("attempt", pa.int32()),  # 1-based
        ("started_at", TS),
        ("status", pa.int32()),
        ("error_type", pa.string()),
        ("latency_ms", pa.float64()),
        ("retry_after_ms", pa.float64()),  # server-advertised delay, if any
        ("waited_ms", pa.float64()),  # backoff actually slept after this attempt
        # an error answer's evidence (status >= 400): the kept headers as JSON, the body's start
        ("response_headers", pa.string()),
        ("response_body", pa.string()),
    ]
)

# Cells a replay has claimed; lets --resume tell "in flight at the crash" from "never sent".
DISPATCHES = pa.schema(
    [
        ("run_id", pa.string()),
        ("exchange_id", pa.string()),
        ("provider", pa.string()),
        ("repeat", pa.int32()),
        ("at", TS),
    ]
)

JUDGMENTS = pa.schema(
    [
        ("key", pa.string()),  # hash of judge, rubric, order and both outputs
        ("run_id", pa.string()),
        ("exchange_id", pa.string()),
        ("provider", pa.string()),
        ("baseline", pa.string()),
        ("judge", pa.string()),
        ("order", pa.string()),  # ab | ba
        ("verdict", pa.string()),  # candidate | baseline | tie | error
        ("raw", pa.string()),
        ("at", TS),
    ]
)

# Columns holding JSON text: the views expose them with DuckDB's JSON type.
JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "exchanges": ("request_body", "request_headers", "response_body", "response_headers"),
    "run_events": ("config",),
    "results": ("response_headers", "response_body", "sent_body", "changes"),
    "attempts": (),
    "dispatches": (),
    "judgments": (),
    "recordings": ("options",),
}

TABLES: dict[str, pa.Schema] = {
    "exchanges": EXCHANGES,
    "run_events": RUN_EVENTS,
    "results": RESULTS,
    "attempts": ATTEMPTS,
    "dispatches": DISPATCHES,
    "judgments": JUDGMENTS,
    "recordings": RECORDINGS,
}
