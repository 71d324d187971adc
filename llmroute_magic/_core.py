"""``RouterCore``: the request path and what it runs on, without any of the edges.

It builds the layers once, outermost first (today: failover, then the attempt layer; cache,
budget and hedge will slot in ahead of failover), and serves the four request methods and the
batch method through them on any event loop — the sync forms on the router's own loop thread.
Everything else learns what happened from its events. It imports no ledger, pandas,
matplotlib, IPython or ipywidgets: ``ModelClientRouter`` composes those on top.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from ._attempt import AttemptLayer
from ._clients import ClientsPerLoop
from ._config import ProviderRoutingConfig
from ._errors import ConfigError, LLMRouteError
from ._events import AttemptEnded, EventBus, RequestEnded
from ._failover import FailoverLayer, FailoverPolicy
from ._limits import ProviderSlots
from ._pool import ProviderPool
from ._pricing import PriceBook
from ._providers import check_supported
from ._request import Prompt, Request, RequestIds, RequestOptions, RoutingSettings, build_request
from ._retry import Backoff
from ._streams import AsyncStream, SyncStream
from ._types import AttemptRecord, Completion, ProviderSpec, RoutingStrategy

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._health import ProviderHealth
    from ._http import ClientSet
    from ._loop import LoopThread
    from ._reply import Reply


class Layer(Protocol):
    async def handle(self, request: Request) -> Reply: ...


class RouterCore:
    """Routes prompts across the providers of a ``ProviderRoutingConfig``. Thread-safe.

    ``clock``, ``rng``, ``backoff`` and ``sleep`` are injected for tests: with a fake clock and a
    sleep that only records, nothing in the routing logic waits on real time.
    """

    def __init__(
        self,
        config: ProviderRoutingConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        if not isinstance(config, ProviderRoutingConfig):
            raise ConfigError(f"config: expected a ProviderRoutingConfig, got {type(config).__name__}", field="config")
        for spec in config.providers:
            check_supported(spec.api or "openai")
        self._config = config
        self._settings = _settings_of(config)
        self._lock = threading.RLock()  # guards config changes and the loop thread's creation
        rng = rng or random.Random()
        self.events = EventBus()
        self._prices = PriceBook()
        self._pool = ProviderPool(
            config.providers,
            clock=clock,
            rng=rng,
            prices=self._prices.rates,
            cooldown_s=lambda: self._config.cooldown_s,
        )
        self._pool.listen(self.events)
        self._clients = ClientsPerLoop(config.providers, config.timeout)
        attempts = AttemptLayer(self._clients.adapters, self._prices, self.events, ProviderSlots(config.providers))
        self._chain: Layer = FailoverLayer(
            attempts, self._pool, FailoverPolicy(backoff or Backoff(), rng), sleep or asyncio.sleep
        )
        self._ids = RequestIds()
        self._loop_thread: LoopThread | None = None
        self._closed = False
        self._on_close: list[Callable[[], Any]] = []  # run last by close(), e.g. stopping a bound simulator
        if any(p.input_price is None for p in config.providers):
            # genai-prices takes ~0.4 s to import: do it now, off the request path
            threading.Thread(
                target=self._prices.warm, args=(config.providers,), daemon=True, name="llmroute-prices"
            ).start()
        _open_routers.add(self)

    # -- configuration ----------------------------------------------------------------------------
    @property
    def config(self) -> ProviderRoutingConfig:
        """The current config (strategy, fallback and retries follow the live changes).

        Examples:
            >>> router.config.names
            ['sim-openai', 'sim-anthropic', 'sim-local', 'sim-gemini', 'sim-azure', 'sim-ollama', 'sim-responses']
        """
        return self._config

    @property
    def providers(self) -> list[ProviderSpec]:
        """The provider specs, in config order.

        Examples:
            >>> [p.name for p in router.providers]
            ['sim-openai', 'sim-anthropic', 'sim-local', 'sim-gemini', 'sim-azure', 'sim-ollama', 'sim-responses']
        """
        return list(self._config.providers)

    @property
    def strategy(self) -> RoutingStrategy:
        """The routing strategy in force; ``set_strategy`` changes it.

        Examples:
            >>> router.strategy
            <RoutingStrategy.PRIORITY: 'priority'>
        """
        return self._config.strategy

    def set_strategy(self, strategy: RoutingStrategy | str) -> None:
        """Route the next requests with this strategy (a member, its value or the seed's spelling).

        Examples:
            >>> router.set_strategy("round_robin")
            >>> router.strategy.value
            'round_robin'
            >>> router.set_strategy(RoutingStrategy.PRIORITY)
        """
        kind = RoutingStrategy.parse(strategy)
        with self._lock:
            self._set_config(self._config.with_strategy(kind))

    @property
    def fallback_enabled(self) -> bool:
        """Whether a failed attempt moves to the next candidate (settable).

        Examples:
            >>> router.fallback_enabled
            True
        """
        return self._config.fallback_enabled

    @fallback_enabled.setter
    def fallback_enabled(self, value: bool) -> None:
        with self._lock:
            self._set_config(self._config.with_fallback(value))

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt, at most (settable).

        Examples:
            >>> router.max_retries
            2
        """
        return self._config.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        with self._lock:
            self._set_config(self._config.with_max_retries(value))

    def _set_config(self, config: ProviderRoutingConfig) -> None:
        self._config = config
        self._settings = _settings_of(config)

    @property
    def enabled(self) -> list[str]:
        """The names of the enabled providers, in config order.

        Examples:
            >>> router.enabled
            ['sim-openai', 'sim-anthropic', 'sim-local', 'sim-gemini', 'sim-azure', 'sim-ollama', 'sim-responses']
        """
        return self._pool.enabled

    def enable(self, name: str) -> None:
        """Put a provider back into rotation.

        Examples:
            >>> router.disable("sim-local"); router.enable("sim-local")
            >>> "sim-local" in router.enabled
            True
        """
        self._pool.set_enabled(name, True)

    def disable(self, name: str) -> None:
        """Take a provider out of rotation (a pinned request to it still goes).

        Examples:
            >>> router.disable("sim-local")
            >>> router.enabled
            ['sim-openai', 'sim-anthropic', 'sim-gemini', 'sim-azure', 'sim-ollama', 'sim-responses']
            >>> router.enable("sim-local")
        """
        self._pool.set_enabled(name, False)

    def cooling_down(self) -> list[str]:
        """The names of the providers cooling down after failures in a row.

        Examples:
            >>> router.cooling_down()
            []
        """
        return self._pool.cooling_down()

    def health(self, name: str) -> ProviderHealth:
        """What the router knows of one provider: latency estimate, requests in flight, failures, cooldown.

        Examples:
            >>> router.health("sim-openai").name
            'sim-openai'
        """
        return self._pool.get(name)

    def subscribe(self, callback: Callable[[AttemptRecord], None]) -> Callable[[], None]:
        """Call ``callback(record)`` after every attempt (on the thread that ran it); returns unsubscribe.

        Examples:
            >>> seen = []
            >>> unsubscribe = router.subscribe(lambda record: seen.append(record.status))
            >>> _ = router.complete("hello")
            >>> seen
            ['ok']
            >>> unsubscribe()
        """
        return self.events.subscribe(AttemptEnded, lambda event: callback(event.record))

    # -- requests ---------------------------------------------------------------------------------
    def complete(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> Completion:
        """The whole answer. ``prompt`` is a string or a list of ``{"role", "content"}`` messages.

        Options: ``system``, ``provider`` (pin one: no routing, still retried), ``strategy`` (this
        request only), ``max_tokens``, ``temperature``, ``model`` (instead of the provider's, priced as
        such), ``tools``, ``tool_choice``, ``response_format``, ``conversation`` (a ledger label); any
        other keyword goes into the provider's request body as given. Raises ``AllProvidersFailed``
        when every attempt failed, ``ProviderError`` when one failed fast.

        Examples:
            >>> c = router.complete("Explain CAP in one line", max_tokens=32)
            >>> c.provider
            'sim-openai'
            >>> router.complete([{"role": "user", "content": "hi"}], provider="sim-anthropic").provider
            'sim-anthropic'
        """
        request = self._request(prompt, options, streamed=False)
        return self._loop().run(self._complete(request))

    async def acomplete(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> Completion:
        """``complete`` for any running event loop (a notebook's, ``asyncio.run``'s).

        Examples:
            >>> import asyncio
            >>> asyncio.run(router.acomplete("hello")).provider
            'sim-openai'
        """
        # _complete's two lines, not a call to it: one coroutine fewer on every request.
        reply = await self._serve(self._request(prompt, options, streamed=False))
        return reply.finished() or await reply.result()

    def stream(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> SyncStream:
        """Text chunks as they arrive; ``.completion`` once exhausted; ``close()`` cancels.

        Examples:
            >>> s = router.stream("Tell me a story", max_tokens=20)
            >>> text = "".join(s)
            >>> s.completion.text == text
            True
        """
        request = self._request(prompt, options, streamed=True)
        return SyncStream(self._loop(), AsyncStream(lambda: self._serve(request)))

    def astream(self, prompt: Prompt, **options: Unpack[RequestOptions]) -> AsyncStream:
        """``stream`` for any running event loop: ``async for chunk in router.astream(...)``.

        Examples:
            >>> import asyncio
            >>> async def story():
            ...     s = router.astream("Tell me a story", max_tokens=20)
            ...     return "".join([chunk async for chunk in s]), s.completion
            >>> text, completion = asyncio.run(story())
            >>> completion.text == text
            True
        """
        request = self._request(prompt, options, streamed=True)
        return AsyncStream(lambda: self._serve(request))

    def map(
        self, prompts: Iterable[Prompt], concurrency: int = 8, progress: bool = True, **options: Unpack[RequestOptions]
    ) -> list[Completion | LLMRouteError]:
        """Every prompt, ``concurrency`` at a time, load balanced by the strategy; errors in place.

        Examples:
            >>> results = router.map(["What is a mutex?", "What is a semaphore?"], concurrency=2, progress=False)
            >>> [type(r).__name__ for r in results]
            ['Completion', 'Completion']
        """
        return self._loop().run(self.amap(prompts, concurrency, progress, **options))

    async def amap(
        self, prompts: Iterable[Prompt], concurrency: int = 8, progress: bool = True, **options: Unpack[RequestOptions]
    ) -> list[Completion | LLMRouteError]:
        """``map`` for any running event loop.

        Examples:
            >>> import asyncio
            >>> len(asyncio.run(router.amap(["one", "two", "three"], progress=False)))
            3
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency: expected a whole number >= 1, got {concurrency!r}", field="concurrency")
        items = list(prompts)
        results: list[Completion | LLMRouteError | None] = [None] * len(items)
        bar = _progress_bar(len(items)) if progress else None
        queue = iter(enumerate(items))

        async def worker() -> None:
            for i, prompt in queue:
                try:
                    results[i] = await self.acomplete(prompt, **options)
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

    def _request(self, prompt: Prompt, options: RequestOptions | dict[str, Any], *, streamed: bool) -> Request:
        if self._closed:
            raise LLMRouteError("this router is closed; create a new ModelClientRouter")
        return build_request(
            prompt,
            options,
            config=self._config,
            request_id=self._ids.next(),
            streamed=streamed,
            settings=self._settings,
        )

    async def _serve(self, request: Request) -> Reply:
        """Run ``request`` down the layers; ``RequestEnded`` when its reply ends (or it fails)."""
        self._clients.adapters()  # a loop's first request builds its client: not the request's time
        request.started = perf_counter()  # a stream's clock starts when the caller starts reading it
        try:
            reply = await self._chain.handle(request)
        except BaseException as e:
            if self.events.wants(RequestEnded):
                self.events.emit(RequestEnded(request.request_id, None, e))
            raise
        if self.events.wants(RequestEnded):
            reply.add_done_callback(
                lambda completion, error: self.events.emit(RequestEnded(request.request_id, completion, error))
            )
        return reply

    async def _complete(self, request: Request) -> Completion:
        reply = await self._serve(request)
        return reply.finished() or await reply.result()

    # -- lifecycle --------------------------------------------------------------------------------
    def _loop(self) -> LoopThread:
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

    def close(self) -> None:
        """Cancel requests still in flight (each is recorded), close connections, stop the loop thread.

        Examples:
            >>> with simulated_router() as r:   # closed on leaving the block
            ...     _ = r.complete("hello")
            >>> r.complete("again")
            Traceback (most recent call last):
            ...
            llmroute_magic._errors.LLMRouteError: this router is closed; create a new ModelClientRouter
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_routers.discard(self)
        lt = self._loop_thread
        if lt is not None:
            own = self._clients.clients_of(lt.loop)
            try:
                lt.run(_wind_down(own))
            except BaseException:  # noqa: BLE001 - closing must not raise on a dying interpreter
                pass
            lt.stop()
        self._clients.close_all()
        for fn in self._on_close:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one failing clean-up must not stop the others
                pass

    def __enter__(self) -> RouterCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RouterCore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._clients.close_on_running_loop()
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __repr__(self) -> str:
        names = ", ".join(f"{h.name}{'' if h.enabled else ' (disabled)'}" for h in self._pool)
        return (
            f"{type(self).__name__}(strategy={self.strategy.value}, providers=[{names}], "
            f"fallback={self.fallback_enabled}, max_retries={self.max_retries})"
        )


def _settings_of(config: ProviderRoutingConfig) -> RoutingSettings:
    return RoutingSettings(config.strategy, config.fallback_enabled, config.max_retries)


# Routers not closed yet. At interpreter exit they are closed, so a script that never calls close()
# still writes its last ledger rows and closes its connections (no "Unclosed client session").
_open_routers: weakref.WeakSet[RouterCore] = weakref.WeakSet()


async def _wind_down(clients: ClientSet | None) -> None:
    """On the router's own loop, in this order: cancel requests still in flight (each records its
    'cancelled' row), end streams left half read (likewise), then close the pooled clients."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    await asyncio.get_running_loop().shutdown_asyncgens()
    if clients is not None:
        await clients.aclose()


@atexit.register
def _close_open_routers() -> None:
    for router in list(_open_routers):
        try:
            router.close()
        except BaseException:  # noqa: BLE001 - the interpreter is going away; never print a traceback
            pass


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return tqdm(total=total, desc="llm", unit="req", leave=True)
