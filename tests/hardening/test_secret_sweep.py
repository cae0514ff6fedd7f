"""Issue #7, security: a key sent every way providers take one never reaches a file parity writes.

One pipeline run writes into one folder: the app's keys go through a real ``parity record``
(reverse proxy in front of the fake provider, with a forced spill), the upstream quotes them
back in 401 bodies; ``parity replay`` (interrupted, then resumed) sends its own provider keys
to fake providers that also quote them back; then ``parity eval --json``, ``parity report``
(html, md, json), ``parity check``, ``parity ls``, ``parity export``, ``parity compact`` and the
three notebooks (and a shorter pipeline into a bucket store, with canary AWS credentials).
Every file in the folder (also at two moments when short-lived files exist:
spilled segments, a run journal) is searched for every key, plain and in the encodings that
could hide it, and every Parquet file and the DuckDB catalog are decoded and searched value by
value (their pages are compressed: a byte search alone would prove nothing there).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import duckdb
import httpx
import openai
import pyarrow.parquet as pq
import pytest
from waitkit import wait_for

from parity.cli import main as parity_main
from parity.fake.server import FakeProvider
from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

REPO = Path(__file__).resolve().parents[2]
RUN = "sweep"
NOTEBOOKS = ["01_explore_recordings.ipynb", "02_compare_providers.ipynb", "03_cost_projection.ipynb"]
MARK = "LEAKCANARY"  # in every key: any plain occurrence anywhere is a leak


def _key(tag: str) -> str:
    return f"sk-parity-{MARK}-{tag}-{secrets.token_hex(12)}"


# What the app sends (through the recorder) and what the replay sends (from its environment).
APP = {
    t: _key(t)
    for t in ("bearer", "apikey", "xapikey", "goog", "org", "proj", "cookie", "qkey", "qapi_key", "qapi-key")
}
PROV = {t: _key(t) for t in ("p-bearer", "p-apikey", "p-xapikey")}
# The AWS credentials of a store in a bucket (--db s3://...): read from the environment only.
AWS = {
    "aws-access-key-id": f"AKIA-{MARK}-{secrets.token_hex(6)}",
    "aws-secret-access-key": _key("aws-secret"),
    "aws-session-token": _key("aws-token"),
}
KEYS = {**APP, **PROV, **AWS}
PROV_ENV = {
    "p-bearer": "PARITY_SWEEP_KEY_A",
    "p-apikey": "PARITY_SWEEP_KEY_B",
    "p-xapikey": "PARITY_SWEEP_KEY_C",
}


# --- needles ----------------------------------------------------------------------------------------
def _b64_inner(data: bytes) -> list[bytes]:
    """Base64 text that ``data`` becomes inside any longer base64 stream, at each of the 3 alignments."""
    out = []
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + data)
        whole = (pad + len(data)) // 3 * 4  # chars of complete groups; the tail depends on what follows
        out.append(enc[(0, 2, 3)[pad] : whole])
    return out


def needles() -> dict[bytes, str]:
    """needle bytes -> what it is; a hit of any of them in a file is a leak."""
    found: dict[bytes, str] = {}

    def add(b: bytes, what: str) -> None:
        if len(b) >= 12:
            found.setdefault(b, what)

    add(f"-{MARK}-".encode(), "marker")
    add(MARK.encode("utf-16-le"), "marker utf-16-le")
    add(MARK.encode("utf-16-be"), "marker utf-16-be")
    for tag, key in KEYS.items():
        raw = key.encode()
        add(raw, f"{tag}")
        add(raw.rsplit(b"-", 1)[1], f"{tag} random part")
        add(quote(key, safe="").encode(), f"{tag} url-encoded")
        add(json.dumps(key)[1:-1].encode(), f"{tag} json-escaped")
        add("".join(f"\\u{ord(c):04x}" for c in key).encode(), f"{tag} json \\u-escaped")
        add(key.encode("utf-16-le"), f"{tag} utf-16-le")
        add(raw.hex().encode(), f"{tag} hex")
        for prefix in (b"", b"Bearer ", b"key="):
            for v in _b64_inner(prefix + raw):
                add(v, f"{tag} base64 of {prefix.decode()!r}+key")
                add(v.translate(bytes.maketrans(b"+/", b"-_")), f"{tag} base64url of {prefix.decode()!r}+key")
        add(base64.b64encode(b"Bearer " + raw), f"{tag} base64('Bearer key')")
        add(base64.b64encode(raw), f"{tag} base64(key)")
    return found


NEEDLES = needles()


@dataclass
class Sweep:
    """What one walk of the output folder found."""

    files: int = 0
    bytes: int = 0
    parquet_files: int = 0
    values: int = 0
    hits: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # relative paths seen

    def summary(self) -> str:
        return (
            f"{self.files} files, {self.bytes:,} bytes, {self.parquet_files} Parquet files decoded "
            f"({self.values:,} values)"
        )


def _search(data: bytes, where: str, hits: list[str]) -> None:
    for n, what in NEEDLES.items():
        if n in data:
            hits.append(f"{where}: {what}")


def _walk_value(v: object, where: str, sweep: Sweep) -> None:
    if isinstance(v, str):
        sweep.values += 1
        _search(v.encode("utf-8", "surrogatepass"), where, sweep.hits)
    elif isinstance(v, bytes | bytearray):
        sweep.values += 1
        _search(bytes(v), where, sweep.hits)
    elif isinstance(v, dict):
        for k, x in v.items():
            _walk_value(k, where, sweep)
            _walk_value(x, where, sweep)
    elif isinstance(v, list | tuple):
        for x in v:
            _walk_value(x, where, sweep)


def _decode_parquet(path: Path, rel: str, sweep: Sweep) -> None:
    pf = pq.ParquetFile(path)
    meta = pf.schema_arrow.metadata or {}
    for k, v in meta.items():
        _walk_value([k, v], f"{rel} (metadata)", sweep)
    table = pf.read()
    for name in table.column_names:
        _walk_value(table.column(name).to_pylist(), f"{rel}:{name}", sweep)
    sweep.parquet_files += 1


def _decode_duckdb(path: Path, rel: str, sweep: Sweep) -> None:
    con = duckdb.connect(str(path), read_only=True)
    try:
        for (sql,) in con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall():
            _walk_value(sql, f"{rel} (view sql)", sweep)
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT internal"
        ).fetchall()
        for schema, name in tables:
            rows = con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
            _walk_value([[str(c) if not isinstance(c, bytes) else c for c in r] for r in rows], rel, sweep)
    finally:
        con.close()


def sweep_tree(root: Path) -> Sweep:
    """Search every file under ``root``: raw bytes always, decoded values for Parquet and DuckDB."""
    s = Sweep()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = str(path.relative_to(root))
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a temporary file renamed while we walked (the recorder is running)
            continue
        s.files += 1
        s.bytes += len(data)
        s.names.add(rel)
        _search(data, rel, s.hits)
        if path.suffix == ".parquet" and data[:4] == b"PAR1":
            _decode_parquet(path, rel, s)
        elif path.suffix == ".duckdb":
            _decode_duckdb(path, rel, s)
    return s


def test_needles_find_the_encodings_they_claim() -> None:
    """The search itself works: each encoding of a key, embedded in other bytes, is found."""
    key = APP["bearer"]
    blob = json.dumps({"a": "x" * 7, "k": key}).encode()
    samples = [
        b"..." + key.encode() + b"...",
        b"q=" + quote(key, safe="").encode(),
        b"zz" + base64.b64encode(b"{noise" + blob) + b"==",
        base64.urlsafe_b64encode(b"12" + key.encode()),
        base64.b64encode(b"Basic u:" + key.encode()),
        ("xx" + key).encode("utf-16-le"),
        b"\\u" + "\\u".join(f"{ord(c):04x}" for c in key).encode(),
    ]
    for sample in samples:
        hits: list[str] = []
        _search(sample, "sample", hits)
        assert hits, sample
    hits = []
    _search(base64.b64encode(secrets.token_bytes(4000)) + b"sk-proj-other", "noise", hits)
    assert hits == []


def test_replay_scrubs_its_key_even_split_between_reads() -> None:
    """The replayer's own fix for echoed provider keys, on reads that cut the key anywhere."""
    from parity.replayer.client import Attempt, scrub_attempt

    key = PROV["p-bearer"].encode()
    body = b'data: {"error": "bad key ' + key + b'"}\n\nmore ' + key + b" end"
    for cuts in ([], [30], [30, 31, 32], [len(body) - 5], list(range(1, len(body), 7))):
        bounds = [0, *cuts, len(body)]
        chunks = [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        a = Attempt(wall=0.0, t0=0, raw_headers=((b"x-echo", key),), error_message=key.decode())
        a.chunks, a.times = chunks, list(range(len(chunks)))
        scrub_attempt(a, key)
        assert b"".join(a.chunks) == body.replace(key, b"[REDACTED]"), cuts
        assert len(a.times) == len(a.chunks) and a.times == sorted(a.times) and a.times[-1] == len(chunks) - 1
        assert a.raw_headers == ((b"x-echo", b"[REDACTED]"),) and a.error_message == "[REDACTED]"
        hits = [i for i in range(len(body)) if body.startswith(key, i)]
        untouched = [
            (c, t)
            for c, t, lo, hi in zip(chunks, range(len(chunks)), bounds, bounds[1:], strict=False)
            if not any(lo < h + len(key) and h < hi for h in hits)
        ]
        kept = list(zip(a.chunks, a.times, strict=True))
        assert all(pair in kept for pair in untouched), cuts  # reads away from an echo keep bytes and time


# --- the pipeline -----------------------------------------------------------------------------------
def _send_app_traffic(base_url: str, phase: str) -> dict[str, int]:
    """The app's requests through the recorder, each carrying keys; returns how many were sent."""
    n = {"requests": 0}
    headers = {
        "api-key": APP["apikey"],
        "x-api-key": APP["xapikey"],
        "x-goog-api-key": APP["goog"],
        "OpenAI-Organization": APP["org"],
        "OpenAI-Project": APP["proj"],
        "Cookie": f"session={APP['cookie']}; theme=dark",
    }
    query = {"key": APP["qkey"], "api_key": APP["qapi_key"], "api-key": APP["qapi-key"]}
    with httpx.Client(timeout=20) as http:
        full = openai.OpenAI(
            base_url=base_url,
            api_key=APP["bearer"],
            max_retries=0,
            default_headers=headers,
            default_query=query,
            http_client=http,
        )
        plain = openai.OpenAI(base_url=base_url, api_key=APP["bearer"], max_retries=0, http_client=http)
        msgs = [{"role": "user", "content": f"{phase}: say hello"}]
        full.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        # the app pastes its own key into a prompt: an echo of a credential the request carries
        full.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{phase}: is {APP['bearer']} valid?"}]
        )
        list(
            full.chat.completions.create(
                model="gpt-4o-mini", messages=msgs, stream=True, stream_options={"include_usage": True}
            )
        )
        n["requests"] += 3
        if phase == "live":
            list(plain.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
            full.responses.create(model="gpt-4o-mini", input=f"{phase}: a haiku")
            list(full.responses.create(model="gpt-4o-mini", input=f"{phase}: a limerick", stream=True))
            full.embeddings.create(model="text-embedding-3-small", input=[f"{phase} one", "two"])
            full.embeddings.create(model="text-embedding-3-small", input="b64", encoding_format="base64")
            full.models.list()
            n["requests"] += 6
        # 401s quoting the key (the fake answers 'Incorrect API key provided: <key>')
        bad = {"x-fake-error": "401"}
        calls = [
            lambda: plain.chat.completions.create(model="gpt-4o-mini", messages=msgs, extra_headers=bad),
            lambda: full.chat.completions.create(
                model="gpt-4o-mini", messages=msgs, stream=True, extra_headers=bad
            ),
        ]
        if phase == "live":
            calls += [
                lambda: full.responses.create(model="gpt-4o-mini", input="x", extra_headers=bad),
                lambda: full.embeddings.create(model="text-embedding-3-small", input="x", extra_headers=bad),
            ]
        for call in calls:
            with pytest.raises(openai.AuthenticationError) as info:
                call()
            assert APP["bearer"] in str(info.value)  # the traffic itself is untouched
        n["requests"] += len(calls)
        # What the SDK cannot send alone: one credential per request, so the upstream quotes that one.
        alone = [({"api-key": APP["apikey"]}, {}), ({"x-api-key": APP["xapikey"]}, {})]
        alone += [({}, {k: v}) for k, v in query.items()]
        for hdrs, q in alone if phase == "live" else alone[:1] + alone[2:3]:
            r = http.post(
                f"{base_url}/chat/completions",
                params=q,
                json={"model": "gpt-4o-mini", "messages": msgs},
                headers={**hdrs, **bad},
            )
            secret = next(iter({**hdrs, **q}.values()))
            assert r.status_code == 401 and secret in r.text
            ok = http.post(
                f"{base_url}/embeddings", params=q, json={"model": "e", "input": phase}, headers=hdrs
            )
            assert ok.status_code == 200
            n["requests"] += 2
    return n


def _kernel(root: Path) -> str:
    spec = root / "jupyter" / "kernels" / "parity-sweep"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "sweep", "language": "python"})
    )
    return "parity-sweep"


