"""The project's one error base and its exit codes, in one place.

Every package's errors derive from :class:`ParityError`, so a command's handler, or failing that the
``parity`` entry point, turns any of them into one line on stderr and exit code ``EXIT_USAGE``.
A provider's failure during a replay is data (a result row), never one of these::

    ParityError                     something the user must fix before the command can do its work
    ├── StoreError                  parity.store.errors: the store cannot be opened or read
    │   ├── NoStoreError            a command that only reads got a path with no store
    │   └── StoreFormatError        the store's format is not this parity's (parity upgrade says what to do)
    ├── RecordError                 parity.recorder.cli: the recorder cannot start
    ├── RedactionError              parity.recorder.redaction_rules: bad rules file, builtin or hook
    ├── ImportError_                parity.recorder.importers: a file cannot be imported
    ├── ReplayError                 parity.replayer.errors
    │   ├── ConfigError             the providers file is wrong
    │   ├── SelectionError          the selection flags or ids file select nothing usable
    │   ├── RunStateError           --run / --resume do not fit the store
    │   └── PreflightError          parity.replayer.preflight: a provider failed its preflight
    └── EvalError                   parity.evals.errors
        └── RuleError               parity.evals.gate.rules: a --fail-if rule cannot be parsed

It lives in the lowest layer because every layer raises it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a failure: a check broke a rule, a replay stopped with cells left
EXIT_USAGE = 2  # bad input, nothing done: a ParityError
EXIT_PROVIDER_DEAD = 3  # parity replay: a provider answered no request (the results are stored)
EXIT_INTERRUPTED = 130  # Ctrl-C


class ParityError(Exception):
    """Base of every error parity raises for the user to act on (exit code ``EXIT_USAGE``)."""
