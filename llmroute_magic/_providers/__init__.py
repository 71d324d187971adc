"""Wire-format adapters: one module per API, behind ``ProviderAdapter``."""

from ._base import ChatRequest, ProviderAdapter, ProviderResult, StreamItem

__all__ = ["ChatRequest", "ProviderAdapter", "ProviderResult", "StreamItem", "adapter_for"]


def adapter_for(api: str) -> type[ProviderAdapter]:
    if api == "anthropic":
        from .anthropic import AnthropicAdapter
        return AnthropicAdapter
    from .openai import OpenAIAdapter
    return OpenAIAdapter
