"""Shadow traffic end to end: the openai SDK through a real ``parity record --shadow`` in front of a fake
upstream, mirrors to a candidate fake provider and to a port nobody listens on.

Every test checks production first (every request answered, every exchange recorded), then what the
shadow run stored: a normal run (``recorded`` arm + candidates) that ``parity eval`` reads while it
grows, and the counters ``parity ls`` prints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest
import waitkit

from parity.fake.profiles import get_profile
from parity.fake.server import FakeProvider
from parity.procs import free_port
from parity.replayer.sampling import SPACE, sample_key
from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

PY = sys.executable
MODEL = "gpt-4o-mini"
PRICES = "input_per_1m = 0.15\noutput_per_1m = 0.60\n"


def providers(
    tmp: Path, cands: dict[str, str], dead: bool = True, extra: dict[str, str] | None = None
) -> Path:
    """A providers file: each candidate at its base URL (plus ``extra`` lines), and ``dead`` on a free port."""
    text = f"[recorded.pricing]\n{PRICES}"
    for name, url in cands.items():
        text += f'\n[{name}]\nbase_url = "{url}"\nmodels = {{ "*" = "*" }}\n{(extra or {}).get(name, "")}\n'
        if "pricing" not in (extra or {}).get(name, ""):
            text += f"[{name}.pricing]\n{PRICES}"
    if dead:
        text += f'\n[dead]\nbase_url = "http://127.0.0.1:{free_port()}/v1"\nmodels = {{ "*" = "*" }}\n'
        text += "max_retries = 0\nconnect_timeout_s = 1\n"
    path = tmp / "providers.toml"
    path.write_text(text)
    return path


def chat(client: openai.OpenAI, i: int, stream: bool = True) -> str:
    """One production request; its answer text (production must always answer)."""
    msgs = [{"role": "user", "content": f"Say something about the number {i}."}]
    if not stream:
        return client.chat.completions.create(model=MODEL, messages=msgs).choices[0].message.content
    out = client.chat.completions.create(
        model=MODEL, messages=msgs, stream=True, stream_options={"include_usage": True}
    )
    return "".join(c.choices[0].delta.content or "" for c in out if c.choices)


def cells(db: Path, run: str) -> list[tuple]:
    """(exchange_id, provider, status, error_type) of every stored cell of ``run``."""
    con = connect(db)
    try:
        return con.execute(
            "SELECT exchange_id, provider, status, error_type FROM results WHERE run_id = ?", [run]
        ).fetchall()
    finally:
        con.close()


def by_provider(rows: list[tuple]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(r[1], []).append(r)
    return out


def posts(fp: FakeProvider) -> int:
    """Requests a fake provider got, less the shadow's ``GET /models`` at start."""
    return sum(1 for q in fp.requests if q.get("method", "POST") == "POST")