def _run_notebooks(out: Path, kernel: str) -> dict[str, object]:
    import nbformat
    from nbclient import NotebookClient

    work = out / "nb-cwd"
    work.mkdir()
    books = {name: nbformat.read(REPO / "notebooks" / name, as_version=4) for name in NOTEBOOKS}

    async def run_all() -> None:
        await asyncio.gather(
            *(
                NotebookClient(
                    nb, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(work)}}
                ).async_execute()
                for nb in books.values()
            )
        )

    asyncio.run(run_all())
    for name, nb in books.items():
        nbformat.write(nb, out / "notebooks" / name)
    return books


def _cli(out: Path, log: str, *argv: str) -> int:
    """``parity ARGV`` in this process (imports are paid once), stdout and stderr into ``out/logs``."""
    with (
        open(out / "logs" / log, "a") as fh,
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        return parity_main(list(argv))


def _journal_lines(root: Path) -> int:
    return sum(
        f.read_bytes().count(b'"k": "c"') for f in (root / "journal").glob(f"{RUN}.*.jsonl") if f.is_file()
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, proc_kit) -> SimpleNamespace:
    """Run everything once; the tests below only look at what it left."""
    t0 = time.monotonic()
    base = tmp_path_factory.mktemp("sweep")
    out = base / "out"  # everything parity writes, and nothing else we wrote could hide a key
    for d in ("logs", "notebooks", "state", "ipython", "runtime"):
        (out / d).mkdir(parents=True)
    db = out / "parity.duckdb"
    root = Path(str(db) + ".d")
    snapshots: dict[str, Sweep] = {}
    env_keys = {PROV_ENV[t]: PROV[t] for t in PROV}
    env = {
        "XDG_STATE_HOME": str(out / "state"),  # the default spill folder lands in the swept tree
        "IPYTHONDIR": str(out / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(out / "runtime"),
        "JUPYTER_PATH": str(base / "jupyter"),
        "PARITY_DB": str(db),
        "PARITY_RUN": RUN,
    }
    ns = SimpleNamespace(out=out, db=db, root=root, snapshots=snapshots, counts={}, phases={})

    def lap(name: str) -> None:
        ns.phases[name] = round(time.monotonic() - t0 - sum(ns.phases.values()), 1)

    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the charts
        kernel = _kernel(base)

        # 1. record: production is the fake provider; the recorder runs with its default log lines
        with FakeProvider.running("instant", answer_min_tokens=6, answer_max_tokens=12) as prod:
            port = proc_kit.free_port()
            argv = [
                proc_kit.python, "-m", "parity.cli", "record", "--upstream", prod.url,
                "--listen", f"127.0.0.1:{port}", "--db", str(db), "--tag", "sweep",
                "--flush-interval", "0.2", "--confdir", str(out / "mitmconf"),
            ]  # fmt: skip
            rec = proc_kit.start_proxy(argv, port, out / "logs" / "recorder.log", db=db, env=env, cwd=out)
            try:
                ns.counts["live"] = _send_app_traffic(rec.base_url, "live")
                assert wait_for(lambda: any((root / "exchanges").glob("seg-*.parquet")), 10), (
                    "timed out waiting for a first segment"
                )
                # 2. break the store (a file where the table folder was; chmod does not stop root)
                table = root / "exchanges"
                moved = table.with_name("exchanges.moved")
                table.rename(moved)
                table.write_text("not a folder")
                ns.counts["spill"] = _send_app_traffic(rec.base_url, "spill")
                assert wait_for(lambda: "total spilled" in rec.log(), 15), "timed out waiting for the spill"
                time.sleep(0.4)  # a second spill flush, if the rows spanned two
                snapshots["spilled"] = sweep_tree(out)
                table.unlink()
                moved.rename(table)
                assert wait_for(lambda: "re-imported" in rec.log(), 15), (
                    "timed out waiting for the re-import of the spill"
                )
                time.sleep(0.3)
            finally:
                ns.recorder_rc = rec.stop()
        ns.recorder_log = rec.log()

        lap("record")
        # 3. replay to three providers (Bearer, api-key, x-api-key), each quoting its key in some 401s
        fakes = [
            FakeProvider.running(
                "instant",
                ttft_ms=120,
                itl_ms=3,
                answer_min_tokens=6,
                answer_max_tokens=10,
                error_schedule="401@3,401@6,401@11",
            )
            for _ in PROV
        ]
        with contextlib.ExitStack() as stack:
            fps = [stack.enter_context(f) for f in fakes]
            tables = []
            for (tag, header), fp in zip(
                (("p-bearer", "Authorization"), ("p-apikey", "api-key"), ("p-xapikey", "x-api-key")),
                fps,
                strict=True,
            ):
                name = tag.removeprefix("p-")
                tables.append(
                    f'[{name}]\nbase_url = "{fp.base_url}"\napi_key_env = "{PROV_ENV[tag]}"\n'
                    f'api_key_header = "{header}"\nconcurrency = 2\nmodels = {{ "*" = "*" }}\n'
                    f"[{name}.pricing]\ninput_per_1m = 0.5\noutput_per_1m = 1.5\n"
                )
            tables.append('[recorded]\npreset = "openai"\n')
            providers = out / "providers.toml"
            providers.write_text("\n".join(tables))
            replay = ["replay", "--db", str(db), "--providers", str(providers), "--run", RUN]
            replay += ["--status", "all", "--concurrency", "2", "--no-progress"]
            with open(out / "logs" / "replay-1.log", "wb") as log:
                proc = subprocess.Popen(
                    [proc_kit.python, "-m", "parity.cli", *replay],
                    cwd=out,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env_keys},
                    start_new_session=True,
                )
            try:
                assert wait_for(lambda: _journal_lines(root) >= 8, 40), (
                    "timed out waiting for journaled replay results"
                )
                proc.send_signal(signal.SIGINT)
                ns.replay_rc = proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            snapshots["interrupted"] = sweep_tree(out)  # the run journal holds raw provider answers
            with open(out / "logs" / "replay-2.log", "wb") as log:  # its post-processor's output too
                ns.resume_rc = subprocess.run(
                    [proc_kit.python, "-m", "parity.cli", *replay, "--resume"],
                    cwd=out,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env_keys},
                    timeout=60,
                ).returncode
            ns.provider_posts = [sum(r["method"] == "POST" for r in fp.requests) for fp in fps]

        lap("replay")
        # 4. everything that reads the store, each writing a file
        with contextlib.chdir(out):  # so that a stray relative path also lands in the sweep
            store, run = ("--db", str(db)), ("--run", RUN)
            ns.eval_rc = _cli(out, "eval.json", "eval", *store, *run, "--json")
            ns.report_rcs = [
                _cli(out, "report.log", "report", *store, *run, "--worst", "10", "--out", f"report.{ext}")
                for ext in ("html", "md", "json")
            ]
            ns.check_rc = _cli(out, "check.log", "check", *store, *run, "--fail-if", "error_rate > 0.5")
            ns.ls_rc = _cli(out, "ls.log", "ls", *store)
            ns.export_rc = _cli(out, "export.log", "export", *store, "--format", "parquet", "--out", "export")
            ns.compact_rc = _cli(out, "compact.log", "compact", *store, "--min-age", "0")
            lap("eval, report, check, ls, export, compact")
            ns.notebooks = _run_notebooks(out, kernel)
            lap("notebooks")
    ns.final = sweep_tree(out)
    lap("final sweep")
    ns.seconds = time.monotonic() - t0
    return ns


