"""llmroute_magic: route LLM prompts across providers from Jupyter.

The public surface is what this module exports; modules whose names start with ``_`` are
private. Heavy dependencies (httpx, pandas, matplotlib, IPython, ipywidgets) load lazily:
``import llmroute_magic`` costs a few milliseconds.
"""

import typing as _typing

from ._config import ProviderRoutingConfig
from ._errors import (
    AllProvidersFailed,
    ConfigError,
    LedgerPersistenceWarning,
    LLMRouteError,
    ProviderError,
    UnknownPriceWarning,
)
from ._types import Completion, ProviderSpec, RoutingStrategy

if _typing.TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily (see __getattr__)
    from ._router import ModelClientRouter
    from ._stats import UsageStats

__version__ = "0.1.0"
"""The package's version: its one source (pyproject.toml reads it from here when building)."""

# The router pulls in asyncio, sqlite3 and the ledger (about two thirds of the import time):
# loaded on first use of the name, so ``import llmroute_magic`` (and ``%load_ext`` before its
# first request) stays cheap while ``from llmroute_magic import ModelClientRouter`` works as ever.
_LAZY = {"ModelClientRouter": "._router", "UsageStats": "._stats"}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AllProvidersFailed",
    "Completion",
    "ConfigError",
    "LLMRouteError",
    "LedgerPersistenceWarning",
    "ModelClientRouter",
    "ProviderError",
    "ProviderRoutingConfig",
    "ProviderSpec",
    "RoutingStrategy",
    "UnknownPriceWarning",
    "UsageStats",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: _typing.Any) -> None:
    """``%load_ext llmroute_magic``: register ``%llm`` / ``%%llm`` and bind the router ``llm``.

    The router comes from ``$LLMROUTE_CONFIG`` or ``./llmroute.toml``, else from API keys in the
    environment, else from the built-in simulator (with a one-line notice).

    Examples:
        In a notebook cell:

            %load_ext llmroute_magic
    """
    from ._ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: _typing.Any) -> None:
    """``%unload_ext llmroute_magic``: remove the magics and release the routers (and simulators)
    the extension started.

    Examples:
        In a notebook cell:

            %unload_ext llmroute_magic
    """
    from ._ipython import unload_ipython_extension as unload

    unload(ipython)
