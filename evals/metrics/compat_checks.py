"""The compatibility checks: what each one looks at, what it protects, and whether it can fail a provider.

A **failure** is a difference that breaks the official Python or JS SDK or common application code;
an **info** check lists a difference that breaks nobody (an optional key omitted, a request accepted
that production rejected) and never fails a provider. Each check is judged against production
(``basis`` "production": the recorded answer to the same request) where production shows
something to compare with, and against OpenAI's published contract (``basis`` "contract": its
OpenAPI description and SDK behaviour) otherwise. A provider is never failed for a difference
production itself shows: when production's own answer fails a check, the provider's answer to that
exchange is not counted (``same_as_production``).
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.05
COLD_START_MS = 1000.0  # a cold-start penalty below this is not a compatibility failure
PRODUCTION_ARM = "recorded"  # the arm that holds production's answers
# OpenAI's error codes on a 429: rate limits and exhausted quota, which apps tell apart.
RATE_LIMIT_CODES = ("rate_limit_exceeded", "insufficient_quota")
# Error codes applications branch on (retry, fall back, alert, shorten the prompt). A provider that
# answers these differently breaks that code; other codes (which parameter value was wrong) are read
# by people, not programs, and differ between honest implementations.
BRANCHED_CODES = (
    "model_not_found",
    "context_length_exceeded",
    "rate_limit_exceeded",
    "insufficient_quota",
    "invalid_api_key",
    "content_policy_violation",
    "content_filter",
)


@dataclass(frozen=True)
class Check:
    """One compatibility check."""

    name: str
    what: str  # what passes
    protects: str  # the SDK behaviour or app code that breaks when it fails
    severity: str = "failure"  # failure | info
    basis: str = "production, else contract"


_CHECKS = (
    Check(
        "sdk_valid",
        "2xx bodies and stream chunks parse through the openai SDK's run-time path with the fields apps read",
        "`client.chat.completions.create(...)` returning a usable object; `choices[0].message.content`, "
        "`tool_calls`, `usage` read by every app",
    ),
    Check(
        "stream_terminated",
        "streams end with `data: [DONE]` (chat/completions) or a terminal Responses event",
        "code that waits for `[DONE]` (raw SSE readers, proxies) or `response.completed` to finish a turn",
    ),
    Check(
        "stream_wellformed",
        "every SSE line is a data:/event:/id:/retry:/comment line and every data payload is JSON",
        "the SDKs' SSE decoders: a non-JSON `data:` payload raises in `for chunk in stream`",
    ),
    Check(
        "sse_event_names",
        "Responses-API streams name every event (`event: response.output_text.delta` before its data)",
        "SSE consumers that dispatch on the event name: browser `EventSource.addEventListener(...)`, "
        "raw SSE parsers and proxies that route Responses events by name",
    ),
    Check(
        "usage_chunk_shape",
        "with `stream_options.include_usage`, the usage chunk has `choices: []`",
        "`if not chunk.choices:` (Python) / `chunk.choices.length === 0` (JS) to find the usage chunk; "
        "`chunk.choices[0].delta.content` on the other chunks",
    ),
    Check(
        "chunk_finish_reason_key",
        "every chat chunk's choice carries a `finish_reason` key (null until the last)",
        "JS `chunk.choices[0].finish_reason === null` / `!== null` to find the last chunk "
        "(a missing key is `undefined`)",
    ),
    Check(
        "chunk_logprobs_key",
        "every chat chunk's choice carries a `logprobs` key (null unless asked for)",
        "nothing common: the SDKs read a missing key as None/undefined",
        severity="info",
    ),
    Check(
        "finish_reason_present",
        "chat/completions/responses answers carry a finish reason (status for Responses)",
        "`if choice.finish_reason == 'length':` (continue or truncate) and `== 'tool_calls'` (agent loops)",
    ),
    Check(
        "usage_present",
        "usage is returned with token counts (non-streamed always; streamed when "
        "stream_options.include_usage); 0 tokens for a non-empty answer counts as missing",
        "billing and quota code reading `response.usage.prompt_tokens` / `completion_tokens`",
    ),
    Check(
        "tool_args_json",
        "tool-call arguments are a JSON object",
        "`json.loads(tool_call.function.arguments)` in every tool-calling app",
    ),
    Check(
        "error_json",
        "error bodies are OpenAI's `{error: {message: str, type: str|null, code: str|null}}`",
        "the SDKs' `APIError.message/.type/.code` (JS compares `error.code === '...'`; an integer never matches)",
    ),
    Check(
        "error_fields_present",
        "error objects carry all four keys OpenAI sends: message, type, param, code",
        "nothing common: the SDKs read a missing `param`/`code` as None/undefined",
        severity="info",
    ),
    Check(
        "error_status",
        "error bodies come with an error status (no 200 + error; rate-limit errors are 429; client errors not 5xx)",
        "the SDKs raise by status: a 200 carrying an error is returned as a success; a client error "
        "sent as 5xx is retried",
    ),
    Check(
        "error_status_match",
        "a request production rejected with a 4xx is rejected with the same status",
        "`except openai.NotFoundError` / `BadRequestError` (the SDKs pick the exception class from the "
        "status) and apps branching on status 404",
        basis="production",
    ),
    Check(
        "error_code_match",
        "a request production rejected with a code apps branch on (model_not_found, context_length_exceeded, "
        "invalid_api_key, ...) is rejected with the same `error.code`",
        "`if e.code == 'model_not_found'` / `'context_length_exceeded'` / `'invalid_api_key'`",
        basis="production",
    ),
    Check(
        "error_type_match",
        "a request production rejected gets the same `error.type`",
        "rare: apps that branch on `e.type`",
        severity="info",
        basis="production",
    ),
    Check(
        "error_code_known",
        "every error (also the retried 429s) carries an OpenAI-style `error.code`: null or a snake_case "
        f"identifier, never the HTTP status; a 429's code is {' or '.join(RATE_LIMIT_CODES)}",
        "`if e.code == 'insufficient_quota':` (stop and alert) vs `'rate_limit_exceeded'` (back off)",
        basis="contract",
    ),
    Check(
        "rejects_like_production",
        "requests production rejected (4xx) are rejected by the provider too",
        "nothing breaks: the provider accepts what OpenAI refuses (listed so it is not a surprise)",
        severity="info",
        basis="production",
    ),
    Check(
        "retry_after_429",
        "every 429 (also the retried ones) advertises Retry-After or retry-after-ms",
        "the SDKs' retry waits what the server says; without it they guess (0.5-8 s backoff)",
        basis="contract",
    ),
    Check(
        "retryable_429",
        "a 429 is retryable by the SDK's rules (x-should-retry is not false)",
        "the SDKs' automatic retries of rate limits",
        basis="contract",
    ),
    Check(
        "models_listed",
        "every model production served is listed by the provider's GET /v1/models",
        "rare: apps that pick or check models with `client.models.list()`; a model that is not served "
        "shows up as failed requests instead",
        severity="info",
        basis="contract",
    ),
    Check(
        "max_tokens_respected",
        "completion_tokens never exceed max_tokens / max_completion_tokens / max_output_tokens",
        "cost and latency budgets set through max_tokens; UIs sized for it",
    ),
    Check(
        "stop_respected",
        "no requested stop sequence appears in the output",
        "parsers that rely on the output ending before a stop marker",
    ),
    Check(
        "n_choices",
        "a request with n > 1 gets n choices",
        "`for choice in response.choices` sampling n candidates",
    ),
    Check(
        "cold_start",
        f"the first request after an idle gap is not slower by > {COLD_START_MS:.0f} ms "
        f"(one-sided Mann-Whitney p < {ALPHA})",
        "interactive apps with their own deadlines after a quiet period",
        basis="contract",
    ),
)
CATALOGUE: dict[str, Check] = {c.name: c for c in _CHECKS}
CHECKS: dict[str, str] = {c.name: c.what for c in _CHECKS}
# checks counted per model or provider rather than per cell
NOT_PER_CELL = ("models_listed", "cold_start")
CELL_CHECKS = [c for c in CHECKS if c not in NOT_PER_CELL]
