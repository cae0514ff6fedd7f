"""numpy's AVX-512 code paths, switched off on AMD Zen 4 for the batch commands, before numpy loads.

numpy sorts and selects (``np.sort``, ``np.argsort``, ``np.quantile``, ``np.partition``) with
x86-simd-sort, whose AVX-512 path writes every vector with a compress-store to memory. Zen 4 runs
that instruction as microcode (~142 cycles; numpy/x86-simd-sort#6, numpy/numpy#32690; Zen 5
fixed it), so there AVX-512 sorts are several times slower than numpy's AVX2 ones. On an AMD EPYC
(Zen 4), 10^6 doubles: ``np.sort`` 60 -> 12 ms, ``np.argsort`` 132 -> 39 ms, ``np.quantile``
28 -> 20 ms; the 1M-cell evaluation ~6% less wall time (``bench/evals_scale.py``). The price:
the other kernels use AVX2 too, and ``np.exp`` over 10^6 values went from 1 to 6 ms, which
the evaluation does not use.

numpy reads ``NPY_DISABLE_CPU_FEATURES`` once, when it loads, and warns about names that are not
its dispatch targets; the names here are those of numpy 2.4 and later, so older numpy is left
as it is. As with the allocator, the user's own setting always wins.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

ENV = "NPY_DISABLE_CPU_FEATURES"
AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy >= 2.4's AVX-512 dispatch targets
CPUINFO = Path("/proc/cpuinfo")


def is_zen4(cpuinfo: str) -> bool:
    """An AMD family 19h processor with AVX-512 (``/proc/cpuinfo`` text): Zen 4. Zen 3, the same
    family, has no AVX-512; Zen 5 is family 1Ah."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor tells
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def _numpy_version() -> tuple[int, int] | None:
    try:
        major, minor = metadata.version("numpy").split(".")[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def batch_setting(cpuinfo: str | None = None, numpy_version: tuple[int, int] | None = None) -> str | None:
    """The ``ENV`` value for a batch job on this machine: the AVX-512 targets on Zen 4 with numpy
    2.4 or later, else None (nothing to change)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return None
    if not is_zen4(cpuinfo):  # the cheap test first: most machines need no numpy version lookup
        return None
    version = numpy_version if numpy_version is not None else _numpy_version()
    return AVX512_TARGETS if version is not None and version >= (2, 4) else None


def tune_for_batch(cpuinfo: str | None = None, numpy_version: tuple[int, int] | None = None) -> str | None:
    """Set ``ENV`` to ``batch_setting()`` unless the user set it, numpy is loaded already (it has
    read the variable then) or this machine needs nothing. Returns the setting applied, else None."""
    if ENV in os.environ or "numpy" in sys.modules:
        return None
    value = batch_setting(cpuinfo, numpy_version)
    if value is not None:
        os.environ[ENV] = value
    return value
