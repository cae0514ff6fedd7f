"""Properties of the providers-file parser (replayer/config.py ``parse_config``).

Input: any TOML-shaped value (what ``tomllib`` can produce: strings, 64-bit integers, floats
including nan/inf, booleans, dates, times, datetimes, arrays, tables), biased towards the real
keys so that validation goes deep. Output: a ``ConfigError`` naming the file, or a ``Config``
every provider of which is usable: an http(s) base URL with a host and a valid port, finite
positive timeouts and limits, finite non-negative prices, and a ``public()`` form that is strict
JSON (it is stored as the run's config, a JSON column DuckDB casts; NaN/Infinity would break the
``run_events`` and ``runs`` views).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from urllib.parse import urlsplit

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parity.replayer.config import PROVIDER_KEYS, Config, list_presets, parse_config
from parity.replayer.errors import ConfigError
from parity.wire.endpoints import REPLAYABLE

PRICE_FIELDS = (
    "input_per_1m",
    "cached_input_per_1m",
    "output_per_1m",
    "per_request",
    "per_image",
    "per_audio_minute",
)
INT64 = st.integers(-(2**63), 2**63 - 1)
toml_scalar = st.one_of(
    st.text(max_size=12),
    INT64,
    st.floats(),  # nan, inf, -0.0 included: TOML has them
    st.booleans(),
    st.dates(),
    st.times(),
    st.datetimes(),
)
toml_value = st.recursive(
    toml_scalar,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8,
)
finite_num = st.integers(0, 10**6) | st.floats(0, 1e6)
any_num = st.one_of(INT64, st.floats(), st.booleans(), st.text(max_size=3))

SAFE_URLS = ["http://127.0.0.1:8000/v1", "https://api.example.com/v1/", "http://h", "https://[::1]:8443/v1"]
ODD_URLS = ["ftp://h", "http://", "https://h/v1?q=1", "http://h#f", "/v1", "", "http:///x", "https://h:0/v1"]
prices = st.dictionaries(
    st.sampled_from([*PRICE_FIELDS, "as_of", "currency"]), any_num | st.text(max_size=8), max_size=4
)


def _value_for(key: str, safe: bool):
    """A strategy for one provider key: mostly plausible values, sometimes anything."""
    plausible = {
        "preset": st.sampled_from([*list_presets(), "nope", "../presets/openai"]),
        "base_url": st.sampled_from(SAFE_URLS if safe else SAFE_URLS + ODD_URLS),
        "api_key_env": st.sampled_from(["OPENAI_API_KEY", "X", ""]),
        "api_key_header": st.sampled_from(["Authorization", "api-key", ""]),
        "models": st.dictionaries(
            st.sampled_from(["*", "gpt-4o", "o3"]), st.sampled_from(["*", "m", ""]), max_size=3
        ),
        "headers": st.dictionaries(
            st.sampled_from(["x-a", "Host", "content-type", "X-Trace"]), st.text(max_size=5), max_size=2
        ),
        "set": st.dictionaries(
            st.sampled_from(["temperature", "model", "model.x", "a.b", "seed"]),
            (finite_num | st.text(max_size=4)) if safe else toml_value,
            max_size=2,
        ),
        "drop": st.lists(st.sampled_from(["user", "a.b", "", "metadata"]), max_size=2),
        "rename": st.dictionaries(
            st.sampled_from(["max_tokens", "model", "a"]),
            st.sampled_from(["max_completion_tokens", "model", ""]),
            max_size=2,
        ),
        "endpoints": st.lists(st.sampled_from([*sorted(REPLAYABLE), "models", "nope"]), max_size=3),
        "pricing": st.one_of(
            prices if not safe else st.dictionaries(st.sampled_from(PRICE_FIELDS), finite_num, max_size=3),
            st.dictionaries(st.sampled_from(["gpt-4o", "o3", "input_per_1m"]), prices, max_size=2)
            if not safe
            else st.dictionaries(
                st.sampled_from(["gpt-4o", "o3"]),
                st.dictionaries(st.sampled_from(PRICE_FIELDS), finite_num, max_size=3),
                max_size=2,
            ),
        ),
        "flat_priced": st.booleans(),
        "note": st.text(max_size=8),
    }
    num = finite_num if safe else any_num
    return st.one_of(plausible.get(key, num), toml_value) if not safe else plausible.get(key, num)


_KEY_VALUES = {safe: {k: _value_for(k, safe) for k in PROVIDER_KEYS} for safe in (True, False)}
_KEYS = st.lists(st.sampled_from(sorted(PROVIDER_KEYS)), unique=True, max_size=7)


@st.composite
def provider_tables(draw, safe: bool = False) -> dict:
    table = {k: draw(_KEY_VALUES[safe][k]) for k in draw(_KEYS)}
    if draw(st.integers(0, 5)) > 0 and "preset" not in table:
        table["base_url"] = draw(st.sampled_from(SAFE_URLS if safe else SAFE_URLS + ODD_URLS))
    if not safe and draw(st.integers(0, 6)) == 0:
        table[draw(st.text(max_size=6))] = draw(toml_value)  # an unknown key
    return table


@st.composite
def providers_files(draw, safe: bool = False) -> dict:
    names = draw(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=3))
    data: dict = {
        n: draw(provider_tables(safe)) if draw(st.integers(0, 9)) or safe else draw(toml_value) for n in names
    }
    if draw(st.booleans()):
        data["recorded"] = {"pricing": draw(prices)} if not safe else {"preset": "openai"}
    return data


def _finite(v, positive: bool = False) -> bool:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return ok and (v > 0 or not positive)


def check_usable(cfg: Config) -> None:
    assert isinstance(cfg, Config) and cfg.providers
    tables = [cfg.recorded]
    for p in cfg.providers.values():
        parts = urlsplit(p.base_url)
        assert parts.scheme in ("http", "https") and parts.hostname, p.base_url
        parts.port  # noqa: B018  raises ValueError for a port out of range
        assert _finite(p.timeout_s, positive=True) and _finite(p.connect_timeout_s, positive=True)
        assert _finite(p.max_retry_after_s) and isinstance(p.max_retries, int) and p.max_retries >= 0
        assert p.concurrency is None or (isinstance(p.concurrency, int) and p.concurrency >= 1)
        for limit in (p.rpm, p.tpm):
            assert limit is None or _finite(limit, positive=True)
        assert p.endpoints <= REPLAYABLE
        assert "model" not in p.drop and "model" not in p.rename and "model" not in p.set
        json.dumps(p.public(), allow_nan=False)  # the run's stored config: strict JSON
        tables.append(p.pricing)
    for t in tables:
        for pr in [t.default, *t.models.values()]:
            if pr is not None:
                for f in PRICE_FIELDS:
                    v = getattr(pr, f)
                    assert v is None or _finite(v), (f, v)
        json.dumps(t.public(), allow_nan=False)


def parse_or_error(data: dict) -> Config | None:
    try:
        return parse_config(data, "providers.toml")
    except ConfigError as e:
        assert str(e) and "providers.toml" in str(e), str(e)
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=providers_files(safe=True))
@example(data={"p": {"base_url": "http://h", "timeout_s": 5, "pricing": {"input_per_1m": 1}}})
def test_plausible_files_give_a_usable_config_or_a_config_error(prop_count, data: dict) -> None:
    """Mostly valid files: each key plausible, so the checks after validation are exercised."""
    prop_count()
    cfg = parse_or_error(data)
    if cfg is not None:
        check_usable(cfg)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=providers_files())
@example(data={"p": {"base_url": "http://["}})
@example(data={"p": {"base_url": "http://h:99999/v1"}})
@example(data={"p": {"base_url": "http://h", "timeout_s": math.inf}})
@example(data={"p": {"base_url": "http://h", "pricing": {"input_per_1m": math.nan}}})
@example(data={"recorded": {"pricing": {"output_per_1m": math.inf}}, "p": {"base_url": "http://h"}})
@example(data={"p": {"base_url": "http://h", "set": {"seed": dt.datetime(2026, 1, 1)}}})
@example(data={"p": {"base_url": "http://h", "set": {"temperature": math.nan}}})
@example(data={"p": {"base_url": "http://h", "drop": ["model"]}})
def test_any_toml_gives_a_usable_config_or_a_config_error(prop_count, data: dict) -> None:
    """Found by this suite, fixed since in replayer/config.py: urlsplit's ValueError escaped
    ('http://[' -> ValueError), the port was never checked ('http://h:99999'), nan/inf passed as
    prices, timeouts and limits (NaN costs; public() no longer strict JSON, breaking the stored run
    config), 'set' took TOML dates and nan, and 'drop' accepted 'model'."""
    prop_count()
    cfg = parse_or_error(data)
    if cfg is not None:
        check_usable(cfg)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.text(max_size=6), toml_value, max_size=4) | toml_value)
def test_top_level_garbage_is_a_config_error(prop_count, data) -> None:
    """Any top-level value that is not provider tables: ConfigError (or, rarely, a usable config)."""
    prop_count()
    if not isinstance(data, dict):
        data = {"p": data}
    try:
        parse_config(data, "providers.toml")
    except ConfigError as e:
        assert "providers.toml" in str(e)
