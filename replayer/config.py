"""The providers file (TOML): one table per provider, optional presets, and ``[recorded]`` pricing.

Every problem is reported before anything is sent, as one ``ConfigError`` naming the file,
the provider and the key. API keys are only ever read from the environment variable named
by ``api_key_env`` and are never part of :meth:`ProviderConfig.public`.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from parity.replayer.errors import ConfigError
from parity.replayer.pricing import Pricing
from parity.wire.endpoints import REPLAYABLE

PRESET_DIR = Path(__file__).with_name("presets")
_PRICE_FIELDS = (
    "input_per_1m",
    "cached_input_per_1m",
    "output_per_1m",
    "per_request",
    "per_image",
    "per_audio_minute",
)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pos_num(v: object) -> str | None:
    return None if _is_num(v) and v > 0 else "a positive number"


def _nonneg_num(v: object) -> str | None:
    return None if _is_num(v) and v >= 0 else "a number >= 0"


def _pos_int(v: object) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else "an integer >= 1"


def _nonneg_int(v: object) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "an integer >= 0"


def _str(v: object) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a non-empty string"


def _bool(v: object) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _str_table(v: object) -> str | None:
    ok = isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) and x for k, x in v.items())
    return None if ok else "a table of strings"


def _str_list(v: object) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, str) and x for x in v)
    return None if ok else "a list of strings"


def _table(v: object) -> str | None:
    return None if isinstance(v, dict) else "a table"


def _json_value(v: object) -> bool:
    """True for what a JSON body can carry: strings, finite numbers, booleans, arrays, objects."""
    if isinstance(v, (str, bool)):
        return True
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_json_value(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _json_value(x) for k, x in v.items())
    return False


def _set_table(v: object) -> str | None:
    if not isinstance(v, dict):
        return "a table"
    bad = [k for k, x in v.items() if not k or not _json_value(x)]
    return f"a table of JSON values (no dates, times, NaN or infinity); bad: {bad[:3]}" if bad else None


def _url(v: object) -> str | None:
    if not isinstance(v, str):
        return "a URL string"
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as e:
        return f"a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"an http(s) URL with a host (got {v!r})"
    if parts.query or parts.fragment:
        return f"a URL without query or fragment (got {v!r})"
    return None


def _endpoints(v: object) -> str | None:
    if _str_list(v):
        return "a list of endpoint names"
    bad = [e for e in v if e not in REPLAYABLE]  # type: ignore[union-attr]
    return (
        f"a list of replayable endpoints ({', '.join(sorted(REPLAYABLE))}); unknown: {bad}" if bad else None
    )


# key -> checker returning None when valid, else what the value must be.
PROVIDER_KEYS = {
    "preset": _str,
    "base_url": _url,
    "api_key_env": _str,
    "api_key_header": _str,
    "models": _str_table,
    "headers": _str_table,
    "set": _set_table,
    "drop": _str_list,
    "rename": _str_table,
    "endpoints": _endpoints,
    "timeout_s": _pos_num,
    "connect_timeout_s": _pos_num,
    "concurrency": _pos_int,
    "rpm": _pos_num,
    "tpm": _pos_num,
    "max_retries": _nonneg_int,
    "max_retry_after_s": _nonneg_num,
    "flat_priced": _bool,
    "pricing": _table,
    "note": _str,
}
RECORDED_KEYS = {"preset": _str, "pricing": _table}


@dataclass(frozen=True)
class PricingTable:
    """A provider's default prices plus per-model prices (model tables inherit the default)."""

    default: Pricing | None = None
    models: dict[str, Pricing] = field(default_factory=dict)
    unpriced_reason: str | None = None  # set when costs must not be computed (placeholder price)

    def for_model(self, model: str | None) -> Pricing | None:
        """Prices for ``model``: exact key, then the longest key it starts with (dated snapshots), then default."""
        if self.unpriced_reason:
            return None
        if model:
            if model in self.models:
                return self.models[model]
            best = max((k for k in self.models if model.startswith(k + "-")), key=len, default=None)
            if best:
                return self.models[best]
        return self.default

    def public(self) -> dict:
        """Prices as stored in a run's config: ``{"default": {...}, "<model>": {...}}``."""
        out: dict = {"default": self.default.to_dict() if self.default else None}
        out.update({m: p.to_dict() for m, p in self.models.items()})
        return out


