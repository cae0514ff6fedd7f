"""The compatibility verdicts on real OpenAI traffic: the corpus's api.openai.com exchanges recorded
through ``parity record``, then replayed to a mirror that answers every request exactly as OpenAI
did (a perfect control), to the fake provider's clean ``openai-like`` profile, and to fake gateways
that each deviate in one known way.

The two controls must fail no check: real OpenAI bodies are the yardstick, so anything the
scorecard fails on them is a false alarm. Skips without the corpus.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack

import httpx
import pytest
from aiohttp import web
from rec_corpus import load_corpus, request_bytes, url_path
from rec_upstreams import CorpusUpstream

from parity.cli import main
from parity.fake.profiles import get_profile
from parity.fake.server import FakeProvider

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ENDPOINTS = {"chat.completions", "responses", "embeddings", "completions"}
DEVIATIONS = {
    "usage-chunk-choices": "usage_chunk_shape",
    "chunk-keys-omitted": "chunk_finish_reason_key",
    "responses-no-event-lines": "sse_event_names",
}


def _key(path: str, body: bytes) -> str:
    try:
        canon = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canon = body
    return hashlib.sha256(path.encode() + b"\0" + canon).hexdigest()


class Mirror(CorpusUpstream):
    """Answers each request with OpenAI's recorded answer to the same request (path and body)."""

    def __init__(self, records: dict[str, dict]) -> None:
        super().__init__(records)
        self.by_request = {_key(r["request"]["path"], request_bytes(r)): i for i, r in records.items()}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rid = self.by_request.get(_key(request.path, body))
        if rid is None:  # a request OpenAI never saw: the test would be wrong, so say so loudly
            return web.Response(status=599, text=f"no recorded answer for {request.path}")
        return await self.answer(request, self.records[rid])


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, module_recorders) -> dict:
    records = [
        r
        for r in load_corpus()
        if r["provider"] == "api.openai.com"
        and r["request"]["method"] == "POST"
        and r["endpoint"] in ENDPOINTS
    ]
    seen, unique = set(), {}
    for r in records:  # one record per distinct request (cassettes repeat some)
        k = _key(r["request"]["path"], request_bytes(r))
        if k not in seen:
            seen.add(k)
            unique[r["id"]] = r
    tmp = tmp_path_factory.mktemp("corpus-verdicts")
    up = CorpusUpstream(unique)
    with up.running(), httpx.Client(timeout=30) as client:
        rec = module_recorders(up.url, "--flush-interval", "0.2")
        for r in unique.values():
            req = r["request"]
            headers = {**req["headers"], "x-corpus-id": r["id"], "accept-encoding": "identity"}
            client.request("POST", rec.url + url_path(r), content=request_bytes(r) or None, headers=headers)
        time.sleep(0.5)
        assert rec.stop() == 0
    db = rec.db
    with ExitStack() as stack:
        mirror = Mirror(unique)
        stack.enter_context(mirror.running())
        fakes = {
            "fake-control": stack.enter_context(
                FakeProvider.running(get_profile("openai-like", time_scale=0.02))
            )
        }
        for name in DEVIATIONS:
            fakes[name] = stack.enter_context(FakeProvider.running(get_profile(name, time_scale=0.02)))
        toml = f'[mirror]\nbase_url = "{mirror.url}/v1"\nmodels = {{ "*" = "*" }}\n'
        for name, fp in fakes.items():
            toml += f'\n["{name}"]\nbase_url = "{fp.base_url}"\nmodels = {{ "*" = "*" }}\n'
        providers = tmp / "providers.toml"
        providers.write_text(toml)
        rc = main(["replay", "--db", str(db), "--providers", str(providers), "--run", "c", "--no-progress"])
    return {"db": db, "rc": rc, "n": len(unique)}


def _eval(run: dict, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", "--db", str(run["db"]), "--run", "c", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_real_openai_answers_fail_no_check(corpus_run, capsys):
    ev = _eval(corpus_run, capsys)
    for control in ("mirror", "fake-control"):
        failed = [r for r in ev["compat"] if r["provider"] == control and r["result"] == "fail"]
        assert failed == [], (
            control,
            [(r["check"], r["failed"], r["examples"], r["evidence"][:1]) for r in failed],
        )
    assert ev["providers"]["mirror"]["compat_failures"] == 0


def test_each_deviation_fails_its_check_on_real_traffic(corpus_run, capsys):
    ev = _eval(corpus_run, capsys)
    for name, check in DEVIATIONS.items():
        row = next(r for r in ev["compat"] if r["provider"] == name and r["check"] == check)
        assert row["result"] == "fail", (name, row)
