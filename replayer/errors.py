"""The replayer's exceptions (the whole tree: parity.wire.errors); provider failures are data
(result rows), never these.

ReplayError              anything that stops ``parity replay`` before or outside sending
├── ConfigError          the providers file is wrong (names the provider and the key)
├── SelectionError       the selection flags or the ids file are wrong, or select nothing usable
└── RunStateError        --run/--resume do not fit what the store holds
"""

from __future__ import annotations

from parity.wire.errors import ParityError


class ReplayError(ParityError):
    """Base of every replayer error; the CLI prints it as one line and exits 2."""


class ConfigError(ReplayError):
    """The providers file is invalid."""


class SelectionError(ReplayError):
    """The selection cannot be made."""


class RunStateError(ReplayError):
    """The run name or resume request does not match the store."""
