"""``parity record``, ``parity import`` and ``parity ls``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.util
import ipaddress
import json
import logging
import signal
import socket
import sys
from pathlib import Path

from parity.store.cli import add_command, add_db_option
from parity.wire.errors import ParityError

log = logging.getLogger("parity.record")


class RecordError(ParityError):
    """A recorder command cannot start."""


def _redaction_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("redaction (message content, before anything is stored)")
    g.add_argument(
        "--redact",
        metavar="FILE",
        default="",
        help="TOML file of regex rules: [[rule]] name, pattern, replacement (default [REDACTED:<name>])",
    )
    g.add_argument(
        "--redact-builtin",
        metavar="LIST",
        action="append",
        help="built-in rules to enable (comma list, repeatable): email, phone, credit_card, ipv4, openai_key",
    )
    g.add_argument(
        "--redact-hook",
        metavar="MOD:FN",
        default="",
        help="Python hook run after the rules, module:function or path/to/file.py:function (str -> str)",
    )


def _shadow_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "shadow traffic (mirror live requests to candidate providers; production is never touched)"
    )
    g.add_argument(
        "--shadow",
        metavar="FILE",
        default="",
        help="providers file (the replay one): mirror each finished request to its providers",
    )
    g.add_argument(
        "--shadow-sample",
        type=float,
        default=1.0,
        metavar="SHARE",
        help="share of requests mirrored, in (0, 1] (by a hash of the request's id; default 1)",
    )
    g.add_argument(
        "--shadow-run", default="shadow", metavar="RUN", help="the run the mirrors go to (default shadow)"
    )
    g.add_argument(
        "--shadow-max-cost", default="", metavar="USD", help="stop mirroring once the candidates cost this"
    )
    g.add_argument(
        "--shadow-queue",
        type=int,
        default=1000,
        metavar="N",
        help="exchanges waiting for the shadow process; beyond, mirrors are dropped (default 1000)",
    )
    g.add_argument(
        "--shadow-status-every",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between the run's stored counters (parity ls) while they change (default 10)",
    )


# The shadow addon lives a layer above the recorder: it is loaded by file path, as ``mitmdump -s``
# would load it, so the recorder never imports it.
SHADOW_ADDON = "parity.shadow.addon"


def shadow_addons() -> list:
    """The shadow addon instances, loaded from their file."""
    from mitmproxy.addons.script import load_script

    spec = importlib.util.find_spec(SHADOW_ADDON)
    if spec is None or not spec.origin:
        raise RecordError("--shadow: the shadow addon is not installed with parity")
    module = load_script(spec.origin)
    if module is None:
        raise RecordError(f"--shadow: cannot load {spec.origin}")
    return list(module.addons)


def _builtin(args) -> str:
    return ",".join(args.redact_builtin or [])


RECORD_DESCRIPTION = """\
Run a recording proxy (mitmproxy with the parity recorder) between your app and OpenAI.
Every request and answer is stored in the store given by --db; a failure to store never
fails a request.

Reverse mode (the default with --upstream): point the app at the proxy, base_url =
http://LISTEN/v1. Regular mode: the app sets HTTPS_PROXY=http://LISTEN and trusts the
mitmproxy CA certificate (~/.mitmproxy/mitmproxy-ca-cert.pem)."""

RECORD_EXAMPLES = """\
examples:
  parity record --upstream https://api.openai.com --db parity.duckdb
      then run the app with OPENAI_BASE_URL=http://127.0.0.1:8080/v1
  parity record --upstream https://api.openai.com --db parity.duckdb --listen 127.0.0.1:9000 --tag staging
  parity record --mode regular --db parity.duckdb --redact-builtin email,openai_key
  parity record --upstream https://api.openai.com --db parity.duckdb --shadow providers.toml \
      --shadow-sample 0.1 --shadow-run staging --shadow-max-cost 20
      also mirror 10% of the live requests to the providers of providers.toml (docs/shadow.md)

