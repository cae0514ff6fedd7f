"""``parity demo``: record -> replay -> evaluate -> report, offline, on 127.0.0.1 only.

Starts a fake "production" upstream, records a realistic workload sent through a real
``parity record`` process by the openai SDK, replays it to three fake providers whose
timing and pricing mirror real choices, evaluates and writes ``report.html``. Every
process it starts is stopped before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from parity.procs import free_port, stop_proc, wait_port
from parity.store.cli import add_command, add_db_option

# name -> (fake profile and overrides, model mapping, pricing TOML lines, what it stands for)
_MAPS = {
    "fastco": {
        "gpt-4o-mini": "llama-3.1-8b-turbo",
        "gpt-4o": "llama-3.3-70b-turbo",
        "text-embedding-3-small": "bge-large-en",
        "whisper-1": "whisper-large-v3",
        "gpt-image-1": "flux-schnell",
        "gpt-3.5-turbo-instruct": "llama-3.1-8b-turbo",
    },
    "slowco": {
        "gpt-4o-mini": "llama-v3p1-8b-instruct",
        "gpt-4o": "llama-v3p3-70b-instruct",
        "text-embedding-3-small": "nomic-embed-text",
        "whisper-1": "whisper-v3",
        "gpt-image-1": "sdxl",
        "gpt-3.5-turbo-instruct": "llama-v3p1-8b-instruct",
    },
    "flatco": {
        "gpt-4o-mini": "mistral-7b",
        "gpt-4o": "llama-3.3-70b",
        "text-embedding-3-small": "e5-large",
        "whisper-1": "whisper-large-v3",
        "gpt-image-1": "image-pro",
        "gpt-3.5-turbo-instruct": "mistral-7b",
    },
}
DEMO_PROVIDERS = {
    "fastco": (
        "fast",
        {"time_scale": "0.25"},
        _MAPS["fastco"],
        ["input_per_1m = 0.88", "output_per_1m = 0.88", "per_image = 0.003", "per_audio_minute = 0.0015"],
        "token-priced, fast (like a turbo-tier host)",
    ),
    "slowco": (
        "slow",
        {"time_scale": "0.25", "cold_start_ms": "3000", "cold_idle_s": "2"},  # cold: +750 ms per model
        _MAPS["slowco"],
        ["input_per_1m = 0.90", "output_per_1m = 0.90", "per_image = 0.002", "per_audio_minute = 0.0012"],
        "token-priced, slower, cold starts after idle",
    ),
    "flatco": (
        "openai-like",
        {"time_scale": "0.25", "no_stream_usage": "true", "int_error_codes": "true"},
        _MAPS["flatco"],
        ["per_request = 0.0004"],
        "flat per-request price, two compatibility quirks",
    ),
}
for _name, (_p, _over, _map, *_r) in DEMO_PROVIDERS.items():
    _over["models"] = ",".join(sorted(set(_map.values())))

DEMO_DESCRIPTION = """\
The whole path in about a minute, offline, on 127.0.0.1 only: starts a fake production
upstream, records a realistic workload sent by the openai SDK through a real parity record
process, replays it (run demo) to three fake providers whose timing and pricing mirror real
choices, evaluates it and writes report.html. Every process it starts is stopped before it
returns. The store it leaves in --out works with every other command."""

DEMO_EXAMPLES = """\
examples:
  parity demo                                   then open demo-out/report.html
  parity demo --out /tmp/demo --requests 200
  parity eval --db demo-out/parity.duckdb --run demo
      the same run, evaluated in the terminal
  parity demo --db s3://my-bucket/parity-demo    the store in a bucket (credentials: AWS_* variables)"""


DEMO_HELP = "offline end-to-end demo: record, replay to 3 fake providers, report"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", cmd_demo, DEMO_HELP, DEMO_DESCRIPTION, DEMO_EXAMPLES)
    p.add_argument("--out", default="demo-out", help="folder for the store, providers file and report")
    p.add_argument("--requests", type=int, default=80, help="size of the recorded workload")
    p.add_argument(
        "--keep", action="store_true", help="keep an existing store in --out instead of starting fresh"
    )
    add_db_option(p, creates=True, default=None, where="parity.duckdb in --out")


