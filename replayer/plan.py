"""The replay plan: which cells (exchange, provider, repeat) are sent, which are skipped and why, and cost estimates."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from parity.replayer.config import Config, ProviderConfig
from parity.replayer.costs import cost_of
from parity.replayer.mapping import exchange_skip_reason, provider_skip_reason, recorded_model
from parity.replayer.select import Exchange
from parity.replayer.tokens import estimate_tokens
from parity.wire.reassemble import output_text

Key = tuple[str, str, int]


@dataclass
class Cell:
    """One request to send: an exchange, to one provider, the n-th time."""

    exchange: Exchange
    provider: str
    repeat: int
    estimate: float | None = None  # USD, from recorded usage and the provider's prices
    tokens: int = 0  # prompt + completion tokens expected (for tpm limits)
    resent: bool = False

    @property
    def key(self) -> Key:
        """(exchange id, provider, repeat): the cell's identity everywhere."""
        return (self.exchange.id, self.provider, self.repeat)


@dataclass
class Group:
    """One recorded request (one repeat) for every provider, in a seeded random order."""

    exchange: Exchange
    repeat: int
    cells: list[Cell]


@dataclass
class Plan:
    """Everything ``--dry-run`` prints and a run executes."""

    exchanges: list[Exchange]
    providers: list[str]
    repeat: int
    groups: list[Group] = field(default_factory=list)
    skipped: list[tuple[str, str | None, str]] = field(
        default_factory=list
    )  # (exchange, provider|None, reason)
    replayable: list[Exchange] = field(default_factory=list)

    def cells(self) -> list[Cell]:
        """Every cell, in dispatch order."""
        return [c for g in self.groups for c in g.cells]

    def per_provider(self) -> dict[str, dict]:
        """Requests and estimated cost per provider."""
        out = {p: {"requests": 0, "est_cost": 0.0, "unpriced": 0} for p in self.providers}
        for c in self.cells():
            d = out[c.provider]
            d["requests"] += 1
            if c.estimate is None:
                d["unpriced"] += 1
            else:
                d["est_cost"] += c.estimate
        return out


def expected_tokens(x: Exchange) -> tuple[int, int, int, bool]:
    """(prompt, completion, cached, estimated) for an exchange, from recorded usage or text length."""
    prompt, completion = x.prompt_tokens, x.completion_tokens
    estimated = False
    if prompt is None:
        prompt, estimated = estimate_tokens(x.request_body or ""), True
    if completion is None:
        body = None
        if x.response_body:
            try:
                body = json.loads(x.response_body)
            except ValueError:
                body = None
        completion, estimated = estimate_tokens(output_text(body if isinstance(body, dict) else None)), True
    return prompt, completion, x.cached_tokens or 0, estimated


def estimate_cost(x: Exchange, p: ProviderConfig) -> float | None:
    """USD a provider would charge for this exchange, if it answers like production did."""
    prompt, completion, cached, _ = expected_tokens(x)
    body = None
    if x.endpoint in ("images.generations",) or x.endpoint.startswith("audio."):
        try:
            body = json.loads(x.response_body) if x.response_body else None
        except ValueError:
            body = None
    return cost_of(
        p.pricing, p.map_model(recorded_model(x)), x.endpoint, True, body, prompt, completion, cached
    )


def build_plan(exchanges: list[Exchange], cfg: Config, repeat: int, seed: int) -> Plan:
    """Decide every cell; ``seed`` fixes the provider order inside each group."""
    names = list(cfg.providers)
    plan = Plan(exchanges=exchanges, providers=names, repeat=repeat)
    per_x: list[tuple[Exchange, list[tuple[str, float | None, int]]]] = []
    for x in exchanges:
        reason = exchange_skip_reason(x)
        if reason:
            plan.skipped.append((x.id, None, reason))
            continue
        plan.replayable.append(x)
        targets = []
        for name in names:
            p = cfg.providers[name]
            why = provider_skip_reason(x, p)
            if why:
                plan.skipped.append((x.id, name, why))
                continue
            prompt, completion, _, _ = expected_tokens(x)
            targets.append((name, estimate_cost(x, p), prompt + completion))
        if targets:
            per_x.append((x, targets))
    for r in range(repeat):
        for x, targets in per_x:
            order = list(targets)
            random.Random(f"{seed}:{x.id}:{r}").shuffle(order)
            plan.groups.append(Group(x, r, [Cell(x, n, r, est, tok) for n, est, tok in order]))
    return plan


def _money(v: float | None) -> str:
    if v is None:
        return "unknown"
    return f"${v:,.4f}" if v >= 0.01 or v == 0 else f"${v:.6f}"


def format_plan(plan: Plan, cfg: Config, pacing_desc: str) -> str:
    """The human-readable plan printed by ``--dry-run``."""
    lines = [
        f"Plan: {len(plan.exchanges)} exchanges selected, {len(plan.replayable)} replayable, "
        f"repeat {plan.repeat}, pacing {pacing_desc}",
        "",
        f"  {'provider':<16} {'requests':>9} {'est. cost':>12}  prices",
    ]
    for name, d in plan.per_provider().items():
        p = cfg.providers[name]
        cost = None if d["requests"] and d["unpriced"] == d["requests"] else d["est_cost"]
        if p.pricing.unpriced_reason:
            note = "NOT SET (placeholder)"
        elif p.pricing.default is None and not p.pricing.models:
            note = "no prices configured"
        else:
            note = f"as of {p.pricing.default.as_of if p.pricing.default and p.pricing.default.as_of else _as_of(p)}"
        if d["unpriced"] and cost is not None:
            note += f"; {d['unpriced']} requests have no price"
        lines.append(f"  {name:<16} {d['requests']:>9} {_money(cost):>12}  {note}")
    lines.append(f"  {'recorded':<16} {len(plan.replayable):>9} {'—':>12}  production arm (not sent)")
    if plan.skipped:
        lines += ["", f"Skipped ({len(plan.skipped)}):"]
        counts = Counter((prov or "all providers", reason) for _, prov, reason in plan.skipped)
        by_reason: dict[str, list[str]] = defaultdict(list)
        for (prov, reason), n in counts.most_common():
            by_reason[reason].append(f"{prov}: {n}")
        for reason, where in by_reason.items():
            lines.append(f"  {reason}  ({', '.join(where)})")
    for w in cfg.warnings:
        lines.append(f"warning: {w}")
    lines.append("")
    lines.append("Dry run: nothing was sent.")
    return "\n".join(lines)


def _as_of(p: ProviderConfig) -> str:
    dates = {m.as_of for m in p.pricing.models.values() if m.as_of}
    return ", ".join(sorted(dates)) or "unknown"
