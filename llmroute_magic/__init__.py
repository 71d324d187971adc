"""llmroute_magic: route LLM prompts across providers from Jupyter.

The public surface is what this module exports; everything in ``_``-prefixed modules is private.
Heavy dependencies (httpx, pandas, matplotlib, IPython, ipywidgets) are imported lazily.
"""

from ._errors import AllProvidersFailed, ConfigError, LLMRouteError, ProviderError
from ._types import Completion, ProviderSpec, RoutingStrategy

__version__ = "0.1.0"

__all__ = [
    "AllProvidersFailed", "Completion", "ConfigError", "LLMRouteError", "ProviderError",
    "ProviderSpec", "RoutingStrategy", "__version__",
]
