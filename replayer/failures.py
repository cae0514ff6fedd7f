"""Why a run's requests failed, per provider: top reasons, providers that answered nothing,
a wrong ``base_url``, and endpoints a provider does not serve.

Read from the stored results at the end of ``parity replay`` (so a resumed run is judged
whole), printed under the summary, and stored as ``failures`` in the config of the run's last
``run_events`` row, where ``parity eval`` reads it (``runs.config -> 'failures'``).

- A provider is **dead** when none of its requests succeeded although production answered
  at least one of them: the run exits with :data:`parity.wire.errors.EXIT_PROVIDER_DEAD` (3).
- An endpoint is **unsupported** by a provider when every request to it got 404 or 405
  (not ``model_not_found``) while the provider answered another endpoint with a 2xx; its
  requests are reported apart (``unsupported_endpoint``), not among the failures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from parity.replayer.config import ProviderConfig
from parity.replayer.transport import reason_of
from parity.store.store import connect

UNSUPPORTED = "unsupported_endpoint"
_NOT_SERVED = (404, 405)
_TOP = 3

# Successes are only counted; failures are grouped by outcome (their bodies read for the error
# code), with the recorded arm's success joined in, so a request that failed in production too
# does not make a provider dead. Two queries: reading every answer's body would triple the time.
_OK = "r.status BETWEEN 200 AND 299 AND r.error_type IS NULL"
_SQL_OK = f"""
SELECT r.provider, r.endpoint, r.status, count(*) AS n FROM results r
WHERE r.run_id = $run AND r.provider <> 'recorded' AND {_OK} GROUP BY ALL
"""
_SQL_FAILED = f"""
WITH rec AS (
    SELECT exchange_id, bool_or(status BETWEEN 200 AND 299 AND error_type IS NULL) AS rec_ok
    FROM results WHERE run_id = $run AND provider = 'recorded' GROUP BY exchange_id
)
SELECT r.provider, r.endpoint, r.status, r.error_type,
       CASE WHEN r.status IS NULL THEN split_part(r.error_message, ': ', 1) END AS transport,
       CASE WHEN r.status >= 400 THEN json_extract_string(r.response_body, '$.error.code') END AS code,
       coalesce(rec.rec_ok, true) AS rec_ok,
       count(*) AS n,
       any_value(CASE WHEN r.status >= 400 THEN r.error_message END) AS message
FROM results r LEFT JOIN rec USING (exchange_id)
WHERE r.run_id = $run AND r.provider <> 'recorded' AND NOT coalesce({_OK}, false)
GROUP BY ALL
"""


@dataclass(frozen=True)
class CellOutcome:
    """A number of a provider's cells that ended the same way."""

    provider: str
    endpoint: str
    status: int | None
    error_type: str | None
    transport: str | None = None  # "connection refused at host:port" (no HTTP answer)
    code: str | None = None  # the error body's ``error.code``
    rec_ok: bool = True  # production answered this request with a 2xx
    n: int = 1
    message: str | None = None

    @property
    def ok(self) -> bool:
        """The request succeeded (2xx, no error)."""
        return self.status is not None and 200 <= self.status < 300 and self.error_type is None

    @property
    def not_served(self) -> bool:
        """A 404/405 that says the path is unknown (a missing model is not that)."""
        return self.status in _NOT_SERVED and self.code != "model_not_found"

    def label(self) -> str:
        """The reason shown to the user."""
        if self.status is None:
            return reason_of((self.transport or "") + ": ") or self.error_type or "no answer"
        if self.status >= 400:
            if self.code:
                return f"{self.status} {self.code}"
            if self.status in _NOT_SERVED and self.message:
                return f"{self.status} {self.message[:80]}"
            return f"{self.status} {self.error_type or 'error'}"
        return self.error_type or "failed"


@dataclass
class ProviderVerdict:
    """One provider's failures."""

    name: str
    cells: int = 0
    ok: int = 0
    answered: int = 0  # cells with an HTTP status
    failed: int = 0  # failed cells, unsupported endpoints left out
    reasons: list[tuple[str, int]] = field(default_factory=list)
    dead: bool = False
    hint: str | None = None
    unsupported: dict[str, int] = field(default_factory=dict)  # endpoint -> cells

    def line(self) -> str:
        """``name: 3/40 failed: 2x 429 rate_limit_exceeded, 1x stream_broken``."""
        counted = self.cells - sum(self.unsupported.values())
        if self.failed == 0:
            text = f"{self.name}: {counted} requests, none failed"
        elif len(self.reasons) == 1:
            text = f"{self.name}: {self.failed}/{counted} failed: {self.reasons[0][0]}"
        else:
            shown = ", ".join(f"{n}x {r}" for r, n in self.reasons[:_TOP])
            more = sum(n for _, n in self.reasons[_TOP:])
            text = f"{self.name}: {self.failed}/{counted} failed: {shown}" + (
                f", {more} other" if more else ""
            )
        if self.unsupported:
            text += f" (+{sum(self.unsupported.values())} to unsupported endpoints, below)"
        return text

    def public(self) -> dict:
        """As stored in the run's config."""
        return {
            "cells": self.cells,
            "ok": self.ok,
            "answered": self.answered,
            "failed": self.failed,
            "reasons": [{"reason": r, "n": n} for r, n in self.reasons],
            "dead": self.dead,
            "hint": self.hint,
        }


