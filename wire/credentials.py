"""Where credentials travel (headers, query parameters), which headers are worth storing, and the
placeholder a removed secret leaves: shared by the recorder (what it keeps), the replayer (what
it stores of a provider's answer, what it must not send) and the fake provider (what it checks)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

# Headers worth keeping. Everything else, credentials above all, never reaches disk.
REQUEST_HEADERS_KEPT = (
    "content-type",
    "content-length",
    "content-encoding",
    "accept",
    "accept-encoding",
    "user-agent",
    "openai-beta",
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-os",
    "x-stainless-arch",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
    "x-stainless-async",
    "x-stainless-raw-response",
    "x-stainless-helper-method",
)
RESPONSE_HEADERS_KEPT = (
    "content-type",
    "content-encoding",
    "content-length",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
    "openai-model",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "server",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)
SECRET_HEADERS = (
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "set-cookie",
    "openai-organization",
    "openai-project",
    "proxy-authorization",
    "x-goog-api-key",
)
SECRET_QUERY = {"key", "api_key", "api-key", "apikey", "access_token", "token", "sig", "signature"}


REDACTED = "[REDACTED]"


def clean_query(query: str) -> str | None:
    """The query string without parameters that carry credentials."""
    if not query:
        return None
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() not in SECRET_QUERY]
    return urlencode(kept) or None
