"""The exact request each provider gets: the recorded body plus only the declared changes.

JSON bodies are parsed, changed in place (key order kept) and dumped in the recorded
body's own style, so the bytes differ from the recording only where a change was
declared. Multipart bodies change only in the ``model`` field's value bytes. Headers are
built from scratch: recorded headers (and any credentials in them) are never forwarded.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from parity.replayer.config import ProviderConfig
from parity.replayer.select import Exchange
from parity.store.version import __version__
from parity.wire.endpoints import REPLAYABLE, api_path, has_side_effects
from parity.wire.multipart import field_value, replace_field

USER_AGENT = f"parity/{__version__}"
_MISSING = object()


@dataclass
class Prepared:
    """One provider's request for one exchange."""

    url: str
    body: bytes
    content_type: str
    model: str | None
    stream: bool
    sent_json: str | None = None  # exact JSON text sent (None for multipart)
    sent_raw: bytes | None = None  # exact multipart bytes sent
    changes: list[dict] = field(default_factory=list)
    request: dict | None = None  # the parsed body sent (JSON only)


def exchange_skip_reason(x: Exchange) -> str | None:
    """Why an exchange is never replayed to anyone, or None."""
    if has_side_effects(x.method, x.path):
        return f"side effects ({x.method} {api_path(x.path)})"
    if x.endpoint not in REPLAYABLE:
        return f"endpoint {x.endpoint!r} is not replayable"
    if x.request_body is None and not x.request_raw:
        return "no request body recorded"
    return None


def recorded_model(x: Exchange) -> str | None:
    """The model of the recorded request (from the column, else the body)."""
    if x.model:
        return x.model
    if x.request_raw and x.request_content_type and "multipart/" in x.request_content_type.lower():
        return field_value(x.request_raw, x.request_content_type, "model")
    return None


def provider_skip_reason(x: Exchange, p: ProviderConfig) -> str | None:
    """Why this exchange is not sent to this provider, or None."""
    if x.endpoint not in p.endpoints:
        return f"endpoint {x.endpoint} not supported by {p.name}"
    if p.map_model(recorded_model(x)) is None:
        return f"model {recorded_model(x)!r} not mapped for {p.name}"
    return None


_STYLES = (
    {"separators": (",", ":"), "ensure_ascii": False},
    {"separators": (",", ":"), "ensure_ascii": True},
    {"separators": (", ", ": "), "ensure_ascii": False},
    {"separators": (", ", ": "), "ensure_ascii": True},
)


def json_style(original: str, parsed: object) -> dict:
    """The ``json.dumps`` options that reproduce ``original`` exactly (compact when none does)."""
    for style in _STYLES:
        if json.dumps(parsed, **style) == original:
            return style
    return _STYLES[0] if not original.isascii() else _STYLES[1]


def dump_like(original: str, obj: object, parsed: object | None = None) -> str:
    """Dump ``obj`` in the JSON style of ``original`` (whose parse is ``parsed``)."""
    style = json_style(original, json.loads(original) if parsed is None else parsed)
    return json.dumps(obj, **style)


def _get_parent(body: dict, path: str, create: bool) -> tuple[dict | None, str]:
    parts = path.split(".")
    cur = body
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            if not create or nxt is not None:
                return None, parts[-1]
            nxt = cur[part] = {}
        cur = nxt
    return cur, parts[-1]


def _rename_in_place(d: dict, old: str, new: str) -> None:
    items = [(new if k == old else k, v) for k, v in d.items() if not (k == new and k != old)]
    d.clear()
    d.update(items)


def apply_changes(body: dict, changes: list[dict]) -> dict:
    """Apply a stored list of changes to a (copy of a) recorded body; the inverse check of a replay."""
    out = copy.deepcopy(body)
    for ch in changes:
        op = ch["op"]
        if op == "model":
            out["model"] = ch["to"]
        elif op == "rename":
            _rename_in_place(out, ch["from"], ch["to"])
        elif op == "drop":
            parent, key = _get_parent(out, ch["path"], create=False)
            if parent is not None:
                parent.pop(key, None)
        elif op == "set":
            parent, key = _get_parent(out, ch["path"], create=True)
            if parent is not None:
                parent[key] = ch["to"]
    return out


def declared_changes(body: dict, p: ProviderConfig, model: str | None) -> tuple[list[dict], dict]:
    """The changes ``p`` declares that apply to ``body``, and the body with them applied (``body`` is not modified)."""
    changes: list[dict] = []
    if model is not None and body.get("model") != model:
        changes.append({"op": "model", "path": "model", "from": body.get("model"), "to": model})
    if not (p.rename or p.drop or p.set):
        return changes, ({**body, "model": model} if changes else body)  # model sits at the top: no deep copy
    probe = apply_changes(body, changes)
    for old, new in p.rename.items():
        if old in probe:
            changes.append({"op": "rename", "from": old, "to": new})
            _rename_in_place(probe, old, new)
    for path in p.drop:
        parent, key = _get_parent(probe, path, create=False)
        if parent is not None and key in parent:
            changes.append({"op": "drop", "path": path, "from": parent.pop(key)})
    for path, value in p.set.items():
        parent, key = _get_parent(probe, path, create=True)
        if parent is None:
            continue
        old = parent.get(key, _MISSING)
        if old is _MISSING or old != value:
            changes.append({"op": "set", "path": path, "from": None if old is _MISSING else old, "to": value})
            parent[key] = value
    return changes, probe


def build_headers(p: ProviderConfig, key: str | None) -> dict[str, str]:
    """The provider's fixed headers: auth from the environment, extra headers, our user-agent."""
    headers = {"user-agent": USER_AGENT, "accept": "application/json"}
    if key:
        if p.api_key_header.lower() == "authorization":
            headers["authorization"] = f"Bearer {key}"
        else:
            headers[p.api_key_header] = key
    headers.update(p.headers)
    return headers


def prepare(x: Exchange, p: ProviderConfig) -> Prepared:
    """The request for ``x`` to ``p`` (call only when no skip reason applies)."""
    url = p.base_url + api_path(x.path)
    model = p.map_model(recorded_model(x))
    if x.request_body is not None:
        if not (p.rename or p.drop or p.set) and (model is None or model == x.model):
            # Nothing declared applies: the recorded bytes as they are, without even parsing them.
            text = x.request_body
            return Prepared(
                url, text.encode("utf-8"), "application/json", model, bool(x.stream), sent_json=text
            )
        body = json.loads(x.request_body)
        if not isinstance(body, dict):
            text = x.request_body
            return Prepared(url, text.encode(), "application/json", model, x.stream, sent_json=text)
        changes, sent = declared_changes(body, p, model)
        text = dump_like(x.request_body, sent, body) if changes else x.request_body
        return Prepared(
            url,
            text.encode("utf-8"),
            "application/json",
            model,
            bool(sent.get("stream")),
            sent_json=text,
            changes=changes,
            request=sent,
        )
    raw = x.request_raw or b""
    ct = x.request_content_type or "application/octet-stream"
    changes = []
    if model is not None:
        new, old = replace_field(raw, ct, "model", model)
        if old is not None and old != model:
            raw = new
            changes.append({"op": "model", "path": "model", "from": old, "to": model})
    stream = (field_value(raw, ct, "stream") or "").strip().lower() == "true"
    req = {"response_format": field_value(raw, ct, "response_format") or "json"}
    return Prepared(url, raw, ct, model, stream, sent_raw=raw, changes=changes, request=req)
