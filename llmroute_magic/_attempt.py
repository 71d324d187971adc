"""The attempt layer: one attempt at one provider, timed, priced and told to the world.

It looks the provider's price up (warning when it is unknown), takes a provider's concurrency
slot, calls the adapter, and returns a ``Reply`` at the commit point (the whole answer, or a
stream's first text). It emits ``AttemptStarted`` before the request goes out and
``AttemptEnded`` exactly once, with the attempt's final ledger row, when the attempt is over:
answered, failed, or cancelled (a stream closed early, a task cancelled, Ctrl-C). What to do
after a failure is not its business: it raises the ``ProviderError`` and the failover layer
decides.

Latency is the provider's time only (not the wait for a slot, nor a first price look-up). For a
stream that is the time spent waiting on the adapter; time the caller spends between chunks (a
notebook rendering) is not counted, so a slow consumer never makes a fast provider look slow.
The attempt's running state lives in an ``AttemptContext`` this layer keeps for the attempt's
whole life, so a cancelled attempt is billed for what the provider had already reported,
whichever task cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from time import perf_counter
from typing import TYPE_CHECKING

from ._errors import ProviderError
from ._events import AttemptEnded, AttemptStarted, EventBus
from ._limits import ProviderSlots, SharedSlots
from ._providers._base import ProviderResult, StreamItem
from ._providers._failures import AttemptContext
from ._reply import CompletedReply, Reply
from ._types import AttemptRecord, Completion, ProviderSpec, record_from_fields

if TYPE_CHECKING:
    from ._pool import InFlight
    from ._pricing import PriceBook
    from ._providers import ProviderAdapter
    from ._request import Request

log = logging.getLogger("llmroute_magic")

# What ends an attempt without an answer or an error of the provider's: the caller gave up.
_CANCELLED = (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)


class AttemptLayer:
    def __init__(
        self,
        adapters: Callable[[], dict[str, ProviderAdapter]],
        prices: PriceBook,
        events: EventBus,
        slots: ProviderSlots,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._adapters = adapters  # the running event loop's adapters (aiohttp sessions belong to one loop)
        self._prices = prices
        self._events = events
        self._slots = slots
        self._wall_clock = wall_clock

    async def handle(self, request: Request, spec: ProviderSpec, number: int, claim: InFlight | None = None) -> Reply:
        """Attempt ``number`` (1-based) of ``request`` at ``spec``; raises ProviderError before the commit point.

        ``claim`` (the request counted in flight at that provider) is released when the attempt ends."""
        adapter = self._adapters()[spec.name]
        prices = self._prices
        model = request.chat.model  # asked for by this request; None: the spec's
        if not prices.ready(spec, model):
            # The first look-up loads genai-prices' data (~0.2 s): off the event loop, before the
            # attempt's timer and before its slot, so it is nobody's latency and blocks no one.
            await asyncio.to_thread(prices.known, spec, model)
        prices.warn_if_unknown(spec, model)  # now, not in the middle of a streamed answer
        slots = self._slots.get(spec.name)
        if slots is not None:
            await slots.acquire()  # waiting for a slot is not the provider's time
        try:
            attempt = _Attempt(self, request, spec, number, slots, claim)
        except BaseException:
            # No attempt owns the slot yet (its end() frees it): give it back, or the provider's
            # next request waits for ever.
            if slots is not None:
                slots.release()
            raise
        if request.streamed and "streaming" in spec.effective_capabilities:
            return await attempt.open_stream(adapter)
        return await attempt.complete(adapter)  # a provider that cannot stream answers in one chunk


class _Attempt:
    """The life of one attempt, from AttemptStarted to its one AttemptEnded."""

    def __init__(
        self,
        layer: AttemptLayer,
        request: Request,
        spec: ProviderSpec,
        number: int,
        slots: SharedSlots | None,
        claim: InFlight | None,
    ) -> None:
        self.layer = layer
        self.request = request
        self.spec = spec
        self.number = number
        self.slots = slots
        self.claim = claim
        self.model = request.chat.model_for(spec)
        self.ctx = AttemptContext(spec.name, self.model)
        self.started_wall = layer._wall_clock()
        self.t0 = perf_counter()
        self.provider_s = 0.0  # time spent waiting on the provider
        self.ttft_s: float | None = None  # provider time to the first text
        self.committed_at: float | None = None  # perf_counter() when the first text reached the caller's side
        self.ended = False
        if layer._events.wants(AttemptStarted):
            layer._events.emit(AttemptStarted(request.request_id, number, spec.name, self.model, request.streamed))

    # -- plain ------------------------------------------------------------------------------------
    async def complete(self, adapter: ProviderAdapter) -> Reply:
        try:
            result = await adapter.complete(self.request.chat, self.ctx)
        except ProviderError as e:
            self.provider_s = perf_counter() - self.t0
            self.failed(e)
            raise
        except _CANCELLED:
            self.provider_s = perf_counter() - self.t0
            self.cancelled()
            raise
        except Exception as e:  # an adapter bug must still leave a ledger row and a clear error
            self.provider_s = perf_counter() - self.t0
            raise self.failed(self.unexpected(e)) from e
        self.provider_s = perf_counter() - self.t0
        try:
            return CompletedReply(self.succeeded(result))
        except ProviderError:
            raise  # an answer that missed its schema: recorded as such
        except Exception as e:
            if self.ended:  # raised after the row was written (a warning turned into an error)
                raise
            raise self.failed(self.unexpected(e)) from e

    # -- streamed ---------------------------------------------------------------------------------
    async def step(self, items: AsyncIterator[StreamItem]) -> StreamItem | None:
        """The adapter's next item (None at its end), timed as provider time."""
        t = perf_counter()
        try:
            return await anext(items, None)
        finally:
            self.provider_s += perf_counter() - t

    async def open_stream(self, adapter: ProviderAdapter) -> Reply:
        """Read ahead to the first text: until then a failure may still move to another provider.
        An answer that must meet a schema is read whole first: only then can it be checked, and
        prose instead of JSON must move on to the next provider, not surface half shown."""
        items = adapter.stream(self.request.chat, self.ctx)
        whole = self.request.chat.response_format is not None
        held: list[str] = []
        try:
            while True:
                item = await self.step(items)
                if isinstance(item, str):
                    if item and self.ttft_s is None:
                        self.ttft_s = self.provider_s
                    if item and whole:
                        held.append(item)
                    elif item:
                        self.committed_at = perf_counter()
                        return StreamedReply(self, items, item)
                    continue
                await items.aclose()  # type: ignore[attr-defined]
                if item is None:
                    raise self.ended_without_result()
                return CompletedReply(self.succeeded(item), chunks=held)
        except ProviderError as e:
            await _close(items)
            self.failed(e)
            raise
        except _CANCELLED:
            await _close(items)
            self.cancelled()
            raise
        except Exception as e:
            await _close(items)
            if self.ended:  # raised after the row was written (a warning turned into an error)
                raise
            raise self.failed(self.unexpected(e)) from e

    def ended_without_result(self) -> ProviderError:
        return self.ctx.error("malformed_response", "the stream ended without a final result")

    def unexpected(self, e: Exception) -> ProviderError:
        log.exception("llmroute_magic: unexpected error from %s", self.spec.name)
        return self.ctx.error("malformed_response", f"unexpected {type(e).__name__}: {e}")

    # -- outcomes: each emits the attempt's one AttemptEnded -----------------------------------------
    def succeeded(self, result: ProviderResult) -> Completion:
        now = perf_counter()
        if self.committed_at is None:  # a plain answer, or a stream without text
            latency, ttft = now - self.request.started, None
        else:  # up to the first text, then only the provider's time
            before = self.committed_at - self.request.started
            latency, ttft = before + (self.provider_s - (self.ttft_s or 0.0)), before
        model = result.model or self.model
        cost = self.price(
            result.input_tokens, result.output_tokens, result.cache_read_tokens, result.cache_write_tokens, model
        )
        parsed = self.parse(result, model, cost)
        self.end(self.answered("ok", None, result, model, cost))
        if cost != cost and result.input_tokens is not None and result.output_tokens is not None:
            # After end(): a warning raised as an error must not leave the attempt open. The
            # stream, if any, is over.
            self.layer._prices.warn_if_unpriced_answer(self.spec, model)
        return Completion(
            text=result.text,
            provider=self.spec.name,
            model=model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost=cost,
            latency_s=latency,
            ttft_s=ttft,
            request_id=self.request.request_id,
            finish_reason=result.finish_reason,
            attempts=self.number,
            tool_calls=tuple(result.tool_calls),
            parsed=parsed,
        )

    def parse(self, result: ProviderResult, model: str, cost: float) -> object:
        """The answer as the schema's object; an answer that does not meet it is a retryable failure,
        recorded as the answer it is: the provider's usage (unknown stays unknown), cache tokens,
        model and price, exactly as an ok row would be."""
        fmt = self.request.chat.response_format
        if fmt is None or result.tool_calls:
            return None
        try:
            return fmt.parse(result.text)
        except ValueError as e:
            err = self.ctx.error("malformed_response", str(e), status_code=result.http_status)
            err.model = model
            # ProviderError's tokens are ints (0 when unreported); the ledger row keeps None.
            err.input_tokens, err.output_tokens = result.input_tokens or 0, result.output_tokens or 0
            self.end(self.answered("error", err.error_type, result, model, cost), err, self.committed_at is not None)
            raise err from None

    def answered(
        self, status: str, error_type: str | None, result: ProviderResult, model: str, cost: float
    ) -> AttemptRecord:
        """The row of an attempt the provider answered, from what the answer reported."""
        return self.record(
            status,
            error_type,
            result.http_status,
            result.input_tokens,
            result.output_tokens,
            cost,
            model,
            result.cache_read_tokens,
            result.cache_write_tokens,
        )

    def failed(self, err: ProviderError, *, after_text: bool = False) -> ProviderError:
        # What a failed attempt reported before failing (usually nothing: 0 tokens, $0).
        tokens = (err.input_tokens or 0, err.output_tokens or 0)
        model = err.model or self.model
        cost = self.price(*tokens, 0, 0, model)
        self.end(self.record("error", err.error_type, err.status_code, *tokens, cost, model), err, after_text)
        return err

    def cancelled(self) -> None:
        # Billed for what the provider had reported when the caller gave up (Anthropic's message_start).
        ctx = self.ctx
        tokens = (ctx.input_tokens or 0, ctx.output_tokens or 0)
        cache = (ctx.cache_read_tokens, ctx.cache_write_tokens)
        cost = self.price(*tokens, *cache, self.model)
        self.end(self.record("cancelled", "cancelled", None, *tokens, cost, self.model, *cache))

    def price(
        self, input_tokens: int | None, output_tokens: int | None, cache_read: int, cache_write: int, model: str | None
    ) -> float:
        """USD; NaN when the price or the usage (None tokens) is unknown. ``model``: the answer's;
        the model this attempt asked for when genai-prices does not know it."""
        return self.layer._prices.cost(
            self.spec, input_tokens, output_tokens, cache_read, cache_write, model=model, requested=self.model
        )

    def record(
        self,
        status: str,
        error_type: str | None,
        http_status: int | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: float,
        model: str,
        cache_read: int = 0,
        cache_write: int = 0,
    ) -> AttemptRecord:
        r = self.request
        return record_from_fields(
            (
                r.request_id,
                self.number,
                self.started_wall,
                self.spec.name,
                model,
                r.settings.strategy.value,
                status,
                error_type,
                http_status,
                input_tokens,
                output_tokens,
                cost,
                self.provider_s,
                self.ttft_s,
                r.streamed,
                cache_read,
                cache_write,
                r.conversation,
            )
        )

    def end(self, record: AttemptRecord, error: ProviderError | None = None, after_text: bool = False) -> None:
        if self.ended:
            return
        self.ended = True
        if self.slots is not None:
            self.slots.release()
        if self.claim is not None:
            self.claim.release()
        self.layer._events.emit(AttemptEnded(record, error, after_text))


