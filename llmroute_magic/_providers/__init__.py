"""Wire-format adapters: one module per API, behind ``ProviderAdapter``."""

from __future__ import annotations

import importlib

from .._errors import ConfigError
from ._base import ChatRequest, ProviderAdapter, ProviderResult, StreamItem

__all__ = ["ChatRequest", "ProviderAdapter", "ProviderResult", "StreamItem", "adapter_for", "check_supported"]

# api -> (module, class). A module is imported when a router first talks to such a provider.
ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": (".openai", "OpenAIAdapter"),
    "anthropic": (".anthropic", "AnthropicAdapter"),
    "openai-responses": (".openai_responses", "OpenAIResponsesAdapter"),
    "gemini": (".gemini", "GeminiAdapter"),
    "azure": (".azure", "AzureAdapter"),
    "ollama": (".ollama", "OllamaAdapter"),
}


def check_supported(api: str) -> None:
    if api not in ADAPTERS:
        raise ConfigError(
            f"providers.api: {api!r} has no adapter in this version; available: {', '.join(ADAPTERS)}", field="api"
        )


def adapter_for(api: str) -> type[ProviderAdapter]:
    check_supported(api)
    module, name = ADAPTERS[api]
    adapter: type[ProviderAdapter] = getattr(importlib.import_module(module, __name__), name)  # ADAPTERS names one
    return adapter