# --- the tests --------------------------------------------------------------------------------------
def test_every_step_ran(pipeline) -> None:
    p = pipeline
    assert p.recorder_rc == 0, p.recorder_log[-2000:]
    assert "spilled" in p.recorder_log and " 0 lost" in p.recorder_log, p.recorder_log[-2000:]
    assert p.replay_rc == 130, (p.out / "logs" / "replay-1.log").read_text()[-2000:]  # interrupted
    assert p.resume_rc == 0, (p.out / "logs" / "replay-2.log").read_text()[-3000:]
    assert min(p.provider_posts) >= 31, p.provider_posts  # every replayable exchange, some twice (resent)
    assert p.eval_rc == 0 and p.report_rcs == [0, 0, 0] and p.check_rc in (0, 1)
    assert p.ls_rc == 0 and p.export_rc == 0 and p.compact_rc == 0
    for name in ("report.html", "report.md", "report.json"):
        assert (p.out / name).stat().st_size > 2000, name
    assert json.loads((p.out / "report.json").read_text())
    assert json.loads((p.out / "logs" / "eval.json").read_text())
    assert "merged" in (p.out / "logs" / "compact.log").read_text()
    assert list((p.out / "export" / "exchanges").rglob("*.parquet"))
    for name, nb in p.notebooks.items():
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert outputs and not [o for o in outputs if o.output_type == "error"], name
        assert (p.out / "notebooks" / name).stat().st_size > 10_000, name