class StreamedReply(Reply):
    """The rest of a stream after its first text. Errors now surface with the partial text."""

    def __init__(self, attempt: _Attempt, items: AsyncIterator[StreamItem], first: str) -> None:
        super().__init__()
        self._attempt = attempt
        self._items = items
        self._first = first

    async def _chunks(self) -> AsyncIterator[str]:
        att = self._attempt
        try:
            yield self._first
            while True:
                item = await att.step(self._items)
                if isinstance(item, str):
                    if item:
                        yield item
                    continue
                if item is None:
                    raise att.failed(att.ended_without_result(), after_text=True)
                self.completion = att.succeeded(item)
                return
        except ProviderError as e:
            att.failed(e, after_text=True)  # a no-op when already recorded
            raise
        except _CANCELLED:
            att.cancelled()
            raise
        except Exception as e:
            if att.ended:  # raised after the row was written (a warning turned into an error)
                raise
            raise att.failed(att.unexpected(e), after_text=True) from e
        finally:
            await _close(self._items)

    async def aclose(self) -> None:
        if self._gen is None:  # never read: end the attempt here, the generator would not run
            await _close(self._items)
            self._attempt.cancelled()
            self._end(None)
            return
        await super().aclose()


async def _close(items: AsyncIterator[StreamItem]) -> None:
    """End an adapter stream now (its connection goes back to the pool or is dropped)."""
    try:
        await items.aclose()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - closing after a failure must not hide the failure
        pass
