"""Which OpenAI API endpoint a request is, and whether replaying it has side effects."""

from __future__ import annotations

import re

ENDPOINTS = (
    "chat.completions",
    "responses",
    "completions",
    "embeddings",
    "audio.transcriptions",
    "audio.translations",
    "images.generations",
    "moderations",
    "models",
    "other",
)

# Prefixes providers put before the OpenAI paths: /v1, Azure deployments, OpenRouter's /api/v1,
# Gemini's /v1beta/openai.
_PREFIX = re.compile(
    r"^(?:/openai/deployments/[^/]+|/openai(?:/v1)?|/api/v1|/v1beta/openai|/v1)?(?:/beta)?(?=/)"
)
_SUFFIX = {
    "/chat/completions": "chat.completions",
    "/responses": "responses",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/audio/transcriptions": "audio.transcriptions",
    "/audio/translations": "audio.translations",
    "/images/generations": "images.generations",
    "/moderations": "moderations",
    "/models": "models",
}
_SIDE_EFFECT = re.compile(
    r"^/(files|uploads|batches|fine_tuning|fine-tunes|assistants|threads|vector_stores|"
    r"organization|realtime|containers|conversations|evals)(/|$)"
)


def api_path(path: str) -> str:
    """The path without query and provider prefix: ``/openai/deployments/x/chat/completions`` -> ``/chat/completions``."""
    path = path.split("?", 1)[0]
    m = _PREFIX.match(path)
    return path[m.end() :] if m else path


def classify(method: str, path: str) -> str:
    """The endpoint family of a request, ``other`` when it is none we know."""
    p = api_path(path).rstrip("/")
    method = method.upper()
    if p.startswith("/models"):
        return "models" if method == "GET" else "other"
    ep = _SUFFIX.get(p)
    if ep is None or method != "POST":
        return "other"
    return ep


def has_side_effects(method: str, path: str) -> bool:
    """True for requests that create, change or delete provider-side state."""
    p = api_path(path)
    if method.upper() in ("DELETE", "PUT", "PATCH"):
        return True
    if _SIDE_EFFECT.match(p):
        return True
    # /responses/{id}/cancel and similar actions on stored objects
    return bool(re.match(r"^/(responses|chat/completions)/[^/]+", p)) and method.upper() == "POST"


# Every endpoint but listing the models (a GET with nothing to compare) and unknown paths.
REPLAYABLE = frozenset(ENDPOINTS) - {"models", "other"}
