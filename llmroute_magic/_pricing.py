"""What one attempt cost: the spec's own prices, else genai-prices' calculation, else unknown.

- **Spec prices** (``input_price``/``output_price``, USD per 1M tokens, always a pair) override
  the catalogue at a flat rate: every prompt token, cached or not, at the input price.
- **genai-prices**: the attempt is priced by genai-prices' own calculation with its input,
  cache-read, cache-write and output tokens, so cache writes, cache reads and tiered prices
  (a >200k-token prompt moves every token to the higher tier) come out as the provider bills them.
  The model is the one the answer came from (``model=``); when genai-prices does not know it (a
  snapshot newer than its data), the one the request asked for (``requested=``: a per-request
  ``model=``, else the spec's). On Azure the spec's model is a deployment name, so the answer's
  model is what prices it.
- **Unknown** (a local server without prices, a model genai-prices does not know, or an attempt
  whose usage the provider did not report) is NaN, never 0; a model asked for per request that
  genai-prices does not know is unknown too, never priced as the spec's. ``cost()`` is silent:
  the router calls ``warn_if_unknown(spec, model)`` before an attempt sends anything, which
  warns once per provider and model asked for (so a warning never lands in the middle of a
  streamed answer). An Azure deployment is not flagged before it answers: its model is not known
  until then.

Speed. ``calc_price`` takes ~200 µs (model lookup, then a unit-registry walk in Decimal), too
much for every attempt. genai-prices' calculation is linear in each token count within one price
tier (tiers are chosen by the total prompt tokens), so for each price period of a model the book
asks genai-prices once per tier for the price of each kind of token and keeps those figures;
an attempt then costs a tier look-up and four multiplications (a few µs). The figures are checked
against ``calc_price`` on mixed usages when they are made; a model whose prices do not pass (a
pricing rule that is not linear, a per-request fee that changes by tier) is priced by calling
``calc_price`` on every attempt instead. The price period is asked of genai-prices on every
attempt (``ModelInfo.get_prices(now)``), so dated and time-of-day prices switch when they should.

genai-prices is imported on first use (it takes ~0.4 s); ``warm(specs)`` does it off the hot path.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ._errors import UnknownPriceWarning
from ._types import KNOWN_BASE_URLS, LOCAL_SERVERS, ProviderSpec

log = logging.getLogger("llmroute_magic")

MTOK = 1_000_000
_NAN = math.nan
_UTC = UTC
_MAX_MODELS_PER_SPEC = 64  # answers naming many models (a gateway) must not grow the cache forever
_LOOKUP_ERRORS = (LookupError, ValueError, TypeError, ArithmeticError)


# A price entry (one per spec) answers: ``priced`` (may some attempt of it have a price),
# ``known`` (has the spec's own model one), ``known_model(m)`` (has model m one; None: not until
# the answer names the model), ``resolved(m)`` (is asking about m cheap), ``cost`` and ``rates``.


class _Flat:
    """Spec prices, USD per 1M tokens, the same for every kind of prompt token and every model."""

    __slots__ = ("input", "output")
    priced = known = True

    def __init__(self, input_price: float, output_price: float) -> None:
        self.input = input_price
        self.output = output_price

    def cost(
        self, inp: int, out: int, cache_read: int, cache_write: int, model: str | None, requested: str | None
    ) -> float:
        # Written as the simulator bills, so the ledger equals it to the last bit.
        return inp * self.input / MTOK + out * self.output / MTOK

    def rates(self) -> tuple[float, float]:
        return (self.input, self.output)

    def known_model(self, model: str) -> bool | None:
        return True

    def resolved(self, model: str) -> bool:
        return True


class _Unknown:
    __slots__ = ()
    priced = known = False

    def cost(
        self, inp: int, out: int, cache_read: int, cache_write: int, model: str | None, requested: str | None
    ) -> float:
        return _NAN

    def rates(self) -> None:
        return None

    def known_model(self, model: str) -> bool | None:
        return False

    def resolved(self, model: str) -> bool:
        return True


_UNKNOWN = _Unknown()


class _Form:
    """One price period of one model as per-token figures per tier, made by genai-prices.

    ``starts``: the tier thresholds (a tier applies when the prompt has more tokens than its
    start); ``coef[i]``: (per request, per uncached prompt token, per cache-read token, per
    cache-write token, per output token) in tier i, USD."""

    __slots__ = ("starts", "coef", "base_rates")

    def __init__(
        self, starts: list[int], coef: list[tuple[float, float, float, float, float]], base_rates: tuple[float, float]
    ) -> None:
        self.starts = starts
        self.coef = coef
        self.base_rates = base_rates

    def cost(self, inp: int, out: int, cache_read: int, cache_write: int) -> float:
        c0, a, b, c, d = self.coef[bisect.bisect_left(self.starts, inp)] if self.starts else self.coef[0]
        return c0 + a * (inp - cache_read - cache_write) + b * cache_read + c * cache_write + d * out


class _ModelPricer:
    """A genai-prices model and provider: ``calc_price``'s figures per price period."""

    __slots__ = ("info", "provider", "_forms", "_lock", "_fixed")

    def __init__(self, info: Any, provider: Any) -> None:
        self.info = info
        self.provider = provider
        self._forms: dict[int, tuple[Any, _Form | None]] = {}  # id(ModelPrice) -> (that object, its form)
        self._lock = threading.Lock()
        # One price for all time (most models): no need to ask which period applies now.
        self._fixed: _Form | None = None
        if not isinstance(info.prices, list):
            self._fixed = self._compile(info.prices, datetime.now(_UTC))[1]

    def cost(self, inp: int, out: int, cache_read: int, cache_write: int) -> float:
        fixed = self._fixed
        if fixed is not None:
            return fixed.cost(inp, out, cache_read, cache_write)
        now = datetime.now(_UTC)
        period = self.info.get_prices(now)
        entry = self._forms.get(id(period))
        if entry is None or entry[0] is not period:
            entry = self._compile(period, now)
        form = entry[1]
        if form is not None:
            return form.cost(inp, out, cache_read, cache_write)
        return self._calc(
            now, input_tokens=inp, output_tokens=out, cache_read_tokens=cache_read, cache_write_tokens=cache_write
        )

    def rates(self) -> tuple[float, float] | None:
        now = datetime.now(_UTC)
        period = self.info.get_prices(now)
        entry = self._forms.get(id(period))
        if entry is None or entry[0] is not period:
            entry = self._compile(period, now)
        if entry[1] is not None:
            return entry[1].base_rates
        try:  # a model priced call by call: its rates from one token of each kind, base tier
            return _probe_rates(lambda **u: self._decimal(now, **u))
        except _LOOKUP_ERRORS:
            return None

    # -- genai-prices -------------------------------------------------------------------------
    def _decimal(self, when: datetime, **usage: int):
        from genai_prices import Usage

        return self.info.calc_price(Usage(**usage), self.provider, genai_request_timestamp=when).total_price

    def _calc(self, when: datetime, **usage: int) -> float:
        try:
            return float(self._decimal(when, **usage))
        except _LOOKUP_ERRORS:  # usage genai-prices refuses (more cached than prompt tokens)
            return _NAN

    def _compile(self, period: Any, when: datetime) -> tuple[Any, _Form | None]:
        with self._lock:
            entry = self._forms.get(id(period))
            if entry is not None and entry[0] is period:
                return entry
            try:
                form = _make_form(period, lambda **u: self._decimal(when, **u))
            except _LOOKUP_ERRORS:
                form = None
            if form is None:
                log.debug("llmroute_magic: %s priced by calc_price on every attempt", self.info.id)
            entry = self._forms[id(period)] = (period, form)
            return entry