def shadow_processes(parent: int) -> list[int]:
    """Pids of the live shadow processes started by ``parent``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"parity.shadow.process" in cmd and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def exchange_ids(db: Path) -> set[str]:
    con = connect(db)
    try:
        return {r[0] for r in con.execute("SELECT id FROM exchanges").fetchall()}
    finally:
        con.close()


def parity(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "parity.cli", *argv], capture_output=True, text=True, timeout=180)


def ls(db: Path) -> str:
    r = subprocess.run(
        [PY, "-m", "parity.recorder.cli", "ls", "--db", str(db)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def shadow_counters(db: Path, run: str) -> dict:
    con = connect(db)
    try:
        (config,) = con.execute("SELECT CAST(config AS VARCHAR) FROM runs WHERE run_id = ?", [run]).fetchone()
    finally:
        con.close()
    return json.loads(config)["shadow"]


def test_staging_end_to_end(run_recorder, tmp_path: Path) -> None:
    """SDK -> recorder -> upstream; mirrors to a slower candidate and a dead one; eval while it grows."""
    slow = get_profile("instant", ttft_ms=40.0, itl_ms=2.0)
    with FakeProvider.running("instant") as up, FakeProvider.running(slow) as cand:
        prov = providers(tmp_path, {"cand": cand.base_url})
        rec = run_recorder(
            up.url,
            *("--shadow", str(prov), "--shadow-run", "staging", "--shadow-status-every", "0.3"),
            *("--flush-interval", "0.2"),
        )
        with openai.OpenAI(base_url=rec.base_url, api_key="sk-staging-test", max_retries=0) as client:
            answers = [chat(client, i, stream=i % 3 != 0) for i in range(9)]
            client.embeddings.create(model="text-embedding-3-small", input="shadow me")
            # never mirrored: a side-effect endpoint and a non-replayable one
            httpx.post(rec.base_url + "/files", json={"purpose": "batch"}, timeout=10)
            client.models.list()
            assert all(answers)  # production answered every request
            assert waitkit.wait_for(
                lambda: len(by_provider(cells(rec.db, "staging")).get("cand", [])) == 10, 30
            )

            # the run is readable while the recorder runs: eval and a report
            assert waitkit.wait_for(
                lambda: len(by_provider(cells(rec.db, "staging")).get("dead", [])) == 10, 30
            )
            r = parity("eval", "--db", str(rec.db), "--run", "staging", "--json", "--since", "1h")
            assert r.returncode in (0, 1, 3), r.stderr[-2000:]
            ev = json.loads(r.stdout)
            arms = ev["providers"]
            assert ev["baseline"] == "recorded" and arms["recorded"]["n_success"] == 10
            assert arms["cand"]["n_cells"] == arms["cand"]["n_success"] == 10  # beside the recorded arm
            assert arms["dead"]["n_cells"] == 10 and arms["dead"]["n_success"] == 0  # its failures, as cells
            report = tmp_path / "report.html"
            r = parity("report", "--db", str(rec.db), "--run", "staging", "--out", str(report))
            assert r.returncode in (0, 1, 3) and report.is_file(), r.stderr[-2000:]
            r = parity("check", "--db", str(rec.db), "--run", "staging")
            assert r.returncode in (0, 1, 3) and "Traceback" not in r.stderr, r.stderr[-2000:]
            assert waitkit.wait_for(lambda: "mirrored: cand 10" in ls(rec.db), 10), ls(rec.db)

            chat(client, 100)  # traffic goes on: the run grows
            assert waitkit.wait_for(
                lambda: len(by_provider(cells(rec.db, "staging")).get("cand", [])) == 11, 30
            )
        assert rec.stop() == 0, rec.log()[-3000:]

    got = by_provider(cells(rec.db, "staging"))
    recorded_ids = {r[0] for r in got["recorded"]}
    assert len(recorded_ids) == 11 and recorded_ids <= exchange_ids(rec.db)  # the arm is the recorded rows
    assert {r[0] for r in got["cand"]} == recorded_ids
    assert all(r[2] == 200 and r[3] is None for r in got["cand"])
    assert {r[0] for r in got["dead"]} == recorded_ids  # the dead candidate's failures are cells too
    assert all(r[2] is None and r[3] == "connection_error" for r in got["dead"])
    # the candidate got the mirrored POSTs only: no /files, no /models
    assert posts(cand) == 11 and not any("files" in str(q.get("path")) for q in cand.requests)

    sh = shadow_counters(rec.db, "staging")
    assert sh["seen"] == 11 and sh["sampled"] == 11 and sh["mirrored"] == {"cand": 11, "dead": 11}
    assert sh["failed"] == {"dead": 11} and sh["ok"] == {"cand": 11} and not sh["dropped"]
    out = ls(rec.db)
    assert "shadow run staging (stopped)" in out and "failed: dead 11" in out, out


def test_sampling_is_a_hash_of_the_id_and_the_same_for_every_candidate(run_recorder, tmp_path: Path) -> None:
    with FakeProvider.running("instant") as up, FakeProvider.running("instant") as a:
        with FakeProvider.running("instant") as b:
            prov = providers(tmp_path, {"a": a.base_url, "b": b.base_url}, dead=False)
            rec = run_recorder(
                up.url, "--shadow", str(prov), "--shadow-run", "half", "--shadow-sample", "0.5"
            )
            with openai.OpenAI(base_url=rec.base_url, api_key="sk-sample-test", max_retries=0) as client:
                for i in range(40):
                    chat(client, i, stream=False)
            assert rec.stop() == 0, rec.log()[-3000:]
    ids = exchange_ids(rec.db)
    expected = {x for x in ids if sample_key(x) < SPACE // 2}
    got = by_provider(cells(rec.db, "half"))
    assert len(ids) == 40 and 8 <= len(expected) <= 32
    assert {r[0] for r in got["a"]} == {r[0] for r in got["b"]} == {r[0] for r in got["recorded"]} == expected
    sh = shadow_counters(rec.db, "half")
    assert sh["seen"] == 40 and sh["sampled"] == len(expected) and sh["sample"] == 0.5


def test_spend_cap_stops_mirroring_while_recording_goes_on(run_recorder, tmp_path: Path) -> None:
    with FakeProvider.running("instant") as up, FakeProvider.running("instant") as cand:
        # $0.1 per 1,000 tokens: each mirror costs about 2 cents
        pricey = "[cand.pricing]\ninput_per_1m = 100.0\noutput_per_1m = 100.0\n"
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False, extra={"cand": pricey})
        rec = run_recorder(
            up.url, "--shadow", str(prov), "--shadow-run", "capped", "--shadow-max-cost", "0.1"
        )
        with openai.OpenAI(base_url=rec.base_url, api_key="sk-cap-test", max_retries=0) as client:
            answers = [chat(client, i, stream=False) for i in range(20)]
        assert all(answers)
        assert rec.stop() == 0, rec.log()[-3000:]
    assert len(exchange_ids(rec.db)) == 20  # recording went on
    got = by_provider(cells(rec.db, "capped"))
    sh = shadow_counters(rec.db, "capped")
    assert 1 <= len(got["cand"]) < 20
    assert sh["state"] == "capped" and sh["dropped"]["max_cost"] == 20 - len(got["cand"])
    assert 0 < sh["spent_usd"] <= 0.1
    assert "max_cost" in ls(rec.db) and "capped" in ls(rec.db)
    assert "--shadow-max-cost $0.1 reached" in rec.log()


def test_a_full_provider_drops_mirrors_and_counts_them(run_recorder, tmp_path: Path) -> None:
    slow = get_profile("instant", ttft_ms=400.0)
    with FakeProvider.running("instant") as up, FakeProvider.running(slow) as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False, extra={"cand": "concurrency = 1"})
        rec = run_recorder(up.url, "--shadow", str(prov), "--shadow-run", "full")
        with openai.OpenAI(base_url=rec.base_url, api_key="sk-full-test", max_retries=0) as client:
            threads = [threading.Thread(target=chat, args=(client, i)) for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert rec.stop() == 0, rec.log()[-3000:]
    assert len(exchange_ids(rec.db)) == 6
    sh = shadow_counters(rec.db, "full")
    sent = len(by_provider(cells(rec.db, "full")).get("cand", []))
    assert sh["dropped"].get("cand: concurrency", 0) >= 1
    assert (
        sent + sh["dropped"]["cand: concurrency"]
        == 6
        == sh["mirrored"]["cand"] + sh["dropped"]["cand: concurrency"]
    )


def test_kill9_and_restart_continue_the_run_without_duplicates(run_recorder, tmp_path: Path) -> None:
    slow = get_profile("instant", ttft_ms=1500.0)
    with FakeProvider.running("instant") as up, FakeProvider.running(slow) as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False)
        args = ("--shadow", str(prov), "--shadow-run", "k9", "--flush-interval", "0.2")
        rec = run_recorder(up.url, *args)
        with openai.OpenAI(base_url=rec.base_url, api_key="sk-k9-test", max_retries=0) as client:
            for i in range(4):
                chat(client, i)
            assert waitkit.wait_for(lambda: posts(cand) >= 4, 15)  # mirrors in flight
            rec.kill9()
        db = rec.db
        assert waitkit.wait_for(lambda: len(exchange_ids(db)) == 4, 15)  # the writer child finished its rows
        rec2 = run_recorder(up.url, *args, db=db)
        with openai.OpenAI(base_url=rec2.base_url, api_key="sk-k9-test", max_retries=0) as client:
            for i in range(3):
                chat(client, 10 + i)
        assert waitkit.wait_for(lambda: len(by_provider(cells(db, "k9")).get("cand", [])) >= 3, 20)
        assert rec2.stop() == 0, rec2.log()[-3000:]
    rows = cells(db, "k9")
    keys = [(r[0], r[1]) for r in rows]
    assert len(keys) == len(set(keys))  # no duplicates
    got = by_provider(rows)
    sh = shadow_counters(db, "k9")
    lost = sh["dropped"].get("cand: lost_in_flight", 0)
    assert len(got["cand"]) + lost == 7 and sh["mirrored"]["cand"] == 7  # each mirror: stored or counted lost
    assert lost <= 4  # at most the mirrors in flight at the kill
    con = connect(db)
    sql = "SELECT state FROM run_events WHERE run_id = 'k9' ORDER BY \"at\""
    states = [s for (s,) in con.execute(sql).fetchall()]
    con.close()
    assert states[0] == "started" and "resumed" in states and states[-1] == "stopped"


def test_bad_shadow_options_fail_early_with_one_line(tmp_path: Path, proc_kit) -> None:
    db = tmp_path / "s" / "p.duckdb"
    db.parent.mkdir()
    base = proc_kit.record_argv("http://127.0.0.1:9", db, free_port())
    missing = subprocess.run([*base, "--shadow", str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.toml" in missing.stderr and "Traceback" not in missing.stderr
    prov = providers(tmp_path, {"cand": "http://127.0.0.1:9/v1"}, dead=False)
    zero = subprocess.run(
        [*base, "--shadow", str(prov), "--shadow-sample", "0"], capture_output=True, text=True
    )
    assert zero.returncode == 2 and "sample" in zero.stderr
    env_key = prov.read_text().replace(
        'models = { "*" = "*" }', 'models = { "*" = "*" }\napi_key_env = "NO_SUCH_KEY_VAR"'
    )
    prov.write_text(env_key)
    nokey = subprocess.run([*base, "--shadow", str(prov)], capture_output=True, text=True)
    assert nokey.returncode == 2 and "NO_SUCH_KEY_VAR" in nokey.stderr


def test_kill9_of_every_process_leaves_a_journal_the_restart_reads(run_recorder, tmp_path: Path) -> None:
    """The recorder, its writer, the shadow process and its builder all killed: the journal counts the lost."""
    slow = get_profile("instant", ttft_ms=3000.0)
    with FakeProvider.running("instant") as up, FakeProvider.running(slow) as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False)
        args = ("--shadow", str(prov), "--shadow-run", "group", "--flush-interval", "0.2")
        rec = run_recorder(up.url, *args)
        with openai.OpenAI(base_url=rec.base_url, api_key="sk-group-test", max_retries=0) as client:
            for i in range(3):
                chat(client, i)
        assert waitkit.wait_for(lambda: posts(cand) >= 3, 15)
        journals = rec.db.parent / (rec.db.name + ".d") / "journal"
        assert len(list(journals.glob("group.*.jsonl"))) == 1
        os.killpg(rec.proc.pid, signal.SIGKILL)  # the whole process group, no cleanup anywhere
        rec.proc.wait(10)
        rec2 = run_recorder(up.url, *args, db=rec.db)
        with openai.OpenAI(base_url=rec2.base_url, api_key="sk-group-test", max_retries=0) as client:
            chat(client, 99)
        assert rec2.stop(timeout=30) == 0, rec2.log()[-3000:]
    rows = cells(rec.db, "group")
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    sh = shadow_counters(rec.db, "group")
    got = by_provider(rows)
    assert (
        sh["dropped"]["cand: lost_in_flight"] == 3
    )  # the three mirrors in flight at the kill, from the journal
    assert len(got.get("cand", [])) + 3 == sh["mirrored"]["cand"] == 4
    assert not list(journals.glob("group.*.jsonl"))  # read, counted, removed


def mitmdump_argv(proc_kit, upstream: str, port: int, db: Path, prov: Path, run: str) -> list[str]:
    """Plain ``mitmdump`` with the recorder's and the shadow's scripts, mirroring into ``run``."""
    argv = [str(proc_kit.venv_bin / "mitmdump"), "-q", "--mode", f"reverse:{upstream}"]
    argv += ["--listen-host", "127.0.0.1", "--listen-port", str(port)]
    argv += [
        "-s",
        str(proc_kit.repo / "recorder" / "addon.py"),
        "-s",
        str(proc_kit.repo / "shadow" / "addon.py"),
    ]
    return argv + [
        "--set",
        f"parity_db={db}",
        "--set",
        f"parity_shadow={prov}",
        "--set",
        f"parity_shadow_run={run}",
    ]


def test_plain_mitmdump_with_both_scripts(tmp_path: Path, proc_kit) -> None:
    """``mitmdump -s recorder/addon.py -s shadow/addon.py`` mirrors like ``parity record --shadow``."""
    with FakeProvider.running("instant") as up, FakeProvider.running("instant") as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False)
        db = tmp_path / "m" / "p.duckdb"
        db.parent.mkdir()
        port = free_port()
        argv = mitmdump_argv(proc_kit, up.url, port, db, prov, "m")
        argv += ["--set", f"confdir={tmp_path / 'conf'}"]
        # a tiny journal limit: it starts afresh at every status tick that finds it non-empty
        argv += ["--set", "parity_shadow_journal_mb=0.000001", "--set", "parity_shadow_status_s=0.2"]
        pp = proc_kit.start_proxy(argv, port, tmp_path / "mitmdump.log", db=db)
        journals = db.parent / (db.name + ".d") / "journal"
        try:
            with openai.OpenAI(base_url=pp.base_url, api_key="sk-mitm-test", max_retries=0) as client:
                for i in range(3):
                    chat(client, i)
            assert waitkit.wait_for(lambda: posts(cand) == 3, 15)
            # rotated: one journal, emptied of what the store now holds, and the rows are there
            assert waitkit.wait_for(lambda: [f.stat().st_size for f in journals.glob("m.*.jsonl")] == [0], 15)
            assert len(by_provider(cells(db, "m")).get("cand", [])) == 3
        finally:
            assert pp.stop() == 0, pp.log()[-3000:]
    got = by_provider(cells(db, "m"))
    assert len(got["cand"]) == 3 and len(got["recorded"]) == 3


def test_a_dead_shadow_process_is_replaced_and_recording_goes_on(tmp_path: Path, proc_kit) -> None:
    with FakeProvider.running("instant") as up, FakeProvider.running("instant") as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False)
        db = tmp_path / "d" / "p.duckdb"
        db.parent.mkdir()
        port = free_port()
        argv = mitmdump_argv(proc_kit, up.url, port, db, prov, "d")
        argv += ["--set", "parity_shadow_respawn_s=1", "--set", f"confdir={tmp_path / 'conf'}"]
        pp = proc_kit.start_proxy(argv, port, tmp_path / "mitmdump.log", db=db)
        try:
            with openai.OpenAI(base_url=pp.base_url, api_key="sk-dead-test", max_retries=0) as client:
                for i in range(2):
                    chat(client, i)
                assert waitkit.wait_for(lambda: posts(cand) == 2, 15)
                (first,) = shadow_processes(pp.proc.pid)
                os.kill(first, signal.SIGKILL)
                answers = [chat(client, 10 + i) for i in range(3)]  # production does not notice
                assert all(answers)
                assert waitkit.wait_for(lambda: shadow_processes(pp.proc.pid) not in ([], [first]), 15)
                for i in range(3):
                    chat(client, 20 + i)
                assert waitkit.wait_for(lambda: posts(cand) >= 5, 20)
        finally:
            assert pp.stop() == 0, pp.log()[-3000:]
    assert len(exchange_ids(db)) == 8  # recording never stopped
    rows = cells(db, "d")
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    sh = shadow_counters(db, "d")
    stored = len(by_provider(rows)["cand"])
    assert stored >= 5 and stored + sh["dropped"].get("shadow_down", 0) == 8, (stored, sh)


def test_redacted_requests_are_not_mirrored_and_nothing_unredacted_is_stored(
    run_recorder, tmp_path: Path
) -> None:
    with FakeProvider.running("instant") as up, FakeProvider.running("instant") as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False)
        rec = run_recorder(up.url, "--shadow", str(prov), "--shadow-run", "red", "--redact-builtin", "email")
        with openai.OpenAI(base_url=rec.base_url, api_key="sk-red-test", max_retries=0) as client:
            msgs = [{"role": "user", "content": "Write to jane.doe@example.com about the launch."}]
            assert client.chat.completions.create(model=MODEL, messages=msgs).choices[0].message.content
            chat(client, 1, stream=False)
        assert rec.stop() == 0, rec.log()[-3000:]
    got = by_provider(cells(rec.db, "red"))
    assert len(got["cand"]) == len(got["recorded"]) == 1  # only the request without an address
    assert not any("jane.doe@example.com" in str(q) for q in cand.requests)
    sh = shadow_counters(rec.db, "red")
    assert sh["skipped"] == {"request redacted": 1}
    con = connect(rec.db)
    try:
        stored = con.execute(
            "SELECT CAST(sent_body AS VARCHAR), response_raw FROM results WHERE run_id = 'red'"
        ).fetchall()
    finally:
        con.close()
    assert "jane.doe@example.com" not in json.dumps(stored)


def test_failures_on_either_side_are_cells_with_reasons(run_recorder, tmp_path: Path) -> None:
    """A failing candidate: failed cells with the error and its evidence. A failing production request:
    still mirrored (the recorded arm shows production's failure)."""
    failing = get_profile("instant", error_rate=1.0, error_kinds=(("500", 1.0),))
    with FakeProvider.running("instant") as up, FakeProvider.running(failing) as bad:
        with FakeProvider.running("instant") as good, FakeProvider.running(failing) as bad_up:
            prov = providers(
                tmp_path,
                {"good": good.base_url, "bad": bad.base_url},
                dead=False,
                extra={"bad": "max_retries = 0"},
            )
            rec = run_recorder(up.url, "--shadow", str(prov), "--shadow-run", "faults")
            with openai.OpenAI(base_url=rec.base_url, api_key="sk-fault-test", max_retries=0) as client:
                for i in range(3):
                    chat(client, i, stream=False)
            assert rec.stop() == 0, rec.log()[-3000:]
            rec2 = run_recorder(bad_up.url, "--shadow", str(prov), "--shadow-run", "faults2")
            with openai.OpenAI(base_url=rec2.base_url, api_key="sk-fault-test", max_retries=0) as client:
                with pytest.raises(openai.InternalServerError):
                    chat(client, 9, stream=False)
            assert rec2.stop() == 0, rec2.log()[-3000:]
    got = by_provider(cells(rec.db, "faults"))
    assert len(got["good"]) == 3 and all(r[2] == 200 for r in got["good"])
    assert len(got["bad"]) == 3 and all(r[2] == 500 and r[3] for r in got["bad"])
    con = connect(rec.db)
    try:
        evidence = con.execute(
            "SELECT status, response_body FROM attempts WHERE run_id = 'faults' AND provider = 'bad'"
        ).fetchall()
    finally:
        con.close()
    assert len(evidence) == 3 and all(s == 500 and body for s, body in evidence)
    got2 = by_provider(cells(rec2.db, "faults2"))
    assert [r[2] for r in got2["recorded"]] == [500] and [r[2] for r in got2["good"]] == [200]


def test_a_second_recorder_on_the_same_shadow_run_is_refused(run_recorder, tmp_path: Path, proc_kit) -> None:
    with FakeProvider.running("instant") as up, FakeProvider.running("instant") as cand:
        prov = providers(tmp_path, {"cand": cand.base_url}, dead=False)
        rec = run_recorder(up.url, "--shadow", str(prov), "--shadow-run", "one")
        journals = rec.db.parent / (rec.db.name + ".d") / "journal"
        assert waitkit.wait_for(lambda: list(journals.glob("one.*.jsonl")), 20)
        argv = proc_kit.record_argv(up.url, rec.db, free_port(), spill_dir=tmp_path / "spill2")
        second = subprocess.run(
            [*argv, "--shadow", str(prov), "--shadow-run", "one"], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2 and "another --shadow-run" in second.stderr, second.stderr[-2000:]
        assert rec.stop() == 0
