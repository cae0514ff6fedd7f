"""Providers file: presets, prices, model mapping and one clear error per bad config."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.cli import main
from parity.replayer.config import ConfigError, list_presets, load_config, parse_config

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


def test_presets_load_with_dated_prices() -> None:
    assert set(list_presets()) >= {"openai", "together", "fireworks", "openrouter", "oxlo", "vllm"}
    cfg = parse_config({n: {"preset": n, "models": {"*": "*"}} for n in list_presets()})
    openai = cfg.providers["openai"]
    assert openai.base_url == "https://api.openai.com/v1" and openai.api_key_env == "OPENAI_API_KEY"
    p = openai.pricing.for_model("gpt-4o-mini-2024-07-18")  # dated snapshot -> longest matching key
    assert (p.input_per_1m, p.cached_input_per_1m, p.output_per_1m, p.as_of) == (
        0.15,
        0.075,
        0.60,
        "2026-11-25",
    )
    assert openai.pricing.for_model("gpt-4o").input_per_1m == 2.50
    assert openai.pricing.for_model("whisper-1").per_audio_minute == 0.006
    assert openai.pricing.for_model("no-such-model") is None
    assert cfg.providers["together"].base_url == "https://api.together.xyz/v1"
    assert cfg.providers["fireworks"].base_url == "https://api.fireworks.ai/inference/v1"
    assert cfg.providers["openrouter"].map_model("gpt-4o-mini") == "openai/gpt-4o-mini"  # exact beats "*"
    assert cfg.providers["openrouter"].map_model("o3") == "o3"
    assert cfg.providers["vllm"].api_key_env is None
    assert cfg.providers["vllm"].pricing.for_model("anything").is_free
    oxlo = cfg.providers["oxlo"]
    assert oxlo.base_url == "https://api.oxlo.ai/v1" and oxlo.flat_priced
    assert oxlo.pricing.for_model("x") is None  # placeholder: costs stay empty, never a silent $0
    assert any("oxlo" in w and "per-request price" in w for w in cfg.warnings)
    assert cfg.recorded.for_model("gpt-4.1-mini").output_per_1m == 1.60  # production arm: OpenAI prices


def test_preset_keys_are_overridable() -> None:
    cfg = parse_config(
        {
            "ox": {
                "preset": "oxlo",
                "models": {"*": "m"},
                "pricing": {"per_request": 0.002},
                "drop": [],
                "timeout_s": 30,
            },
            "or": {
                "preset": "openrouter",
                "models": {"gpt-4.1": "openai/gpt-4.1"},
                "pricing": {"openai/gpt-4.1": {"input_per_1m": 2.0, "output_per_1m": 8.0}},
            },
        }
    )
    ox = cfg.providers["ox"]
    assert ox.pricing.for_model("m").per_request == 0.002 and not cfg.warnings
    assert ox.drop == () and ox.timeout_s == 30
    orr = cfg.providers["or"]
    assert orr.map_model("gpt-4o-mini") == "openai/gpt-4o-mini"  # preset mapping kept, user's added
    assert orr.map_model("gpt-4.1") == "openai/gpt-4.1"
    assert orr.pricing.for_model("openai/gpt-4.1").output_per_1m == 8.0


def test_model_mapping() -> None:
    cfg = parse_config(
        {
            "p": {"base_url": "http://h/v1", "models": {"gpt-4o": "llama", "*": "*"}},
            "q": {"base_url": "http://h/v1", "models": {"gpt-4o": "llama"}},
            "r": {"base_url": "http://h/v1", "models": {"*": "one-model"}},
        }
    )
    assert cfg.providers["p"].map_model("gpt-4o") == "llama"
    assert cfg.providers["p"].map_model("o3") == "o3"
    assert cfg.providers["q"].map_model("o3") is None
    assert cfg.providers["r"].map_model("o3") == "one-model"


def test_pricing_default_and_model_tables() -> None:
    cfg = parse_config(
        {
            "p": {
                "base_url": "http://h/v1",
                "pricing": {
                    "input_per_1m": 1.0,
                    "output_per_1m": 2.0,
                    "as_of": "2026-11-25",
                    "big": {"output_per_1m": 9.0},
                },
            }
        }
    )
    pt = cfg.providers["p"].pricing
    assert pt.for_model("small").output_per_1m == 2.0
    big = pt.for_model("big")
    assert (big.input_per_1m, big.output_per_1m, big.as_of) == (
        1.0,
        9.0,
        "2026-11-25",
    )  # inherits the default
    assert set(pt.public()) == {"default", "big"}


BAD = [
    ('[t]\nbase_url = "http://h/v1"\nrpm = "fast"\n', "provider 't'", "'rpm'"),
    ('[t]\nbase_url = "http://h/v1"\nconcurency = 4\n', "provider 't'", "'concurency'"),
    ('[t]\napi_key_env = "X"\n', "provider 't'", "'base_url'"),
    ('[t]\nbase_url = "api.together.xyz/v1"\n', "provider 't'", "'base_url'"),
    ('[t]\npreset = "togther"\n', "provider 't'", "unknown preset 'togther'"),
    ('[t]\nbase_url = "http://h/v1"\n[t.pricing]\ninput_per_1m = -1.0\n', "provider 't'", "'input_per_1m'"),
    ('[t]\nbase_url = "http://h/v1"\n[t.pricing]\nper_token = 1.0\n', "provider 't'", "'per_token'"),
    (
        '[t]\nbase_url = "http://h/v1"\n[t.pricing.m]\noutput_per_1m = "cheap"\n',
        "provider 't'",
        "'output_per_1m'",
    ),
    (
        '[t]\nbase_url = "http://h/v1"\nendpoints = ["chat.completions", "files"]\n',
        "provider 't'",
        "'endpoints'",
    ),
    ('[t]\nbase_url = "http://h/v1"\nrename = { model = "engine" }\n', "provider 't'", "'rename'"),
    (
        '[t]\nbase_url = "http://h/v1"\nheaders = { "Content-Type" = "text/plain" }\n',
        "provider 't'",
        "'headers'",
    ),
    ('[t]\nbase_url = "http://h/v1"\nconcurrency = 0\n', "provider 't'", "'concurrency'"),
    ('[t]\nbase_url = "http://h:99999/v1"\n', "provider 't'", "'base_url'"),
    ('[t]\nbase_url = "http://[/v1"\n', "provider 't'", "'base_url'"),
    ('[t]\nbase_url = "http://h/v1"\ntimeout_s = inf\n', "provider 't'", "'timeout_s'"),
    ('[t]\nbase_url = "http://h/v1"\n[t.pricing]\noutput_per_1m = nan\n', "provider 't'", "'output_per_1m'"),
    ('[t]\nbase_url = "http://h/v1"\nset = { seed = 2026-11-25 }\n', "provider 't'", "'set'"),
    ('[t]\nbase_url = "http://h/v1"\ndrop = ["model"]\n', "provider 't'", "'drop'"),
    ("t = 3\n", "'t'", "provider table"),
    ("[recorded]\nprices = {}\n", "[recorded]", "'prices'"),
    ("[t\nbase_url = 1\n", "not valid TOML", ""),
]


@pytest.mark.parametrize(("text", "who", "key"), BAD)
def test_bad_config_names_provider_and_key(tmp_path: Path, text: str, who: str, key: str) -> None:
    p = tmp_path / "providers.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert who in msg and key in msg and "\n" not in msg


def test_cli_reports_bad_config_in_one_line(tmp_path: Path, capsys) -> None:
    p = tmp_path / "providers.toml"
    p.write_text('[together]\npreset = "together"\ntpm = -5\n')
    assert main(["replay", "--db", str(tmp_path / "s.duckdb"), "--providers", str(p), "--run", "r"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "provider 'together'" in err[0] and "'tpm'" in err[0]


def test_missing_key_env_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PARITY_TEST_NO_SUCH_KEY", raising=False)
    cfg = parse_config(
        {"t": {"preset": "together", "api_key_env": "PARITY_TEST_NO_SUCH_KEY"}, "local": {"preset": "vllm"}}
    )
    assert cfg.providers["local"].api_key() is None  # no api_key_env: fine
    with pytest.raises(ConfigError, match="PARITY_TEST_NO_SUCH_KEY") as e:
        cfg.check_keys()
    assert "provider 't'" in str(e.value)
    monkeypatch.setenv("PARITY_TEST_NO_SUCH_KEY", "sk-x")
    cfg.check_keys()


def test_public_config_has_no_secrets(monkeypatch) -> None:
    monkeypatch.setenv("PARITY_TEST_K", "sk-secret-value")
    cfg = parse_config(
        {
            "t": {
                "base_url": "http://h/v1",
                "api_key_env": "PARITY_TEST_K",
                "headers": {"x-api-token": "hdr-secret-value"},
            }
        }
    )
    text = repr(cfg.providers["t"].public())
    assert "sk-secret-value" not in text and "hdr-secret-value" not in text and "x-api-token" in text


def test_only_some_providers(tmp_path: Path) -> None:
    p = tmp_path / "providers.toml"
    p.write_text('[a]\nbase_url = "http://h/v1"\n[b]\nbase_url = "http://h/v1"\n')
    assert list(load_config(p, ["b"]).providers) == ["b"]
    with pytest.raises(ConfigError, match="no provider named 'c'"):
        load_config(p, ["c"])
