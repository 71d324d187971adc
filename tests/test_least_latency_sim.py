"""LEAST_LATENCY through the router, over the simulator (real loopback HTTP): cold bursts and a slow
cold start. The strategy's own tests (fake clock, explicit in-flight counts) are in test_strategies.py;
these check that the router drives it as they assume. Figures come from the ledger (usage_df)."""

from __future__ import annotations

import pandas as pd
from helpers import make_router, simulator_fixtures

from llmroute_magic.sim import ProviderProfile

PROFILES = [
    ProviderProfile("fast", latency_s=0.01),
    ProviderProfile("mid", latency_s=0.03),
    ProviderProfile("slow", latency_s=0.4),
    ProviderProfile("steady", latency_s=0.05),
]


sim, fresh = simulator_fixtures(PROFILES)


def sent_before_first_answer(df: pd.DataFrame, provider: str) -> int:
    """Attempts to ``provider`` that started before its first attempt ended."""
    mine = df[df["provider"] == provider]
    start = (mine["timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return int((start < (start + mine["latency_s"]).min()).sum())


def test_a_re_enabled_slow_provider_gets_one_request_of_a_concurrent_burst(fresh):
    """Issue 10 item 7a: a re-enabled 1.5 s provider took 50 of a burst of 50."""
    with make_router(fresh, ("fast", "mid", "slow"), strategy="least_latency") as r:
        r.disable("slow")
        for i in range(6):
            r.complete(f"warm {i}", max_tokens=4)  # fast and mid measured
        r.enable("slow")  # never measured
        r.reset_usage()
        done = r.map([f"b{i}" for i in range(50)], concurrency=50, progress=False, max_tokens=4)
        df = r.usage_df()
    assert all(c.provider for c in done)
    served = df[df["status"] == "ok"]["provider"].value_counts()
    assert served.get("slow", 0) == 1  # explored with one request; the rest routed by what is known
    # ... and spread by score, (in flight + 1) x estimate: fast (10 ms) takes about three times mid's share
    assert served.get("fast", 0) >= 25 and served.get("mid", 0) >= 5


def test_a_cold_batch_sends_an_unmeasured_provider_only_its_share_of_the_first_wave(fresh):
    with make_router(fresh, ("slow", "mid", "fast"), strategy="least_latency") as r:
        r.map([f"c{i}" for i in range(40)], concurrency=10, progress=False, max_tokens=4)
        df = r.usage_df()
    # The first 10 go out before anything is known: spread, at most 4 each. After that, nothing more
    # goes to "slow" until it answers (400 ms, longer than the rest of the batch takes).
    assert sent_before_first_answer(df, "slow") <= 4
    assert (df["provider"] == "slow").sum() <= 4


def test_one_slow_cold_start_answer_is_won_back_within_a_few_dozen_requests(fresh):
    """Issue 10 item 7b: 200 ms once, then 5 ms for good, beside a steady 50 ms provider."""
    fresh.update("fast", latency_s=0.2)
    with make_router(fresh, ("fast", "steady"), strategy="least_latency") as r:
        assert r.complete("cold start", max_tokens=4).provider == "fast"  # explored first: slow, once
        fresh.update("fast", latency_s=0.005)
        served = [r.complete(f"q{i}", max_tokens=4).provider for i in range(60)]
    # about 3 s of wall time in all: no time-based probe (10 s) could have fired
    won_back = next((i for i in range(len(served)) if served[i : i + 10] == ["fast"] * 10), None)
    assert won_back is not None and won_back <= 36, served
