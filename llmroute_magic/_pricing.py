"""Prices per provider: the spec's own, else genai-prices' bundled snapshot, else unknown.

Unknown is never 0: the ledger shows NaN and the user is told once which provider lacks a price
and how to give one. genai-prices is imported on first use (it takes ~0.4 s).
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import dataclass

from ._errors import UnknownPriceWarning
from ._types import KNOWN_BASE_URLS, LOCAL_SERVERS, ProviderSpec

log = logging.getLogger("llmroute_magic")

MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    cache_read: float | None = None
    source: str = "spec"

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0) -> float:
        if cache_read_tokens and self.cache_read is not None:
            cached = min(cache_read_tokens, input_tokens)
            return ((input_tokens - cached) * self.input + cached * self.cache_read + output_tokens * self.output) / MTOK
        return (input_tokens * self.input + output_tokens * self.output) / MTOK


class PriceBook:
    """Resolves and caches one ``Price`` (or None) per provider."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Price | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _key(spec: ProviderSpec) -> tuple:
        return (spec.name, spec.model, spec.base_url, spec.input_price, spec.output_price)

    def price(self, spec: ProviderSpec) -> Price | None:
        key = self._key(spec)
        try:
            return self._cache[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._cache:
                self._cache[key] = resolve_price(spec)
            return self._cache[key]

    def rates(self, spec: ProviderSpec) -> tuple[float, float] | None:
        p = self.price(spec)
        return None if p is None else (p.input, p.output)

    def cost(self, spec: ProviderSpec, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0) -> float:
        p = self.price(spec)
        if p is None:
            if input_tokens or output_tokens:
                self._warn_unknown(spec)
                return math.nan
            return 0.0  # nothing was billed, whatever the price
        return p.cost(input_tokens, output_tokens, cache_read_tokens)

    def _warn_unknown(self, spec: ProviderSpec) -> None:
        if spec.name in self._warned:
            return
        self._warned.add(spec.name)
        msg = (f"no price known for provider {spec.name!r} (model {spec.model!r}): its cost shows as NaN. "
               f"Set one with ProviderSpec.with_prices(input=..., output=...) in USD per 1M tokens "
               f"(0, 0 for a free local model).")
        warnings.warn(msg, UnknownPriceWarning, stacklevel=2)
        log.warning(msg)

    def warm(self, specs) -> None:
        """Resolve every price now (off the hot path), e.g. from a background thread."""
        for s in specs:
            self.price(s)


def resolve_price(spec: ProviderSpec) -> Price | None:
    if spec.input_price is not None or spec.output_price is not None:
        return Price(spec.input_price or 0.0, spec.output_price or 0.0, None, "spec")
    name = spec.name.lower()
    if name in KNOWN_BASE_URLS and name not in LOCAL_SERVERS:
        # A known vendor (possibly behind a proxy on loopback): its own price list applies.
        return _genai_price(spec.model, provider_id=name)
    if spec.is_local:
        return None  # a local server's model name says nothing about what it costs
    return _genai_price(spec.model, provider_api_url=spec.base_url or "")


def _genai_price(model: str, **provider: str) -> Price | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - a declared dependency
        return None

    def rate(**usage) -> float:
        return float(getattr(calc_price(Usage(**usage), model, **provider),
                             "output_price" if "output_tokens" in usage else "input_price"))

    try:
        inp = rate(input_tokens=MTOK)
        out = rate(output_tokens=MTOK)
    except (LookupError, ValueError, TypeError):
        try:  # a provider genai-prices does not know (a proxy): match by model name alone
            return _genai_price_by_model(model)
        except (LookupError, ValueError, TypeError):
            return None
    try:
        cache = rate(input_tokens=MTOK, cache_read_tokens=MTOK)
    except (LookupError, ValueError, TypeError):
        cache = None
    return Price(inp, out, cache, "genai-prices")


def _genai_price_by_model(model: str) -> Price:
    from genai_prices import Usage, calc_price

    inp = float(calc_price(Usage(input_tokens=MTOK), model).input_price)
    out = float(calc_price(Usage(output_tokens=MTOK), model).output_price)
    return Price(inp, out, None, "genai-prices")