def test_the_store_holds_the_exchanges_with_echoed_keys_redacted(pipeline) -> None:
    """Not vacuous: the traffic is there, and the upstream's quotes of each key read [REDACTED]."""
    sent = pipeline.counts["live"]["requests"] + pipeline.counts["spill"]["requests"]
    con = connect(pipeline.db)
    try:
        n, endpoints, streams, fps = con.execute(
            "SELECT count(*), list(DISTINCT endpoint ORDER BY endpoint), count(*) FILTER (WHERE stream), "
            "count(DISTINCT api_key_fingerprint) FROM exchanges"
        ).fetchall()[0]
        echoes = con.execute(
            "SELECT error_message FROM exchanges WHERE status = 401 AND error_type = 'invalid_request_error'"
        ).fetchall()
        queries = [q for (q,) in con.execute("SELECT DISTINCT query FROM exchanges").fetchall()]
    finally:
        con.close()
    assert n == sent, (n, sent)
    assert {"chat.completions", "responses", "embeddings", "models"} <= set(endpoints)
    assert streams >= 5 and fps >= 3  # Bearer, api-key, x-api-key alone: three keys, three fingerprints
    live_401 = 4 + 5  # SDK (Bearer) + one credential alone per request
    spill_401 = 2 + 2
    assert len(echoes) == live_401 + spill_401
    for (msg,) in echoes:
        assert msg.startswith("Incorrect API key provided: [REDACTED]."), msg
    assert all(q is None or "key" not in q for q in queries), queries


