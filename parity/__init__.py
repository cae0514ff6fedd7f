"""parity: record OpenAI API traffic, replay it to other providers, compare them."""

from parity.store.version import __version__

__all__ = ["__version__"]
