"""parity's version, stamped on what it writes: run metadata, reports, the replay User-Agent.

It lives in the lowest layer that stamps it, so the replayer and evals read it without
importing the app layer above them; ``parity.__version__`` is this value.
"""

__version__ = "0.1.0"
