"""End to end: ``parity replay`` against fake-provider processes on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from argvkit import replay_argv
from replayhelpers import (
    T0,
    fake_table,
    make_chat_workload,
    make_exchange,
    multipart_body,
    providers_file,
    write_exchanges,
)

from parity.cli import main
from parity.procs import free_port
from parity.replayer.mapping import apply_changes
from parity.store.segments import segment_root
from parity.store.store import query

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

SECRET = "sk-parity-test-DISTINCTIVE-7f3a9c1e5b"


@pytest.fixture
def workload(db: Path) -> dict:
    """Streams, non-streams, a multipart upload, an embedding, a side-effect call; two repeats."""
    rows = make_chat_workload(6, gap_s=0.5)
    rows += [make_exchange(stream=False, recorded_at=T0 + timedelta(seconds=5)) for _ in range(2)]
    rows.append(
        make_exchange(
            body={"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64"},
            endpoint="embeddings",
            path="/v1/embeddings",
            recorded_at=T0 + timedelta(seconds=6),
            response_body=json.dumps(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": "AAAAAA=="}],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }
            ),
        )
    )
    raw, ct = multipart_body()
    rows.append(
        make_exchange(
            body={},
            endpoint="audio.transcriptions",
            path="/v1/audio/transcriptions",
            model="whisper-1",
            request_raw=raw,
            request_content_type=ct,
            recorded_at=T0 + timedelta(seconds=7),
            response_body=json.dumps({"text": "hello", "duration": 3.0}),
        )
    )
    side = make_exchange(path="/v1/files", endpoint="other", recorded_at=T0 + timedelta(seconds=8))
    rows.append(side)
    for r in rows:  # recorded client headers must never be forwarded
        r["request_headers"] = json.dumps(
            {"content-type": "application/json", "openai-organization": "org-x", "x-stainless-lang": "python"}
        )
    write_exchanges(db, rows)
    return {"rows": rows, "side": side["id"], "replayable": [r for r in rows if r is not side]}


def test_replay_to_three_fakes(db: Path, tmp_path: Path, fakes, workload, monkeypatch, capsys) -> None:
    fast = fakes(
        "fast",
        "instant",
        ttft_ms=100,
        itl_ms=3,
        answer_min_tokens=8,
        answer_max_tokens=12,
        require_key="true",
    )
    slow = fakes("slow", "instant", ttft_ms=300, itl_ms=3, answer_min_tokens=8, answer_max_tokens=12)
    flaky = fakes(
        "flaky",
        "quirky",
        ttft_ms=50,
        ttft_dist="fixed",
        itl_ms=2,
        itl_jitter_ms=0,
        answer_min_tokens=8,
        answer_max_tokens=12,
        error_schedule="429@2,429@7",
        retry_after_s=0.4,
    )
    monkeypatch.setenv("PARITY_TEST_FAST_KEY", SECRET)
    pf = providers_file(
        tmp_path,
        (
            fake_table(
                "fast",
                fast,
                'api_key_env = "PARITY_TEST_FAST_KEY"\ndrop = ["store"]\n'
                'rename = { temperature = "temp" }\nheaders = { "x-extra" = "1" }',
            )
            + fake_table("slow", slow, models='{ "gpt-4o-mini" = "slow-model", "*" = "*" }')
            + fake_table("flaky", flaky, "[flaky.pricing]\ninput_per_1m = 1.0\noutput_per_1m = 2.0")
        ),
    )
    rc = main(
        [
            *replay_argv(db, pf, "e2e"),
            "--no-preflight",  # the fakes' error schedules count requests: no probes before them
            "--concurrency",
            "4",
            "--repeat",
            "2",
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "Run e2e: finished" in out and "side effects" in out

    replayable = workload["replayable"]
    cells = query(
        db,
        "SELECT exchange_id, provider, \"repeat\", count(*) FROM results WHERE run_id = 'e2e' GROUP BY ALL",
    )
    got = {(x, p, r): n for x, p, r, n in cells}
    want = {(x["id"], p, r) for x in replayable for p in ("fast", "slow", "flaky") for r in (0, 1)}
    want |= {(x["id"], "recorded", 0) for x in replayable}
    assert set(got) == want
    assert set(got.values()) == {1}

    # Side effects are never sent; recorded credentials-bearing headers are never forwarded.
    for fp in (fast, slow, flaky):
        posts = fp.posts()
        assert all(r["path"] != "/v1/files" for r in posts)
        assert all(
            "openai-organization" not in r["headers"] and "x-stainless-lang" not in r["headers"]
            for r in posts
        )
        assert all(r["headers"]["user-agent"].startswith("parity/") for r in posts)
    assert all(r["headers"].get("x-extra") == "1" for r in fast.posts())

    # Bodies received == recorded bodies with the stored changes applied (multipart: byte-exact but model).
    rows = query(
        db,
        "SELECT exchange_id, provider, CAST(sent_body AS VARCHAR), CAST(changes AS VARCHAR), "
        "sent_raw FROM results WHERE run_id = 'e2e' AND provider <> 'recorded'",
    )
    by_id = {x["id"]: x for x in replayable}
    received = {"fast": fast.posts(), "slow": slow.posts(), "flaky": flaky.posts()}
    for xid, prov, sent, changes, sent_raw in rows:
        x = by_id[xid]
        changes = json.loads(changes)
        if x["request_body"] is None:
            assert sent is None and sent_raw is not None
            assert any(r.get("raw") == sent_raw for r in received[prov])
            rec_raw = x["request_raw"]
            if prov == "slow":
                assert changes == []
                assert sent_raw == rec_raw
            else:
                assert sent_raw == rec_raw
            continue
        expect = apply_changes(json.loads(x["request_body"]), changes)
        assert json.loads(sent) == expect
        assert any(r["body"] == expect for r in received[prov]), (prov, expect)
        if prov == "fast" and "messages" in expect:
            ops = {c["op"] for c in changes}
            assert ops == {"drop", "rename"}
            assert list(expect)[:4] == ["model", "messages", "stream", "temp"]  # key order kept
        if prov == "slow" and x["model"] == "gpt-4o-mini":
            assert changes[0] == {"op": "model", "path": "model", "from": "gpt-4o-mini", "to": "slow-model"}
        if prov == "flaky":
            assert changes == [] and sent == x["request_body"]  # byte-identical when nothing changes

    # Measured TTFT medians match each fake's configured value (streams only).
    ttft = dict(
        query(
            db,
            "SELECT provider, median(ttft_ms) FROM results WHERE run_id = 'e2e' AND stream "
            "AND provider IN ('fast', 'slow') AND error_type IS NULL GROUP BY provider",
        )
    )
    assert 100 <= ttft["fast"] <= 115, ttft
    assert 300 <= ttft["slow"] <= 315, ttft

    # 429s: retried after the advertised delay, counted, and kept out of latency.
    retried = query(
        db,
        'SELECT a.exchange_id, a."repeat", a.retry_after_ms, a.waited_ms, a.started_at, '
        'b.started_at FROM attempts a JOIN attempts b USING (run_id, exchange_id, provider, "repeat") '
        "WHERE a.run_id = 'e2e' AND a.provider = 'flaky' AND a.status = 429 "
        "AND b.attempt = a.attempt + 1",
    )
    assert len(retried) == 2
    for _, _, retry_after, waited, t1, t2 in retried:
        assert retry_after == pytest.approx(400.0)
        assert waited == pytest.approx(400.0)
        assert (t2 - t1).total_seconds() >= 0.4
    waits = query(
        db,
        "SELECT attempts, rate_limit_wait_ms, latency_ms FROM results WHERE run_id = 'e2e' "
        "AND provider = 'flaky' AND attempts > 1",
    )
    assert len(waits) == 2
    assert all(w >= 400 and lat < 400 for _, w, lat in waits)
    assert "429s" in out

    # The production arm, SDK validity and quirks.
    rec = query(
        db,
        "SELECT count(*), count(*) FILTER (WHERE sdk_valid), sum(cost_usd) FROM results "
        "WHERE run_id = 'e2e' AND provider = 'recorded'",
    )[0]
    assert rec[0] == len(replayable) and rec[1] >= len(replayable) - 2 and rec[2] > 0
    bad = query(
        db,
        "SELECT count(*) FROM results WHERE run_id = 'e2e' AND provider = 'flaky' "
        "AND sdk_valid = false AND sdk_error IS NOT NULL",
    )[0][0]
    assert bad > 0  # the quirky fake omits finish_reason and sends int error codes
    assert (
        query(
            db,
            "SELECT count(*) FROM results WHERE run_id = 'e2e' AND provider = 'fast' "
            "AND NOT coalesce(sdk_valid, false)",
        )[0][0]
        == 0
    )
    itl = query(
        db,
        "SELECT min(len(itl_ms)), min(itl_mean_ms) FROM results WHERE run_id = 'e2e' "
        "AND provider = 'fast' AND stream",
    )[0]
    assert itl[0] >= 6 and itl[1] > 0
    spend = query(db, "SELECT sum(cost_usd) FROM results WHERE run_id = 'e2e' AND provider = 'flaky'")[0][0]
    assert spend > 0

    # The run's config: providers, listed models, versions, and no key.
    state, config = query(db, "SELECT state, CAST(config AS VARCHAR) FROM runs WHERE run_id = 'e2e'")[0]
    assert state == "finished"
    cfg = json.loads(config)
    assert set(cfg["providers"]) == {"fast", "slow", "flaky"}
    assert "gpt-4o-mini" in cfg["providers"]["slow"]["models_listed"]
    assert cfg["providers"]["fast"]["headers"] == ["x-extra"]
    assert set(cfg["versions"]) == {"parity", "python", "openai", "aiohttp"}

    # Keys are never stored: not in any file of the store (incl. journals) nor in any text column.
    for f in segment_root(db).rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    for table in ("results", "run_events", "attempts", "dispatches"):
        cols = [
            c
            for c, t in query(db, f"SELECT column_name, column_type FROM (DESCRIBE {table})")
            if t in ("VARCHAR", "JSON", "BLOB")
        ]
        for c in cols:
            hits = query(
                db, f"SELECT count(*) FROM {table} WHERE CAST({c} AS VARCHAR) LIKE ?", [f"%{SECRET}%"]
            )
            assert hits[0][0] == 0, (table, c)
    assert not list((segment_root(db) / "journal").glob("e2e.*.jsonl"))  # removed after a clean finish


def test_dry_run_sends_nothing(db: Path, tmp_path: Path, fakes, capsys) -> None:
    rows = make_chat_workload(5)
    rows.append(make_exchange(path="/v1/files", endpoint="other"))
    rows.append(make_exchange(model="o3-pro-unmapped"))
    write_exchanges(db, rows)
    fp = fakes("dry", "instant")
    pf = providers_file(
        tmp_path,
        f"""
