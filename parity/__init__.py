"""parity: record OpenAI API traffic, replay it to other providers, compare them."""

__version__ = "0.1.0"
