"""Loud failures: ``parity replay`` names each provider's failure reasons, exits 3 when a provider
answered nothing, and tells a wrong base_url and an unsupported endpoint apart (issue 16, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from replayhelpers import (
    ROOT,
    T0,
    fake_table,
    make_chat_workload,
    make_exchange,
    providers_file,
    write_exchanges,
)

from parity.cli import main
from parity.fake.server import FakeProvider
from parity.procs import free_port
from parity.store.store import query
from parity.wire.errors import EXIT_PROVIDER_DEAD

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

N_CHAT, N_EMB = 4, 2


class NoEmbeddings(FakeProvider):
    """A real fake provider that serves chat but not /v1/embeddings (404 "Invalid URL", as OpenAI says it)."""

    async def _embeddings(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()


def _replay(db: Path, pf: Path, run: str, *extra: str) -> int:
    args = ["replay", "--db", str(db), "--providers", str(pf), "--run", run, "--no-progress"]
    return main([*args, "--concurrency", "4", *extra])


@pytest.fixture
def workload(db: Path) -> None:
    """Streamed chat requests and embeddings, as production answered them."""
    rows = make_chat_workload(N_CHAT, gap_s=0.2)
    rows += [
        make_exchange(
            body={"model": "text-embedding-3-small", "input": f"hello {i}"},
            endpoint="embeddings",
            path="/v1/embeddings",
            recorded_at=T0 + timedelta(seconds=5 + i),
            response_body=json.dumps(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 2, "total_tokens": 2},
                }
            ),
        )
        for i in range(N_EMB)
    ]
    write_exchanges(db, rows)


@pytest.fixture
def no_embeddings() -> Iterator[FakeProvider]:
    with NoEmbeddings.running("instant") as fp:
        yield fp


def test_dead_provider_wrong_base_url_and_unsupported_endpoint(
    db: Path, tmp_path: Path, fakes, workload, no_embeddings: FakeProvider, capsys
) -> None:
    good, nov1 = fakes("good", "instant"), fakes("nov1", "instant")
    root_url = nov1.base_url.removesuffix("/v1")
    port = free_port()  # nothing listens there
    pf = providers_file(
        tmp_path,
        fake_table("good", good)
        + f'\n[nov1]\nbase_url = "{root_url}"\nmodels = {{ "*" = "*" }}\n'
        + f'\n[noemb]\nbase_url = "{no_embeddings.base_url}"\nmodels = {{ "*" = "*" }}\n'
        + f'\n[dead]\nbase_url = "http://127.0.0.1:{port}/v1"\nmodels = {{ "*" = "*" }}\nmax_retries = 1\n',
    )
    rc = _replay(db, pf, "loud", "--no-preflight")  # past the preflight, which would refuse three of them
    out, err = capsys.readouterr()
    n = N_CHAT + N_EMB
    assert rc == EXIT_PROVIDER_DEAD, out + err

    # Every provider gets its line, with reasons and counts.
    assert f"good: {n} requests, none failed" in out
    assert f"dead: {n}/{n} failed: connection refused at 127.0.0.1:{port}" in out
    assert (
        f"nov1: {n}/{n} failed: {N_CHAT}x 404 Invalid URL (POST /chat/completions), "
        f"{N_EMB}x 404 Invalid URL (POST /embeddings)"
    ) in out
    assert f"hint: base_url {root_url} has no /v1? every request got 404" in out
    # The endpoint noemb does not serve is reported apart, with the line that skips it.
    assert f"noemb: {N_CHAT} requests, none failed (+{N_EMB} to unsupported endpoints, below)" in out
    assert "Unsupported endpoints (unsupported_endpoint" in out
    unsupported = next(line for line in out.splitlines() if line.strip().startswith("noemb: embeddings:"))
    assert f"{N_EMB}/{N_EMB} got 404 Invalid URL (POST /v1/embeddings)" in unsupported
    assert 'set endpoints = ["audio.transcriptions", ' in unsupported and '"embeddings"' not in unsupported
    assert '"chat.completions"' in unsupported and "[noemb] of providers.toml" in unsupported
    # stderr names the dead providers and the reason; the head line carries it too.
    assert "parity replay: providers answered no request: " in err
    assert f"dead (connection refused at 127.0.0.1:{port})" in err
    assert f"nov1 (base_url {root_url} has no /v1? every request got 404)" in err
    assert out.startswith("Run loud: finished after") and "answered no request" in out.splitlines()[0]

    # Nothing lost: every cell is stored, typed, and the transport failure names host:port.
    rows = query(
        db,
        "SELECT provider, count(*), count(*) FILTER (WHERE status BETWEEN 200 AND 299) FROM results "
        "WHERE run_id = 'loud' GROUP BY provider ORDER BY provider",
    )
    assert rows == [("dead", n, 0), ("good", n, n), ("noemb", n, N_CHAT), ("nov1", n, 0), ("recorded", n, n)]
    msgs = query(db, "SELECT DISTINCT error_type, error_message FROM results WHERE provider = 'dead'")
    assert len(msgs) == 1 and msgs[0][0] == "connection_error"
    assert msgs[0][1].startswith(f"connection refused at 127.0.0.1:{port}: ClientConnectorError")
    # The classification is stored with the run, for evals.
    state, config = query(db, "SELECT state, CAST(config AS VARCHAR) FROM runs WHERE run_id = 'loud'")[0]
    failures = json.loads(config)["failures"]
    assert state == "finished" and failures["dead"] == ["nov1", "dead"]
    assert failures["unsupported_endpoints"] == [
        {
            "provider": "noemb",
            "endpoint": "embeddings",
            "cells": N_EMB,
            "reason": "404 Invalid URL (POST /v1/embeddings)",
            "error_type": "unsupported_endpoint",
        }
    ]
    assert failures["providers"]["dead"]["answered"] == 0 and failures["providers"]["nov1"]["answered"] == n
    assert failures["providers"]["good"] == {
        "cells": n,
        "ok": n,
        "answered": n,
        "failed": 0,
        "reasons": [],
        "dead": False,
        "hint": None,
    }
    note = query(db, "SELECT note FROM run_events WHERE run_id = 'loud' AND state = 'finished'")[0][0]
    assert "dead (connection refused at 127.0.0.1:" in note

    # The run is evaluable as it is.
    assert main(["eval", "--db", str(db), "--run", "loud", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    reliability = {(r["provider"], r["endpoint"]): r for r in report["reliability"]}
    assert reliability[("dead", "chat.completions")]["n_ok"] == 0
    assert reliability[("good", "chat.completions")]["n_ok"] == N_CHAT
    # evals reports the unsupported endpoint apart and leaves its cells out of the figures
    assert report["unsupported_endpoints"] == failures["unsupported_endpoints"]
    assert ("noemb", "embeddings") not in reliability and ("good", "embeddings") in reliability
    assert report["providers"]["noemb"]["error_rate"] == 0
    assert main(["eval", "--db", str(db), "--run", "loud"]) == 0
    text = capsys.readouterr().out
    assert "unsupported endpoints (left out of the figures above" in text
    assert f"noemb: embeddings: {N_EMB} requests got 404 Invalid URL" in text


def test_endpoints_option_skips_and_a_healthy_run_exits_0(
    db: Path, tmp_path: Path, workload, no_embeddings: FakeProvider, capsys
) -> None:
    pf = providers_file(
        tmp_path,
        f'[noemb]\nbase_url = "{no_embeddings.base_url}"\nmodels = {{ "*" = "*" }}\n'
        'endpoints = ["chat.completions"]\n',
    )
    assert _replay(db, pf, "plan", "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert "Dry run: nothing was sent." in out and "endpoint embeddings not supported by noemb" in out

    rc = _replay(db, pf, "ok")
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert out.startswith("Run ok: finished after") and "answered no request" not in out + err
    assert f"noemb: {N_CHAT} requests, none failed" in out and "Unsupported endpoints" not in out
    skipped = out.split("Skipped:", 1)[1]
    assert f"{N_EMB}  noemb: endpoint embeddings not supported by noemb" in skipped
    # The chat requests and GET /models (the dry run's and the run's preflight, the run's listing), nothing
    # else: embeddings are declared unserved, so not even the preflight probes them.
    assert (
        sorted(r["path"] for r in no_embeddings.requests)
        == ["/v1/chat/completions"] * N_CHAT + ["/v1/models"] * 3
    )
    config = json.loads(query(db, "SELECT CAST(config AS VARCHAR) FROM runs WHERE run_id = 'ok'")[0][0])
    assert config["failures"]["dead"] == [] and config["failures"]["unsupported_endpoints"] == []


def _replay_process(db: Path, pf: Path, run: str, *extra: str) -> subprocess.CompletedProcess:
    """``parity replay`` in its own process, as a user runs it (a resume is a new process)."""
    args = ["replay", "--db", str(db), "--providers", str(pf), "--run", run, "--no-progress", *extra]
    return subprocess.run(
        [sys.executable, "-m", "parity.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_resumed_run_judges_the_whole_run(db: Path, tmp_path: Path, fakes, workload) -> None:
    """--max-cost stops the first part; the resume's summary counts the cells of both parts."""
    good = fakes("good", "instant")
    port = free_port()  # nothing listens there
    pf = providers_file(
        tmp_path,
        fake_table("good", good, "[good.pricing]\ninput_per_1m = 1000.0\noutput_per_1m = 1000.0")
        + f'\n[dead]\nbase_url = "http://127.0.0.1:{port}/v1"\nmodels = {{ "*" = "*" }}\nmax_retries = 0\n',
    )
    p = _replay_process(db, pf, "twice", "--max-cost", "0.05", "--concurrency", "1", "--no-preflight")
    assert p.returncode == EXIT_PROVIDER_DEAD, p.stdout + p.stderr
    assert "Run twice: stopped" in p.stdout and "--max-cost" in p.stdout
    first = query(db, "SELECT count(*) FROM results WHERE run_id = 'twice' AND provider = 'dead'")[0][0]
    assert 0 < first < N_CHAT + N_EMB
    assert f"dead: {first}/{first} failed: connection refused at 127.0.0.1:{port}" in p.stdout

    p = _replay_process(db, pf, "twice", "--resume", "--max-cost", "1000", "--no-preflight")
    n = N_CHAT + N_EMB
    assert p.returncode == EXIT_PROVIDER_DEAD, p.stdout + p.stderr
    assert "Run twice: finished" in p.stdout
    assert f"dead: {n}/{n} failed: connection refused at 127.0.0.1:{port}" in p.stdout
    assert f"good: {n} requests, none failed" in p.stdout
    assert f"dead (connection refused at 127.0.0.1:{port})" in p.stderr
