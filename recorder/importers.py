"""``parity import``: HAR files and mitmproxy flow files into the store.

Both formats become :class:`~parity.recorder.capture.Capture` objects and go through
:func:`~parity.recorder.capture.build_row`, the same parser the live proxy uses, so an imported
exchange has the same columns as a recorded one. What these formats cannot give is left
null rather than guessed: neither has per-event arrival times, so ``chunk_offsets_ms`` and
``ttft_ms`` are null for imported streams (``ttfb_ms`` and ``latency_ms`` come from the
file's own timings).

A damaged file never stops the import of the others, and what could be read from it stays
imported: a truncated HAR is scanned entry by entry up to the break, a truncated flow file
keeps every complete flow before it. Each problem becomes one line in the file's result.
Importing the same file twice adds nothing (ids are derived from the file's content).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from parity.recorder.capture import Capture, build_row
from parity.recorder.recordings import recording_row
from parity.recorder.redact import Redactor
from parity.store.segments import rows_to_table, segment_root, store_salt, write_segment
from parity.store.writer import sanitized, withhold
from parity.wire.errors import ParityError

BATCH = 5000


class ImportError_(ParityError):  # the name ImportError is a builtin
    """The import cannot run at all (the store cannot be created or written)."""


class EntryError(Exception):
    """One entry of a file cannot be turned into an exchange."""


@dataclass
class FileResult:
    """What one file gave: rows imported, entries skipped, and one line per problem."""

    path: str
    kind: str = "unknown"  # har | flow | unknown
    imported: int = 0
    duplicates: int = 0  # already in the store from an earlier import
    skipped: int = 0  # entries that are not HTTP exchanges or could not be read
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def sniff(path: Path) -> str:
    """``har`` (JSON), ``flow`` (mitmproxy tnetstring) or ``unknown``, from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "har"
    if re.match(rb"^\d+:", head):
        return "flow"
    return "unknown"


# ---------------------------------------------------------------- HAR


