"""The store's errors (the tree is drawn in ``parity.wire.errors``); ``parity.store.store`` re-exports them."""

from __future__ import annotations

from parity.wire.errors import ParityError


class StoreError(ParityError):
    """The store cannot be opened or read."""


class NoStoreError(StoreError):
    """A command that only reads was given a path where no store exists."""


class StoreFormatError(StoreError):
    """The store's format is not the one this parity reads (an upgrade or a newer parity is needed)."""
