"""``parity providers check`` and the preflight ``parity replay`` runs before sending (issue 18, item 2):
keys, base_urls, models and endpoint families checked against real fake providers on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from replayhelpers import providers_file
from test_replay_failures import N_CHAT, N_EMB, NoEmbeddings, _replay, workload  # noqa: F401

from parity.cli import main
from parity.fake.server import FakeProvider
from parity.procs import free_port
from parity.replayer.resume import plan_path
from parity.store.segments import segment_root
from parity.store.store import query

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("workload")]
MODELS = '{ "*" = "*" }'


class NoModelList(FakeProvider):
    """A real fake provider that does not serve GET /v1/models (as some self-hosted servers)."""

    async def _models(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()


def _table(name: str, base_url: str, extra: str = "") -> str:
    return f'\n[{name}]\nbase_url = "{base_url}"\nmodels = {MODELS}\n{extra}'


def _check(pf: Path, db: Path | None, *extra: str) -> int:
    args = ["providers", "check", "--providers", str(pf)]
    return main([*args, *(["--db", str(db)] if db else []), *extra])


def _model_posts(fp: FakeProvider) -> list[dict]:
    """Requests that would run a model (the empty-body endpoint probes do not)."""
    return [r for r in fp.requests if r["method"] == "POST" and (r.get("body") or {}).get("model")]


@pytest.fixture
def healthy() -> Iterator[FakeProvider]:
    with FakeProvider.running("instant") as fp:
        yield fp


def test_healthy_provider_passes_without_a_token(db: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    with FakeProvider.running("instant", require_key=True) as keyed:  # 401 without the key
        _healthy(db, tmp_path, keyed, monkeypatch, capsys)


def _healthy(db: Path, tmp_path: Path, healthy: FakeProvider, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PARITY_TEST_FASTCO_KEY", "sk-test-not-a-real-key-1234")
    pf = providers_file(
        tmp_path, _table("fastco", healthy.base_url, 'api_key_env = "PARITY_TEST_FASTCO_KEY"\n')
    )
    assert _check(pf, db) == 0
    out, err = capsys.readouterr()
    assert out == "ok   fastco: key set, 2/2 models listed, chat.completions, embeddings served\n", out + err
    assert "sk-test" not in out + err
    # What it sent: GET /models, and an empty JSON object to each family (answered 400: served).
    seen = sorted((r["method"], r["path"], str(r.get("body"))) for r in healthy.requests)
    assert seen == [
        ("GET", "/v1/models", "None"),
        ("POST", "/v1/chat/completions", "{}"),
        ("POST", "/v1/embeddings", "{}"),
    ]


def test_dead_port_names_the_reason_and_host_port(db: Path, tmp_path: Path, healthy, capsys) -> None:
    port = free_port()  # nothing listens there
    pf = providers_file(
        tmp_path, _table("good", healthy.base_url) + _table("dead", f"http://127.0.0.1:{port}/v1")
    )
    t = time.perf_counter()
    assert _check(pf, db) == 1
    assert time.perf_counter() - t < 5
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "ok   good: no api_key_env, 2/2 models listed, chat.completions, embeddings served",
        f"FAIL dead: connection refused at 127.0.0.1:{port}",
    ]
    assert err == "parity providers check: 1 of 2 failed: dead\n"


def test_base_url_without_v1_gets_the_hint(db: Path, tmp_path: Path, healthy, capsys) -> None:
    root = healthy.url
    pf = providers_file(tmp_path, _table("nov1", root))
    assert _check(pf, db) == 1
    out = capsys.readouterr().out
    assert out == (
        "FAIL nov1: every path answers 404 (GET /models, POST /chat/completions, POST /embeddings): "
        f'does base_url end in /v1? ({root}/v1/models answers 200: use base_url = "{root}/v1")\n'
    )


def test_missing_model_and_unserved_endpoint(db: Path, tmp_path: Path, capsys) -> None:
    with (
        FakeProvider.running("instant", models=("gpt-4o-mini",)) as chat_only,
        NoEmbeddings.running("instant") as noemb,
    ):
        pf = providers_file(
            tmp_path,
            _table("thin", chat_only.base_url)
            + _table("noemb", noemb.base_url)
            + _table("declared", noemb.base_url, 'endpoints = ["chat.completions"]\n'),
        )
        assert _check(pf, db) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "FAIL thin: model 'text-embedding-3-small' not found: not in GET /models, "
        "GET /models/text-embedding-3-small answered 404 The model 'text-embedding-3-small' does not exist"
    )
    assert out[1].startswith(
        "FAIL noemb: endpoint embeddings not served (POST /embeddings answered 404 Invalid URL "
        "(POST /v1/embeddings)); leave it out with endpoints = [...] in [noemb]"
    )
    # A family the provider declares is trusted (not probed); the others are not sent to it at all.
    assert out[2] == "ok   declared: no api_key_env, 1/1 models listed, chat.completions declared"
    assert len(out) == 3


def test_missing_key_is_named_never_printed(db: Path, tmp_path: Path, healthy, monkeypatch, capsys) -> None:
    monkeypatch.delenv("PARITY_TEST_UNSET_KEY", raising=False)
    pf = providers_file(
        tmp_path, _table("nokey", healthy.base_url, 'api_key_env = "PARITY_TEST_UNSET_KEY"\n')
    )
    assert _check(pf, db) == 1
    out, err = capsys.readouterr()
    assert out == "FAIL nokey: environment variable PARITY_TEST_UNSET_KEY (api_key_env) is not set\n"
    assert "nokey" in err


def test_without_a_model_list_one_token_per_model(db: Path, tmp_path: Path, capsys) -> None:
    with NoModelList.running("instant") as fp:
        pf = providers_file(tmp_path, _table("bare", fp.base_url))
        assert _check(pf, db) == 0
        posts = _model_posts(fp)
    out = capsys.readouterr().out
    assert out == (
        "ok   bare: no api_key_env, 2/2 models answered a one-token request (GET /models not served), "
        "chat.completions, embeddings served\n"
    )
    bodies = sorted((p["path"], p["body"].get("max_tokens"), p["body"]["model"]) for p in posts)
    assert bodies == [
        ("/v1/chat/completions", 1, "gpt-4o-mini"),
        ("/v1/embeddings", None, "text-embedding-3-small"),
    ]


def test_bad_input_is_one_line_and_exit_2(db: Path, tmp_path: Path, capsys) -> None:
    assert _check(tmp_path / "missing.toml", None) == 2
    assert capsys.readouterr().err.count("\n") == 1
    bad = providers_file(tmp_path, "[x\nbase_url = 1\n", "bad.toml")
    assert _check(bad, None) == 2
    err = capsys.readouterr().err
    assert err.startswith("parity providers check: error: ") and "not valid TOML" in err
    pf = providers_file(tmp_path, _table("x", "http://127.0.0.1:1/v1"))
    typo = tmp_path / "typo.duckdb"
    assert _check(pf, typo) == 2
    assert f"no store at {typo}" in capsys.readouterr().err
    assert not segment_root(typo).exists()


def test_replay_refuses_before_sending_anything(db: Path, tmp_path: Path, healthy, capsys) -> None:
    port = free_port()  # nothing listens there
    pf = providers_file(
        tmp_path, _table("good", healthy.base_url) + _table("dead", f"http://127.0.0.1:{port}/v1")
    )
    t = time.perf_counter()
    assert _replay(db, pf, "refused") == 2
    assert time.perf_counter() - t < 5
    out, err = capsys.readouterr()
    assert f"FAIL dead: connection refused at 127.0.0.1:{port}" in err
    assert err.splitlines()[-1] == (
        "parity replay: error: preflight failed for dead (the FAIL lines above); "
        "nothing was sent. Fix the providers file, replay only the others with --provider good, "
        "or skip the check with --no-preflight"
    )
    assert _model_posts(healthy) == []  # the preflight's probes carry no model: nothing was replayed
    assert query(db, "SELECT count(*) FROM runs")[0][0] == 0
    assert not plan_path(segment_root(db), "refused").exists()  # no saved plan: --resume has nothing

    # --dry-run shows the same verdict (free probes only) and says a real run would stop.
    assert _replay(db, pf, "refused", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"  FAIL dead: connection refused at 127.0.0.1:{port}" in out
    assert "note: a real run would stop here (or pass --no-preflight)" in out

    # The healthy provider alone passes and the run goes ahead.
    assert _replay(db, pf, "good-only", "--provider", "good") == 0
    err = capsys.readouterr().err
    assert "  ok   good: " in err
    assert len(_model_posts(healthy)) == N_CHAT + N_EMB


def test_without_a_store_checks_the_models_the_mapping_names(tmp_path: Path, monkeypatch, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no parity.duckdb here: keys, base_urls and named models only
    with FakeProvider.running("instant", models=("gpt-4o-mini",)) as fp:
        pf = providers_file(
            tmp_path,
            f'[named]\nbase_url = "{fp.base_url}"\nmodels = {{ "gpt-4o" = "llama-x", "*" = "gpt-4o-mini" }}\n',
        )
        assert _check(pf, None) == 1
    assert capsys.readouterr().out == (
        "FAIL named: model 'llama-x' not found: not in GET /models, GET /models/llama-x answered 404 "
        "The model 'llama-x' does not exist; mapped from gpt-4o in [named] models\n"
    )
    assert list(elsewhere.iterdir()) == []


def test_a_hanging_provider_fails_within_its_timeout(db: Path, tmp_path: Path, capsys) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        pf = providers_file(tmp_path, _table("hang", f"http://127.0.0.1:{port}/v1", "timeout_s = 1\n"))
        t = time.perf_counter()
        assert _check(pf, db) == 1
        took = time.perf_counter() - t
    assert capsys.readouterr().out == f"FAIL hang: timeout at 127.0.0.1:{port}\n"
    assert took < 3


def test_a_model_served_but_not_listed_is_asked_for_by_id(db: Path, tmp_path: Path, capsys) -> None:
    with FakeProvider.running("instant", models=("gpt-4o*",)) as fp:  # lists gpt-4o, gpt-4o-mini only
        pf = providers_file(
            tmp_path,
            f'[dated]\nbase_url = "{fp.base_url}"\nmodels = {{ "*" = "gpt-4o-2024-08-06" }}\n'
            'endpoints = ["chat.completions"]\n',
        )
        assert _check(pf, db) == 0
        asked = [r["path"] for r in fp.requests]
    assert capsys.readouterr().out == (
        "ok   dated: no api_key_env, 1/1 models found (1 not listed, by GET /models/ID), chat.completions declared\n"
    )
    assert asked == ["/v1/models", "/v1/models/gpt-4o-2024-08-06"]
