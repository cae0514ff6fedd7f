"""Proxy modes with real processes: regular (TLS, mitmproxy CA), upstream, plain ``mitmdump -s``."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import openai
import pytest
from rec_upstreams import TEXT_HELLO, WireUpstream

from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (made here with ``cryptography``) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "upstream.pem", tmp / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def ca_of(rec) -> Path:
    """The mitmproxy CA certificate of ``rec`` (written to its confdir as the proxy comes up)."""
    ca = Path(rec.argv[rec.argv.index("--confdir") + 1]) / "mitmproxy-ca-cert.pem"
    deadline = time.monotonic() + 10
    while not ca.exists():
        assert time.monotonic() < deadline, f"no CA at {ca}"
        time.sleep(0.05)
    return ca


def rows(db: Path, n: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        con = connect(db)
        cur = con.execute("SELECT * FROM exchanges ORDER BY recorded_at")
        names = [d[0] for d in cur.description]
        out = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        con.close()
        if len(out) >= n or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory):
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    up = WireUpstream(ssl_context=ctx)
    with up.running():
        yield up


def test_regular_mode_with_a_tls_upstream(tls_upstream, run_recorder) -> None:
    rec = run_recorder(None, "--mode", "regular", "--ssl-insecure", "--flush-interval", "0.2")
    ca = ca_of(rec)
    with httpx.Client(proxy=rec.url, verify=str(ca)) as http:
        client = openai.OpenAI(
            base_url=tls_upstream.url + "/v1", api_key="sk-x", max_retries=0, http_client=http
        )
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "tls"}])
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "tls-s"}], stream=True
            )
            if c.choices
        )
    assert r.choices[0].message.content == TEXT_HELLO == text
    got = rows(rec.db, 2)
    assert [(x["endpoint"], x["stream"], x["upstream_host"]) for x in got] == [
        ("chat.completions", False, "127.0.0.1"),
        ("chat.completions", True, "127.0.0.1"),
    ]
    assert got[1]["stream_complete"] and got[1]["ttft_ms"] is not None


def test_regular_mode_readme_recipe_with_env_vars(tls_upstream, run_recorder) -> None:
    """HTTPS_PROXY + SSL_CERT_FILE, exactly as the README tells an app to do it."""
    rec = run_recorder(None, "--mode", "regular", "--ssl-insecure", "--flush-interval", "0.2")
    ca = ca_of(rec)
    app = textwrap.dedent(
        f"""
        import openai
        c = openai.OpenAI(base_url={tls_upstream.url + "/v1"!r}, api_key="sk-x", max_retries=0)
        print(c.chat.completions.create(model="m", messages=[{{"role": "user", "content": "env"}}]).choices[0].message.content)
        """
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "all_proxy")}
    env.update(HTTPS_PROXY=rec.url, SSL_CERT_FILE=str(ca))
    out = subprocess.run([sys.executable, "-c", app], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == TEXT_HELLO, out.stderr
    assert [x["request_body"] for x in rows(rec.db, 1)] and "env" in rows(rec.db, 1)[0]["request_body"]


def test_upstream_mode_through_another_proxy(proc_kit, run_recorder, tmp_path: Path) -> None:
    up = WireUpstream()
    with up.running():
        port = proc_kit.free_port()
        parent = proc_kit.start_proxy(
            [
                str(proc_kit.venv_bin / "mitmdump"),
                "-q",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(port),
                "--set",
                f"confdir={tmp_path / 'parentconf'}",
            ],
            port,
            tmp_path / "parent.log",
        )
        try:
            rec = run_recorder(None, "--mode", f"upstream:http://127.0.0.1:{port}", "--flush-interval", "0.2")
            r = httpx.post(
                up.url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "via-upstream"}]},
                proxy=rec.url,
            )
            assert r.json()["choices"][0]["message"]["content"] == TEXT_HELLO
            [row] = rows(rec.db, 1)
            assert row["endpoint"] == "chat.completions" and "via-upstream" in row["request_body"]
            assert len(up.requests) == 1  # it went through the parent proxy to the upstream
        finally:
            assert parent.stop() == 0


def test_plain_mitmdump_with_the_addon_script(proc_kit, tmp_path: Path) -> None:
    from parity.fake.server import FakeProvider

    db = tmp_path / "mitm.duckdb"
    with FakeProvider.running(profile="instant", port=0) as fp:
        port = proc_kit.free_port()
        dump = proc_kit.start_proxy(
            [
                str(proc_kit.venv_bin / "mitmdump"),
                "-q",
                "-s",
                str(proc_kit.repo / "recorder" / "addon.py"),
                "--mode",
                f"reverse:{fp.url}",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(port),
                "--set",
                f"parity_db={db}",
                "--set",
                "parity_tag=mitmdump",
                "--set",
                f"parity_spill_dir={tmp_path / 'spill'}",
                "--set",
                f"confdir={tmp_path / 'conf'}",
            ],
            port,
            tmp_path / "mitmdump.log",
            cwd=tmp_path,  # the script must find the recorder package by itself
        )
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "s"}], stream=True
            )
        )
        assert dump.stop(signal.SIGINT) == 0  # flushes on exit
    got = rows(db, 2)
    assert [(r["stream"], r["tag"], r["status"]) for r in got] == [
        (False, "mitmdump", 200),
        (True, "mitmdump", 200),
    ]
    assert (
        got[1]["stream_complete"] and json.loads(got[1]["response_body"])["choices"][0]["message"]["content"]
    )


def test_the_parity_entry_point(run_recorder, proc_kit, tmp_path: Path) -> None:
    """``parity record`` itself (the installed console script), stopped with SIGINT."""
    up = WireUpstream()
    with up.running():
        port = proc_kit.free_port()
        db = tmp_path / "p.duckdb"
        argv = [str(proc_kit.venv_bin / "parity"), *proc_kit.record_argv(up.url, db, port)[3:]]
        rec = proc_kit.start_proxy(argv, port, tmp_path / "parity.log", db=db)
        httpx.post(rec.base_url + "/chat/completions", json={"model": "m", "messages": []})
        assert rec.stop(signal.SIGINT) == 0
    assert len(rows(db, 1)) == 1
