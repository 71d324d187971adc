"""The request path end to end over the simulator: figures a user reads, on the paths users take.

Streamed latency that ignores a slow consumer, a cancelled sync stream that still bills what the
provider reported, max_concurrency as one bound across threads and loops, the primary tried
first, keys that cannot leak through str operations, and errors from the sync API that show the
caller's frames only.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
import warnings

import pytest
from helpers import Sleeps, assert_ledger_matches_sim, make_router, rows, simulator_fixtures

from llmroute_magic import (
    AllProvidersFailed,
    ConfigError,
    ModelClientRouter,
    ProviderRoutingConfig,
    ProviderSpec,
    UnknownPriceWarning,
)
from llmroute_magic.sim import ProviderProfile

PROFILES = [
    ProviderProfile("quick", api="openai", model="quick-1", latency_s=0.01, input_price=1, output_price=2),
    ProviderProfile("quick-a", api="anthropic", model="quick-a-1", latency_s=0.01, input_price=1, output_price=2),
    ProviderProfile(
        "drip-a", api="anthropic", model="drip-a-1", latency_s=0.0, tokens_per_s=40, input_price=3, output_price=15
    ),
    ProviderProfile("slow", api="openai", model="slow-1", latency_s=0.3, input_price=1, output_price=2),
    ProviderProfile("zed", api="openai", model="zed-1", latency_s=0.0),
    ProviderProfile("primary", api="openai", model="p-1", latency_s=0.0),
]

CONSUMER_PAUSE_S = 0.25  # what a notebook rendering a big Markdown answer may spend per update


sim, fresh = simulator_fixtures(PROFILES)


# -- 1. streamed latency is the provider's time, not the consumer's ------------------------------------


@pytest.mark.parametrize("name", ["quick", "quick-a"])
def test_a_slow_sync_consumer_does_not_make_a_fast_provider_look_slow(fresh, name):
    with make_router(fresh, [name], strategy="least_latency") as r:
        s = r.stream("tell me a story", max_tokens=40)
        for i, _ in enumerate(s):
            if i < 3:
                time.sleep(CONSUMER_PAUSE_S)  # the notebook renders
        row = rows(r)[-1]
        estimate = r.health(name).latency.value
    assert row["status"] == "ok" and row["streamed"]
    assert row["latency_s"] < 0.2, row  # the provider answered in ~10 ms; the consumer took 0.75 s
    assert row["ttft_s"] is not None and row["ttft_s"] <= row["latency_s"]
    assert s.completion.latency_s < 0.2 and s.completion.ttft_s <= s.completion.latency_s
    assert estimate < 0.2  # LEAST_LATENCY learns the provider's speed, not the notebook's


async def test_a_slow_async_consumer_does_not_make_a_fast_provider_look_slow(fresh):
    with make_router(fresh, ["quick-a"], strategy="least_latency") as r:
        s = r.astream("tell me a story", max_tokens=40)
        n = 0
        async for _ in s:
            n += 1
            if n <= 3:
                await asyncio.sleep(CONSUMER_PAUSE_S)
        row = rows(r)[-1]
        assert row["latency_s"] < 0.2 and s.completion.latency_s < 0.2
        assert r.health("quick-a").latency.value < 0.2


def test_a_stream_that_really_takes_time_is_measured_as_such(fresh):
    """The other side of the coin: provider time between chunks still counts."""
    with make_router(fresh, ["drip-a"]) as r:
        s = r.stream("story", max_tokens=20)
        list(s)
        row = rows(r)[-1]
    # 20 tokens at 40 tokens/s: about half a second of the provider's own time
    assert 0.3 < row["latency_s"] < 2.0 and row["latency_s"] > row["ttft_s"]


# -- 2. a cancelled sync stream bills what the provider reported ----------------------------------------


def test_a_sync_stream_closed_after_its_first_chunk_bills_the_reported_input(fresh):
    with make_router(fresh, ["drip-a"]) as r:
        s = r.stream("a long story please", max_tokens=200)
        next(iter(s))
        s.close()  # what %%llm does on Ctrl-C
        rec = rows(r)
    assert [x["status"] for x in rec] == ["cancelled"]
    billed = fresh.stats()["providers"]["drip-a"]
    assert billed["input_tokens"] > 0  # Anthropic bills message_start's input tokens
    assert rec[0]["input_tokens"] == billed["input_tokens"] and rec[0]["cost"] > 0
    assert_ledger_matches_sim(r, fresh)


def test_ctrl_c_while_reading_a_sync_stream_bills_the_reported_input(fresh):
    with make_router(fresh, ["drip-a"]) as r:
        s = r.stream("a long story please", max_tokens=200)
        it = iter(s)
        next(it)
        timer = threading.Timer(0.1, lambda: __import__("_thread").interrupt_main())
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            for _ in it:
                pass
        rec = rows(r)
    assert [x["status"] for x in rec] == ["cancelled"] and rec[0]["input_tokens"] > 0
    assert_ledger_matches_sim(r, fresh)


# -- 8. max_concurrency is one bound for the whole router ------------------------------------------------


def test_max_concurrency_one_holds_across_threads_and_event_loops(fresh):
    spec = fresh.provider_specs(["slow"])[0].with_max_concurrency(1)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:

        def sync_caller() -> None:
            r.complete("sync", max_tokens=4)

        def loop_caller() -> None:
            asyncio.run(r.acomplete("own loop", max_tokens=4))

        threads = [threading.Thread(target=f) for f in (sync_caller, sync_caller, loop_caller, loop_caller)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.perf_counter() - t0
        assert [x["status"] for x in rows(r)] == ["ok"] * 4
    assert fresh.stats()["providers"]["slow"]["max_in_flight"] == 1  # the provider saw one at a time
    assert elapsed >= 4 * 0.3 * 0.9


def test_max_concurrency_two_lets_two_through(fresh):
    spec = fresh.provider_specs(["slow"])[0].with_max_concurrency(2)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:

        async def burst():
            await asyncio.gather(*(r.acomplete(f"q{i}", max_tokens=4) for i in range(6)))

        asyncio.run(burst())
    assert fresh.stats()["providers"]["slow"]["max_in_flight"] == 2


async def test_a_request_cancelled_while_waiting_for_a_slot_gives_no_slot_away(fresh):
    spec = fresh.provider_specs(["slow"])[0].with_max_concurrency(1)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        first = asyncio.create_task(r.acomplete("holds the slot", max_tokens=4))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(r.acomplete("waits", max_tokens=4))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await r.acomplete("after", max_tokens=4)).text  # the slot came back
        statuses = [x["status"] for x in rows(r)]
    assert statuses == ["ok", "ok"]  # the waiter never reached a provider: no attempt, no row
    assert fresh.stats()["providers"]["slow"]["max_in_flight"] == 1


def test_a_first_price_lookup_is_not_provider_time_and_holds_no_slot_nor_the_loop(fresh, monkeypatch):
    """The first attempt at a catalogue-priced provider looks its price up (genai-prices' data,
    ~0.2 s cold; here held for 0.8 s) before its timer starts and before it takes a concurrency
    slot, off the event loop: the row's latency is the provider's alone, the provider's only slot
    stays free meanwhile, and another request on the same loop is served in the meantime."""
    from llmroute_magic import _pricing

    loading = threading.Event()
    real = _pricing._resolve

    def slow_resolve(spec: ProviderSpec):
        if spec.name == "openai":
            loading.wait(5)  # the router's warm-up thread waits here too
        return real(spec)

    monkeypatch.setattr(_pricing, "_resolve", slow_resolve)
    openai = ProviderSpec("openai", "gpt-4o", base_url=fresh.base_url("quick"), max_concurrency=1)
    quick = fresh.provider_specs(["quick"])[0]
    with ModelClientRouter(ProviderRoutingConfig([openai, quick])) as r:
        slots = r._chain._attempts._slots.get("openai")
        free_while_loading: list[int] = []

        def loaded() -> None:
            free_while_loading.append(slots.free)
            loading.set()

        async def go():
            timer = threading.Timer(0.8, loaded)
            timer.start()
            first = asyncio.create_task(r.acomplete("priced on first use", provider="openai", max_tokens=4))
            other = await r.acomplete("meanwhile", provider="quick", max_tokens=4)
            served_while_loading = not loading.is_set()
            return await first, other, served_while_loading

        first, other, served_while_loading = asyncio.run(go())
        row = next(x for x in rows(r) if x["provider"] == "openai")
    assert first.provider == "openai" and other.provider == "quick"
    assert served_while_loading  # the event loop was not blocked by the look-up
    assert free_while_loading == [1]  # the look-up held no slot
    assert row["latency_s"] < 0.4  # the provider's time only, not the 0.8 s look-up
    assert row["cost"] > 0  # and the price was found


def test_an_unknown_price_raised_as_an_error_leaves_the_provider_usable(fresh):
    """Warnings as errors (pytest -W error): the unknown price of a loopback gateway stops the first
    request before anything is sent. The provider's only slot must not go with it: the next request,
    warnings back to normal, is served instead of waiting for ever. (The warning comes before the
    slot is taken; that a slot taken is given back whatever stops the attempt is
    test_layers' test_an_attempt_that_fails_to_start_gives_its_concurrency_slot_back.)"""
    spec = ProviderSpec("gw", "my-model", base_url=fresh.base_url("zed"), max_concurrency=1)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UnknownPriceWarning, match="no price known for provider 'gw'"):
                r.complete("stopped", max_tokens=4)
        c = asyncio.run(asyncio.wait_for(r.acomplete("served", max_tokens=4), 5))
        statuses = [x["status"] for x in rows(r)]
    assert c.provider == "gw" and c.text
    assert statuses == ["ok"]  # the stopped request never reached the provider: no attempt, no row
    assert fresh.stats()["providers"]["zed"]["requests"] == 1


