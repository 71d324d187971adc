"""The router ``%load_ext llmroute_magic`` starts with, chosen from what the user has set up.

In order: ``$LLMROUTE_SIMULATE=1`` forces the simulator; else the file named by
``$LLMROUTE_CONFIG``; else ``./llmroute.toml``; else one provider per API key found in the
environment; else the built-in simulator on an ephemeral loopback port, kept alive as long as
the router (stopped when it is released or the process exits).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ..sim._bound import release, simulated_router, simulator_for

__all__ = [
    "config_source",
    "default_router",
    "describe_config",
    "missing_keys",
    "release",
    "router_sim_url",
    "simulated_router",
    "simulator_for",
]

CONFIG_ENV = "LLMROUTE_CONFIG"
SIMULATE_ENV = "LLMROUTE_SIMULATE"
CONFIG_FILE = "llmroute.toml"

# (provider name, default model) per key variable, in priority order: cheap, capable defaults.
KEY_PROVIDERS: tuple[tuple[str, str, str], ...] = (
    ("OPENAI_API_KEY", "openai", "gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic", "claude-3-5-haiku-latest"),
    ("GROQ_API_KEY", "groq", "llama-3.1-8b-instant"),
    ("MISTRAL_API_KEY", "mistral", "mistral-small-latest"),
    ("DEEPSEEK_API_KEY", "deepseek", "deepseek-chat"),
    ("TOGETHER_API_KEY", "together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"),
    ("OPENROUTER_API_KEY", "openrouter", "openai/gpt-4o-mini"),
    ("GEMINI_API_KEY", "gemini", "gemini-2.0-flash"),
    ("GOOGLE_API_KEY", "gemini", "gemini-2.0-flash"),  # google-genai's own name for the same key
)
# Azure is not among them: its model is a deployment name only its owner knows (write it in llmroute.toml).

HOW_TO_CONFIGURE = (
    f"set OPENAI_API_KEY / ANTHROPIC_API_KEY / GROQ_API_KEY, or write ./{CONFIG_FILE} "
    f"(or point ${CONFIG_ENV} at one) and run %llm config PATH"
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def config_source(
    environ: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> tuple[str, Any]:
    """Where the default router comes from: ("simulate", None) | ("file", path) | ("keys", names) | ("sim", None)."""
    env = os.environ if environ is None else environ
    if _truthy(env.get(SIMULATE_ENV)):
        return "simulate", None
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"${CONFIG_ENV} points to {str(path)!r}, which is not a file; fix the path or unset {CONFIG_ENV}",
                field=CONFIG_ENV,
            )
        return "file", path
    local = Path(cwd or os.getcwd()) / CONFIG_FILE
    if local.is_file():
        return "file", local
    found = list(dict.fromkeys((name, model) for var, name, model in KEY_PROVIDERS if env.get(var)))
    if found:
        return "keys", found
    return "sim", None


def default_router(
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    announce: Callable[[str], None] | None = print,
) -> Any:
    """Build the router the magics start with; ``announce`` gets a one-line notice when it matters."""
    from .. import ModelClientRouter, ProviderRoutingConfig, ProviderSpec

    kind, detail = config_source(environ, cwd)
    if kind == "file":
        router = ModelClientRouter(ProviderRoutingConfig.from_file(detail))
        if announce:
            env = os.environ if environ is None else environ
            via = f"${CONFIG_ENV}" if env.get(CONFIG_ENV) else "found in the working directory"
            announce(describe_config(router.config, f"{detail} ({via})", environ=env))
        return router
    if kind == "keys":
        specs = [ProviderSpec(name, model, priority=i) for i, (name, model) in enumerate(detail)]
        if announce:
            announce(
                f"llmroute: using {', '.join(n for n, _ in detail)} (API keys found in the environment); "
                "`%llm status` shows the setup"
            )
        return ModelClientRouter(ProviderRoutingConfig(specs))
    router = simulated_router()
    if announce:
        why = f"${SIMULATE_ENV} is set" if kind == "simulate" else "no providers are configured"
        announce(
            f"llmroute: answers are SIMULATED ({why}; local simulator at {router_sim_url(router)}); "
            f"for real providers {HOW_TO_CONFIGURE}"
        )
    return router


def missing_keys(config: Any, environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(provider, variable) for each remote provider with no key given and none in its variable.

    Only whether a key is there is looked at; no key's value is read out or shown.
    """
    env = os.environ if environ is None else environ
    return [
        (p.name, p.key_env_var)
        for p in config.providers
        if p.api_key is None and not p.is_local and not any(env.get(var) for var in p.key_env_vars)
    ]


def describe_config(config: Any, source: str, *, environ: Mapping[str, str] | None = None) -> str:
    """One line on what was loaded (and a second one when keys are missing): what ``%load_ext`` says."""
    providers = ", ".join(f"{p.name} ({p.model})" for p in config.providers)
    line = f"llmroute: loaded {source}: {providers} · strategy {config.strategy.value}"
    if config.ledger_path is not None:
        line += f" · usage kept in {config.ledger_path}"
    missing = missing_keys(config, environ)
    if missing:
        which = ", ".join(f"{var} ({name})" for name, var in missing)
        line += (
            f"\nllmroute: missing API keys: {which}; set them in the environment (or api_key_env in the "
            "config), or those providers' requests fail with missing_api_key"
        )
    return line


def router_sim_url(router: Any) -> str | None:
    return getattr(simulator_for(router), "url", None)
