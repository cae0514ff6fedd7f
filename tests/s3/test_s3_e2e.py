"""A fleet of recorders, one bucket: ``parity record`` x2 -> ``replay`` -> ``eval`` -> ``report`` ->
``export`` -> ``compact``, all with ``--db s3://bucket/prefix`` on moto's S3 server on 127.0.0.1,
plus an upload failure mid-recording and a ``kill -9`` of a recorder.

Every served exchange must be in the bucket exactly once (nothing on local disk but an emptied
spill), with the replay's results beside it, visible to ``parity eval``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("moto", reason="moto (a dev dependency) provides the S3-compatible server")

from s3kit import ACCESS_KEY, SECRET_KEY, local_parquet  # noqa: E402
from waitkit import wait_for  # noqa: E402

from parity.cli import main  # noqa: E402
from parity.store.store import connect  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake():
    from parity.fake.server import FakeProvider

    with FakeProvider.running(profile="instant", port=0, answer_min_tokens=4, answer_max_tokens=8) as fp:
        yield fp


def send(base_urls: list[str], markers: list[str], workers: int = 8) -> list[int]:
    """One chat request per marker (every third streamed) through the recorders, by the openai SDK."""
    import openai

    clients = [openai.OpenAI(base_url=u, api_key="sk-test-s3", max_retries=0, timeout=30) for u in base_urls]

    def one(i_marker: tuple[int, str]) -> int:
        i, marker = i_marker
        client = clients[i % len(clients)]
        kw = {"model": "gpt-4o-mini", "user": marker, "messages": [{"role": "user", "content": marker}]}
        if i % 3 == 0:
            with client.chat.completions.create(stream=True, **kw) as stream:
                for _ in stream:
                    pass
        else:
            client.chat.completions.create(**kw)
        return 200

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, enumerate(markers)))


def markers(db: str, prefix: str) -> dict[str, int]:
    """{marker: rows} for recorded requests whose ``user`` starts with ``prefix``."""
    con = connect(db)
    try:
        got = con.execute(
            "SELECT request_body->>'$.user' AS u, count(*) FROM exchanges WHERE u LIKE ? GROUP BY u",
            [prefix + "%"],
        ).fetchall()
    finally:
        con.close()
    return dict(got)


def seg_files(spill: Path) -> list[Path]:
    return [p for p in local_parquet(spill) if p.name.startswith("seg-")]


def parity(*args: str, env: dict) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "parity.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_two_recorders_one_bucket_then_replay_eval_report_export_compact(
    s3, store_url, fake, run_recorder, tmp_path, capsys
):
    bucket, prefix = store_url.removeprefix("s3://").split("/", 1)
    spills = [tmp_path / "spill-a", tmp_path / "spill-b"]
    a, b = (
        run_recorder(fake.url, "--flush-interval", "0.2", db=store_url, env=s3.env, spill_dir=s)
        for s in spills
    )
    n = 60
    sent = [f"two-{i:03d}" for i in range(n)]
    assert send([a.base_url, b.base_url], sent) == [200] * n
    assert a.stop() == 0 and b.stop() == 0
    for rec in (a, b):
        assert "0 spilled, 0 re-imported, 0 lost" in rec.log(), rec.log()[-2000:]
        assert SECRET_KEY not in rec.log() and ACCESS_KEY not in rec.log()
    got = markers(store_url, "two-")
    assert sorted(got) == sent and set(got.values()) == {1}  # every exchange exactly once

    keys = s3.keys(bucket, prefix)
    writers = {
        re.search(r"-([^-]+\.\d+)-", k.rsplit("/", 1)[1]).group(1) for k in keys if "/exchanges/seg-" in k
    }
    assert len(writers) == 2, writers  # each recorder's writer wrote its own segments
    # on local disk: no segment at all (a spill folder holds only its empty schema file, if anything)
    assert [p for p in local_parquet(tmp_path, REPO / "s3:") if not p.name.startswith("_schema-")] == []

    providers = tmp_path / "providers.toml"
    providers.write_text(f'[cand]\nbase_url = "{fake.url}/v1"\nmodels = {{ "*" = "*" }}\n')
    out = parity("replay", "--db", store_url, "--providers", str(providers), "--run", "r1", env=s3.env)
    assert out.returncode == 0, out.stderr[-3000:]
    con = connect(store_url)
    try:
        cells = con.execute(
            "SELECT count(*), count(DISTINCT exchange_id) FROM results WHERE run_id = 'r1' AND provider = 'cand'"
        ).fetchall()
        joined = con.execute(
            "SELECT count(*) FROM results r JOIN exchanges x ON x.id = r.exchange_id "
            "WHERE r.run_id = 'r1' AND r.provider = 'cand' AND x.request_body->>'$.user' LIKE 'two-%'"
        ).fetchall()
    finally:
        con.close()
    assert cells == [(n, n)] and joined == [(n,)]

    capsys.readouterr()
    assert main(["eval", "--db", store_url, "--run", "r1", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert "cand" in ev["providers"] and ev["providers"]["cand"]["error_rate"] == 0

    report = tmp_path / "report.html"
    assert main(["report", "--db", store_url, "--run", "r1", "--out", str(report)]) == 0
    assert "cand" in report.read_text()

    assert main(["export", "--db", store_url, "--out", f"s3://{bucket}/export"]) == 0
    exported = s3.keys(bucket, "export/")
    assert any(k.startswith("export/exchanges/day=") for k in exported), exported
    assert any(re.match(r"export/results/day=\d{4}-\d\d-\d\d/run_id=r1/", k) for k in exported), exported

    assert main(["compact", "--db", store_url, "--min-age", "0"]) == 0
    assert "exchanges: merged" in capsys.readouterr().out
    got = markers(store_url, "two-")
    assert sorted(got) == sent and set(got.values()) == {1}
    capsys.readouterr()
    assert main(["eval", "--db", store_url, "--run", "r1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["providers"]["cand"]["error_rate"] == 0
    assert not (REPO / "s3:").exists() and not (tmp_path / "s3:").exists()


def test_an_upload_failure_mid_recording_spills_then_uploads_every_exchange_once(
    s3, store_url, fake, run_recorder, tmp_path
):
    spill = tmp_path / "spill"
    rec = run_recorder(fake.url, "--flush-interval", "0.2", db=store_url, env=s3.env, spill_dir=spill)
    assert send([rec.base_url], [f"up-a{i:02d}" for i in range(15)]) == [200] * 15
    assert wait_for(lambda: len(markers(store_url, "up-a")) == 15)
    s3.stop()
    try:
        # the bucket is gone: traffic is unaffected, the writer spills locally
        assert send([rec.base_url], [f"up-b{i:02d}" for i in range(15)]) == [200] * 15
        assert wait_for(lambda: seg_files(spill), timeout=30), rec.log()[-2000:]
    finally:
        s3.start()
    assert wait_for(lambda: len(markers(store_url, "up-b")) == 15, timeout=60), rec.log()[-2000:]
    assert send([rec.base_url], [f"up-c{i:02d}" for i in range(5)]) == [200] * 5
    assert rec.stop() == 0
    log = rec.log()
    assert "STORE WRITE FAILED" in log and " 0 lost" in log, log[-2000:]
    assert re.search(r"\((\d+) spilled, (\d+) re-imported, 0 lost\)", log).group(1) != "0"
    got = markers(store_url, "up-")
    assert len(got) == 35 and set(got.values()) == {1}
    assert seg_files(spill) == []
    assert SECRET_KEY not in log and ACCESS_KEY not in log


def test_kill_9_of_a_recorder_loses_at_most_the_last_flush_interval(
    s3, store_url, fake, run_recorder, tmp_path
):
    spill = tmp_path / "spill"
    rec = run_recorder(fake.url, "--flush-interval", "0.5", db=store_url, env=s3.env, spill_dir=spill)
    assert send([rec.base_url], [f"k9-{i:02d}" for i in range(25)]) == [200] * 25
    assert wait_for(lambda: len(markers(store_url, "k9-")) == 25)  # handed over: must survive
    child = int(re.search(r"writer process (\d+) started", rec.log()).group(1))
    assert send([rec.base_url], [f"tail-{i:02d}" for i in range(6)], workers=1) == [200] * 6
    rec.kill9()  # right after the last answer: those may still be queued in the proxy

    def gone() -> bool:
        try:
            return "multiprocessing" not in Path(f"/proc/{child}/cmdline").read_text()
        except OSError:
            return True

    assert wait_for(gone, timeout=30), "the writer process outlived its proxy"
    again = run_recorder(fake.url, db=store_url, env=s3.env, spill_dir=spill)
    assert send([again.base_url], ["after-0"]) == [200]
    assert again.stop() == 0
    k9, tail, after = markers(store_url, "k9-"), markers(store_url, "tail-"), markers(store_url, "after-")
    assert len(k9) == 25 and set(k9.values()) == {1}
    assert set(tail.values()) <= {1} and len(tail) <= 6  # at most the last interval lost, never doubled
    assert after == {"after-0": 1}
    print(f"\nkill -9: {len(tail)} of the 6 exchanges answered in the last interval were written")


def test_import_into_a_bucket_skips_what_it_holds_already(s3, store_url, tmp_path):
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    entry = {
        "startedDateTime": "2026-12-01T10:00:00.000Z",
        "time": 120,
        "request": {
            "method": "POST",
            "url": "https://api.openai.com/v1/chat/completions",
            "headers": [{"name": "content-type", "value": "application/json"}],
            "postData": {
                "mimeType": "application/json",
                "text": json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            },
        },
        "response": {
            "status": 200,
            "headers": [{"name": "content-type", "value": "application/json"}],
            "content": {"mimeType": "application/json", "text": json.dumps(answer)},
        },
        "timings": {"wait": 100, "receive": 20},
    }
    har = tmp_path / "traffic.har"
    har.write_text(json.dumps({"log": {"entries": [entry]}}))
    env = {**s3.env, "XDG_STATE_HOME": str(tmp_path / "state")}
    for _ in range(2):
        out = parity("import", "--db", store_url, str(har), env=env)
        assert out.returncode == 0, out.stderr[-2000:]
    con = connect(store_url)
    try:
        assert con.execute("SELECT count(*), any_value(model) FROM exchanges").fetchall() == [
            (1, "gpt-4o-mini")
        ]
        assert con.execute("SELECT count(*) FROM recordings").fetchall() == [(2,)]
    finally:
        con.close()
    assert local_parquet(tmp_path) == []
