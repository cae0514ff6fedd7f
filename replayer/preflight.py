"""Preflight: before anything is replayed, check each provider's key, endpoint, models and endpoint families.

What it sends to each provider (never a side-effect endpoint):

    GET  {base_url}/models          does the endpoint answer, is the key accepted, which models exist (free)
    GET  {base_url}/models/{id}     a model the list leaves out (free)
    POST {base_url}/<family> {}     an empty JSON object: a server that serves the path answers 400 (no
                                    model), one that does not answers 404; no model runs, no tokens
    one one-token request per model only where GET /models is not served and ``spend`` is on:
                                    chat/completions with max_tokens=1 (responses: max_output_tokens=16,
                                    the least OpenAI accepts; embeddings and moderations: input "hi");
                                    image and audio models are never probed this way

A family listed in the provider's ``endpoints = [...]`` is taken as declared and not probed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp

from parity.replayer.config import Config, ProviderConfig
from parity.replayer.errors import ReplayError
from parity.replayer.mapping import build_headers, recorded_model
from parity.replayer.plan import Plan
from parity.replayer.transport import describe, reason_of
from parity.store.store import query, require_store
from parity.wire.endpoints import REPLAYABLE, has_side_effects

TIMEOUT_S = 10.0
_NOT_SERVED = (404, 405)
_ONE_TOKEN = {
    "chat.completions": lambda m: {
        "model": m,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
    },
    "completions": lambda m: {"model": m, "prompt": "hi", "max_tokens": 1},
    "responses": lambda m: {"model": m, "input": "hi", "max_output_tokens": 16},
    "embeddings": lambda m: {"model": m, "input": "hi"},
    "moderations": lambda m: {"model": m, "input": "hi"},
}


class PreflightError(ReplayError):
    """A provider failed the preflight check; nothing was sent."""


@dataclass
class Needs:
    """What a run would send to one provider: endpoint families, and each model with one family it is sent to."""

    families: set[str] = field(default_factory=set)
    models: dict[str, str | None] = field(default_factory=dict)
    from_store: bool = True


@dataclass
class Report:
    """One provider's preflight: what was checked (for the ok line) and each problem (one FAIL line each)."""

    name: str
    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    def lines(self) -> list[str]:
        """``ok   name: facts`` or one ``FAIL name: problem`` per problem."""
        if self.ok:
            return [f"ok   {self.name}: {', '.join(self.facts)}"]
        return [f"FAIL {self.name}: {p}" for p in self.problems]


def needs_for(cfg: Config, pairs: set[tuple[str, str | None]]) -> dict[str, Needs]:
    """Each provider's needs from the (endpoint, recorded model) pairs a run would replay."""
    out = {}
    for name, p in cfg.providers.items():
        n = Needs()
        for endpoint, model in sorted(pairs, key=lambda t: (t[0], t[1] or "")):
            target = p.map_model(model)
            if endpoint not in p.endpoints or target is None:
                continue
            n.families.add(endpoint)
            n.models.setdefault(target, endpoint)
        out[name] = n
    return out


def needs_without_store(cfg: Config) -> dict[str, Needs]:
    """Without a store: the models the mapping names (no wildcards), families unknown."""
    return {
        name: Needs(
            models=dict.fromkeys(sorted({t for t in p.models.values() if t != "*"})), from_store=False
        )
        for name, p in cfg.providers.items()
    }


def plan_pairs(plan: Plan) -> set[tuple[str, str | None]]:
    """(endpoint, recorded model) of every exchange the plan replays."""
    return {(x.endpoint, recorded_model(x)) for x in plan.replayable}


def store_pairs(db: str) -> set[tuple[str, str | None]]:
    """(endpoint, model) of every replayable recorded exchange; NoStoreError when there is no store at ``db``."""
    require_store(db)
    rows = query(
        db,
        "SELECT DISTINCT endpoint, method, path, model FROM exchanges "
        "WHERE request_body IS NOT NULL OR request_raw IS NOT NULL",
    )
    return {(e, m) for e, method, path, m in rows if e in REPLAYABLE and not has_side_effects(method, path)}