def _tier_starts(period: Any) -> list[int]:
    from genai_prices.types import TieredPrices

    starts: set[int] = set()
    for value in vars(period).values():
        if isinstance(value, TieredPrices):
            starts.update(int(t.start) for t in value.tiers)
    return sorted(starts)


def _probe_rates(calc) -> tuple[float, float]:
    """(input, output) USD per 1M tokens at the base tier, from the price of one token of each."""
    zero = calc()
    one_in = calc(input_tokens=1)
    return (float((one_in - zero) * MTOK), float((calc(input_tokens=1, output_tokens=1) - one_in) * MTOK))


def _make_form(period: Any, calc) -> _Form | None:
    """Per-token figures per tier, asked of genai-prices (``calc(**usage) -> Decimal``), then
    checked against it on mixed usages; None when they do not reproduce it."""
    starts = _tier_starts(period)
    bounds = [0, *starts]
    zero = calc()  # a per-request fee, if the model has one
    coef = []
    for lo in bounds:
        t = lo + 1  # a prompt size inside this tier: tier i applies above its start
        p_in = calc(input_tokens=t)
        a = (p_in - zero) / t
        b = (calc(input_tokens=t, cache_read_tokens=t) - zero) / t
        c = (calc(input_tokens=t, cache_write_tokens=t) - zero) / t
        d = (calc(input_tokens=t, output_tokens=t) - p_in) / t
        coef.append((float(zero), float(a), float(b), float(c), float(d)))
    form = _Form(starts, coef, _probe_rates(calc))
    # The check: mixed usages at both edges of every tier, against genai-prices itself.
    for i, lo in enumerate(bounds):
        hi = bounds[i + 1] if i + 1 < len(bounds) else lo + 3 * MTOK
        for total in {lo + 1, (lo + hi) // 2, hi}:
            for cr, cw, out in ((0, 0, 0), (total // 3, 0, 777), (0, total // 4, 12_345), (total // 5, total // 7, 1)):
                want = float(calc(input_tokens=total, cache_read_tokens=cr, cache_write_tokens=cw, output_tokens=out))
                got = form.cost(total, out, cr, cw)
                if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
                    return None
    return form


class _Catalogue:
    """A spec priced by genai-prices: one pricer per model name asked for or answered from (None:
    genai-prices does not know it). ``default``, the spec's model's, may be None: an Azure
    deployment name, or a gateway's alias, whose answers may still name a model it knows."""

    __slots__ = ("spec", "lookup", "default", "known", "deferred", "_by_model", "_lock")
    priced = True

    def __init__(self, spec: ProviderSpec, lookup: dict[str, str], default: _ModelPricer | None) -> None:
        self.spec = spec
        self.lookup = lookup
        self.default = default
        self.known = default is not None
        self.deferred = spec.api == "azure"  # the model asked for names a deployment; the answer names the model
        self._by_model: dict[str, _ModelPricer | None] = {spec.model: default}
        self._lock = threading.Lock()

    def pricer(self, model: str) -> _ModelPricer | None:
        try:
            return self._by_model[model]
        except KeyError:
            return self._resolve(model)

    def known_model(self, model: str) -> bool | None:
        if self.pricer(model) is not None:
            return True
        return None if self.deferred else False

    def resolved(self, model: str) -> bool:
        return model in self._by_model

    def _resolve(self, model: str) -> _ModelPricer | None:
        p = _find(model, self.lookup)
        with self._lock:
            if len(self._by_model) >= _MAX_MODELS_PER_SPEC:
                self._by_model = {self.spec.model: self.default}
            self._by_model[model] = p
        return p

    def cost(
        self, inp: int, out: int, cache_read: int, cache_write: int, model: str | None, requested: str | None
    ) -> float:
        p = None if model is None else self.pricer(model)
        if p is None:
            asked = self.spec.model if requested is None else requested
            if asked != model:
                p = self.pricer(asked)
        return _NAN if p is None else p.cost(inp, out, cache_read, cache_write)

    def rates(self) -> tuple[float, float] | None:
        return None if self.default is None else self.default.rates()


def _find(model: str, lookup: dict[str, str]) -> _ModelPricer | None:
    """genai-prices' model and provider for ``model``: by the provider given, else by model alone
    (a gateway or proxy whose URL genai-prices does not know)."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    for kwargs in (lookup, {}) if lookup else ({},):
        try:
            found = calc_price(Usage(input_tokens=1), model, **kwargs)  # type: ignore[call-overload]
        except _LOOKUP_ERRORS:
            continue
        return _ModelPricer(found.model, found.provider)
    return None


# genai-prices' provider for a known name or a vendor's own wire format (names default to api).
_PROVIDER_IDS = {
    "gemini": "google",
    "google": "google",
    "claude": "anthropic",
    "azure": "azure",
    "openai-responses": "openai",
}


def _resolve(spec: ProviderSpec):
    if spec.input_price is not None and spec.output_price is not None:
        return _Flat(spec.input_price, spec.output_price)
    name = spec.name.lower()
    if spec.api == "ollama" and spec.is_local:
        return _Flat(0.0, 0.0)  # Ollama's native API on this machine: a local model costs nothing per token
    if name in KNOWN_BASE_URLS and name not in LOCAL_SERVERS:
        lookup = {"provider_id": _PROVIDER_IDS.get(name, name)}  # a known vendor, perhaps behind a local proxy
    elif spec.api in _PROVIDER_IDS:
        lookup = {"provider_id": _PROVIDER_IDS[spec.api]}  # Gemini's, Azure's or OpenAI's own API
    elif spec.is_local:
        return _UNKNOWN  # a local server's model name says nothing about what it costs
    else:
        lookup = {"provider_api_url": spec.base_url or ""}
    return _Catalogue(spec, lookup, _find(spec.model, lookup))


class PriceBook:
    """Prices attempts. Thread-safe; one per router.

    Calls for the router:

    - ``warm(specs)`` once, from a background thread, when the router is built;
    - ``warn_if_unknown(spec)`` before each attempt sends anything (warns once per provider),
      after ``known(spec)`` in a worker thread while ``ready(spec)`` is False (the first look-up
      may load genai-prices);
    - ``cost(spec, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, model=)``
      when the attempt ends, with what the provider reported (None tokens: usage unknown);
    - ``rates(spec)`` for LOWEST_COST's ranking.
    """

    def __init__(self) -> None:
        self._entries: dict[ProviderSpec, Any] = {}
        self._by_id: dict[int, tuple[ProviderSpec, Any]] = {}  # the router's own spec objects: no hashing
        self._warned: set[tuple[str, str | None]] = set()  # (provider, model asked for; None: any)
        self._lock = threading.Lock()

    def _entry(self, spec: ProviderSpec):
        hit = self._by_id.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        entry = self._entries.get(spec)
        if entry is None:
            # Resolved without the lock: a spec with its own prices must not wait while another
            # spec's first look-up imports genai-prices (~0.4 s). Two threads may both resolve
            # one spec; the first result is kept.
            try:
                entry = _resolve(spec)
            except _LOOKUP_ERRORS:
                entry = _UNKNOWN
        with self._lock:
            entry = self._entries.setdefault(spec, entry)
            if len(self._by_id) > 4 * len(self._entries) + 64:
                self._by_id.clear()  # many short-lived copies of specs: start again
            self._by_id[id(spec)] = (spec, entry)  # keeps the spec alive, so its id is not reused
            return entry

    def cost(
        self,
        spec: ProviderSpec,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        *,
        model: str | None = None,
        requested: str | None = None,
    ) -> float:
        """USD for one attempt; NaN when its price or its usage is unknown; 0.0 when it used no tokens.

        ``input_tokens`` counts every prompt token, cache reads and writes included;
        ``cache_read_tokens``/``cache_write_tokens`` are those shares. ``model``: the model the
        answer came from; when genai-prices does not know it, ``requested``, the model the
        request asked for (None: the spec's); NaN when it knows neither. Never raises, never
        warns (see ``warn_if_unknown``)."""
        if input_tokens is None or output_tokens is None:
            return _NAN
        if not input_tokens and not output_tokens:
            return 0.0  # nothing was billed, whatever the price
        cache_read_tokens = cache_read_tokens or 0
        cache_write_tokens = cache_write_tokens or 0
        if cache_read_tokens + cache_write_tokens > input_tokens or input_tokens < 0 or output_tokens < 0:
            return _NAN  # usage that cannot be right is not priced as if it were
        hit = self._by_id.get(id(spec))
        entry = hit[1] if hit is not None and hit[0] is spec else self._entry(spec)
        if not entry.priced:
            return _NAN
        try:
            return entry.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, model, requested)
        except Exception:  # a pricing bug must not fail a request that succeeded
            log.exception("llmroute_magic: pricing an attempt of %s failed", spec.name)
            return _NAN

    def rates(self, spec: ProviderSpec) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens at the base tier, or None when unknown."""
        try:
            return self._entry(spec).rates()
        except Exception:
            log.exception("llmroute_magic: the price of %s could not be read", spec.name)
            return None

    def known(self, spec: ProviderSpec, model: str | None = None) -> bool:
        """Whether an attempt at ``spec`` asking for ``model`` (None: the spec's) has a known price
        before it answers (an Azure deployment's is not known until then)."""
        entry = self._entry(spec)
        if model is None or model == spec.model:
            return bool(entry.known)
        return bool(entry.known_model(model))

    def ready(self, spec: ProviderSpec, model: str | None = None) -> bool:
        """True when ``spec``'s price (and ``model``'s, asked for per request) has been looked up
        already: asking again is cheap. Else the first look-up may load genai-prices (~0.2 s)."""
        hit = self._by_id.get(id(spec))
        return hit is not None and hit[0] is spec and (model is None or hit[1].resolved(model))

    def warn_if_unknown(self, spec: ProviderSpec, model: str | None = None) -> bool:
        """Call before an attempt sends anything, with the model the request asks for (None: the
        spec's): warns (once per provider and model) when its price is unknown, so the warning
        never lands inside a streamed answer. True when known."""
        entry = self._entry(spec)
        if model is None or model == spec.model:
            if entry.known:
                return True
            model = spec.model
        known = entry.known_model(model)
        if known:
            return True
        if known is not None:  # None: an Azure deployment, known once it answers
            self._warn(spec, model, model if entry.priced else None)
        return False

    def priced_by_answer(self, spec: ProviderSpec) -> bool:
        """True when ``spec``'s model names no model genai-prices knows but its answers will (an
        Azure deployment): each attempt is priced by the model its answer names."""
        entry = self._entry(spec)
        return bool(getattr(entry, "deferred", False)) and not entry.known

    def warn_if_unpriced_answer(self, spec: ProviderSpec, model: str) -> None:
        """After an answer whose cost is NaN though its usage is known: warns (once per provider and
        model) when only the answer could tell the price (an Azure deployment, the spec's or one a
        request named), and it did not.
        Every other unknown price was warned of before the attempt was sent."""
        if getattr(self._entry(spec), "deferred", False):  # whatever model the request named
            self._warn(spec, model, model)

    def _warn(self, spec: ProviderSpec, model: str, key: str | None) -> None:
        with self._lock:
            if (spec.name, key) in self._warned:
                return
            self._warned.add((spec.name, key))
        # warnings only: a log record as well reached the console a second time through
        # logging's last-resort handler (two lines for one fact).
        msg = (
            f"no price known for provider {spec.name!r} (model {model!r}): its cost shows as NaN "
            f"(unknown, not $0). Set one with ProviderSpec.with_prices(input=..., output=...) in USD per "
            f"1M tokens (0, 0 for a free local model)."
        )
        warnings.warn(msg, UnknownPriceWarning, stacklevel=3)

    def warm(self, specs: Iterable[ProviderSpec]) -> None:
        """Resolve every price now (imports genai-prices, finds each model, makes its figures),
        e.g. from a background thread, so the first attempt does not pay for it."""
        for s in specs:
            try:
                self.rates(s)
            except Exception:  # pragma: no cover - rates() already reports
                pass