@dataclass(frozen=True)
class ProviderConfig:
    """One provider to replay to (everything but the key, which stays in the environment)."""

    name: str
    base_url: str
    api_key_env: str | None = None
    api_key_header: str = "Authorization"
    models: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    set: dict = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    endpoints: frozenset[str] = REPLAYABLE
    timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 2
    max_retry_after_s: float = 60.0
    flat_priced: bool = False
    pricing: PricingTable = field(default_factory=PricingTable)
    preset: str | None = None

    def api_key(self) -> str | None:
        """The key from the environment; ConfigError naming the variable when it is missing."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"provider '{self.name}': environment variable {self.api_key_env} (api_key_env) is not set"
            )
        return key

    def map_model(self, recorded: str | None) -> str | None:
        """The model to send for a recorded model, or None when it is not mapped."""
        target = self.models.get(recorded or "") or self.models.get("*")
        if target is None:
            return None
        return recorded if target == "*" else target

    def public(self) -> dict:
        """The provider as stored in a run's config: no key, no header values."""
        return {
            "preset": self.preset,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "models": dict(self.models),
            "headers": sorted(self.headers),
            "set": self.set,
            "drop": list(self.drop),
            "rename": dict(self.rename),
            "endpoints": sorted(self.endpoints),
            "pricing": self.pricing.public(),
            "limits": {
                "concurrency": self.concurrency,
                "rpm": self.rpm,
                "tpm": self.tpm,
                "timeout_s": self.timeout_s,
                "connect_timeout_s": self.connect_timeout_s,
                "max_retries": self.max_retries,
                "max_retry_after_s": self.max_retry_after_s,
            },
        }


@dataclass
class Config:
    """A parsed providers file."""

    path: str
    providers: dict[str, ProviderConfig]
    recorded: PricingTable
    warnings: list[str] = field(default_factory=list)

    def check_keys(self) -> None:
        """Raise ConfigError for the first provider whose key variable is missing."""
        for p in self.providers.values():
            p.api_key()


def list_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str, where: str) -> dict:
    """The raw table of a shipped preset."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"{where}: unknown preset {name!r}; available: {', '.join(list_presets())}")
    with path.open("rb") as fh:
        return tomllib.load(fh)


def merge(base: dict, over: dict) -> dict:
    """Deep-merge tables: ``over`` wins, nested tables merge, lists and scalars replace."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _check_keys(table: dict, allowed: dict, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(allowed))}")
    for key, check in allowed.items():
        if key in table:
            problem = check(table[key])
            if problem:
                raise ConfigError(f"{where}: key {key!r} must be {problem}, got {table[key]!r}")


def _pricing(d: dict, where: str) -> Pricing:
    for k, v in d.items():
        if k == "as_of":
            if not isinstance(v, str):
                raise ConfigError(f"{where}: key 'as_of' must be a date string, got {v!r}")
        elif k in _PRICE_FIELDS:
            if not _is_num(v):
                raise ConfigError(f"{where}: key {k!r} must be a finite number, got {v!r}")
            if v < 0:
                raise ConfigError(f"{where}: key {k!r} must not be negative, got {v!r}")
        else:
            raise ConfigError(
                f"{where}: unknown pricing key {k!r}; known: {', '.join(_PRICE_FIELDS + ('as_of',))}"
            )
    return Pricing.from_dict({k: float(v) if k != "as_of" else v for k, v in d.items()})


