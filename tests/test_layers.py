"""Each layer of the request path alone, without a server.

The failover policy is a pure function of a hand-built state (tenacity-style); the attempt layer
runs against a scripted adapter whose replies the test releases (tower-test's mock pair); the
event bus and the cross-loop slots are tested as the small objects they are. End-to-end
behaviour over the simulator is in test_router, test_fault_matrix and test_request_path.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmroute_magic import AllProvidersFailed, ProviderError, ProviderRoutingConfig, ProviderSpec
from llmroute_magic._attempt import AttemptLayer
from llmroute_magic._events import AttemptEnded, AttemptStarted, EventBus
from llmroute_magic._failover import FailoverLayer, FailoverPolicy, FailoverState, Stop, Try
from llmroute_magic._health import ProviderHealth
from llmroute_magic._limits import ProviderSlots, SharedSlots
from llmroute_magic._pricing import PriceBook
from llmroute_magic._providers._base import ProviderAdapter, ProviderResult
from llmroute_magic._request import build_request
from llmroute_magic._retry import Backoff


def spec(name: str, **kw: Any) -> ProviderSpec:
    return ProviderSpec(name, f"{name}-model", base_url=f"http://127.0.0.1:9/{name}/v1", **kw).with_prices(
        input=1, output=2
    )


def health(*names: str, **kw: Any) -> list[ProviderHealth]:
    return [ProviderHealth(spec(n, **kw), clock=lambda: 0.0) for n in names]


def error(provider: str, error_type: str, retry_after: float | None = None) -> ProviderError:
    return ProviderError("boom", provider=provider, error_type=error_type, retry_after=retry_after)


def state(hs: list[ProviderHealth], *, max_attempts: int = 3, fallback: bool = True, pinned=None) -> FailoverState:
    def candidates(excluded: set[str], min_context: int | None) -> list[ProviderHealth]:
        return [
            h
            for h in hs
            if h.name not in excluded and (min_context is None or (h.spec.context_window or 0) > min_context)
        ]

    return FailoverState(candidates, max_attempts, fallback, pinned=pinned, named=pinned is not None)


POLICY = FailoverPolicy(Backoff(jitter=0.0), random.Random(0))


def names(step: Try | Stop) -> str:
    return step.provider.name if isinstance(step, Try) else type(step.error).__name__


# -- the failover policy, from hand-built states ------------------------------------------------------


def test_moving_on_is_immediate_and_restarting_the_list_waits():
    a, b = health("a", "b")
    st = state([a, b])
    first = POLICY.next_step(st)
    assert (names(first), first.wait_s) == ("a", 0.0)
    st.attempts += 1
    assert POLICY.after_failure(st, error("a", "server_error")) is None
    second = POLICY.next_step(st)
    assert (names(second), second.wait_s) == ("b", 0.0)  # a fallback never waits
    st.attempts += 1
    POLICY.after_failure(st, error("b", "server_error"))
    third = POLICY.next_step(st)
    assert (names(third), third.wait_s) == ("a", 0.25)  # the list starts again after a backoff
    st.attempts += 1
    POLICY.after_failure(st, error("a", "server_error"))
    last = POLICY.next_step(st)
    assert isinstance(last, Stop) and isinstance(last.error, AllProvidersFailed)
    assert [e.provider for e in last.error.attempts] == ["a", "b", "a"]


def test_fallback_off_retries_the_same_provider_with_growing_backoff():
    a, b = health("a", "b")
    st = state([a, b], fallback=False)
    steps = []
    for _ in range(3):
        step = POLICY.next_step(st)
        steps.append((names(step), step.wait_s))
        st.attempts += 1
        POLICY.after_failure(st, error("a", "rate_limit"))
    assert steps == [("a", 0.0), ("a", 0.25), ("a", 0.5)]


def test_retry_after_is_the_wait_and_beyond_the_cap_the_provider_is_skipped():
    a, b = health("a", "b")
    st = state([a, b], fallback=False)
    POLICY.next_step(st)
    st.attempts += 1
    POLICY.after_failure(st, error("a", "rate_limit", retry_after=1.5))
    assert POLICY.next_step(st).wait_s == 1.5
    st2 = state([a, b])
    for name in ("a", "b"):
        POLICY.next_step(st2)
        st2.attempts += 1
        POLICY.after_failure(st2, error(name, "rate_limit", retry_after=3600 if name == "a" else None))
    step = POLICY.next_step(st2)  # restarting: a asked for an hour, so b is retried instead
    assert names(step) == "b" and "a" in st2.excluded


@pytest.mark.parametrize("error_type", ["authentication", "insufficient_quota", "missing_api_key", "not_found"])
def test_a_provider_that_cannot_serve_is_dropped_for_the_request(error_type):
    a, b = health("a", "b")
    st = state([a, b], max_attempts=5)
    POLICY.next_step(st)
    st.attempts += 1
    POLICY.after_failure(st, error("a", error_type))
    assert names(POLICY.next_step(st)) == "b"
    st.attempts += 1
    POLICY.after_failure(st, error("b", "server_error"))
    assert names(POLICY.next_step(st)) == "b"  # a never comes back within this request


def test_invalid_request_stops_at_once_with_the_provider_error():
    (a,) = health("a")
    st = state([a])
    POLICY.next_step(st)
    st.attempts += 1
    stop = POLICY.after_failure(st, error("a", "invalid_request"))
    assert isinstance(stop, Stop) and isinstance(stop.error, ProviderError)


@pytest.mark.parametrize("fallback", [True, False], ids=["fallback", "no-fallback"])
def test_a_refused_field_of_the_routers_own_resends_to_the_same_provider_without_spending_a_retry(fallback):
    a, b = health("a", "b")
    st = state([a, b], max_attempts=1, fallback=fallback)  # max_retries=0
    POLICY.next_step(st)
    st.attempts += 1
    assert POLICY.after_failure(st, error("a", "unsupported_parameter")) is None
    again = POLICY.next_step(st)
    assert (names(again), again.wait_s) == ("a", 0.0)  # the same provider, at once, though no retry is left
    st.attempts += 1
    POLICY.after_failure(st, error("a", "server_error"))
    assert isinstance(POLICY.next_step(st), Stop)  # the caller's retries: none
    pinned = state([a, b], pinned=b)
    POLICY.next_step(pinned)
    pinned.attempts += 1
    POLICY.after_failure(pinned, error("b", "unsupported_parameter"))
    assert names(POLICY.next_step(pinned)) == "b"


def test_context_length_moves_only_to_a_larger_window():
    small, mid, big = (
        ProviderHealth(spec(n, context_window=w), clock=lambda: 0.0)
        for n, w in (("small", 8_000), ("mid", 8_000), ("big", 128_000))
    )
    st = state([small, mid, big])
    POLICY.next_step(st)
    st.attempts += 1
    assert POLICY.after_failure(st, error("small", "context_length")) is None
    assert names(POLICY.next_step(st)) == "big"  # mid's window is no larger


def test_context_length_with_nothing_larger_or_a_pinned_provider_stops():
    (only,) = (ProviderHealth(spec("only", context_window=8_000), clock=lambda: 0.0),)
    st = state([only])
    POLICY.next_step(st)
    st.attempts += 1
    assert isinstance(POLICY.after_failure(st, error("only", "context_length")), Stop)
    a, b = health("a", "b", context_window=1000)
    pinned = state([a, b], pinned=a)
    POLICY.next_step(pinned)
    pinned.attempts += 1
    assert isinstance(POLICY.after_failure(pinned, error("a", "context_length")), Stop)


def test_no_provider_at_all_says_so():
    step = POLICY.next_step(state([]))
    assert isinstance(step, Stop) and "every one is disabled" in str(step.error)


# -- the attempt layer against a scripted adapter -------------------------------------------------------


class ScriptedAdapter(ProviderAdapter):
    """Replies when the test says so: ``release`` hands the next item (text, result or error)."""

    api = "openai"

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec, client=None)  # type: ignore[arg-type]
        self.items: asyncio.Queue = asyncio.Queue()

    def release(self, *items: Any) -> None:
        for item in items:
            self.items.put_nowait(item)

    async def _next(self, ctx) -> Any:
        item = await self.items.get()
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, dict):  # usage reported mid-stream
            ctx.input_tokens, ctx.output_tokens = item["input"], item["output"]
            return await self._next(ctx)
        return item

    async def complete(self, request, ctx=None) -> ProviderResult:
        return await self._next(ctx)

    async def stream(self, request, ctx=None) -> AsyncIterator[Any]:
        while True:
            item = await self._next(ctx)
            yield item
            if isinstance(item, ProviderResult):
                return


def result(text: str = "hello", tokens: tuple[int | None, int | None] = (10, 5)) -> ProviderResult:
    return ProviderResult(text=text, model="m", input_tokens=tokens[0], output_tokens=tokens[1])


class Rig:
    def __init__(
        self, *, streamed: bool, max_concurrency: int | None = None, at: ProviderSpec | None = None, **options: Any
    ) -> None:
        self.spec = at or spec("p", max_concurrency=max_concurrency)
        self.adapter = ScriptedAdapter(self.spec)
        self.events = EventBus()
        self.seen: list[Any] = []
        self.events.subscribe(AttemptStarted, self.seen.append)
        self.events.subscribe(AttemptEnded, self.seen.append)
        prices = PriceBook()
        prices.warm([self.spec])  # as the router does when it is built: an attempt starts at once
        self.layer = AttemptLayer(
            lambda: {self.spec.name: self.adapter}, prices, self.events, ProviderSlots([self.spec])
        )
        self.request = build_request(
            "hi", options, config=ProviderRoutingConfig([self.spec]), request_id="r-1", streamed=streamed
        )

    def ended(self) -> list[AttemptEnded]:
        return [e for e in self.seen if isinstance(e, AttemptEnded)]


async def test_a_plain_attempt_emits_started_then_one_ended_with_its_priced_row():
    rig = Rig(streamed=False)
    rig.adapter.release(result(tokens=(1_000_000, 1_000_000)))
    reply = await rig.layer.handle(rig.request, rig.spec, 1)
    c = await reply.result()
    assert [type(e).__name__ for e in rig.seen] == ["AttemptStarted", "AttemptEnded"]
    row = rig.ended()[0].record
    assert (row.status, row.input_tokens, row.cost) == ("ok", 1_000_000, 3.0)  # $1 + $2 per 1M
    assert c.cost == 3.0 and c.attempts == 1 and c.text == "hello"


async def test_a_stream_commits_at_its_first_text_and_ends_when_read():
    rig = Rig(streamed=True)
    rig.adapter.release("", "Hel")
    reply = await rig.layer.handle(rig.request, rig.spec, 1)  # returned at the first non-empty text
    assert rig.ended() == []  # still running
    rig.adapter.release("lo", result("Hello"))
    assert [c async for c in reply] == ["Hel", "lo"]
    assert reply.completion.text == "Hello" and rig.ended()[0].record.status == "ok"


async def test_usage_that_is_not_reported_costs_nan_not_zero():
    rig = Rig(streamed=False)
    rig.adapter.release(result(tokens=(None, None)))
    c = await (await rig.layer.handle(rig.request, rig.spec, 1)).result()
    row = rig.ended()[0].record
    assert row.input_tokens is None and math.isnan(row.cost) and math.isnan(c.cost)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
async def test_an_answer_that_fails_its_schema_is_recorded_like_an_ok_answer(streamed):
    """Prose for a schema: the failed row carries what the answer reported, as an ok row would:
    the model that answered (a dated gpt-4o-mini for a gpt-4o spec), its cache tokens, and the
    price of both (genai-prices: cache reads are cheaper)."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    at = ProviderSpec("openai", "gpt-4o", base_url="http://127.0.0.1:9/openai/v1")
    answered = "gpt-4o-mini-2024-07-18"
    billed = ProviderResult(
        text="no JSON here", model=answered, input_tokens=1000, output_tokens=10, cache_read_tokens=400
    )
    rigs = []
    for fmt in (schema, None):
        rig = Rig(streamed=streamed, at=at, **({"response_format": fmt} if fmt else {}))
        rig.adapter.release(billed)
        rigs.append(rig)
    with pytest.raises(ProviderError, match="not JSON"):
        await rigs[0].layer.handle(rigs[0].request, rigs[0].spec, 1)
    await (await rigs[1].layer.handle(rigs[1].request, rigs[1].spec, 1)).result()
    failed, ok = (r.ended()[0].record for r in rigs)
    assert (failed.status, failed.error_type, ok.status) == ("error", "malformed_response", "ok")
    fields = ("model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost")
    assert [getattr(failed, f) for f in fields] == [getattr(ok, f) for f in fields]
    mini = (600 * 0.15 + 400 * 0.075 + 10 * 0.60) / 1e6  # gpt-4o-mini, USD per 1M: input, cache read, output
    assert (failed.model, failed.cache_read_tokens, failed.cost) == (answered, 400, pytest.approx(mini, rel=1e-9))