def _short(text: str, secret: str | None, limit: int = 120) -> str:
    text = " ".join(text.split())
    if secret and len(secret) >= 8:
        text = text.replace(secret, "[REDACTED]")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_of(body: object) -> tuple[str, str | None, str | None]:
    """(message, code, param) of an OpenAI error body."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code, param = err.get("code"), err.get("param")
        return str(err.get("message") or ""), str(code) if code else None, str(param) if param else None
    return (str(err) if err else ""), None, None


class _Probe:
    """One provider's session and the answers it got."""

    def __init__(self, p: ProviderConfig, key: str | None, session: aiohttp.ClientSession) -> None:
        self.p, self.key, self.session = p, key, session
        self.timeout = aiohttp.ClientTimeout(
            total=min(p.timeout_s, TIMEOUT_S), sock_connect=min(p.connect_timeout_s, TIMEOUT_S)
        )

    async def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        """(status, parsed JSON or text); transport failures raise."""
        url = self.p.base_url + path
        headers = build_headers(self.p, self.key)
        async with self.session.request(method, url, json=body, headers=headers, timeout=self.timeout) as r:
            text = await r.text(errors="replace")
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text

    def said(self, status: int, body: object) -> str:
        msg = _error_of(body)[0] if not isinstance(body, str) else body
        return _short(f"{status} {msg}".strip(), self.key)


async def _family(probe: _Probe, family: str) -> tuple[str, int, object]:
    status, body = await probe.call("POST", "/" + family.replace(".", "/"), {})
    return family, status, body


async def _one_token(probe: _Probe, model: str, family: str) -> tuple[str, int, object]:
    status, body = await probe.call("POST", "/" + family.replace(".", "/"), _ONE_TOKEN[family](model))
    return model, status, body


def _missing_model(status: int, body: object) -> bool:
    _, code, param = _error_of(body)
    return status == 404 or code == "model_not_found" or (status == 400 and param == "model")


async def _check_provider(p: ProviderConfig, needs: Needs, spend: bool) -> Report:
    rep = Report(p.name)
    key = None
    if p.api_key_env:
        try:
            key = p.api_key()
            rep.facts.append("key set")
        except ReplayError:
            rep.problems.append(f"environment variable {p.api_key_env} (api_key_env) is not set")
    else:
        rep.facts.append("no api_key_env")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False) as session:
        probe = _Probe(p, key, session)
        try:
            await _check_endpoint(probe, needs, spend, rep)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            msg = describe(e, p.base_url + "/models", TIMEOUT_S)
            rep.problems.append(reason_of(msg) or msg)
    return rep


async def _check_endpoint(probe: _Probe, needs: Needs, spend: bool, rep: Report) -> None:
    p = probe.p
    status, body = await probe.call("GET", "/models")
    if status in (401, 403):
        if p.api_key_env and not probe.key:
            return  # the missing key is reported already
        why = "the key was rejected" if probe.key else "it wants a key (set api_key_env)"
        rep.problems.append(f"{why}: GET /models answered {probe.said(status, body)}")
        return
    listed = None
    if status == 200 and isinstance(body, dict) and isinstance(body.get("data"), list):
        listed = {str(m.get("id")) for m in body["data"] if isinstance(m, dict)}
    declared = p.endpoints != REPLAYABLE
    families = sorted(needs.families)
    probed = [] if declared else families
    answers = await asyncio.gather(*(_family(probe, f) for f in probed))
    if status in _NOT_SERVED and all(s in _NOT_SERVED for _, s, _ in answers):
        tried = ", ".join(["GET /models"] + [f"POST /{f.replace('.', '/')}" for f in probed][:2])
        tried += f" and {len(probed) - 2} more" if len(probed) > 2 else ""
        hint = await _v1_hint(probe)
        rep.problems.append(f"every path answers 404 ({tried}): {hint}")
        return
    served = [f for f, s, _ in answers if s not in _NOT_SERVED]
    for f, s, b in answers:
        if s in _NOT_SERVED:
            rep.problems.append(
                f"endpoint {f} not served (POST /{f.replace('.', '/')} answered {probe.said(s, b)}); "
                f"leave it out with endpoints = [...] in [{p.name}], or replay without it (--endpoint)"
            )
    await _check_models(probe, needs, listed, spend, rep)
    if families:
        shown = served or families
        names = ", ".join(shown) if len(shown) <= 3 else f"{len(shown)} endpoints"
        rep.facts.append(names + (" declared" if declared else " served"))
    elif not needs.from_store:
        rep.facts.append("endpoints not checked (no --db)")


