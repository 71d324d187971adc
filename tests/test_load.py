"""Nothing lost under load: 2,000 requests at concurrency 64 with ~25% random faults over three
providers, once per strategy. Every request ends in a Completion or an LLMRouteError (never another
exception, never a hang), and the ledger equals the simulator's own counters exactly.

Latency is zero and the router's sleep does not wait, so the run measures the router and the
simulator, not the clock. A quarter of the requests stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from helpers import Sleeps, assert_ledger_matches_sim, make_router, simulator_fixture

from llmroute_magic import Completion, LLMRouteError, RoutingStrategy
from llmroute_magic.sim import ProviderProfile

REQUESTS = 2000
CONCURRENCY = 64
OVERALL_TIMEOUT_S = 100.0  # a hang anywhere fails the test instead of the CI job
REQUEST_TIMEOUT_S = 4.0  # a hung provider times out; an answer the simulator served never does

# ~25% of requests fail, mostly in ways the router retries; a few fail fast or surface mid-stream.
FAULTS = {
    "rate_limit": 0.05,
    "rate_limit_no_retry_after": 0.01,
    "server_error": 0.04,
    "bad_gateway": 0.01,
    "unavailable": 0.02,
    "gateway_timeout": 0.01,
    "overloaded": 0.03,
    "reset": 0.02,
    "malformed_json": 0.02,
    "truncated_stream": 0.02,
    "stream_error": 0.02,
    "invalid_request": 0.005,
    "context_length": 0.002,
    "unauthorized": 0.001,
    "hang": 0.001,
}
PROFILES = [
    ProviderProfile(
        "north",
        api="openai",
        model="north-1",
        input_price=0.15,
        output_price=0.60,
        faults=FAULTS,
        retry_after_s=2.0,
        seed=11,
    ),
    ProviderProfile(
        "south",
        api="anthropic",
        model="south-1",
        input_price=0.80,
        output_price=4.00,
        faults=FAULTS,
        retry_after_s=2.0,
        seed=12,
    ),
    ProviderProfile(
        "east",
        api="openai",
        model="east-1",
        input_price=0.0,
        output_price=0.0,
        faults=FAULTS,
        retry_after_s=2.0,
        seed=13,
    ),
]


def test_fault_rate_is_in_the_asked_range():
    assert 0.20 <= sum(FAULTS.values()) <= 0.30


sim = simulator_fixture(PROFILES)


async def drive(router, n: int) -> list:
    """n requests, at most CONCURRENCY in flight; every fourth one streams. Returns each outcome."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int):
        async with gate:
            prompt = f"load question {i}: " + "lorem ipsum " * (i % 7)
            try:
                if i % 4 == 3:
                    s = router.astream(prompt, max_tokens=8 + i % 24)
                    text = "".join([chunk async for chunk in s])
                    assert s.completion is not None and s.completion.text == text
                    return s.completion
                return await router.acomplete(prompt, max_tokens=8 + i % 24)
            except LLMRouteError as e:
                return e
            except BaseException as e:  # noqa: BLE001 - anything else is the failure under test
                return ("UNEXPECTED", e)

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), OVERALL_TIMEOUT_S)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(RoutingStrategy))
def test_two_thousand_requests_with_random_faults_lose_nothing(sim, strategy):
    sim.reset()
    specs = [s.with_timeout(REQUEST_TIMEOUT_S) for s in sim.provider_specs()]
    sleeps = Sleeps()
    t0 = time.perf_counter()
    with make_router(sim, None, specs=specs, sleeps=sleeps, strategy=strategy, max_retries=3, cooldown_s=0.2) as r:
        outcomes = r._loop().run(drive(r, REQUESTS))
        elapsed = time.perf_counter() - t0
        assert all(h.in_flight == 0 for h in map(r.health, ("north", "south", "east")))
        unexpected = [o for o in outcomes if isinstance(o, tuple)]
        assert not unexpected, unexpected[:3]
        assert len(outcomes) == REQUESTS
        assert all(isinstance(o, (Completion, LLMRouteError)) for o in outcomes)
        done = [o for o in outcomes if isinstance(o, Completion)]
        assert len(done) >= 0.9 * REQUESTS, Counter(type(o).__name__ for o in outcomes)
        assert len({c.request_id for c in done}) == len(done)

        recs = list(r.ledger.records())
        # Every request left at least one row, and exactly as many as the attempts it made.
        per_request = Counter(x["request_id"] for x in recs)
        assert len(per_request) == REQUESTS
        assert all(per_request[c.request_id] == c.attempts for c in done)
        assert all(n <= 4 for n in per_request.values())  # 1 + max_retries
        assert {x["strategy"] for x in recs} == {strategy.value}
        assert Counter(x["status"] for x in recs)["error"] > 0.15 * REQUESTS  # the faults did happen
        assert_ledger_matches_sim(r, sim)
    print(f"{strategy.value}: {REQUESTS} requests, {len(recs)} attempts in {elapsed:.1f} s")