async def test_an_error_before_the_first_text_is_raised_for_failover():
    rig = Rig(streamed=True)
    rig.adapter.release(ProviderError("busy", provider="p", error_type="rate_limit", status_code=429))
    with pytest.raises(ProviderError):
        await rig.layer.handle(rig.request, rig.spec, 1)
    (ended,) = rig.ended()
    assert (ended.record.status, ended.record.http_status, ended.after_text) == ("error", 429, False)


async def test_an_error_after_text_surfaces_from_the_reply_marked_after_text():
    rig = Rig(streamed=True)
    rig.adapter.release("partial")
    reply = await rig.layer.handle(rig.request, rig.spec, 1)
    rig.adapter.release(ProviderError("cut", provider="p", error_type="stream_error"))
    with pytest.raises(ProviderError):
        async for _ in reply:
            pass
    (ended,) = rig.ended()
    assert ended.after_text and ended.record.status == "error"


async def test_closing_a_reply_early_records_cancelled_with_the_reported_usage():
    rig = Rig(streamed=True)
    rig.adapter.release({"input": 42, "output": 0}, "first")
    reply = await rig.layer.handle(rig.request, rig.spec, 1)
    await reply.aclose()
    (ended,) = rig.ended()
    assert (ended.record.status, ended.record.input_tokens) == ("cancelled", 42)
    assert ended.record.cost == pytest.approx(42 / 1e6)


