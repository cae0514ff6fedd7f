"""Fake OpenAI-compatible provider for parity's tests and benchmarks (`parity fake-provider`)."""

from typing import Any

from .content import count_tokens
from .profiles import PROFILES, QUIRKS, Profile, get_profile, parse_set

__all__ = [
    "PROFILES",
    "QUIRKS",
    "FakeProvider",
    "Profile",
    "count_tokens",
    "get_profile",
    "main",
    "parse_set",
]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m parity.fake.server` does not import the server module twice (runpy warning).
    if name == "FakeProvider":
        from .server import FakeProvider

        return FakeProvider
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(name)