next: parity ls --db parity.duckdb (what was recorded), then parity replay."""

IMPORT_DESCRIPTION = """\
Import HAR files and mitmproxy flow files (mitmdump -w) through the recorder's parser, as
if they had been recorded. A damaged file is reported and what could be read from it is
kept; importing the same file again adds nothing. Neither format has per-event times:
imported streams have no chunk_offsets_ms and no ttft_ms."""

IMPORT_EXAMPLES = """\
examples:
  parity import --db parity.duckdb session.har
  parity import --db parity.duckdb flows/*.mitm --tag from-staging --redact-builtin email"""

LS_DESCRIPTION = """\
Summarise a store: exchanges recorded per endpoint, model and status, with their median
latency, the errors, and the replay runs with their state (finished, stopped, failed).
parity stats is an alias of parity ls."""

LS_EXAMPLES = """\
examples:
  parity ls --db parity.duckdb
  parity ls --db parity.duckdb --tag staging"""


IMPORT_HELP = "import HAR files or mitmproxy flow files into the store"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "record", cmd_record, "run the recording proxy", RECORD_DESCRIPTION, RECORD_EXAMPLES)
    p.add_argument("--upstream", help="upstream base URL for reverse mode, e.g. https://api.openai.com")
    p.add_argument(
        "--mode",
        default=None,
        help="reverse (default with --upstream) | regular | upstream:URL | transparent",
    )
    p.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on (default 127.0.0.1:8080)"
    )
    add_db_option(p, creates=True)
    p.add_argument("--tag", default="", help="tag stored with every exchange")
    p.add_argument("--spill-dir", default="", help="where to write exchanges when the store is unwritable")
    p.add_argument("--max-body-bytes", type=int, default=32 * 1024 * 1024, help="truncate bodies above this")
    p.add_argument("--flush-interval", type=float, default=0.5, help="seconds between store flushes (<= 1)")
    p.add_argument("--skip-other", action="store_true", help="do not record non-OpenAI paths")
    p.add_argument(
        "--writer",
        choices=["process", "thread"],
        default="process",
        help="build and write rows in a child process (default; keeps the work off the proxy) or a thread",
    )
    p.add_argument("--confdir", default=None, help="mitmproxy confdir (CA certificate), default ~/.mitmproxy")
    p.add_argument("--ssl-insecure", action="store_true", help="do not verify the upstream TLS certificate")
    p.add_argument(
        "--allow-public",
        action="store_true",
        help="allow listening on a non-loopback address (an open proxy is a risk)",
    )
    p.add_argument("--quiet", action="store_true", help="no mitmproxy connection log lines")
    _redaction_args(p)
    _shadow_args(p)

    p = add_command(sub, "import", cmd_import, IMPORT_HELP, IMPORT_DESCRIPTION, IMPORT_EXAMPLES)
    p.add_argument("files", nargs="+", help="*.har or mitmproxy flow files (mitmdump -w)")
    add_db_option(p, creates=True)
    p.add_argument("--tag", default="", help="tag stored with every imported exchange")
    _redaction_args(p)

    p = sub.add_parser(
        "ls",
        aliases=["stats"],
        help="summarise what was recorded and the replay runs",
        description=LS_DESCRIPTION,
        epilog=LS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_db_option(p)
    p.add_argument("--tag", default=None, help="only this tag")
    p.set_defaults(func=cmd_ls)


def _parse_listen(listen: str, allow_public: bool) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError as e:
        raise RecordError(f"--listen {listen!r}: expected HOST:PORT") from e
    if not 0 < port_n < 65536:
        raise RecordError(f"--listen {listen!r}: the port must be 1..65535")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not allow_public:
        raise RecordError(
            f"refusing to listen on {host}: not a loopback address. An open recording proxy relays and stores "
            "anyone's traffic; pass --allow-public if this is intended (and firewall it)."
        )
    return host, port_n


def _check_bindable(host: str, port: int) -> None:
    """Bind ``host:port`` once and let go, so a taken port is one clear line before anything starts.

    With SO_REUSEADDR, as the proxy's own listener has: a port left in TIME_WAIT is free, one that
    another process listens on is not.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise RecordError(f"--listen {host}:{port}: cannot resolve {host} ({e.strerror})") from e
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise RecordError(
                    f"--listen {host}:{port} is in use; choose another with --listen HOST:PORT"
                ) from e
            raise RecordError(f"--listen {host}:{port}: cannot listen there ({e.strerror})") from e


def app_settings(mode: str, url: str, confdir: str | None) -> str:
    """What apps set to go through the proxy at ``url``, for the startup line."""
    if mode.startswith("reverse:"):
        return f"apps: base_url={url}/v1 (OPENAI_BASE_URL={url}/v1)"
    if mode == "regular" or mode.startswith("upstream:"):
        ca = Path(confdir or "~/.mitmproxy") / "mitmproxy-ca-cert.pem"
        return f"apps: HTTPS_PROXY={url} and trust the CA certificate {ca}"
    return "apps: route traffic to the proxy (transparent mode: see mitmproxy's docs)"


class Announce:
    """Print the startup lines once the proxy listens (mitmproxy's ``running`` event)."""

    def __init__(self, args, mode: str, host: str, port: int) -> None:
        self.args, self.mode, self.host, self.port = args, mode, host, port

    def running(self) -> None:
        from mitmproxy import ctx

        addrs = ctx.master.addons.get("proxyserver").listen_addrs()
        host, port = addrs[0][:2] if addrs else (self.host, self.port)
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        target = self.args.upstream or self.mode
        print(f"parity record: listening on {url} ({self.mode}) -> {target}; store {self.args.db}")
        print(f"parity record: {app_settings(self.mode, url, self.args.confdir)}", flush=True)


def _mode(args) -> str:
    mode = args.mode or ("reverse" if args.upstream else "regular")
    if mode == "reverse":
        if not args.upstream:
            raise RecordError("--mode reverse needs --upstream URL (e.g. https://api.openai.com)")
        if not args.upstream.startswith(("http://", "https://")):
            raise RecordError(f"--upstream {args.upstream!r} must start with http:// or https://")
        return f"reverse:{args.upstream.rstrip('/')}"
    if mode.startswith("reverse:"):
        return mode
    if mode in ("regular", "transparent") or mode.startswith("upstream:"):
        return mode
    raise RecordError(f"unknown --mode {mode!r}: use reverse, regular, upstream:URL or transparent")


async def _run_proxy(args, host: str, port: int, mode: str) -> int:
    from mitmproxy import options
    from mitmproxy.log import MitmFormatter
    from mitmproxy.tools.dump import DumpMaster
    from mitmproxy.utils import vt_codes

    from parity.recorder.addon import Recorder

    if args.quiet:  # parity's own lines (spills, the exit summary) stay; mitmproxy's per-connection ones go
        logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    opts = options.Options(mode=[mode], listen_host=host, listen_port=port)
    if args.confdir:
        opts.update(confdir=args.confdir)
    # No mitmproxy TermLog: its handler and the CLI's (logging.basicConfig) both sat on the root
    # logger, which printed every line twice. The CLI's handler (stderr) stays, in mitmproxy's
    # short format, which names the client of each connection line.
    colour = vt_codes.ensure_supported(sys.stderr)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setFormatter(MitmFormatter(colour))
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    recorder = Recorder()
    master.addons.add(recorder, Announce(args, mode, host, port))
    if args.shadow:
        master.addons.add(*shadow_addons())  # after the recorder: its hooks see the recorder's capture
        # set (and checked) before the store and the writer start, so a bad flag is one clean line
        master.options.update(
            parity_shadow=args.shadow,
            parity_shadow_sample=str(args.shadow_sample),
            parity_shadow_run=args.shadow_run,
            parity_shadow_max_cost=args.shadow_max_cost,
            parity_shadow_queue=args.shadow_queue,
            parity_shadow_status_s=str(args.shadow_status_every),
        )
    master.options.update(
        parity_db=str(args.db),
        parity_tag=args.tag,
        parity_spill_dir=args.spill_dir,
        parity_max_body_bytes=args.max_body_bytes,
        parity_flush_interval=args.flush_interval,
        parity_record_other=not args.skip_other,
        parity_writer=args.writer,
        parity_redact=args.redact,
        parity_redact_builtin=_builtin(args),
        parity_redact_hook=args.redact_hook,
        ssl_insecure=args.ssl_insecure,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    await master.run()
    return 0


def cmd_record(args) -> int:
    from mitmproxy.exceptions import OptionsError

    try:
        if not 0 < args.flush_interval <= 1:
            raise RecordError("--flush-interval must be in (0, 1] seconds")
        host, port = _parse_listen(args.listen, args.allow_public)
        mode = _mode(args)
        _check_bindable(host, port)  # before the store, the spill folder or "listening" exist
        return asyncio.run(_run_proxy(args, host, port, mode))
    except (RecordError, OptionsError) as e:
        print(f"parity record: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"parity record: cannot start: {e}", file=sys.stderr)
        return 2


def cmd_import(args) -> int:
    from parity.recorder.importers import ImportError_, import_files
    from parity.recorder.redact import build as build_redactor
    from parity.recorder.redaction_rules import RedactionError

    try:
        redactor = build_redactor(args.redact or None, _builtin(args), args.redact_hook or None)
        results = import_files(
            [Path(f) for f in args.files], args.db, tag=args.tag or None, redactor=redactor
        )
    except (ImportError_, RedactionError) as e:
        print(f"parity import: {e}", file=sys.stderr)
        return 2
    failed = 0
    for name, r in results.items():
        dup = f", {r.duplicates} already in the store" if r.duplicates else ""
        print(f"{name}: {r.kind}, {r.imported} exchanges imported, {r.skipped} entries skipped{dup}")
        for err in r.errors[:20]:
            print(f"{name}: error: {err}", file=sys.stderr)
        if len(r.errors) > 20:
            print(f"{name}: error: ... and {len(r.errors) - 20} more", file=sys.stderr)
        failed += not r.ok
    return 1 if failed else 0


def cmd_ls(args) -> int:
    from parity.store.store import StoreError, connect

    try:
        con = connect(args.db)
    except StoreError as e:
        print(f"parity {getattr(args, 'command', None) or 'ls'}: {e}", file=sys.stderr)
        return 2
    where = "WHERE tag = ?" if args.tag else ""
    params = [args.tag] if args.tag else []
    total, first, last, streams, errors = con.execute(
        f"SELECT count(*), min(recorded_at), max(recorded_at), count(*) FILTER (WHERE stream), "
        f"count(*) FILTER (WHERE error_type IS NOT NULL) FROM exchanges {where}",
        params,
    ).fetchall()[0]
    print(f"store {args.db}: {total} exchanges, {streams} streamed, {errors} with errors")
    if total:
        print(f"time span: {first} .. {last}")
        rows = con.execute(
            f"SELECT endpoint, coalesce(model, '-'), coalesce(CAST(status AS VARCHAR), 'none'), count(*), "
            f"count(*) FILTER (WHERE stream), round(median(latency_ms), 1) FROM exchanges {where} "
            "GROUP BY ALL ORDER BY 4 DESC",
            params,
        ).fetchall()
        print(f"{'endpoint':<22}{'model':<32}{'status':>7}{'count':>8}{'streams':>9}{'p50 ms':>9}")
        for ep, model, status, n, s, p50 in rows:
            print(f"{ep:<22}{model[:31]:<32}{status:>7}{n:>8}{s:>9}{p50 if p50 is not None else '-':>9}")
        errs = con.execute(
            f"SELECT error_type, count(*) FROM exchanges {where} {'AND' if where else 'WHERE'} error_type IS NOT NULL "
            "GROUP BY 1 ORDER BY 2 DESC",
            params,
        ).fetchall()
        if errs:
            print("errors: " + ", ".join(f"{t} {n}" for t, n in errs))
    runs = con.execute(
        "SELECT run_id, state, started_at, CAST(config AS VARCHAR) FROM runs ORDER BY started_at"
    ).fetchall()
    replays = [(r, s) for r, s, _, c in runs if not _shadow_of(c)]
    if replays:
        print("replay runs: " + ", ".join(f"{r} ({s})" for r, s in replays))
    for run, state, _, config in runs:
        sh = _shadow_of(config)
        if sh:
            print(shadow_line(run, state, sh))
    return 0


def _shadow_of(config: str | None) -> dict | None:
    """The counters a shadow run stores in its config (``parity.shadow.status``), None for a replay run."""
    if not config:
        return None
    try:
        return json.loads(config).get("shadow")
    except (ValueError, AttributeError):
        return None


def shadow_line(run: str, state: str, sh: dict) -> str:
    """One shadow run for ``parity ls``: state, mirrored per provider, drops by reason, spend."""

    def items(d: dict | None) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted((d or {}).items(), key=lambda kv: -kv[1])) or "none"

    sample = sh.get("sample")
    cap = sh.get("max_cost")
    lines = [
        f"shadow run {run} ({state}{', capped' if sh.get('state') == 'capped' else ''}): "
        f"{sh.get('sampled', 0)} of {sh.get('seen', 0)} requests sampled (sample {sample:g}), "
        f"updated {sh.get('updated_at') or '?'}"
        if isinstance(sample, (int, float))
        else f"shadow run {run} ({state})",
        f"  mirrored: {items(sh.get('mirrored'))}; ok: {items(sh.get('ok'))}; failed: {items(sh.get('failed'))}",
        f"  dropped: {items(sh.get('dropped'))}",
        f"  spend: ${float(sh.get('spent_usd') or 0):.4f}" + (f" of ${cap:g} cap" if cap is not None else ""),
    ]
    if sh.get("skipped"):
        lines.append(f"  not mirrored: {items(sh.get('skipped'))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m parity.recorder.cli record|import|ls``: the recorder's commands alone (starts faster)."""
    parser = argparse.ArgumentParser(prog="parity", description="parity recorder commands")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
