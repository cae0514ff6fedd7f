"""Memory-allocator settings for the batch commands, applied before polars is loaded.

polars ships its own jemalloc and, when it is imported, configures it to give freed pages back to
the kernel after 0.5 s (dirty) and 1 s (muzzy), over 4 arenas per core (pola-rs/polars#18088). An
evaluation builds and drops large frames for a few seconds, so the pages it frees are returned and
then faulted in again: evaluating a million cells took ~375,000 page faults for a 1.1 GB peak, and
a fault costs ~2.6 us on a virtual machine. jemalloc's own default decay (10 s) over one arena per
core lets those pages be reused: ~295,000 faults and 3-15% less CPU (``bench/evals_scale.py``
measures both settings in turn). polars appends the ``_RJEM_MALLOC_CONF`` it finds to its own
settings, so the later ones win, and jemalloc reads them once, when polars loads
(pola-rs/polars#23128 discusses the trade-off). jemalloc serves allocations of 8 MiB and more (a
million cells' string views take 16 MB) from a separate arena that purges at once whatever
the decay settings say ("purge eagerly for huge allocations", ``arena_choose_huge``);
``oversize_threshold:0`` keeps them in the ordinary arenas, so their pages are reused too (~6%
fewer faults, ~60 MB lower peak). The settings apply only to a process that has not loaded
polars yet and whose user has not set the variable. Freed memory is then held up to 10 s longer;
a batch command exits soon after anyway.
"""

from __future__ import annotations

import os
import sys

ENV = "_RJEM_MALLOC_CONF"


def batch_setting() -> str:
    """The jemalloc configuration for a batch job on this machine."""
    return f"narenas:{os.cpu_count() or 1},dirty_decay_ms:10000,muzzy_decay_ms:10000,oversize_threshold:0"


def tune_for_batch() -> str | None:
    """Set ``ENV`` to ``batch_setting()`` unless the user set it or polars is loaded already (its
    allocator has read its configuration then). Returns the setting applied, else None."""
    if ENV in os.environ or any(m == "polars" or m.startswith("_polars_runtime") for m in sys.modules):
        return None
    os.environ[ENV] = batch_setting()
    return os.environ[ENV]