[together]
preset = "together"
base_url = "{fp.base_url}"
api_key_env = "PARITY_TEST_UNSET_KEY"
models = {{ "gpt-4o-mini" = "openai/gpt-oss-20b" }}

[oxlo]
preset = "oxlo"
base_url = "{fp.base_url}"
api_key_env = "PARITY_TEST_UNSET_KEY2"
models = {{ "*" = "oxlo-model" }}
""",
    )
    rc = main(
        ["replay", "--db", str(db), "--providers", str(pf), "--run", "dry", "--dry-run", "--repeat", "2"]
        + ["--no-preflight"]  # without it the dry run sends the preflight's free probes
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert fp.requests() == []
    assert "Dry run: nothing was sent." in out
    assert "together" in out and "oxlo" in out
    assert "side effects (POST /files)" in out
    assert "model 'o3-pro-unmapped' not mapped for together" in out
    assert "flat per-request price not set" in out
    assert "PARITY_TEST_UNSET_KEY is not set" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("together"))
    assert " 10 " in line and "$" in line  # 5 exchanges x 2 repeats, priced from recorded usage
    assert query(db, "SELECT count(*) FROM results")[0][0] == 0
    assert query(db, "SELECT count(*) FROM run_events")[0][0] == 0


def test_max_cost_stops_in_time(db: Path, tmp_path: Path, fakes, capsys) -> None:
    write_exchanges(db, make_chat_workload(20, stream=False))
    fp = fakes("cost", "instant", ttft_ms=30)
    pf = providers_file(tmp_path, fake_table("flat", fp, "[flat.pricing]\nper_request = 0.01"))
    rc = main(
        [
            *replay_argv(db, pf, "capped"),
            "--no-preflight",
            "--concurrency",
            "2",
            "--max-cost",
            "0.055",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    state, note = query(
        db, "SELECT state, note FROM run_events WHERE run_id = 'capped' ORDER BY \"at\" DESC LIMIT 1"
    )[0]
    assert state == "stopped" and "--max-cost" in note
    spent, n = query(
        db, "SELECT sum(cost_usd), count(*) FROM results WHERE run_id = 'capped' AND provider = 'flat'"
    )[0]
    assert spent <= 0.055 + 1e-9 and n == 5
    assert len(fp.posts()) == 5
    assert "max-cost" in out


def test_as_recorded_and_rate_pacing(db: Path, tmp_path: Path, fakes, capsys) -> None:
    rows = [make_exchange(stream=False, recorded_at=T0 + timedelta(milliseconds=200 * i)) for i in range(6)]
    write_exchanges(db, rows)
    fp = fakes("pace", "instant", ttft_ms=5)
    pf = providers_file(tmp_path, fake_table("p", fp))
    assert (
        main(
            [
                *replay_argv(db, pf, "asrec"),
                "--as-recorded",
                "--speed",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    # when each request was due: its start less its recorded lag behind the schedule. Those follow
    # the recording exactly; the lags themselves depend on the host, so only their median is bounded.
    rows = query(
        db,
        "SELECT started_at, schedule_lag_ms FROM results WHERE run_id = 'asrec' AND provider = 'p' "
        "ORDER BY started_at",
    )
    lags = [lag for _, lag in rows]
    assert all(lag is not None and lag >= -1 for lag in lags), lags  # never sent early
    assert sorted(lags)[len(lags) // 2] < 25, lags
    due = [t - timedelta(milliseconds=lag) for t, lag in rows]
    gaps = [(b - a).total_seconds() * 1000 for a, b in zip(due, due[1:], strict=False)]
    assert all(90 <= g <= 110 for g in gaps), gaps  # 200 ms recorded gaps at speed 2
    assert (
        main(
            [
                *replay_argv(db, pf, "rated"),
                "--rate",
                "20",
                "--no-progress",
            ]
        )
        == 0
    )
    starts = [
        t
        for (t,) in query(
            db, "SELECT started_at FROM results WHERE run_id = 'rated' AND provider = 'p' ORDER BY started_at"
        )
    ]
    span = (starts[-1] - starts[0]).total_seconds()
    assert 0.2 <= span <= 0.4, span  # 6 requests at 20/s: 5 gaps of 50 ms
    capsys.readouterr()


def test_bad_selection_and_run_names(db: Path, tmp_path: Path, fakes, capsys) -> None:
    write_exchanges(db, make_chat_workload(2))
    fp = fakes("sel", "instant")
    pf = providers_file(tmp_path, fake_table("p", fp))
    assert main(["replay", "--db", str(db), "--providers", str(pf), "--run", "x", "--model", "nothing*"]) == 2
    assert "no exchanges" in capsys.readouterr().err
    assert main(["replay", "--db", str(db), "--providers", str(pf), "--run", "bad name!"]) == 2
    assert "--run" in capsys.readouterr().err
    assert main(["replay", "--db", str(db), "--providers", str(pf), "--run", "x", "--resume"]) == 2
    assert "no run 'x'" in capsys.readouterr().err
    assert main(["replay", "--db", str(db), "--providers", str(pf), "--run", "x", "--speed", "2"]) == 2
    assert "--speed" in capsys.readouterr().err
    assert fp.requests() == []


def test_provider_failures_are_data(db: Path, tmp_path: Path, fakes, capsys) -> None:
    write_exchanges(db, make_chat_workload(3))
    port = free_port()  # nobody listens there
    fp = fakes("ok", "instant", ttft_ms=5)
    pf = providers_file(
        tmp_path,
        f'[down]\nbase_url = "http://127.0.0.1:{port}/v1"\nmodels = {{ "*" = "*" }}\nmax_retries = 1\n'
        + fake_table("up", fp),
    )
    argv = ["replay", "--db", str(db), "--providers", str(pf), "--run", "down", "--no-progress"]
    rc = main([*argv, "--no-preflight"])  # past the preflight, which would refuse `down`
    out = capsys.readouterr().out
    # Every request went out and is stored, and the run says loudly that `down` answered none.
    assert (
        rc == 3 and "finished" in out and f"down: 3/3 failed: connection refused at 127.0.0.1:{port}" in out
    )
    rows = query(
        db,
        "SELECT provider, status, error_type, attempts, sdk_valid FROM results WHERE run_id = 'down' "
        "AND provider <> 'recorded' ORDER BY provider",
    )
    assert [r[0] for r in rows] == ["down"] * 3 + ["up"] * 3
    assert all(r[1:] == (None, "connection_error", 2, None) for r in rows[:3])
    assert all(r[1] == 200 and r[2] is None and r[4] for r in rows[3:])
    state = query(db, "SELECT state, CAST(config AS VARCHAR) FROM runs WHERE run_id = 'down'")[0]
    assert state[0] == "finished" and '"models_listed": null' in state[1]


@pytest.mark.parametrize("compact", [True, False], ids=["compacted", "no-compact"])
def test_a_finished_run_is_compacted_into_sorted_results(
    db: Path, tmp_path: Path, fakes, capsys, compact
) -> None:
    from parity.replayer.sampling import sample_key
    from parity.store.segments import MERGED_PREFIX, list_segments, segment_root

    write_exchanges(db, make_chat_workload(40, stream=False))
    fp = fakes("tidy", "instant", ttft_ms=60)
    pf = providers_file(tmp_path, fake_table("tidy", fp))
    # ~1.2 s of sending at 2 in flight: several writer flushes, so several segments to merge
    argv = ["replay", "--db", str(db), "--providers", str(pf), "--run", "tidy", "--concurrency", "2"]
    assert main([*argv, "--no-progress", *([] if compact else ["--no-compact"])]) == 0
    err = capsys.readouterr().err
    live = list_segments(segment_root(db), "results")
    rows = query(db, "SELECT provider, exchange_id, sample_key FROM results WHERE run_id = 'tidy'")
    assert len(rows) == 80 and all(k == sample_key(x) for _, x, k in rows)
    if compact:
        assert [p.name.startswith(MERGED_PREFIX) for p in live] == [True] and "compacted" in err
        order = pq.read_table(live[0], columns=["sample_key", "exchange_id", "provider"]).to_pylist()
        assert order == sorted(order, key=lambda r: (r["sample_key"], r["exchange_id"], r["provider"]))
    else:
        assert not any(p.name.startswith(MERGED_PREFIX) for p in live) and "compacted" not in err
