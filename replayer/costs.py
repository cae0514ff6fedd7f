"""What one answer costs under a provider's pricing table (tokens, requests, images, audio minutes)."""

from __future__ import annotations

from replayer.config import PricingTable
from replayer.pricing import request_cost


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
    """USD cost of one answer, None when the model has no price (failed answers cost 0)."""
    price = pricing.for_model(model)
    if price is None:
        return None
    images = len(body.get("data") or []) if endpoint == "images.generations" and isinstance(body, dict) else 0
    seconds = audio_seconds(body, audio_fallback) if endpoint.startswith("audio.") else 0.0
    return round(request_cost(price, prompt, completion, cached, images, seconds, succeeded=ok), 12)