def _har_entries(text: str, result: FileResult) -> Iterator[dict]:
    """The entries of a HAR document; a truncated document yields the entries before the break."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        n = 0
        for entry in _salvage_entries(text):
            n += 1
            yield entry
        result.errors.append(
            f"not complete JSON ({e.msg} at byte {e.pos}); {n} entries before that point were read"
        )
        return
    entries = doc.get("log", {}).get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        result.errors.append("not a HAR file: no log.entries list")
        return
    yield from entries


def _salvage_entries(text: str) -> Iterator[object]:
    m = re.search(r'"entries"\s*:\s*\[', text)
    if not m:
        return
    dec = json.JSONDecoder()
    pos, n = m.end(), len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            return
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return
        yield obj  # not an object: har_capture reports it like any bad entry


def _har_body(obj: dict, what: str) -> bytes | None:
    text = obj.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise EntryError(f"{what}.text is not a string")
    if obj.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise EntryError(f"{what}.text is not valid base64 ({e})") from None
    return text.encode("utf-8", "surrogatepass")


def _har_headers(obj: dict, what: str) -> list[tuple[str, str]]:
    hs = obj.get("headers") or []
    if not isinstance(hs, list):
        raise EntryError(f"{what}.headers is not a list")
    out = []
    for h in hs:
        if not isinstance(h, dict) or not isinstance(h.get("name"), str):
            raise EntryError(f"{what}.headers has an item without a name")
        if h["name"].startswith(":"):  # HTTP/2 pseudo-headers (Chrome)
            continue
        out.append((h["name"], str(h.get("value", ""))))
    return out


def _ms(v) -> float | None:
    return float(v) / 1000.0 if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None


def har_capture(entry: dict, notes: list[str]) -> Capture:
    """One HAR entry as a Capture (times in seconds from the entry start, bodies already decoded)."""
    if not isinstance(entry, dict):
        raise EntryError("entry is not an object")
    req = entry.get("request")
    if (
        not isinstance(req, dict)
        or not isinstance(req.get("method"), str)
        or not isinstance(req.get("url"), str)
    ):
        raise EntryError("request.method or request.url missing")
    try:
        started = datetime.fromisoformat(str(entry.get("startedDateTime")).replace("Z", "+00:00"))
    except ValueError:
        raise EntryError(f"startedDateTime {entry.get('startedDateTime')!r} is not an ISO date") from None
    if started.tzinfo is None:
        raise EntryError("startedDateTime has no time zone")
    url = urlsplit(req["url"])
    if url.scheme not in ("http", "https"):
        raise EntryError(f"not an HTTP URL: {req['url'][:80]!r}")
    post = req.get("postData") if isinstance(req.get("postData"), dict) else {}
    req_headers = _har_headers(req, "request")
    if post and post.get("mimeType") and not any(k.lower() == "content-type" for k, _ in req_headers):
        req_headers.append(("content-type", post["mimeType"]))
    req_body = _har_body(post, "request.postData") if post else None
    if post and req_body is None and post.get("params"):
        notes.append("request body given only as params (not byte-exact); not stored")
    timings = entry.get("timings") if isinstance(entry.get("timings"), dict) else {}
    cap = Capture(
        wall_start=started.timestamp(),
        t_start=0.0,
        method=req["method"].upper(),
        path=(url.path or "/") + (f"?{url.query}" if url.query else ""),
        host=url.netloc.rpartition("@")[2],
        request_headers=req_headers,
        request_raw=req_body,
        t_headers=_ms(timings.get("wait")),
        t_end=_ms(entry.get("time")),
        source="har",
        timed=False,
        decoded=True,  # HAR text is the decoded body, whatever content-encoding says
    )
    resp = entry.get("response") if isinstance(entry.get("response"), dict) else {}
    status = resp.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and status > 0:
        if not 100 <= status <= 999:
            raise EntryError(f"response.status {status} is not an HTTP status")
        cap.status = status
        cap.response_headers = _har_headers(resp, "response")
        content = resp.get("content") if isinstance(resp.get("content"), dict) else {}
        cap.body = _har_body(content, "response.content")
        size = content.get("size")
        comp = content.get("compression")
        # size is the decoded length (HAR 1.2), or the wire length with compression = decoded - wire
        # (mitmproxy); either way the text cannot be shorter than size + min(compression, 0).
        expected = size + min(comp, 0) if isinstance(size, int) and isinstance(comp, int) else size
        if cap.body is not None and isinstance(expected, int) and len(cap.body) < expected:
            cap.truncated = True
            notes.append(
                f"response text has {len(cap.body)} bytes but content.size says {size}; marked truncated"
            )
        if cap.body is None and size:
            notes.append("response content.text missing")
    else:
        cap.error = str(resp.get("_error") or "no response in the HAR entry")
    return cap


def _har_id(entry: dict, seen: dict[str, int]) -> str:
    req = entry.get("request") or {}
    post = req.get("postData") or {}
    key = json.dumps(
        [entry.get("startedDateTime"), req.get("method"), req.get("url"), post.get("text")],
        sort_keys=True,
        default=str,
    )
    n = seen.get(key, 0)
    seen[key] = n + 1
    return "har-" + hashlib.sha256(f"{key}#{n}".encode()).hexdigest()[:28]


def read_har(path: Path, result: FileResult) -> Iterator[Capture]:
    """Captures from a HAR file; problems go to ``result``."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        text = data.decode("utf-8-sig", errors="replace")
        result.errors.append(f"not valid UTF-8 (first bad byte at {e.start}); bad bytes replaced")
    seen: dict[str, int] = {}
    for i, entry in enumerate(_har_entries(text, result)):
        notes: list[str] = []
        try:
            cap = har_capture(entry, notes)
        except EntryError as e:
            result.skipped += 1
            result.errors.append(f"entry {i}: {e}; skipped")
            continue
        cap.id = _har_id(entry, seen)
        result.errors.extend(f"entry {i}: {n}" for n in notes)
        yield cap


# ---------------------------------------------------------------- mitmproxy flow files


def flow_capture(flow) -> Capture:
    """One mitmproxy ``HTTPFlow`` as a Capture (mitmproxy's wall-clock timestamps)."""
    req = flow.request
    t0 = req.timestamp_start
    cap = Capture(
        wall_start=t0,
        t_start=t0,
        method=req.method,
        path=req.path,
        host=req.host,
        request_headers=req.headers,
        request_raw=req.raw_content,
        source="flow",
        id="flow-" + flow.id.replace("-", ""),
        timed=False,
    )
    if flow.response is not None:
        resp = flow.response
        cap.status = resp.status_code
        cap.response_headers = resp.headers
        cap.t_headers = resp.timestamp_start
        cap.t_end = resp.timestamp_end
        cap.body = resp.raw_content
    if flow.error is not None:
        cap.error = flow.error.msg
        cap.client_disconnected = "client disconnected" in flow.error.msg.lower()
        cap.t_end = cap.t_end or flow.error.timestamp
    return cap


