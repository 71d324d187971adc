"""llmroute_magic: route LLM prompts across providers from Jupyter.

The public surface is what this module exports; modules whose names start with ``_`` are
private. Heavy dependencies (httpx, pandas, matplotlib, IPython, ipywidgets) load lazily:
``import llmroute_magic`` costs a few milliseconds.
"""

from ._config import ProviderRoutingConfig
from ._errors import AllProvidersFailed, ConfigError, LLMRouteError, ProviderError
from ._types import Completion, ProviderSpec, RoutingStrategy
from .router import ModelClientRouter
from .stats import UsageStats

__version__ = "0.1.0"

__all__ = [
    "AllProvidersFailed", "Completion", "ConfigError", "LLMRouteError", "ModelClientRouter", "ProviderError",
    "ProviderRoutingConfig", "ProviderSpec", "RoutingStrategy", "UsageStats", "__version__",
    "load_ipython_extension", "unload_ipython_extension",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext llmroute_magic``: register the magics and bind the router ``llm``."""
    from .ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .ipython import unload_ipython_extension as unload

    unload(ipython)