# -- 10. new(primary, fallbacks) tries the primary first ---------------------------------------------------


def test_the_primary_is_tried_first_whatever_the_names(fresh):
    primary, zed = fresh.provider_specs(["primary", "zed"])
    local = ProviderSpec("aaa-local", "m", base_url=fresh.base_url("zed")).with_prices(input=0, output=0)
    config = ProviderRoutingConfig.new(primary, [zed, local])
    with ModelClientRouter(config) as r:
        assert r.complete("hi", max_tokens=4).provider == "primary"
        fresh.inject("primary", ["server_error"])
        assert r.complete("hi", max_tokens=4).provider == "zed"  # then the fallbacks in list order


def test_explicit_priorities_come_before_unset_ones(fresh):
    zed, primary = fresh.provider_specs(["zed", "primary"])
    with ModelClientRouter(ProviderRoutingConfig([zed, primary.with_priority(5)])) as r:
        assert r.complete("hi", max_tokens=4).provider == "primary"


# -- 4, 11. prices in pairs; keys that are not strings ---------------------------------------------------


@pytest.mark.parametrize("prices", [dict(input=2.5), dict(output=10.0)])
def test_half_a_price_is_a_config_error(prices):
    spec = ProviderSpec("vllm", "llama", base_url="http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="prices come in pairs"):
        spec.with_prices(**prices)
    with pytest.raises(ConfigError, match="prices come in pairs"):
        ProviderRoutingConfig.from_dict(
            {
                "providers": [
                    {"name": "vllm", "model": "llama", "base_url": "http://127.0.0.1:8000/v1", "input_price": 2.5}
                ]
            }
        )


def test_free_and_catalogue_prices_are_still_fine():
    spec = ProviderSpec("vllm", "llama", base_url="http://127.0.0.1:8000/v1")
    assert (spec.with_prices(input=0, output=0).input_price, spec.with_prices(input=0, output=0).output_price) == (0, 0)
    assert spec.with_prices(input=1, output=2).with_prices().input_price is None


def test_a_key_cannot_leak_through_string_operations():
    canary = "sk-canary-0123456789"
    spec = ProviderSpec("openai", "gpt-4o", api_key=canary)
    key = spec.api_key
    with pytest.raises(TypeError):
        key + ""  # noqa: B018
    with pytest.raises(TypeError):
        json.dumps(key)
    assert canary not in f"{key}" + str(key) + repr(key) + repr(spec) + str(spec)
    assert canary not in json.dumps(spec.to_dict())
    assert spec.resolve_api_key() == canary  # where the headers are built
    assert spec.with_priority(1).resolve_api_key() == canary  # copies keep it
    assert spec.to_dict(include_key=True)["api_key"] == canary


# -- errors from the sync API carry the caller's frames only -----------------------------------------------


def test_all_providers_failed_shows_the_callers_frames_only(fresh):
    fresh.inject("zed", ["server_error"] * 3)
    with make_router(fresh, ["zed"], sleeps=Sleeps()) as r:
        with pytest.raises(AllProvidersFailed) as info:
            r.complete("hi", max_tokens=4)
    frames = traceback.extract_tb(info.value.__traceback__)
    files = [f.filename for f in frames]
    assert not any("concurrent" in f or "asyncio" in f for f in files), files
    assert len(frames) <= 4, [f"{f.filename}:{f.name}" for f in frames]
    assert "what to do" in str(info.value).lower()


def test_a_failed_sync_stream_shows_the_callers_frames_only(fresh):
    fresh.inject("zed", ["server_error"] * 3)
    with make_router(fresh, ["zed"], sleeps=Sleeps()) as r:
        with pytest.raises(AllProvidersFailed) as info:
            list(r.stream("hi", max_tokens=4))
    files = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
    assert not any("concurrent" in f or "asyncio" in f for f in files), files
