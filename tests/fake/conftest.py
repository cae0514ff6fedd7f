"""Fixtures for the fake-provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parity.fake.server import FakeProvider


@pytest.fixture
def instant() -> Iterator[FakeProvider]:
    """A zero-delay fake provider."""
    with FakeProvider.running("instant") as fp:
        yield fp
