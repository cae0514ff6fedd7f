"""The nine-provider run the end-to-end verdict tests and the report's browser tests share.

Real traffic recorded through ``parity record`` with the openai SDK, replayed to a clean
OpenAI-shaped control, to one fake gateway per known deviation, to a provider whose streams break
and to a provider that is down (nothing listens on its port). ``tests/conftest.py`` builds it once
per session as the ``trial`` fixture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

from parity.cli import main
from parity.fake.profiles import OPENAI_MODEL_PATTERNS, get_profile
from parity.fake.server import FakeProvider
from parity.workload import run_workload

# deviation profile -> the checks that must fail for it (each protects the code the deviation breaks)
DEVIATIONS = {
    "usage-chunk-choices": {"usage_chunk_shape"},
    "chunk-keys-omitted": {"chunk_finish_reason_key"},
    "error-envelope": {"error_code_known"},
    "unknown-model-400": {"error_status_match"},
    "responses-no-event-lines": {"sse_event_names"},
    "zero-usage": {"usage_present"},
}
PRICES = "input_per_1m = 0.15\noutput_per_1m = 0.60\n"
RUN = "t"


@contextmanager
def gateway_trial(tmp: Path, kit: SimpleNamespace) -> Iterator[dict]:
    """Record, replay as run ``t`` and yield ``{"db", "replay_rc", "tmp", "dead_port"}``."""
    db = tmp / "parity.duckdb"
    fast = {"time_scale": 0.05}
    with ExitStack() as stack:
        # production rejects models OpenAI does not have with 404 model_not_found, as OpenAI does
        prod = stack.enter_context(
            FakeProvider.running(get_profile("openai-like", models=OPENAI_MODEL_PATTERNS, **fast))
        )
        port = kit.free_port()
        rec = kit.start_proxy(kit.record_argv(prod.url, db, port), port, tmp / "recorder.log", db=db)
        try:
            asyncio.run(run_workload(f"http://127.0.0.1:{port}/v1", n=60, concurrency=6))
            time.sleep(0.8)  # one flush interval
        finally:
            assert rec.stop() == 0, rec.log()[-2000:]
        fakes = {"control": stack.enter_context(FakeProvider.running(get_profile("openai-like", **fast)))}
        fakes["breaks"] = stack.enter_context(FakeProvider.running(get_profile("stream-breaks", **fast)))
        for name in DEVIATIONS:
            fakes[name] = stack.enter_context(FakeProvider.running(get_profile(name, **fast)))
        dead = kit.free_port()  # nothing listens there
        toml = "[recorded.pricing]\n" + PRICES
        for name, fp in fakes.items():
            toml += f'\n["{name}"]\nbase_url = "{fp.base_url}"\nmodels = {{ "*" = "*" }}\n'
            toml += f'["{name}".pricing]\n{PRICES}'
        toml += (
            f'\n[dead]\nbase_url = "http://127.0.0.1:{dead}/v1"\nmodels = {{ "*" = "*" }}\nmax_retries = 0\n'
        )
        providers = tmp / "providers.toml"
        providers.write_text(toml)
        replay = ["replay", "--db", str(db), "--providers", str(providers), "--run", RUN, "--no-progress"]
        # the preflight would refuse the dead provider up front: this run is meant to show it failing
        replay_rc = main([*replay, "--no-preflight"])
    yield {"db": db, "replay_rc": replay_rc, "tmp": tmp, "dead_port": dead}
