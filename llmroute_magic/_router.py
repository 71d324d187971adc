"""``ModelClientRouter``: routes each request to an ordered list of providers and fails over.

One request = up to ``1 + max_retries`` attempts. Each attempt asks one adapter; what to do next
is decided by the failed attempt's ``error_type`` (``_errors.ERROR_POLICY``) alone:

    RETRY          next candidate at once (fallback on) or the same provider after a backoff
    DROP_PROVIDER  skip that provider for this request and cool it down (bad key, quota, model)
    LARGER_CONTEXT only providers with a larger context window remain; none -> ProviderError
    FAIL_FAST      raise the ProviderError (the request itself is wrong)
    SURFACE        an error after streamed text was shown: raise with the partial text

Every attempt becomes one ledger row the moment it ends, cancelled ones included.

The async core runs on whichever event loop awaits it (one pooled httpx client per loop); the
sync API runs the same core on the router's own loop in a background thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Iterator, Sequence

from ._config import ProviderRoutingConfig
from ._errors import AllProvidersFailed, ConfigError, LLMRouteError, Policy, ProviderError
from ._types import AttemptRecord, Completion, ProviderSpec, RoutingStrategy
from ._health import ProviderHealth
from ._ledger import Ledger
from ._pricing import PriceBook
from ._providers._failures import AttemptContext
from ._retry import Backoff
from ._strategies import RequestInfo, Strategy, make_strategy

if TYPE_CHECKING:
    import pandas as pd

    from ._providers import ChatRequest, ProviderAdapter
    from ._stats import UsageStats

log = logging.getLogger("llmroute_magic")

COOLDOWN_THRESHOLD = 3  # consecutive failures before a provider rests for cooldown_s
_ROLES = ("system", "user", "assistant", "tool", "developer")


class ModelClientRouter:
    """Routes prompts across the providers of a ``ProviderRoutingConfig``. Thread-safe."""

    def __init__(self, config: ProviderRoutingConfig, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, backoff: Backoff | None = None,
                 sleep: Callable[[float], Any] | None = None) -> None:
        if not isinstance(config, ProviderRoutingConfig):
            raise ConfigError(f"config: expected a ProviderRoutingConfig, got {type(config).__name__}", field="config")
        self._config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff = backoff or Backoff()
        self._sleep = sleep or asyncio.sleep
        self._lock = threading.RLock()  # guards health/strategy state shared by all loops and threads
        self._prices = PriceBook()
        self._ledger = Ledger(config.ledger_path)
        self._health: dict[str, ProviderHealth] = {p.name: ProviderHealth(p, clock) for p in config.providers}
        # Explicit priorities first (lowest number first), then the rest; ties keep the config's order.
        self._by_priority = sorted(self._health.values(),
                                   key=lambda h: (h.spec.priority is None, h.spec.priority or 0))
        self._strategies: dict[RoutingStrategy, Strategy] = {}
        self._request_ids = itertools.count(1)
        self._id_prefix = os.urandom(3).hex()
        self._clients: dict[asyncio.AbstractEventLoop, tuple[Any, dict[str, "ProviderAdapter"], Any]] = {}
        self._semaphores: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Semaphore] = {}
        self._loop_thread = None
        self._closed = False
        if any(p.input_price is None and p.output_price is None for p in config.providers):
            # genai-prices takes ~0.4 s to import: do it now, off the request path
            threading.Thread(target=self._prices.warm, args=(config.providers,), daemon=True,
                             name="llmroute-prices").start()
        _open_routers.add(self)

    # -- configuration --------------------------------------------------------------------------
    @property
    def config(self) -> ProviderRoutingConfig:
        return self._config

    @property
    def providers(self) -> list[ProviderSpec]:
        return list(self._config.providers)

    @property
    def strategy(self) -> RoutingStrategy:
        return self._config.strategy

    def set_strategy(self, strategy: RoutingStrategy | str) -> None:
        kind = RoutingStrategy.parse(strategy)
        with self._lock:
            self._config = self._config.with_strategy(kind)

    @property
    def fallback_enabled(self) -> bool:
        return self._config.fallback_enabled

    @fallback_enabled.setter
    def fallback_enabled(self, value: bool) -> None:
        with self._lock:
            self._config = self._config.with_fallback(value)

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        with self._lock:
            self._config = self._config.with_max_retries(value)

    @property
    def enabled(self) -> list[str]:
        return [name for name, h in self._health.items() if h.enabled]

    def enable(self, name: str) -> None:
        self._health_of(name).enabled = True

    def disable(self, name: str) -> None:
        self._health_of(name).enabled = False

    def cooling_down(self) -> list[str]:
        now = self._clock()
        return [name for name, h in self._health.items() if h.cooling_down(now)]

    def health(self, name: str) -> ProviderHealth:
        return self._health_of(name)

    def _health_of(self, name: str) -> ProviderHealth:
        try:
            return self._health[name]
        except KeyError:
            raise ConfigError(f"provider: unknown provider {name!r}; configured: {', '.join(self._health)}",
                              field="provider") from None

    def _strategy_for(self, kind: RoutingStrategy) -> Strategy:
        s = self._strategies.get(kind)
        if s is None:
            s = self._strategies[kind] = make_strategy(kind, prices=self._prices.rates, clock=self._clock,
                                                       rng=self._rng)
        return s

    # -- public request API -----------------------------------------------------------------------
    def complete(self, prompt: str | Sequence[dict], *, system: str | None = None, provider: str | None = None,
                 strategy: RoutingStrategy | str | None = None, max_tokens: int | None = None,
                 temperature: float | None = None, **params: Any) -> Completion:
        plan = self._plan(prompt, system, provider, strategy, max_tokens, temperature, params)
        return self._loop().run(self._run(plan))

    async def acomplete(self, prompt: str | Sequence[dict], *, system: str | None = None,
                        provider: str | None = None, strategy: RoutingStrategy | str | None = None,
                        max_tokens: int | None = None, temperature: float | None = None,
                        **params: Any) -> Completion:
        plan = self._plan(prompt, system, provider, strategy, max_tokens, temperature, params)
        return await self._run(plan)

    def stream(self, prompt: str | Sequence[dict], *, system: str | None = None, provider: str | None = None,
               strategy: RoutingStrategy | str | None = None, max_tokens: int | None = None,
               temperature: float | None = None, **params: Any) -> "SyncStream":
        plan = self._plan(prompt, system, provider, strategy, max_tokens, temperature, params)
        return SyncStream(self._loop(), AsyncStream(self, plan))

    def astream(self, prompt: str | Sequence[dict], *, system: str | None = None, provider: str | None = None,
                strategy: RoutingStrategy | str | None = None, max_tokens: int | None = None,
                temperature: float | None = None, **params: Any) -> "AsyncStream":
        plan = self._plan(prompt, system, provider, strategy, max_tokens, temperature, params)
        return AsyncStream(self, plan)

    def compare(self, prompt: str | Sequence[dict], providers: Iterable[str] | str | None = None, n: int = 1,
                **kwargs: Any) -> "pd.DataFrame":
        return self._loop().run(self.acompare(prompt, providers, n, **kwargs))

    async def acompare(self, prompt: str | Sequence[dict], providers: Iterable[str] | str | None = None,
                       n: int = 1, **kwargs: Any) -> "pd.DataFrame":
        import pandas as pd

        if isinstance(providers, str):
            providers = [p.strip() for p in providers.split(",") if p.strip()]
        names = list(providers) if providers is not None else self.enabled
        for name in names:
            self._health_of(name)
        if not names:
            raise ConfigError("providers: no provider to compare; enable one or name them", field="providers")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n: expected a whole number >= 1, got {n!r}", field="n")
        jobs = [(name, i) for name in names for i in range(n)]
        t0 = time.perf_counter()

        async def one(name: str) -> Completion | LLMRouteError:
            try:
                return await self.acomplete(prompt, provider=name, **kwargs)
            except LLMRouteError as e:
                return e

        results = await asyncio.gather(*(one(name) for name, _ in jobs))
        rows = []
        for (name, i), r in zip(jobs, results):
            spec = self._health[name].spec
            if isinstance(r, Completion):
                rows.append({"provider": name, "model": r.model, "sample": i, "text": r.text,
                             "latency_s": r.latency_s, "ttft_s": r.ttft_s, "input_tokens": r.input_tokens,
                             "output_tokens": r.output_tokens, "cost": r.cost, "error": None})
            else:
                rows.append({"provider": name, "model": spec.model, "sample": i, "text": None,
                             "latency_s": time.perf_counter() - t0, "ttft_s": None, "input_tokens": 0,
                             "output_tokens": 0, "cost": 0.0, "error": str(r)})
        df = pd.DataFrame(rows, columns=["provider", "model", "sample", "text", "latency_s", "ttft_s",
                                         "input_tokens", "output_tokens", "cost", "error"])
        if n == 1:
            df = df.drop(columns="sample")
        return df

    def map(self, prompts: Iterable[str | Sequence[dict]], concurrency: int = 8, progress: bool = True,
            **kwargs: Any) -> list[Completion | LLMRouteError]:
        return self._loop().run(self.amap(prompts, concurrency, progress, **kwargs))

    async def amap(self, prompts: Iterable[str | Sequence[dict]], concurrency: int = 8, progress: bool = True,
                   **kwargs: Any) -> list[Completion | LLMRouteError]:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency: expected a whole number >= 1, got {concurrency!r}",
                              field="concurrency")
        items = list(prompts)
        results: list[Completion | LLMRouteError | None] = [None] * len(items)
        bar = _progress_bar(len(items)) if progress else None
        queue = iter(enumerate(items))

        async def worker() -> None:
            for i, prompt in queue:
                try:
                    results[i] = await self.acomplete(prompt, **kwargs)
                except LLMRouteError as e:
                    results[i] = e
                if bar is not None:
                    bar.update(1)

        try:
            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(items)) or 1)))
        finally:
            if bar is not None:
                bar.close()
        return results  # type: ignore[return-value]

    # -- usage ---------------------------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def usage_df(self) -> "pd.DataFrame":
        return self._ledger.to_frame()

    def get_usage_stats(self) -> "UsageStats":
        from ._stats import UsageStats

        return UsageStats.from_frame(self.usage_df(), [p.name for p in self._config.providers])

    def reset_usage(self) -> None:
        self._ledger.clear()

    def subscribe(self, callback: Callable[[AttemptRecord], None]) -> Callable[[], None]:
        """Call ``callback(record)`` after every attempt (on the thread that ran it); returns unsubscribe."""
        return self._ledger.subscribe(callback)

    def plot(self, kind: str = "cost"):
        from ._plots import plot_usage

        return plot_usage(self.usage_df(), kind)

    def panel(self):
        from ._ipython.widgets import RouterPanel

        return RouterPanel(self)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _open_routers.discard(self)
        lt = self._loop_thread
        own = [(loop, c) for loop, c in self._clients.items() if lt is not None and loop is lt.loop]
        if lt is not None:
            try:
                lt.run(_wind_down([entry[0] for _, entry in own]))
            except BaseException:  # closing must not raise on a dying interpreter
                pass
            lt.stop()
        for loop, (client, *_) in list(self._clients.items()):
            if lt is None or loop is not lt.loop:
                _close_client_on(loop, client)
        self._clients.clear()
        self._ledger.close()

    def __enter__(self) -> "ModelClientRouter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "ModelClientRouter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[0].aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __repr__(self) -> str:
        names = ", ".join(f"{h.name}{'' if h.enabled else ' (disabled)'}" for h in self._health.values())
        return (f"ModelClientRouter(strategy={self.strategy.value}, providers=[{names}], "
                f"fallback={self.fallback_enabled}, max_retries={self.max_retries})")

    # -- internals: plumbing ---------------------------------------------------------------------
    def _loop(self):
        lt = self._loop_thread
        if lt is None:
            with self._lock:
                if self._closed:
                    raise LLMRouteError("this router is closed; create a new ModelClientRouter")
                if self._loop_thread is None:
                    from ._loop import LoopThread

                    self._loop_thread = LoopThread()
                lt = self._loop_thread
        return lt

    def _adapters(self) -> dict[str, "ProviderAdapter"]:
        """This event loop's client and adapters (aiohttp sessions belong to one loop)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            if self._closed:
                raise LLMRouteError("this router is closed; create a new ModelClientRouter")
            from ._http import make_client
            from ._providers import adapter_for

            client = make_client(timeout=self._config.timeout)
            adapters = {p.name: adapter_for(p.api)(p, client) for p in self._config.providers}
            entry = (client, adapters, _closed_with_loop(client))
            with self._lock:
                for old in [lp for lp in self._clients if lp.is_closed()]:
                    _close_client_on(old, self._clients.pop(old)[0])
                self._clients[loop] = entry
        return entry[1]

    def _plan(self, prompt, system, provider, strategy, max_tokens, temperature, params) -> "_Plan":
        from ._providers import ChatRequest

        if self._closed:
            raise LLMRouteError("this router is closed; create a new ModelClientRouter")
        messages = _normalise_messages(prompt)
        if system is not None and not isinstance(system, str):
            raise ConfigError(f"system: expected a string, got {type(system).__name__}", field="system")
        if system is not None:
            _check_sendable(system, "system")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ConfigError(f"max_tokens: expected a whole number >= 1, got {max_tokens!r}", field="max_tokens")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not 0 <= temperature <= 2):
            raise ConfigError(f"temperature: expected a number from 0 to 2, got {temperature!r}", field="temperature")
        if provider is not None:
            self._health_of(provider)
        kind = self._config.strategy if strategy is None else RoutingStrategy.parse(strategy)
        request = ChatRequest(messages, system, max_tokens, temperature, params)
        info = RequestInfo(max(1, request.prompt_chars() // 4), max_tokens)
        return _Plan(request, info, provider, kind)

    def _candidates(self, plan: "_Plan", excluded: set[str], min_context: int | None) -> list[ProviderHealth]:
        """The strategy's order over usable providers; all cooling down -> the least recently failed."""
        now = self._clock()
        usable, resting = [], []
        for h in self._by_priority:
            if not h.enabled or h.name in excluded:
                continue
            if min_context is not None and (h.spec.context_window or 0) <= min_context:
                continue
            (resting if h.cooling_down(now) else usable).append(h)
        if usable:
            return self._strategy_for(plan.strategy).order(usable, plan.info)
        if resting:
            return [min(resting, key=lambda h: h.last_failure)]
        return []

    # -- internals: the attempt loop ---------------------------------------------------------------
    async def _run(self, plan: "_Plan") -> Completion:
        result = None
        async for item in self._route(plan, stream=False):
            result = item
        return result  # type: ignore[return-value]

    async def _route(self, plan: "_Plan", *, stream: bool) -> AsyncIterator[str | Completion]:
        """Yield text chunks (when streaming) and finally the Completion; raise when all fail."""
        adapters = self._adapters()
        cfg = self._config
        request_id = f"{self._id_prefix}-{next(self._request_ids)}"
        t_request = time.perf_counter()
        budget = 1 + cfg.max_retries
        errors: list[ProviderError] = []
        excluded: set[str] = set()
        min_context: int | None = None
        same_provider_retries: dict[str, int] = {}
        order: list[ProviderHealth] = []
        pos = 0
        fixed: ProviderHealth | None = self._health[plan.provider] if plan.provider else None
        shown = False
        first_text_at: float | None = None

        attempt = 0
        while attempt < budget:
            # ---- choose who serves this attempt, and whether to wait first
            previous = errors[-1] if errors else None
            if fixed is not None or (not cfg.fallback_enabled and previous is not None):
                if fixed is None:
                    fixed = self._health[previous.provider]  # type: ignore[union-attr]
                h = fixed
                if h.name in excluded:
                    break
                waiting_for_same = previous is not None
            else:
                # Every candidate has failed once: the list starts again, after a backoff (not when
                # it is empty: before the first attempt, or when the providers left were skipped).
                restarting = previous is not None and bool(order) and pos >= len(order)
                if pos >= len(order):
                    with self._lock:
                        order = self._candidates(plan, excluded, min_context)
                    pos = 0
                    if not order:
                        break
                h = order[pos]
                pos += 1
                waiting_for_same = previous is not None and (restarting or previous.provider == h.name)
            if waiting_for_same:
                n = same_provider_retries.get(h.name, 0)
                same_provider_retries[h.name] = n + 1
                last = next((e for e in reversed(errors) if e.provider == h.name), None)
                delay = self._backoff.delay(n, self._rng, last.retry_after if last else None)
                if delay is None:  # asked to wait beyond the cap: not worth waiting for, skip it
                    if fixed is not None:
                        break
                    excluded.add(h.name)
                    order, pos = [p for p in order if p is not h], max(pos - 1, 0)
                    continue
                if delay > 0:
                    await self._sleep(delay)

            # ---- one attempt
            attempt += 1
            spec = h.spec
            adapter = adapters[spec.name]
            sem = self._semaphore(spec) if spec.max_concurrency else None
            if sem is not None:
                await sem.acquire()
            with self._lock:
                h.in_flight += 1
            ctx = AttemptContext(spec.name, spec.model)
            started_wall = time.time()
            t0 = time.perf_counter()
            outcome: ProviderError | None = None
            try:
                if stream:
                    result = None
                    # aclosing: when the consumer stops reading (break, close, garbage collection), the
                    # adapter's stream and its connection end now, not whenever it is collected.
                    async with contextlib.aclosing(adapter.stream(plan.request, ctx)) as items:
                        async for item in items:
                            if isinstance(item, str):
                                if item:
                                    if not shown:
                                        shown = True
                                        first_text_at = time.perf_counter()
                                    yield item
                            else:
                                result = item
                    if result is None:
                        raise ProviderError("the stream ended without a final result", provider=spec.name,
                                            error_type="malformed_response", model=spec.model)
                else:
                    result = await adapter.complete(plan.request, ctx)
            except ProviderError as e:
                outcome = e
            except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
                tokens = (ctx.input_tokens, ctx.output_tokens)
                cost = self._prices.cost(spec, *tokens) if any(tokens) else 0.0
                self._record(request_id, attempt, started_wall, t0, h, plan, "cancelled", "cancelled", None,
                             *tokens, cost, None, stream)
                raise
            except Exception as e:  # an adapter bug must still leave a ledger row and a clear error
                log.exception("llmroute_magic: unexpected error from %s", spec.name)
                outcome = ProviderError(f"unexpected {type(e).__name__}: {e}", provider=spec.name,
                                        error_type="malformed_response", model=spec.model)
            finally:
                with self._lock:
                    h.in_flight -= 1
                if sem is not None:
                    sem.release()

            latency = time.perf_counter() - t0
            if outcome is None:
                cost = self._prices.cost(spec, result.input_tokens, result.output_tokens, result.cache_read_tokens)
                ttft = result.ttft_s
                self._record(request_id, attempt, started_wall, t0, h, plan, "ok", None, result.http_status,
                             result.input_tokens, result.output_tokens, cost, ttft, stream, model=result.model)
                with self._lock:
                    h.record_success(latency, result.output_tokens)
                now = time.perf_counter()
                yield Completion(
                    text=result.text, provider=spec.name, model=result.model or spec.model,
                    input_tokens=result.input_tokens, output_tokens=result.output_tokens, cost=cost,
                    latency_s=now - t_request,
                    ttft_s=(first_text_at - t_request) if first_text_at is not None else None,
                    request_id=request_id, finish_reason=result.finish_reason, attempts=attempt)
                return

            # ---- a failed attempt: record it, then decide
            err = outcome
            cost = self._prices.cost(spec, err.input_tokens, err.output_tokens) if (
                err.input_tokens or err.output_tokens) else 0.0
            self._record(request_id, attempt, started_wall, t0, h, plan, "error", err.error_type, err.status_code,
                         err.input_tokens, err.output_tokens, cost, None, stream, model=err.model or spec.model)
            errors.append(err)
            policy = Policy.SURFACE if shown else err.policy
            with self._lock:
                if policy is Policy.DROP_PROVIDER:
                    h.record_failure(threshold=COOLDOWN_THRESHOLD, cooldown_s=cfg.cooldown_s, immediate=True)
                elif policy is Policy.RETRY:
                    h.record_failure(threshold=COOLDOWN_THRESHOLD, cooldown_s=cfg.cooldown_s,
                                     latency_s=latency if err.error_type == "timeout" else None)
            if policy in (Policy.FAIL_FAST, Policy.SURFACE):
                raise err
            if policy is Policy.DROP_PROVIDER:
                excluded.add(spec.name)
            elif policy is Policy.LARGER_CONTEXT:
                window = spec.context_window
                if window is None or fixed is not None or not cfg.fallback_enabled:
                    raise err
                min_context = max(min_context or 0, window)
                # The new candidate list serves the next attempt as it is: asking the strategy twice
                # would advance a stateful one (round robin) twice.
                with self._lock:
                    order, pos = self._candidates(plan, excluded, min_context), 0
                if not order:
                    raise err

        if not errors:
            raise AllProvidersFailed([], hint=(
                "What to do: no provider is available — every one is disabled. Enable one with "
                "router.enable(name) (or %llm enable NAME)."))
        raise AllProvidersFailed(errors)

    def _semaphore(self, spec: ProviderSpec) -> asyncio.Semaphore:
        key = (asyncio.get_running_loop(), spec.name)
        sem = self._semaphores.get(key)
        if sem is None:
            sem = self._semaphores[key] = asyncio.Semaphore(spec.max_concurrency or 1)
        return sem

    def _record(self, request_id: str, attempt: int, started_wall: float, t0: float, h: ProviderHealth,
                plan: "_Plan", status: str, error_type: str | None, http_status: int | None, input_tokens: int,
                output_tokens: int, cost: float, ttft_s: float | None, streamed: bool, *, model: str | None = None) -> None:
        self._ledger.append(AttemptRecord(
            request_id, attempt, started_wall, h.name, model or h.spec.model, plan.strategy.value, status,
            error_type, http_status, input_tokens, output_tokens, cost, time.perf_counter() - t0, ttft_s,
            streamed))


class _Plan:
    __slots__ = ("request", "info", "provider", "strategy")

    def __init__(self, request: "ChatRequest", info: RequestInfo, provider: str | None,
                 strategy: RoutingStrategy) -> None:
        self.request = request
        self.info = info
        self.provider = provider
        self.strategy = strategy


class AsyncStream:
    """``async for chunk in router.astream(...)``; ``.completion`` once exhausted."""

    def __init__(self, router: ModelClientRouter, plan: _Plan) -> None:
        self._router = router
        self._plan = plan
        self._gen: AsyncIterator[str | Completion] | None = None
        self.completion: Completion | None = None
        self.text = ""

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> str:
        if self._gen is None:
            self._gen = self._router._route(self._plan, stream=True)
        item = await self._gen.__anext__()
        if isinstance(item, Completion):
            self.completion = item
            await self.aclose()
            raise StopAsyncIteration
        self.text += item
        return item

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncStream:
    """``for chunk in router.stream(...)``: each step runs on the router's loop; ``close()`` cancels."""

    def __init__(self, loop_thread, inner: AsyncStream) -> None:
        self._lt = loop_thread
        self._inner = inner

    @property
    def completion(self) -> Completion | None:
        return self._inner.completion

    @property
    def text(self) -> str:
        return self._inner.text

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return self._lt.run(self._inner.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        except KeyboardInterrupt:
            self.close()
            raise

    def close(self) -> None:
        try:
            self._lt.run(self._inner.aclose())
        except RuntimeError:
            pass

    def __enter__(self) -> "SyncStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        gen = self._inner._gen
        if gen is not None and self._inner.completion is None and self._lt.thread.is_alive():
            try:
                self._lt.submit(self._inner.aclose())
            except RuntimeError:
                pass


# Routers not closed yet. At interpreter exit they are closed, so a script that never calls close()
# still writes its last ledger rows and closes its connections (no "Unclosed client session").
_open_routers: "weakref.WeakSet[ModelClientRouter]" = weakref.WeakSet()


async def _wind_down(clients: list) -> None:
    """On the router's own loop, in this order: cancel requests still in flight (each records its
    'cancelled' row), end streams left half read (likewise), then close the pooled clients."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    await asyncio.get_running_loop().shutdown_asyncgens()
    for client in clients:
        await client.aclose()


@atexit.register
def _close_open_routers() -> None:
    for router in list(_open_routers):
        try:
            router.close()
        except BaseException:  # noqa: BLE001 - the interpreter is going away; never print a traceback
            pass


def _check_sendable(text: str, field: str) -> None:
    """Text must encode as UTF-8 to go on the wire. A lone surrogate (from a bad decode or a
    sliced emoji) otherwise fails every attempt deep in the JSON encoder, retried as if the
    provider had misbehaved."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(f"{field}: not valid Unicode text: lone surrogate {text[e.start]!r} at position {e.start} "
                          "(often a badly decoded file or a cut emoji); fix the text, e.g. "
                          "text.encode('utf-8', 'replace').decode()", field=field.split("[")[0].split(".")[0]) from None


def _normalise_messages(prompt: Any) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError("prompt: empty; give the text to send (a string or a list of "
                              "{'role', 'content'} messages)", field="prompt")
        _check_sendable(prompt, "prompt")
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise ConfigError("prompt: empty message list; give at least one {'role': 'user', 'content': ...}",
                              field="prompt")
        out = []
        for i, m in enumerate(prompt):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ConfigError(f"prompt[{i}]: expected a dict with 'role' and 'content', got {m!r:.80}",
                                  field="prompt")
            if m["role"] not in _ROLES:
                raise ConfigError(f"prompt[{i}].role: unknown role {m['role']!r}; allowed: {', '.join(_ROLES)}",
                                  field="prompt")
            if isinstance(m["content"], str):
                _check_sendable(m["content"], f"prompt[{i}].content")
            out.append(dict(m))
        return out
    raise ConfigError(f"prompt: expected a string or a list of messages, got {type(prompt).__name__}",
                      field="prompt")


def _progress_bar(total: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return tqdm(total=total, desc="llm", unit="req", leave=True)


def _closed_with_loop(client: Any) -> Any:
    """Tie ``client`` to the running loop's end: loops close their async generators before they
    close (asyncio.run, pytest-asyncio, the router's own), so a parked generator whose finally
    awaits ``client.aclose()`` closes the client while its loop can still run it. Without this a
    client made for ``asyncio.run(router.acomplete(...))`` outlived its loop with sockets open."""

    async def keeper():
        try:
            yield
        finally:
            await client.aclose()

    gen = keeper()
    step = gen.__anext__()  # registers the generator with the running loop (firstiter hook)
    try:
        step.send(None)  # run to the first yield: no awaits before it
    except StopIteration:
        pass
    return gen  # the router keeps it: the loop only holds it weakly


def _close_client_on(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    """Close a client that belongs to another loop: on it if it still runs, else drop its pool."""
    try:
        running_here = asyncio.get_running_loop() is loop
    except RuntimeError:
        running_here = False
    try:
        if loop.is_running() and not loop.is_closed() and not running_here:
            asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            return
    except RuntimeError:
        pass
    transport = getattr(client, "_transport", None)
    session = getattr(transport, "client", None)
    connector = getattr(session, "_connector", None)
    if connector is not None:
        try:
            connector._close()  # the loop is gone: release sockets without awaiting
        except Exception:
            pass
        session._connector = None