async def test_time_spent_by_the_consumer_is_not_the_providers():
    rig = Rig(streamed=True)
    rig.adapter.release("a")
    reply = await rig.layer.handle(rig.request, rig.spec, 1)
    rig.adapter.release("b", result("ab"))
    async for _ in reply:
        await asyncio.sleep(0.2)  # a slow consumer
    assert rig.ended()[0].record.latency_s < 0.1
    assert reply.completion.latency_s < 0.1


async def test_a_cancelled_waiter_for_a_concurrency_slot_leaves_no_row():
    rig = Rig(streamed=False, max_concurrency=1)
    first = asyncio.ensure_future(rig.layer.handle(rig.request, rig.spec, 1))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(rig.layer.handle(rig.request, rig.spec, 1))
    await asyncio.sleep(0)
    waiter.cancel()
    rig.adapter.release(result())
    await (await first).result()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert [e.record.status for e in rig.ended()] == ["ok"]
    assert rig.layer._slots.get("p").free == 1


async def test_an_attempt_that_fails_to_start_gives_its_concurrency_slot_back():
    """Whatever stops an attempt between taking its slot and running (here Ctrl-C in a listener of
    AttemptStarted), the slot is given back: the provider's next attempt runs."""
    rig = Rig(streamed=False, max_concurrency=1)
    interrupts = [KeyboardInterrupt()]

    def interrupt(event: AttemptStarted) -> None:
        if interrupts:
            raise interrupts.pop()

    rig.events.subscribe(AttemptStarted, interrupt)
    with pytest.raises(KeyboardInterrupt):
        await rig.layer.handle(rig.request, rig.spec, 1)
    assert rig.layer._slots.get("p").free == 1
    rig.adapter.release(result())
    c = await (await asyncio.wait_for(rig.layer.handle(rig.request, rig.spec, 2), 5)).result()
    assert c.text == "hello" and [e.record.status for e in rig.ended()] == ["ok"]


