"""Config and spec validation: every mistake names the field and what is allowed."""

from __future__ import annotations

import pytest

from llmroute_magic import ConfigError, ProviderRoutingConfig, ProviderSpec, RoutingStrategy


def test_seed_builders_and_defaults():
    openai = ProviderSpec("openai", "gpt-4o").with_priority(1)
    anthropic = ProviderSpec("anthropic", "claude-3-5-sonnet-latest").with_priority(2)
    cfg = ProviderRoutingConfig.new(openai, [anthropic]).with_strategy(RoutingStrategy.ROUND_ROBIN)
    assert cfg.names == ["openai", "anthropic"]
    assert cfg.strategy is RoutingStrategy.ROUND_ROBIN
    assert (cfg.fallback_enabled, cfg.max_retries, cfg.timeout, cfg.cooldown_s) == (True, 2, 60.0, 30.0)
    assert openai.api == "openai" and openai.base_url == "https://api.openai.com/v1"
    assert anthropic.api == "anthropic" and anthropic.base_url == "https://api.anthropic.com"
    assert cfg.with_strategy("LeastLatency").strategy is RoutingStrategy.LEAST_LATENCY
    assert cfg.with_fallback(False).fallback_enabled is False
    assert cfg.with_max_retries(5).max_retries == 5


def test_spec_copies_are_immutable_and_keys_hidden():
    s = ProviderSpec("vllm", "llama-3.1-8b", api="openai", base_url="http://127.0.0.1:8000/v1/")
    assert s.base_url == "http://127.0.0.1:8000/v1" and s.is_local
    k = s.with_api_key("sk-canary-123").with_prices(input=0, output=0).with_weight(2).with_timeout(5)
    assert (k.input_price, k.output_price, k.weight, k.timeout) == (0.0, 0.0, 2.0, 5.0)
    assert s.api_key is None and k.resolve_api_key() == "sk-canary-123"
    for text in (repr(k), str(k), repr(k.to_dict()), repr(ProviderRoutingConfig([k])), str(k.api_key)):
        assert "sk-canary-123" not in text
    with pytest.raises(AttributeError):
        k.name = "x"  # type: ignore[misc]


def test_key_from_env_by_name(monkeypatch):
    monkeypatch.setenv("MY_PROXY_API_KEY", "k1")
    s = ProviderSpec("my-proxy", "m", base_url="https://proxy.example/v1")
    assert s.key_env_var == "MY_PROXY_API_KEY" and s.resolve_api_key() == "k1"
    t = ProviderSpec("my-proxy", "m", base_url="https://proxy.example/v1", api_key_env="OTHER")
    assert t.resolve_api_key() is None


def test_api_inferred_from_name():
    assert ProviderSpec("claude-eu", "claude-3-5-haiku-latest", base_url="https://x.example").api == "anthropic"
    assert ProviderSpec("groq", "llama3-70b").base_url == "https://api.groq.com/openai/v1"


@pytest.mark.parametrize(
    "kwargs, field, fragment",
    [
        (dict(name="mystery", model="m"), "base_url", "unknown provider name without base_url"),
        (dict(name="openai", model="m", api="grpc"), "api", "allowed: openai, anthropic"),
        (dict(name="openai", model=""), "model", "model name is required"),
        (dict(name="openai", model="m", weight=0), "weight", "must be > 0"),
        (dict(name="openai", model="m", input_price=-1), "input_price", "must be >= 0"),
        (dict(name="openai", model="m", context_window=1.5), "context_window", "whole number"),
        (dict(name="openai", model="m", base_url="ftp://x"), "base_url", r"http\(s\) URL"),
        (dict(name="openai", model="m", base_url="http://[::1"), "base_url", r"http\(s\) URL"),
        (dict(name="openai", model="m", base_url="http://127.0.0.1:99999/v1"), "base_url", "port from 1 to 65535"),
    ],
)
def test_bad_spec_names_the_field(kwargs, field, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        ProviderSpec(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({}, "providers: missing"),
        ({"providers": []}, "at least one provider"),
        ({"providers": [{"name": "openai"}]}, r"providers\[0\].model: missing"),
        ({"providers": [{"name": "openai", "model": "a", "colour": "red"}]}, r"providers\[0\].colour: unknown field"),
        ({"providers": [{"name": "openai", "model": "a"}, {"name": "openai", "model": "b"}]}, "duplicate provider"),
        ({"providers": [{"name": "openai", "model": "a"}], "strategy": "fastest"}, "allowed: round_robin"),
        ({"providers": [{"name": "openai", "model": "a"}], "max_retries": -1}, "max_retries"),
        ({"providers": [{"name": "openai", "model": "a"}], "timeout": 0}, "timeout"),
        ({"providers": [{"name": "openai", "model": "a"}], "retries": 3}, "unknown setting 'retries'"),
        ({"providers": {"name": "openai"}}, "expected a list"),
    ],
)
def test_bad_dict_config(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ProviderRoutingConfig.from_dict(data)


def test_from_file_round_trip(tmp_path):
    path = tmp_path / "llmroute.toml"
    path.write_text("""
strategy = "LowestCost"
max_retries = 3
ledger_path = "usage.sqlite"

[[providers]]
name = "openai"
model = "gpt-4o-mini"
priority = 1

[[providers]]
name = "local"
model = "llama"
base_url = "http://127.0.0.1:8000/v1"
input_price = 0
output_price = 0
""")
    cfg = ProviderRoutingConfig.from_file(path)
    assert cfg.strategy is RoutingStrategy.LOWEST_COST and cfg.max_retries == 3
    assert cfg.names == ["openai", "local"]
    assert cfg.ledger_path == str(tmp_path / "usage.sqlite")
    assert ProviderRoutingConfig.from_dict(cfg.to_dict()) == cfg


def test_from_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        ProviderRoutingConfig.from_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("strategy = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        ProviderRoutingConfig.from_file(bad)