def parse_pricing(table: dict, where: str, flat_priced: bool = False) -> PricingTable:
    """``[x.pricing]``: scalar keys are the default, sub-tables are per-model prices."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    checked = _pricing(scalars, f"{where}.pricing")  # validates every scalar key
    default = checked if any(k in _PRICE_FIELDS for k in scalars) else None
    base = {k: v for k, v in scalars.items() if k in _PRICE_FIELDS or k == "as_of"}
    models = {
        m: _pricing(merge(base, sub), f"{where}.pricing.{m!r}")
        for m, sub in table.items()
        if isinstance(sub, dict)
    }
    reason = None
    if flat_priced and not (default and default.per_request):
        reason = (
            f"{where}: flat per-request price not set (the preset ships no confirmed price); "
            "set per_request under its pricing table; its costs are left empty until then"
        )
    return PricingTable(default=default, models=models, unpriced_reason=reason)


def build_provider(name: str, raw: dict, path: str) -> ProviderConfig:
    """Validate one provider table (after applying its preset)."""
    where = f"{path}: provider '{name}'"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table, got {raw!r}")
    _check_keys(raw, PROVIDER_KEYS, where)
    table = raw
    if "preset" in raw:
        preset = load_preset(raw["preset"], where)
        _check_keys(preset, PROVIDER_KEYS, f"preset {raw['preset']!r}")
        table = merge(preset, raw)
    if "base_url" not in table:
        raise ConfigError(f"{where}: missing key 'base_url' (or a 'preset' that sets it)")
    flat = bool(table.get("flat_priced", False))
    try:
        pricing = parse_pricing(table.get("pricing", {}), f"provider '{name}'", flat)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    rename = table.get("rename", {})
    for src, dst in rename.items():
        if src == "model" or dst == "model":
            raise ConfigError(f"{where}: key 'rename' cannot rename 'model' (use 'models')")
    for k in table.get("set", {}):
        if k == "model" or k.startswith("model."):
            raise ConfigError(f"{where}: key 'set' cannot set 'model' (use 'models')")
    for k in table.get("drop", ()):
        if k == "model" or k.startswith("model."):
            raise ConfigError(f"{where}: key 'drop' cannot drop 'model' (use 'models')")
    headers = table.get("headers", {})
    bad = [h for h in headers if h.lower() in ("content-type", "content-length", "host")]
    if bad:
        raise ConfigError(f"{where}: key 'headers' may not set {bad[0]!r}")
    return ProviderConfig(
        name=name,
        base_url=table["base_url"].rstrip("/"),
        api_key_env=table.get("api_key_env"),
        api_key_header=table.get("api_key_header", "Authorization"),
        models=dict(table.get("models", {})),
        headers=dict(headers),
        set=dict(table.get("set", {})),
        drop=tuple(table.get("drop", ())),
        rename=dict(rename),
        endpoints=frozenset(table.get("endpoints", REPLAYABLE)),
        timeout_s=float(table.get("timeout_s", 600.0)),
        connect_timeout_s=float(table.get("connect_timeout_s", 5.0)),
        concurrency=table.get("concurrency"),
        rpm=table.get("rpm"),
        tpm=table.get("tpm"),
        max_retries=table.get("max_retries", 2),
        max_retry_after_s=float(table.get("max_retry_after_s", 60.0)),
        flat_priced=flat,
        pricing=pricing,
        preset=raw.get("preset"),
    )


def default_recorded_pricing() -> PricingTable:
    """Production-arm pricing when ``[recorded]`` is absent: the OpenAI preset's prices."""
    return parse_pricing(load_preset("openai", "[recorded]").get("pricing", {}), "recorded")


def parse_config(data: dict, path: str = "<providers>") -> Config:
    """Validate a parsed providers file."""
    providers: dict[str, ProviderConfig] = {}
    warnings: list[str] = []
    recorded = default_recorded_pricing()
    for name, raw in data.items():
        if name == "recorded":
            where = f"{path}: [recorded]"
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: must be a table")
            _check_keys(raw, RECORDED_KEYS, where)
            table = merge(load_preset(raw["preset"], where), {}) if "preset" in raw else {}
            pricing = merge(table.get("pricing", {}), raw.get("pricing", {}))
            try:
                recorded = parse_pricing(pricing, "[recorded]")
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
            continue
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top-level key {name!r} must be a provider table ([{name}])")
        providers[name] = build_provider(name, raw, path)
        if providers[name].pricing.unpriced_reason:
            warnings.append(providers[name].pricing.unpriced_reason)
    if not providers:
        raise ConfigError(f'{path}: no provider tables (add e.g. [together] with preset = "together")')
    return Config(path=path, providers=providers, recorded=recorded, warnings=warnings)


def load_config(path: str | os.PathLike, only: list[str] | None = None) -> Config:
    """Read and validate the providers file; ``only`` keeps the named providers."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"providers file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    cfg = parse_config(data, str(p))
    if only:
        missing = [n for n in only if n not in cfg.providers]
        if missing:
            raise ConfigError(f"{p}: no provider named {missing[0]!r}; have {', '.join(cfg.providers)}")
        cfg.providers = {n: cfg.providers[n] for n in only}
    return cfg