class Processes:
    """Child processes that are always stopped, in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        fh = open(log, "wb")
        p = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 15.0) -> int:
        return stop_proc(p, timeout)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        for p in reversed(self.procs):
            self.stop(p)


def _fake(procs: Processes, out: Path, name: str, profile: str, overrides: dict[str, str]) -> tuple[str, int]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "parity.fake.server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--profile",
        profile,
    ]
    for k, v in overrides.items():
        args += ["--set", f"{k}={v}"]
    p = procs.start(args, out / f"{name}.log")
    wait_port(port, p)
    return f"http://127.0.0.1:{port}/v1", port


def providers_toml(urls: dict[str, str]) -> str:
    """The demo's providers file, pointing at the local fakes."""
    lines = ["# Demo providers: local fake servers standing in for real hosts. No keys needed.", ""]
    for name, (_, _, model, prices, what) in DEMO_PROVIDERS.items():
        lines += [
            f"[{name}]",
            f"# {what}",
            f'base_url = "{urls[name]}"',
            "concurrency = 16",
            "",
            f"[{name}.models]",
            *(f'"{k}" = "{v}"' for k, v in model.items()),
            "",
            f"[{name}.pricing]",
            'as_of = "2026-11-25"',
            *prices,
            "",
        ]
    lines += ["[recorded]", 'preset = "openai"', ""]
    return "\n".join(lines)


def cmd_demo(args) -> int:
    from parity.cli import main as parity_main
    from parity.workload import run_workload

    t0 = time.monotonic()
    out = Path(args.out).resolve()
    if args.db and not args.keep:
        from parity.store.store import StoreError, store_exists

        try:
            taken = store_exists(args.db)
        except (StoreError, OSError) as e:
            print(f"parity demo: {e}", file=sys.stderr)
            return 2
        if taken:  # the demo starts fresh, and deletes no store it did not make
            print(
                f"parity demo: {args.db} holds a store already: give --keep, or another --db", file=sys.stderr
            )
            return 2
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    db = args.db or out / "parity.duckdb"
    env_note = "(offline: every server is on 127.0.0.1)"
    with Processes() as procs:
        prod_url, _ = _fake(procs, out, "production", "openai-like", {"time_scale": "0.25"})
        port = free_port()
        rec = procs.start(
            [
                sys.executable,
                "-m",
                "parity.cli",
                "record",
                "--upstream",
                prod_url.removesuffix("/v1"),
                "--listen",
                f"127.0.0.1:{port}",
                "--db",
                str(db),
                "--tag",
                "demo",
                "--quiet",
            ],
            out / "recorder.log",
        )
        wait_port(port, rec)
        print(f"[1/4] recording {args.requests} requests through parity record {env_note}", flush=True)
        stats = asyncio.run(run_workload(f"http://127.0.0.1:{port}/v1", n=args.requests, concurrency=8))
        time.sleep(0.7)  # one flush interval
        if procs.stop(rec) != 0:
            print(
                f"parity demo: the recorder exited with an error; see {out / 'recorder.log'}", file=sys.stderr
            )
            return 1
        print(f"      sent {stats.sent}, ok {stats.ok}, errors {stats.errors or 'none'}", flush=True)

        urls = {}
        for name, (profile, overrides, *_rest) in DEMO_PROVIDERS.items():
            urls[name], _ = _fake(procs, out, name, profile, overrides)
        providers = out / "providers.toml"
        providers.write_text(providers_toml(urls))
        print("[2/4] replaying to fastco, slowco, flatco", flush=True)
        rc = parity_main(
            [
                "replay",
                "--db",
                str(db),
                "--providers",
                str(providers),
                "--run",
                "demo",
                "--concurrency",
                "16",
                "--no-progress",
            ]
        )
        if rc != 0:
            return rc
    print("[3/4] evaluating", flush=True)
    rc = parity_main(["eval", "--db", str(db), "--run", "demo"])
    if rc != 0:
        return rc
    report = out / "report.html"
    print("[4/4] writing the report", flush=True)
    rc = parity_main(["report", "--db", str(db), "--run", "demo", "--out", str(report)])
    if rc != 0:
        return rc
    print(
        f"\nreport: {report}\nstore:  {db}\nproviders file: {providers}\n"
        f"demo finished in {time.monotonic() - t0:.1f} s; all demo processes stopped.",
        flush=True,
    )
    return 0