# -- the failover driver over the attempt layer ---------------------------------------------------------


async def test_the_failover_layer_returns_the_first_reply_that_commits():
    from llmroute_magic._pool import ProviderPool

    specs = [spec("a"), spec("b")]
    events = EventBus()
    adapters = {s.name: ScriptedAdapter(s) for s in specs}
    pool = ProviderPool(
        specs, clock=lambda: 0.0, rng=random.Random(0), prices=lambda s: (1, 2), cooldown_s=lambda: 30.0
    )
    pool.listen(events)
    layer = FailoverLayer(
        AttemptLayer(lambda: adapters, PriceBook(), events, ProviderSlots(specs)), pool, POLICY, sleep=asyncio.sleep
    )
    adapters["a"].release(ProviderError("down", provider="a", error_type="server_error", status_code=500))
    adapters["b"].release(result("from b"))
    request = build_request("hi", {}, config=ProviderRoutingConfig(specs), request_id="r-2", streamed=False)
    c = await (await layer.handle(request)).result()
    assert (c.provider, c.attempts) == ("b", 2)
    assert pool.get("a").consecutive_failures == 1 and pool.get("a").in_flight == pool.get("b").in_flight == 0


# -- events and slots -------------------------------------------------------------------------------------


def test_a_broken_listener_is_logged_and_the_others_still_run(caplog):
    bus = EventBus()
    got: list[Any] = []
    bus.subscribe(AttemptStarted, lambda e: 1 / 0)
    unsubscribe = bus.subscribe(AttemptStarted, got.append)
    event = AttemptStarted("r", 1, "p", "m", False)
    bus.emit(event)
    assert got == [event] and "listener" in caplog.text
    unsubscribe()
    bus.emit(event)
    assert got == [event]


def test_shared_slots_hold_one_bound_across_event_loops():
    slots = SharedSlots(1)
    active, peak = [0], [0]
    lock = threading.Lock()

    async def use() -> None:
        for _ in range(20):
            await slots.acquire()
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            await asyncio.sleep(0.001)
            with lock:
                active[0] -= 1
            slots.release()

    threads = [threading.Thread(target=lambda: asyncio.run(use())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert peak[0] == 1 and slots.free == 1
