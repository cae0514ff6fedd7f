"""What one answer costs under a provider's pricing table (tokens, requests, images, audio minutes)."""

from __future__ import annotations

from parity.replayer.config import PricingTable
from parity.replayer.pricing import Pricing, request_cost


def audio_seconds(body: object, fallback: object = None) -> float | None:
    """Audio duration from a transcription body (``duration`` or ``usage.seconds``), else from ``fallback``."""
    for b in (body, fallback):
        if isinstance(b, dict):
            if isinstance(b.get("duration"), (int, float)):
                return float(b["duration"])
            u = b.get("usage")
            if isinstance(u, dict) and isinstance(u.get("seconds"), (int, float)):
                return float(u["seconds"])
    return None


def cost_of(
    pricing: PricingTable,
    model: str | None,
    endpoint: str,
    ok: bool,
    body: object,
    prompt: int | None,
    completion: int | None,
    cached: int | None,
    audio_fallback: object = None,
) -> float | None:
    """USD cost of one answer; None when the model has no price, or when the answer lacks the units
    its price bills (``units_known``): unknown, never a silent $0. Failed answers cost 0."""
    price = pricing.for_model(model)
    if price is None:
        return None
    images = len(body.get("data") or []) if endpoint == "images.generations" and isinstance(body, dict) else 0
    seconds = audio_seconds(body, audio_fallback) if endpoint.startswith("audio.") else 0.0
    if ok and not units_known(price, endpoint, prompt, completion, seconds):
        return None
    return round(request_cost(price, prompt, completion, cached, images, seconds, succeeded=ok), 12)


def charges_tokens(price: Pricing) -> bool:
    """Whether the price bills prompt or completion tokens."""
    return bool(price.input_per_1m or price.output_per_1m)


def units_known(
    price: Pricing, endpoint: str, prompt: int | None, completion: int | None, seconds: float | None
) -> bool:
    """Whether a successful answer reports what its price bills.

    Audio priced per minute needs its length; images priced per image need nothing more; any other
    answer under a per-token price needs a token count (0 prompt and 0 completion tokens is no
    count: every request has a prompt). ``parity.evals.metrics.spend.request_costs`` applies the same rule.
    """
    if endpoint.startswith("audio.") and price.per_audio_minute:
        return seconds is not None
    if endpoint == "images.generations" and price.per_image:
        return True
    return not charges_tokens(price) or bool(prompt or completion)


def cost_estimated(price: Pricing | None, tokens_estimated: bool, cost: float | None) -> bool | None:
    """A cost is estimated when it bills tokens that were estimated (None when there is no cost)."""
    if cost is None:
        return None
    return bool(tokens_estimated and price is not None and charges_tokens(price))
