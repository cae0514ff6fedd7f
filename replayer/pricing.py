"""Prices and the cost of one answered request, under every pricing model parity knows.

A provider may combine per-token (with a cached-input discount), flat per-request,
per-image and per-audio-minute prices; the cost of a request is the sum of the parts
that apply. All prices are USD.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Pricing:
    """Prices for one provider (optionally per model); zero means "not charged"."""

    input_per_1m: float = 0.0  # USD per 1M prompt tokens
    cached_input_per_1m: float | None = None  # USD per 1M cached prompt tokens (None = same as input)
    output_per_1m: float = 0.0  # USD per 1M completion tokens
    per_request: float = 0.0  # flat USD per successful request
    per_image: float = 0.0  # USD per generated image
    per_audio_minute: float = 0.0  # USD per minute of transcribed/translated audio
    as_of: str | None = None  # date the prices were taken, e.g. "2026-11-25"

    @classmethod
    def from_dict(cls, d: dict) -> Pricing:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown pricing key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_free(self) -> bool:
        return not any(
            [
                self.input_per_1m,
                self.cached_input_per_1m,
                self.output_per_1m,
                self.per_request,
                self.per_image,
                self.per_audio_minute,
            ]
        )


def request_cost(
    pricing: Pricing,
    prompt_tokens: int | None = 0,
    completion_tokens: int | None = 0,
    cached_tokens: int | None = 0,
    images: int | None = 0,
    audio_seconds: float | None = 0.0,
    succeeded: bool = True,
) -> float:
    """USD cost of one request; failed requests cost nothing (providers do not bill errors)."""
    if not succeeded:
        return 0.0
    p = prompt_tokens or 0
    c = completion_tokens or 0
    cached = min(cached_tokens or 0, p)
    cached_price = (
        pricing.input_per_1m if pricing.cached_input_per_1m is None else pricing.cached_input_per_1m
    )
    cost = (
        (p - cached) * pricing.input_per_1m / 1e6
        + cached * cached_price / 1e6
        + c * pricing.output_per_1m / 1e6
    )
    cost += pricing.per_request
    cost += (images or 0) * pricing.per_image
    cost += (audio_seconds or 0.0) / 60.0 * pricing.per_audio_minute
    return cost


def breakeven_prompt_tokens(token_pricing: Pricing, flat: Pricing, completion_tokens: float) -> float | None:
    """Prompt length above which the flat per-request price is cheaper, for a given output length.

    Solves ``p*in + c*out + token_flat == flat_cost(p, c)`` for ``p``; None when the
    per-token price never catches up (it charges nothing per input token).
    """
    if token_pricing.input_per_1m - flat.input_per_1m <= 0:
        return None
    fixed_flat = flat.per_request + completion_tokens * flat.output_per_1m / 1e6
    fixed_tok = token_pricing.per_request + completion_tokens * token_pricing.output_per_1m / 1e6
    return max(0.0, (fixed_flat - fixed_tok) * 1e6 / (token_pricing.input_per_1m - flat.input_per_1m))
