"""The batch commands switch numpy's AVX-512 paths off on Zen 4 only, before numpy loads, never over the user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from parity import simd

ROOT = Path(__file__).resolve().parents[1]


def _cpu(vendor: str, family: int, flags: str) -> str:
    one = f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 17\nflags\t\t: {flags}\n"
    return one.format(n=0) + "\n" + one.format(n=1) + "\n"


ZEN4 = _cpu("AuthenticAMD", 25, "fpu sse2 avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16")
ZEN3 = _cpu("AuthenticAMD", 25, "fpu sse2 avx2 fma")
ZEN5 = _cpu("AuthenticAMD", 26, "fpu sse2 avx2 avx512f avx512vl")
INTEL = _cpu("GenuineIntel", 6, "fpu sse2 avx2 avx512f avx512vl")


def test_only_zen4_is_zen4():
    assert simd.is_zen4(ZEN4)
    assert not any(simd.is_zen4(c) for c in (ZEN3, ZEN5, INTEL, ""))


def test_setting_needs_zen4_and_numpy_24():
    assert simd.batch_setting(ZEN4, (2, 4)) == simd.AVX512_TARGETS
    assert simd.batch_setting(ZEN4, (3, 0)) == simd.AVX512_TARGETS
    assert simd.batch_setting(ZEN4, (2, 3)) is None  # other target names before 2.4
    assert simd.batch_setting(INTEL, (2, 4)) is None
    assert simd.batch_setting(ZEN3, (2, 4)) is None


def _fresh(code: str, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != simd.ENV} | (env_extra or {})
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = (
    "import json, os, sys; from parity import simd; {pre}"
    "got = simd.tune_for_batch({cpu!r}, (2, 4)); import numpy\n"
    "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
    "print(json.dumps({{'got': got, 'env': os.environ.get(simd.ENV), 'v4': f.get('X86_V4')}}))"
)


def test_set_before_numpy_loads_and_numpy_takes_it():
    r = _fresh(PROBE.format(pre="", cpu=ZEN4))
    assert r["got"] == r["env"] == simd.AVX512_TARGETS
    assert r["v4"] is False  # numpy read it (no warning: the names are its own dispatch targets)


def test_user_setting_wins_and_other_machines_are_left_alone():
    r = _fresh(PROBE.format(pre="", cpu=ZEN4), {simd.ENV: "AVX512_SPR"})
    assert (r["got"], r["env"]) == (None, "AVX512_SPR")
    r = _fresh(PROBE.format(pre="", cpu=INTEL))
    assert (r["got"], r["env"]) == (None, None)


def test_not_set_once_numpy_is_loaded():
    r = _fresh(PROBE.format(pre="import numpy; ", cpu=ZEN4))
    assert (r["got"], r["env"]) == (None, None)


def test_parity_eval_sets_it_before_numpy_loads(tmp_path):
    """On this machine: set when it is a Zen 4 (the CI's AMD EPYC is), else untouched."""
    code = (
        "import json, os, sys; from parity.cli import main; from parity import simd\n"
        f"rc = main(['eval', '--db', {str(tmp_path / 'none.duckdb')!r}, '--run', 'x'])\n"
        "print(json.dumps({'env': os.environ.get(simd.ENV), 'numpy': 'numpy' in sys.modules}))"
    )
    r = _fresh(code)
    assert r["numpy"]
    assert r["env"] == simd.batch_setting()