def test_the_replay_stored_the_providers_echoes_redacted(pipeline) -> None:
    con = connect(pipeline.db)
    try:
        rows = con.execute(
            "SELECT provider, status, error_message, CAST(response_body AS VARCHAR) FROM results "
            "WHERE run_id = ? AND provider != 'recorded'",
            [RUN],
        ).fetchall()
        state = con.execute("SELECT state, resumes FROM runs WHERE run_id = ?", [RUN]).fetchall()
    finally:
        con.close()
    assert state == [("finished", 1)]
    assert {r[0] for r in rows} == {"bearer", "apikey", "xapikey"}
    assert sum(1 for r in rows if r[1] == 200) >= 20
    echoes = [r for r in rows if r[1] == 401]
    assert {r[0] for r in echoes} == {"bearer", "apikey", "xapikey"}, rows
    for _, _, msg, body in echoes:
        assert msg.startswith("Incorrect API key provided: [REDACTED]."), msg
        assert "[REDACTED]" in body


def test_no_key_in_any_file(pipeline) -> None:
    """Every file, at the end and while spill segments and a run journal existed: no key, however encoded."""
    p = pipeline
    spilled, interrupted, final = p.snapshots["spilled"], p.snapshots["interrupted"], p.final
    assert any("/spill/" in n and "/seg-" in n for n in spilled.names), sorted(spilled.names)
    assert any(n.startswith("parity.duckdb.d/journal/") for n in interrupted.names), sorted(interrupted.names)
    for must in (
        "parity.duckdb",
        "logs/recorder.log",
        "logs/replay-1.log",
        "report.html",
        "notebooks/" + NOTEBOOKS[0],
    ):
        assert must in final.names, must
    report = (
        f"swept {final.summary()} at the end, {spilled.summary()} while spilled, "
        f"{interrupted.summary()} after the interrupted replay; pipeline {p.seconds:.1f} s {p.phases}"
    )
    print("\n" + report)
    by_place: dict[str, set[str]] = {}
    for hit in spilled.hits + interrupted.hits + final.hits:
        place, what = hit.rsplit(": ", 1)
        by_place.setdefault(place, set()).add(what)
    lines = [f"{place}: {', '.join(sorted(w))}" for place, w in sorted(by_place.items())]
    assert not lines, f"keys found in {len(lines)} places ({report}):\n" + "\n".join(lines)
    assert final.parquet_files >= 10 and final.values > 1000, report


