"""Behaviour profiles for the fake OpenAI-compatible provider."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import random
import typing
from dataclasses import dataclass
from typing import Any

ERROR_KINDS = ("401", "429", "500", "503", "reset")
# The quirks the `quirky` profile switches on all at once.
LEGACY_QUIRKS = (
    "no_done",
    "no_stream_usage",
    "no_finish_reason",
    "int_error_codes",
    "bad_tool_args",
    "extra_fields",
    "ignore_params",
)
# One deviation of a real gateway each; each has a named profile of its own (see PROFILES).
GATEWAY_QUIRKS = (
    "usage_chunk_choices",
    "chunk_keys_omitted",
    "error_envelope",
    "unknown_model_400",
    "responses_no_event_lines",
    "stream_breaks",
    "zero_usage",
)
QUIRKS = LEGACY_QUIRKS + GATEWAY_QUIRKS
# Model names OpenAI serves, as globs: a profile restricted to these rejects only made-up names.
OPENAI_MODEL_PATTERNS = (
    "gpt-*",
    "chatgpt-*",
    "o1*",
    "o3*",
    "o4*",
    "codex-*",
    "computer-use-*",
    "text-embedding-*",
    "whisper-*",
    "tts-*",
    "dall-e-*",
    "omni-moderation-*",
    "text-moderation-*",
    "davinci-*",
    "babbage-*",
)


@dataclass(frozen=True)
class Profile:
    """Timing, error and compatibility behaviour of one fake provider."""

    name: str = "instant"
    description: str = ""
    ttft_ms: float = 0.0  # fixed value, or the median (lognormal) / mean (normal)
    ttft_dist: str = "fixed"  # fixed | normal | lognormal
    ttft_sigma: float = 0.0  # normal: std-dev in ms (scaled); lognormal: sigma of ln (unitless)
    itl_ms: float = 0.0
    itl_jitter_ms: float = 0.0  # gaussian std-dev added per chunk, clipped at 0
    chunk_tokens: int = 1
    cold_start_ms: float = 0.0
    cold_idle_s: float = 0.0  # 0: only the first request to each model is cold
    error_rate: float = 0.0
    error_kinds: tuple[tuple[str, float], ...] = (("429", 1.0),)
    error_schedule: tuple[tuple[int, str], ...] = ()
    error_every: int = 0  # > 0: request #k fails (an error_kinds pick) when (k + seed) % error_every == 0
    retry_after_s: float = 1.0
    reset_after_chunks: int = 3
    models: tuple[str, ...] = ("*",)  # names or globs ("gpt-*"); "*" accepts every model
    require_key: bool = False
    seed: int = 0
    time_scale: float = 1.0
    answer_min_tokens: int = 20
    answer_max_tokens: int = 300
    no_done: bool = False
    no_stream_usage: bool = False
    no_finish_reason: bool = False
    int_error_codes: bool = False
    bad_tool_args: bool = False
    extra_fields: bool = False
    ignore_params: bool = False
    usage_chunk_choices: bool = False  # include_usage chunk: choices [{"index":0,"delta":{}}], not []
    chunk_keys_omitted: bool = False  # chat chunks without "logprobs"; "finish_reason" only in the last
    error_envelope: bool = False  # error bodies {"message", "type": "RateLimitError", "code": "429"}
    unknown_model_400: bool = False  # a model not in `models`: 400 generic error, not 404 model_not_found
    responses_no_event_lines: bool = False  # Responses-API SSE without "event:" lines
    stream_breaks: bool = False  # every break_every-th stream: in-stream error, no [DONE]/terminal event
    break_every: int = 3
    break_after_chunks: int = 3
    zero_usage: bool = False  # usage reports 0 input and 0 output tokens
    # capacity model (0 = unlimited): requests wait for one of `slots`; the wait is part of TTFT
    slots: int = 0
    service_ms: float = 0.0  # > 0: a request holds its slot exactly this long (first token at min(ttft, it))
    queue_limit: int = 0  # > 0: a request finding this many already waiting gets 429 at once
    kv_slowdown: float = 0.0  # a request's times x (1 + kv_slowdown * other busy slots / slots)

    def __post_init__(self) -> None:
        if self.ttft_dist not in ("fixed", "normal", "lognormal"):
            raise ValueError(f"ttft_dist must be fixed, normal or lognormal, not {self.ttft_dist!r}")
        if self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be >= 1")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")
        for kind, _ in self.error_kinds:
            _check_kind(kind)
        for _, kind in self.error_schedule:
            _check_kind(kind)
        if self.answer_min_tokens < 1 or self.answer_max_tokens < self.answer_min_tokens:
            raise ValueError("need 1 <= answer_min_tokens <= answer_max_tokens")
        if self.error_every < 0 or self.break_every < 1 or self.break_after_chunks < 0:
            raise ValueError("need error_every >= 0, break_every >= 1 and break_after_chunks >= 0")
        if self.slots < 0 or self.queue_limit < 0 or self.service_ms < 0 or self.kv_slowdown < 0:
            raise ValueError("need slots, queue_limit, service_ms and kv_slowdown >= 0")

    @property
    def capacity_rps(self) -> float | None:
        """Requests per second the slots can serve when service_ms fixes a request's time (else None)."""
        if self.slots <= 0 or self.service_ms <= 0 or self.kv_slowdown > 0:
            return None
        return self.slots / (self.ms("service_ms") / 1000.0)

    def ms(self, name: str) -> float:
        """An option that time_scale applies to, scaled (ms or s as named)."""
        return float(getattr(self, name)) * self.time_scale

    def sample_ttft_ms(self, rng: random.Random) -> float:
        """Draw one time-to-first-token in ms (time_scale applied)."""
        base = self.ms("ttft_ms")
        if self.ttft_dist == "normal":
            return max(0.0, rng.gauss(base, self.ttft_sigma * self.time_scale))
        if self.ttft_dist == "lognormal":
            return base * math.exp(rng.gauss(0.0, self.ttft_sigma))
        return base

    def accepts_model(self, model: str) -> bool:
        """Whether this provider serves `model` (an entry of `models` may be a glob; "*" accepts all)."""
        return "*" in self.models or any(fnmatch.fnmatchcase(model, m) for m in self.models)

    @property
    def quirks(self) -> tuple[str, ...]:
        """Names of the compatibility quirks that are switched on."""
        return tuple(q for q in QUIRKS if getattr(self, q))

    def replace(self, **overrides: Any) -> Profile:
        """A copy with the given options changed (string values are parsed)."""
        return dataclasses.replace(self, **coerce_overrides(overrides))

    def describe(self) -> dict[str, Any]:
        """Public options as a plain dict (for logs and --list-profiles)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _check_kind(kind: str) -> None:
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; choose from {', '.join(ERROR_KINDS)}")


_OPENAI_TIMING: dict[str, Any] = dict(
    ttft_ms=350.0, ttft_dist="lognormal", ttft_sigma=0.35, itl_ms=20.0, itl_jitter_ms=4.0
)


def _gateway(name: str, description: str, **quirk: Any) -> Profile:
    """openai-like timing plus one deviation real gateways show."""
    return Profile(name=name, description=description, **quirk, **_OPENAI_TIMING)


PROFILES: dict[str, Profile] = {
    "instant": Profile(name="instant", description="no delays; OpenAI-shaped (fast tests)"),
    "openai-like": Profile(
        name="openai-like",
        description="OpenAI's timing and wire format exactly (the clean control)",
        **_OPENAI_TIMING,
    ),
    "fast": Profile(
        name="fast",
        description="a faster provider (TTFT ~120 ms, 8 ms per token); OpenAI-shaped",
        ttft_ms=120.0,
        ttft_dist="lognormal",
        ttft_sigma=0.2,
        itl_ms=8.0,
        itl_jitter_ms=1.5,
    ),
    "slow": Profile(
        name="slow",
        description="a slower provider (TTFT ~900 ms, 45 ms per token); OpenAI-shaped",
        ttft_ms=900.0,
        ttft_dist="lognormal",
        ttft_sigma=0.4,
        itl_ms=45.0,
        itl_jitter_ms=8.0,
    ),
    # 15% errors in all: 10% 429 (Retry-After 1 s), 2% 500, 2% 503, 1% connection reset.
    "flaky": Profile(
        name="flaky",
        description="15% errors: 429 (Retry-After 1 s), 500, 503 and connection resets",
        error_rate=0.15,
        error_kinds=(("429", 10.0), ("500", 2.0), ("503", 2.0), ("reset", 1.0)),
        retry_after_s=1.0,
        **_OPENAI_TIMING,
    ),
    "cold-start": Profile(
        name="cold-start",
        description="+2.5 s on the first request to a model and after 10 s without one",
        cold_start_ms=2500.0,
        cold_idle_s=10.0,
        **_OPENAI_TIMING,
    ),
    "capacity": Profile(
        name="capacity",
        description="a self-hosted server: 4 slots, 250 ms per request (16 req/s), queueing in TTFT",
        ttft_ms=40.0,
        slots=4,
        service_ms=250.0,
        kv_slowdown=0.0,
    ),
    "quirky": Profile(
        name="quirky",
        description="all the older quirks at once: " + ", ".join(LEGACY_QUIRKS),
        **{q: True for q in LEGACY_QUIRKS},
        **_OPENAI_TIMING,
    ),
    "usage-chunk-choices": _gateway(
        "usage-chunk-choices",
        'the include_usage chunk carries choices [{"index":0,"delta":{}}] instead of []',
        usage_chunk_choices=True,
    ),
    "chunk-keys-omitted": _gateway(
        "chunk-keys-omitted",
        'chat chunks omit "logprobs", and "finish_reason" except in the final chunk',
        chunk_keys_omitted=True,
    ),
    "error-envelope": _gateway(
        "error-envelope",
        'errors as {"message", "type": "RateLimitError", "code": "429"} (no param); every 10th request a 429',
        error_envelope=True,
        error_every=10,
        error_kinds=(("429", 1.0),),
    ),
    "unknown-model-400": _gateway(
        "unknown-model-400",
        "a model outside `models` (OpenAI's names by default) gets 400, not 404 model_not_found",
        unknown_model_400=True,
        models=OPENAI_MODEL_PATTERNS,
    ),
    "responses-no-event-lines": _gateway(
        "responses-no-event-lines",
        'Responses-API streams carry only "data:" lines, no "event:" lines',
        responses_no_event_lines=True,
    ),
    "stream-breaks": _gateway(
        "stream-breaks",
        'every 3rd stream stops after 3 chunks with data: {"error": ...}; no [DONE] or terminal event',
        stream_breaks=True,
    ),
    "zero-usage": _gateway(
        "zero-usage",
        "usage reports 0 prompt and 0 completion tokens (streamed and not)",
        zero_usage=True,
    ),
}


def get_profile(name: str | Profile = "openai-like", **overrides: Any) -> Profile:
    """A named profile (or a Profile) with per-option overrides applied."""
    if isinstance(name, Profile):
        base = name
    else:
        try:
            base = PROFILES[name]
        except KeyError:
            raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
    return base.replace(**overrides) if overrides else base


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse repeated CLI `--set key=value` items into a dict (values still strings)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Profile) if f.name not in ("name", "description")}


def coerce_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Check override names and turn string values into the field's type."""
    hints = typing.get_type_hints(Profile)
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in _FIELD_TYPES:
            raise ValueError(f"unknown profile option {key!r}; valid: {', '.join(sorted(_FIELD_TYPES))}")
        out[key] = _coerce(key, hints[key], value)
    return out