@dataclass
class UnsupportedEndpoint:
    """An endpoint a provider answered 404/405 on every time while serving others."""

    provider: str
    endpoint: str
    cells: int
    reason: str
    keep: list[str]  # the provider's endpoints without this one, for the hint

    def line(self) -> str:
        """The summary line, with the providers.toml hint."""
        keep = ", ".join(f'"{e}"' for e in self.keep)
        return (
            f"{self.provider}: {self.endpoint}: {self.cells}/{self.cells} got {self.reason}; "
            f"to skip it, set endpoints = [{keep}] in [{self.provider}] of providers.toml"
        )

    def public(self) -> dict:
        """As stored in the run's config."""
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "cells": self.cells,
            "reason": self.reason,
            "error_type": UNSUPPORTED,
        }


@dataclass
class Diagnosis:
    """A run's failures."""

    providers: dict[str, ProviderVerdict]
    unsupported: list[UnsupportedEndpoint]

    @property
    def dead(self) -> list[ProviderVerdict]:
        """Providers that answered no request production answered."""
        return [v for v in self.providers.values() if v.dead]

    def dead_note(self) -> str | None:
        """One sentence naming the dead providers and why, or None."""
        if not self.dead:
            return None
        parts = [f"{v.name} ({v.hint or (v.reasons[0][0] if v.reasons else 'no answer')})" for v in self.dead]
        noun = "provider" if len(parts) == 1 else "providers"
        return f"{noun} answered no request: " + "; ".join(parts)

    def lines(self) -> list[str]:
        """The block printed under the run summary."""
        out = ["Failures:"]
        for v in self.providers.values():
            out.append("  " + v.line())
            if v.hint:
                out.append(f"    hint: {v.hint}")
        if self.unsupported:
            out += ["", f"Unsupported endpoints ({UNSUPPORTED}, not counted as failures above):"]
            out += ["  " + u.line() for u in self.unsupported]
        return out

    def public(self) -> dict:
        """The ``failures`` entry of the run's config."""
        return {
            "providers": {n: v.public() for n, v in self.providers.items()},
            "dead": [v.name for v in self.dead],
            "unsupported_endpoints": [u.public() for u in self.unsupported],
        }


def _base_url_hint(base_url: str) -> str:
    path = urlsplit(base_url).path.rstrip("/")
    if not path.split("/")[-1].startswith("v"):
        return f"base_url {base_url} has no /v1? every request got 404"
    return f"every request got 404: is base_url {base_url} right?"


def diagnose(outcomes: list[CellOutcome], providers: dict[str, ProviderConfig]) -> Diagnosis:
    """Judge each provider from its cells' outcomes (a pure function of the stored results)."""
    verdicts: dict[str, ProviderVerdict] = {}
    unsupported: list[UnsupportedEndpoint] = []
    for name in list(providers) + sorted({o.provider for o in outcomes} - set(providers)):
        mine = [o for o in outcomes if o.provider == name]
        if not mine:
            continue
        v = verdicts[name] = ProviderVerdict(name)
        v.cells = sum(o.n for o in mine)
        v.ok = sum(o.n for o in mine if o.ok)
        v.answered = sum(o.n for o in mine if o.status is not None)
        ok_endpoints = {o.endpoint for o in mine if o.ok}
        for ep in sorted({o.endpoint for o in mine}):
            cells = [o for o in mine if o.endpoint == ep]
            if ok_endpoints - {ep} and all(o.not_served for o in cells):
                v.unsupported[ep] = sum(o.n for o in cells)
                top = max(cells, key=lambda o: o.n)
                p = providers.get(name)
                keep = sorted((p.endpoints if p else ok_endpoints) - {ep})
                unsupported.append(UnsupportedEndpoint(name, ep, v.unsupported[ep], top.label(), keep))
        reasons: Counter[str] = Counter()
        for o in mine:
            if not o.ok and o.endpoint not in v.unsupported:
                reasons[o.label()] += o.n
        v.failed = sum(reasons.values())
        v.reasons = reasons.most_common()
        v.dead = v.ok == 0 and any(o.rec_ok for o in mine)
        if v.ok == 0 and all(o.status == 404 and o.code != "model_not_found" for o in mine):
            p = providers.get(name)
            v.hint = _base_url_hint(p.base_url) if p else "every request got 404: is base_url right?"
    return Diagnosis(verdicts, unsupported)


def load_outcomes(db: str, run_id: str) -> list[CellOutcome]:
    """The run's outcomes, grouped, from the store."""
    con = connect(db)
    try:
        ok = con.execute(_SQL_OK, {"run": run_id}).fetchall()
        failed = con.execute(_SQL_FAILED, {"run": run_id}).fetchall()
    finally:
        con.close()
    rows = [(p, ep, st, None, None, None, True, n, None) for p, ep, st, n in ok] + failed
    rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r))  # stable reason order on ties
    return [
        CellOutcome(p, ep, None if st is None else int(st), et, tr, code, bool(rok), int(n), msg)
        for p, ep, st, et, tr, code, rok, n, msg in rows
    ]