# --- a store in a bucket: the AWS credentials ------------------------------------------------------
def _run_logged(out: Path, name: str, env: dict, *args: str) -> int:
    """``parity <args>`` with ``env``; stdout and stderr kept in ``out/logs/<name>.log`` (swept)."""
    with open(out / "logs" / f"{name}.log", "wb") as log:
        return subprocess.run(
            [sys.executable, "-m", "parity.cli", *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=240,
        ).returncode


def test_aws_credentials_reach_no_file_log_row_or_object(tmp_path: Path, monkeypatch) -> None:
    """Record (with an upload failure and its spill), replay, eval, report, ls, export, compact and
    failing commands on ``--db s3://...`` with canary AWS credentials in the environment: no local
    file, log line, stored row or object in the bucket holds any of them."""
    moto_server = pytest.importorskip("moto.server", reason="moto (a dev dependency) runs the S3 server")
    import boto3

    from parity.procs import free_port, stop_proc, wait_port

    out = tmp_path / "out"
    for d in ("logs", "state", "bucket"):
        (out / d).mkdir(parents=True)
    port = free_port()
    env = {
        "AWS_ACCESS_KEY_ID": AWS["aws-access-key-id"],
        "AWS_SECRET_ACCESS_KEY": AWS["aws-secret-access-key"],
        "AWS_SESSION_TOKEN": AWS["aws-session-token"],
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "XDG_STATE_HOME": str(out / "state"),
    }
    from parity.store import objstore

    for k, v in env.items():  # this process reads the store too
        monkeypatch.setenv(k, v)
    objstore.fs.cache_clear()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket="sweep")
        db = "s3://sweep/store"
        with FakeProvider.running(profile="instant", port=0) as fp:
            rport = free_port()
            with open(out / "logs" / "recorder.log", "wb") as log:
                rec = subprocess.Popen(
                    [sys.executable, "-m", "parity.recorder.cli", "record", "--listen", f"127.0.0.1:{rport}"]
                    + ["--upstream", fp.url, "--db", db, "--flush-interval", "0.2"]
                    + ["--spill-dir", str(out / "spill")],
                    cwd=REPO,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_port(rport, proc=rec)
                app = openai.OpenAI(
                    base_url=f"http://127.0.0.1:{rport}/v1", api_key=APP["bearer"], max_retries=0
                )
                msgs = [{"role": "user", "content": "hello"}]
                for _ in range(3):
                    app.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                assert wait_for(
                    lambda: connect(db).execute("SELECT count(*) FROM exchanges").fetchall()[0][0] == 3
                )
                server.stop()  # uploads fail: the recorder spills, logs it, and uploads again later
                list(app.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True))
                assert wait_for(lambda: list((out / "spill").rglob("seg-*.parquet")), timeout=30)
                assert _run_logged(out, "ls-down", env, "ls", "--db", db) == 2
                server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                server.start()
                assert wait_for(lambda: not list((out / "spill").rglob("seg-*.parquet")), timeout=60)
            finally:
                assert stop_proc(rec) == 0
            providers = tmp_path / "providers.toml"
            providers.write_text(f'[cand]\nbase_url = "{fp.url}/v1"\nmodels = {{ "*" = "*" }}\n')
            assert (
                _run_logged(
                    out, "replay", env, "replay", "--db", db, "--providers", str(providers), "--run", RUN
                )
                == 0
            )
        assert _run_logged(out, "eval", env, "eval", "--db", db, "--run", RUN, "--json") == 0
        assert (
            _run_logged(out, "report", env, "report", "--db", db, "--run", RUN, "--out", str(out / "r.html"))
            == 0
        )
        assert _run_logged(out, "ls", env, "ls", "--db", db) == 0
        assert _run_logged(out, "export", env, "export", "--db", db, "--out", str(out / "export")) == 0
        assert _run_logged(out, "export-s3", env, "export", "--db", db, "--out", "s3://sweep/export") == 0
        assert _run_logged(out, "compact", env, "compact", "--db", db, "--min-age", "0") == 0
        assert _run_logged(out, "ls-missing", env, "ls", "--db", "s3://sweep/nothing-here") == 2
        assert _run_logged(out, "ls-no-bucket", env, "ls", "--db", "s3://no-such-bucket/x") == 2
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="sweep"):
            for o in page.get("Contents", []):
                dest = out / "bucket" / o["Key"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(s3.get_object(Bucket="sweep", Key=o["Key"])["Body"].read())
    finally:
        server.stop()
        objstore.fs.cache_clear()
    assert "spilled" in (out / "logs" / "recorder.log").read_text()
    assert "EndpointConnectionError" in (out / "logs" / "ls-down.log").read_text()
    found = sweep_tree(out)
    print(f"\nbucket store sweep: {found.summary()}")
    assert any(n.startswith("bucket/store/results/") for n in found.names), sorted(found.names)
    assert found.parquet_files >= 8 and found.values > 500, found.summary()
    assert not found.hits, "\n".join(found.hits)