async def _v1_hint(probe: _Probe) -> str:
    url = probe.p.base_url
    if url.endswith("/v1"):
        return f"is base_url {url} right?"
    try:
        status, _ = await probe.call("GET", "/v1/models")
    except (aiohttp.ClientError, TimeoutError, OSError):
        status = None
    if status == 200:
        return f'does base_url end in /v1? ({url}/v1/models answers 200: use base_url = "{url}/v1")'
    return f"does base_url end in /v1? (base_url is {url})"


async def _check_models(
    probe: _Probe, needs: Needs, listed: set[str] | None, spend: bool, rep: Report
) -> None:
    models = needs.models
    if not models:
        if needs.from_store:
            rep.facts.append("no recorded request maps to it")
        else:
            rep.facts.append("models not checked (no --db, no named models)")
        return
    if listed is not None:
        unlisted = [m for m in models if m not in listed]
        found = []
        for m in unlisted:  # a provider may serve more than it lists: ask for the one model (free)
            s, b = await probe.call("GET", "/models/" + m)
            if s == 200:
                found.append(m)
            else:
                rep.problems.append(
                    f"model {m!r} not found: not in GET /models, GET /models/{m} answered {probe.said(s, b)}"
                    f"{_mapped_from(probe.p, m)}"
                )
        n_ok = len(models) - len(unlisted) + len(found)
        if found:
            rep.facts.append(
                f"{n_ok}/{len(models)} models found ({len(found)} not listed, by GET /models/ID)"
            )
        else:
            rep.facts.append(f"{n_ok}/{len(models)} models listed")
        return
    cheap = {m: f for m, f in models.items() if f in _ONE_TOKEN}
    if not spend or not cheap:
        why = "dry run" if not spend else "no one-token request fits their endpoints"
        rep.facts.append(f"{len(models)} models not checked (GET /models not served; {why})")
        return
    answers = await asyncio.gather(*(_one_token(probe, m, f) for m, f in cheap.items()))
    ok = 0
    for m, s, b in answers:
        if 200 <= s < 300:
            ok += 1
        elif _missing_model(s, b):
            rep.problems.append(
                f"model {m!r} not found: a one-token request answered {probe.said(s, b)}{_mapped_from(probe.p, m)}"
            )
        else:
            rep.facts.append(f"model {m!r} unconfirmed ({probe.said(s, b)})")
    rep.facts.append(f"{ok}/{len(cheap)} models answered a one-token request (GET /models not served)")


def _mapped_from(p: ProviderConfig, model: str) -> str:
    sources = sorted(k for k, v in p.models.items() if v == model and k != "*")
    return f"; mapped from {', '.join(sources)} in [{p.name}] models" if sources else ""


async def _check_all(cfg: Config, needs: dict[str, Needs], spend: bool) -> list[Report]:
    return list(
        await asyncio.gather(*(_check_provider(p, needs[n], spend) for n, p in cfg.providers.items()))
    )


def check(cfg: Config, needs: dict[str, Needs], spend: bool = True) -> list[Report]:
    """Check every provider of ``cfg`` (concurrently); one Report each, in the file's order."""
    return asyncio.run(_check_all(cfg, needs, spend))


def refusal(reports: list[Report]) -> str | None:
    """The one-line reason ``parity replay`` refuses to start, or None when every provider passed."""
    bad = [r for r in reports if not r.ok]
    if not bad:
        return None
    good = [r.name for r in reports if r.ok]
    others = f"replay only the others with {' '.join('--provider ' + g for g in good)}, " if good else ""
    return (
        f"preflight failed for {', '.join(r.name for r in bad)} (the FAIL lines above); nothing was sent. "
        f"Fix the providers file, {others}or skip the check with --no-preflight"
    )