def read_flows(path: Path, result: FileResult) -> Iterator[Capture]:
    """Captures from a ``mitmdump -w`` file; a truncated file yields the flows before the break."""
    from mitmproxy import http, io

    n = no_body = 0
    with open(path, "rb") as fh:
        try:
            for flow in io.FlowReader(fh).stream():
                if not isinstance(flow, http.HTTPFlow):
                    result.skipped += 1
                    continue
                n += 1
                if flow.response is not None and flow.response.raw_content is None:
                    no_body += 1
                yield flow_capture(flow)
        except Exception as e:  # FlowReadException, ValueError, ... on a cut or corrupt file
            result.errors.append(
                f"unreadable after {n} flows ({type(e).__name__}: {e}); the {n} flows before it were read"
            )
    if no_body:
        result.errors.append(
            f"{no_body} flows have no response body (the proxy that wrote the file streamed them)"
        )


# ---------------------------------------------------------------- store


def _existing_ids(db: Path) -> set[str]:
    from parity.store.store import connect

    con = connect(db)
    try:
        rows = con.execute("SELECT id FROM exchanges WHERE source IN ('har', 'flow')").fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def import_files(
    paths: list[Path], db: str | os.PathLike, tag: str | None = None, redactor: Redactor | None = None
) -> dict[str, FileResult]:
    """Import every file into the store at ``db``; one :class:`FileResult` per file, in order.

    With a ``redactor`` every row is redacted before it is written (see recorder/redact.py).
    """
    from parity.store.store import init_catalog

    root = segment_root(db)  # as given: an s3:// URL is not a Path
    try:
        init_catalog(db)
        salt = store_salt(root)
        existing = _existing_ids(db)
    except Exception as e:
        raise ImportError_(f"cannot open the store at {db}: {e}") from e
    writer_id = "import" + hashlib.sha256(os.urandom(8)).hexdigest()[:6]
    recorder_id = f"import-{os.uname().nodename}-{os.getpid()}"
    options = {"source": "import", "files": [str(p) for p in paths]}
    redaction = redactor.describe() if redactor else None
    try:
        write_segment(
            root, "recordings", [recording_row(recorder_id, tag, str(db), options, redaction)], writer_id
        )
    except OSError as e:
        raise ImportError_(f"cannot write to the store at {root}: {e}") from e
    results: dict[str, FileResult] = {}
    for path in paths:
        res = results[str(path)] = FileResult(str(path))
        try:
            res.kind = sniff(path)
        except OSError as e:
            res.errors.append(f"cannot read: {e.strerror or e}")
            continue
        if res.kind == "unknown":
            res.errors.append("neither a HAR file (JSON) nor a mitmproxy flow file (mitmdump -w)")
            continue
        reader = read_har if res.kind == "har" else read_flows
        batch: list[dict] = []
        try:
            for cap in reader(path, res):
                if cap.id in existing:
                    res.duplicates += 1
                    continue
                existing.add(cap.id)
                cap.salt, cap.tag, cap.recorder_id = salt, tag, recorder_id
                try:
                    row = build_row(cap)
                    if redactor is not None:
                        try:
                            row = redactor.apply_row(row)
                        except Exception as e:  # apply_row does not raise; if it did, store no content
                            row = withhold(row, e)
                    batch.append(row)
                except Exception as e:  # a bug or an odd entry: report it, keep going
                    res.skipped += 1
                    res.errors.append(
                        f"{cap.method} {cap.path[:60]}: row not built ({type(e).__name__}: {e})"
                    )
                if len(batch) >= BATCH:
                    res.imported += _write(root, batch, writer_id)
                    batch = []
        except OSError as e:
            res.errors.append(f"read failed: {e}")
        if batch:
            res.imported += _write(root, batch, writer_id)
    return results


def _write(root: Path, rows: list[dict], writer_id: str) -> int:
    try:
        data = rows_to_table("exchanges", rows)
    except Exception:  # a value that does not fit its column: keep the rest of that row
        data = rows_to_table("exchanges", [sanitized("exchanges", r) for r in rows])
    try:
        write_segment(root, "exchanges", data, writer_id)
    except OSError as e:
        raise ImportError_(f"cannot write to the store at {root}: {e}") from e
    return len(rows)