def _coerce(key: str, hint: Any, value: Any) -> Any:
    if key == "error_kinds":
        return _parse_kinds(value)
    if key == "error_schedule":
        return _parse_schedule(value)
    if key == "models":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(m).strip() for m in items if str(m).strip())
    if hint is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"{key}: not a boolean: {value!r}")
        return bool(value)
    if hint is int:
        return int(float(value)) if isinstance(value, str) else int(value)
    if hint is float:
        return float(value)
    return str(value)


def _parse_kinds(value: Any) -> tuple[tuple[str, float], ...]:
    """'429:10,500:2,reset' -> weighted kinds (weight 1 when omitted)."""
    if isinstance(value, dict):
        items = [(str(k), float(w)) for k, w in value.items()]
    elif isinstance(value, str):
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            kind, _, weight = part.partition(":")
            items.append((kind.strip(), float(weight) if weight else 1.0))
    else:
        items = [(str(k), 1.0) if not isinstance(k, tuple) else (str(k[0]), float(k[1])) for k in value]
    for kind, weight in items:
        _check_kind(kind)
        if weight < 0:
            raise ValueError("error kind weights must be >= 0")
    return tuple(items)


def _parse_schedule(value: Any) -> tuple[tuple[int, str], ...]:
    """'429@3,500@7' -> ((3, '429'), (7, '500')): request #3 and #7 (1-based) fail."""
    if isinstance(value, dict):
        pairs = [(int(n), str(k)) for n, k in value.items()]
    elif isinstance(value, str):
        pairs = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            kind, sep, num = part.partition("@")
            if not sep:
                raise ValueError(f"error_schedule item must look like 429@3, got {part!r}")
            pairs.append((int(num), kind.strip()))
    else:
        pairs = [(int(n), str(k)) for n, k in value]
    for num, kind in pairs:
        _check_kind(kind)
        if num < 1:
            raise ValueError("error_schedule request numbers start at 1")
    return tuple(sorted(pairs))
