"""The router against the simulator over real loopback HTTP: strategies, failover, ledger, cost."""

from __future__ import annotations

import asyncio
import math
import threading
from collections import Counter

import helpers
import pytest
from helpers import Sleeps, assert_ledger_matches_sim, rows, simulator_fixtures

from llmroute_magic import (
    AllProvidersFailed,
    Completion,
    ConfigError,
    ModelClientRouter,
    ProviderError,
    ProviderRoutingConfig,
    ProviderSpec,
    RoutingStrategy,
)
from llmroute_magic.sim import ProviderProfile

FAST = dict(latency_s=0.0)
PROFILES = [
    ProviderProfile("alpha", api="openai", model="alpha-1", input_price=0.15, output_price=0.60, **FAST),
    ProviderProfile("beta", api="anthropic", model="beta-1", input_price=0.80, output_price=4.00, **FAST),
    ProviderProfile("gamma", api="openai", model="gamma-1", input_price=0.0, output_price=0.0, **FAST),
    # the seed's names, so its usage example runs as written (base URLs from OPENAI_BASE_URL & co.)
    ProviderProfile("openai", api="openai", model="gpt-4o", input_price=2.5, output_price=10.0, **FAST),
    ProviderProfile(
        "anthropic", api="anthropic", model="claude-3-5-sonnet-latest", input_price=3.0, output_price=15.0, **FAST
    ),
]


sim, fresh = simulator_fixtures(PROFILES)


def make_router(sim, names=("alpha", "beta", "gamma"), **kw) -> ModelClientRouter:
    return helpers.make_router(sim, names, **kw)


# -- the seed's example ----------------------------------------------------------------------------


def test_seed_usage_example_runs_as_written(fresh, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fresh.base_url("openai"))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fresh.base_url("anthropic"))
    openai = ProviderSpec("openai", "gpt-4o").with_priority(1)
    anthropic = ProviderSpec("anthropic", "claude-3-5-sonnet-latest").with_priority(2)
    config = ProviderRoutingConfig.new(openai, [anthropic]).with_strategy(RoutingStrategy.ROUND_ROBIN)
    with ModelClientRouter(config) as router:
        c1 = router.complete("Explain CAP in one line", max_tokens=64)
        c2 = router.complete("Explain CAP in one line", max_tokens=64)
        usage = router.get_usage_stats()
    assert (c1.provider, c2.provider) == ("openai", "anthropic")  # Request 1 -> OpenAI, 2 -> Anthropic
    assert c1.text and c1.output_tokens <= 64
    stats = fresh.stats()["providers"]
    assert usage.openai_tokens == stats["openai"]["input_tokens"] + stats["openai"]["output_tokens"]
    # prices come from genai-prices (gpt-4o: $2.50 / $10 per 1M), equal to what the simulator billed
    assert usage.openai_cost == pytest.approx(stats["openai"]["cost"], rel=1e-9)
    assert usage.anthropic_cost == pytest.approx(stats["anthropic"]["cost"], rel=1e-9)
    assert usage.total_cost == pytest.approx(usage.openai_cost + usage.anthropic_cost)


# -- strategies end to end -------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(RoutingStrategy))
def test_every_strategy_serves_and_records(fresh, strategy):
    with make_router(fresh, strategy=strategy) as r:
        done = [r.complete(f"question {i}", max_tokens=16) for i in range(9)]
        df = r.usage_df()
    assert all(isinstance(c, Completion) and c.text for c in done)
    assert list(df["strategy"].astype(str).unique()) == [strategy.value]
    assert (df["status"] == "ok").all() and len(df) == 9
    served = Counter(c.provider for c in done)
    if strategy is RoutingStrategy.ROUND_ROBIN:
        assert served == {"alpha": 3, "beta": 3, "gamma": 3}
    if strategy is RoutingStrategy.PRIORITY:
        assert served == {"alpha": 9}
    if strategy is RoutingStrategy.LOWEST_COST:
        assert served == {"gamma": 9}  # the free one
    assert_ledger_matches_sim(r, fresh)


def test_least_latency_prefers_the_fast_provider(fresh):
    fresh.update("alpha", latency_s=0.25)
    fresh.update("beta", latency_s=0.005)
    fresh.update("gamma", latency_s=0.20)
    with make_router(fresh, strategy="least_latency") as r:
        served = Counter(r.complete(f"q{i}", max_tokens=8).provider for i in range(15))
    assert served["beta"] >= 11  # three exploration requests, then the fastest


def test_per_call_strategy_and_pinned_provider(fresh):
    with make_router(fresh, strategy="priority") as r:
        assert r.complete("hi", strategy="LowestCost").provider == "gamma"
        assert r.complete("hi", provider="beta").provider == "beta"
        assert r.strategy is RoutingStrategy.PRIORITY
        with pytest.raises(ConfigError, match="unknown provider 'nope'"):
            r.complete("hi", provider="nope")


def test_enable_disable_and_all_disabled(fresh):
    with make_router(fresh) as r:
        r.disable("alpha")
        assert r.complete("hi").provider == "beta"
        r.disable("beta"), r.disable("gamma")
        with pytest.raises(AllProvidersFailed, match="every one is disabled"):
            r.complete("hi")
        r.enable("gamma")
        assert r.complete("hi").provider == "gamma"


def test_ten_concurrent_round_robin_split_five_five(fresh):
    fresh.update("alpha", latency_s=0.05)
    fresh.update("beta", latency_s=0.05)
    with make_router(fresh, ("alpha", "beta"), strategy="round_robin") as r:

        async def burst():
            return await asyncio.gather(*(r.acomplete(f"p{i}", max_tokens=8) for i in range(10)))

        done = asyncio.run(burst())
    assert Counter(c.provider for c in done) == {"alpha": 5, "beta": 5}


def test_burst_of_fifty_under_least_latency_does_not_herd(fresh):
    for name, lat in (("alpha", 0.05), ("beta", 0.055), ("gamma", 0.06)):
        fresh.update(name, latency_s=lat)
    with make_router(fresh, strategy="least_latency") as r:
        for i in range(6):  # warm the estimates: alpha is the fastest
            r.complete(f"warm {i}", max_tokens=4)
        r.reset_usage()
        results = r.map([f"b{i}" for i in range(50)], concurrency=50, progress=False, max_tokens=4)
    share = Counter(c.provider for c in results)
    assert sum(share.values()) == 50
    assert max(share.values()) <= 25, share  # no provider takes the whole burst
    assert len(share) == 3


# -- failover: the error-policy table ----------------------------------------------------------------

RETRYABLE = [
    "rate_limit",
    "rate_limit_no_retry_after",
    "server_error",
    "bad_gateway",
    "unavailable",
    "gateway_timeout",
    "overloaded",
    "reset",
    "malformed_json",
]


@pytest.mark.parametrize("fault", RETRYABLE)
def test_retryable_fault_falls_back_to_next_provider_at_once(fresh, fault):
    sleeps = Sleeps()
    fresh.inject("alpha", [fault])
    with make_router(fresh, sleeps=sleeps, strategy="priority") as r:
        c = r.complete("hello")
        rec = rows(r)
    assert c.provider == "beta" and c.attempts == 2
    assert [x["status"] for x in rec] == ["error", "ok"]
    assert rec[0]["provider"] == "alpha" and rec[0]["error_type"] in {
        "rate_limit",
        "server_error",
        "overloaded",
        "connection_reset",
        "malformed_response",
    }
    assert sleeps.delays == []  # moving to another provider never waits
    assert_ledger_matches_sim(r, fresh)


def test_fallback_disabled_retries_same_provider_with_backoff(fresh):
    sleeps = Sleeps()
    fresh.inject("alpha", ["server_error", "unavailable"])
    with make_router(fresh, sleeps=sleeps, fallback_enabled=False, max_retries=2) as r:
        c = r.complete("hello")
    assert c.provider == "alpha" and c.attempts == 3
    assert len(sleeps.delays) == 2
    assert 0.125 <= sleeps.delays[0] <= 0.25 and 0.25 <= sleeps.delays[1] <= 0.5  # exponential, jittered


def test_retry_after_is_honoured_on_the_same_provider(fresh):
    sleeps = Sleeps()
    fresh.update("alpha", retry_after_s=1.5)
    fresh.inject("alpha", ["rate_limit"])
    with make_router(fresh, ("alpha",), sleeps=sleeps) as r:
        c = r.complete("hello")
        first = rows(r)[0]
    assert c.attempts == 2 and sleeps.delays == [pytest.approx(1.5)]
    assert first["http_status"] == 429 and first["error_type"] == "rate_limit"


def test_retry_after_beyond_cap_is_not_waited_for(fresh):
    sleeps = Sleeps()
    fresh.update("alpha", retry_after_s=120)
    fresh.inject("alpha", ["rate_limit"])
    with make_router(fresh, ("alpha",), sleeps=sleeps) as r:
        with pytest.raises(AllProvidersFailed) as info:
            r.complete("hello")
    assert sleeps.delays == [] and len(info.value.attempts) == 1


def test_attempts_are_bounded_and_the_error_lists_each(fresh):
    for n in ("alpha", "beta"):
        fresh.inject(n, ["server_error"] * 5)
    with make_router(fresh, ("alpha", "beta"), sleeps=Sleeps(), max_retries=3) as r:
        with pytest.raises(AllProvidersFailed) as info:
            r.complete("hello")
        assert len(rows(r)) == 4
    err = info.value
    assert [a.provider for a in err.attempts] == ["alpha", "beta", "alpha", "beta"]
    msg = str(err)
    assert "4 attempts" in msg and "alpha: server_error (HTTP 500)" in msg and "What to do" in msg
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize(
    "fault, error_type",
    [
        ("unauthorized", "authentication"),
        ("forbidden", "permission"),
        ("model_not_found", "not_found"),
        ("insufficient_quota", "insufficient_quota"),
    ],
)
def test_provider_that_cannot_serve_is_dropped_and_cooled_down(fresh, fault, error_type):
    fresh.inject("alpha", [fault])
    with make_router(fresh, ("alpha", "beta"), sleeps=Sleeps(), max_retries=5) as r:
        c = r.complete("hello")
        assert c.provider == "beta" and c.attempts == 2
        assert rows(r)[0]["error_type"] == error_type
        assert "alpha" in r.cooling_down()
        assert r.complete("again").provider == "beta"  # skipped while cooling down
        assert fresh.stats()["providers"]["alpha"]["requests"] == 1


def test_missing_key_is_an_attempt_with_a_row_and_a_clear_message(fresh, monkeypatch):
    monkeypatch.delenv("REMOTE_API_KEY", raising=False)
    remote = ProviderSpec("remote", "m", base_url="https://api.example.invalid/v1", input_price=1, output_price=1)
    with ModelClientRouter(ProviderRoutingConfig([remote])) as r:
        with pytest.raises(AllProvidersFailed) as info:
            r.complete("hello")
        rec = rows(r)
    assert "REMOTE_API_KEY" in str(info.value)
    assert len(rec) == 1 and rec[0]["error_type"] == "missing_api_key" and rec[0]["http_status"] is None


def test_invalid_request_fails_fast(fresh):
    fresh.inject("alpha", ["invalid_request"])
    with make_router(fresh, sleeps=Sleeps()) as r:
        with pytest.raises(ProviderError) as info:
            r.complete("hello")
        assert len(rows(r)) == 1
    assert info.value.status_code == 400 and info.value.error_type == "invalid_request"


def test_context_length_falls_back_only_to_a_larger_window(fresh):
    fresh.update("alpha", context_window=50)
    fresh.update("beta", context_window=40)
    fresh.update("gamma", context_window=100_000)
    long_prompt = "word " * 200  # ~250 tokens
    specs = [s for s in fresh.provider_specs(["alpha", "beta", "gamma"])]
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority")) as r:
        c = r.complete(long_prompt)
        rec = rows(r)
    assert c.provider == "gamma"  # beta's window is smaller than alpha's: never tried
    assert [x["provider"] for x in rec] == ["alpha", "gamma"]
    assert rec[0]["error_type"] == "context_length"


def test_context_length_with_no_larger_window_fails_fast(fresh):
    fresh.update("alpha", context_window=50)
    specs = fresh.provider_specs(["alpha"])
    with ModelClientRouter(ProviderRoutingConfig(specs)) as r:
        with pytest.raises(ProviderError) as info:
            r.complete("word " * 200)
    assert info.value.error_type == "context_length"


def test_cooldown_after_three_failures_and_recovery(fresh):
    clock = [100.0]
    fresh.inject("alpha", ["server_error"] * 3)
    with make_router(
        fresh, ("alpha", "beta"), sleeps=Sleeps(), clock=lambda: clock[0], cooldown_s=30, strategy="priority"
    ) as r:
        for _ in range(3):
            assert r.complete("x").provider == "beta"
        assert r.cooling_down() == ["alpha"]
        assert r.complete("x").provider == "beta" and r.complete("x").attempts == 1
        clock[0] += 31
        assert r.cooling_down() == [] and r.complete("x").provider == "alpha"


def test_all_cooling_down_tries_least_recently_failed(fresh):
    clock = [100.0]
    with make_router(fresh, ("alpha", "beta"), sleeps=Sleeps(), clock=lambda: clock[0], max_retries=0) as r:
        for name in ("alpha", "beta"):
            fresh.inject(name, ["server_error"] * 3)
            for _ in range(3):
                with pytest.raises(AllProvidersFailed):
                    r.complete("x", provider=name)
            clock[0] += 1
        assert sorted(r.cooling_down()) == ["alpha", "beta"]
        assert r.complete("x").provider == "alpha"


def test_timeout_on_a_hung_provider_falls_back(fresh):
    fresh.inject("alpha", ["hang"])
    specs = fresh.provider_specs(["alpha", "beta"])
    specs[0] = specs[0].with_timeout(0.3)
    with ModelClientRouter(ProviderRoutingConfig(specs), sleep=Sleeps()) as r:
        c = r.complete("x")
        rec = rows(r)
    assert c.provider == "beta" and rec[0]["error_type"] == "timeout"
    assert 0.25 < rec[0]["latency_s"] < 2


# -- streaming ----------------------------------------------------------------------------------------


def test_stream_yields_text_and_records_usage(fresh):
    with make_router(fresh, ("beta", "alpha")) as r:
        s = r.stream("tell me a story", max_tokens=40)
        chunks = list(s)
        c = s.completion
        rec = rows(r)
    assert len(chunks) > 3 and "".join(chunks) == c.text and c.ttft_s is not None
    assert rec[-1]["streamed"] and rec[-1]["status"] == "ok"
    assert_ledger_matches_sim(r, fresh)


def test_stream_falls_back_before_any_text(fresh):
    fresh.inject("alpha", ["server_error"])
    with make_router(fresh, ("alpha", "beta"), sleeps=Sleeps()) as r:
        s = r.stream("story", max_tokens=20)
        text = "".join(s)
    assert s.completion.provider == "beta" and text == s.completion.text


def test_error_mid_stream_after_text_surfaces_partial_text(fresh):
    fresh.inject("alpha", ["stream_error"])
    with make_router(fresh, ("alpha", "beta"), sleeps=Sleeps()) as r:
        got = []
        with pytest.raises(ProviderError) as info:
            for chunk in r.stream("story", max_tokens=40):
                got.append(chunk)
        assert got and info.value.partial_text == "".join(got)
        assert len(rows(r)) == 1  # not retried: the user already saw text
    assert_ledger_matches_sim(r, fresh)


async def test_astream_from_any_loop(fresh):
    with make_router(fresh, ("alpha",)) as r:
        s = r.astream("async story", max_tokens=30)
        text = "".join([c async for c in s])
        assert s.completion.text == text
        c = await r.acomplete("plain")
        assert c.provider == "alpha"


def test_closing_a_stream_early_records_cancelled(fresh):
    fresh.update("alpha", tokens_per_s=200)
    with make_router(fresh, ("alpha",)) as r:
        s = r.stream("long story", max_tokens=200)
        next(iter(s))
        s.close()
        rec = rows(r)
    assert rec[-1]["status"] == "cancelled"


def test_cancelling_acomplete_records_cancelled(fresh):
    fresh.update("alpha", latency_s=2.0)
    with make_router(fresh, ("alpha",)) as r:

        async def go():
            t = asyncio.ensure_future(r.acomplete("slow"))
            await asyncio.sleep(0.2)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

        asyncio.run(go())
        rec = rows(r)
    assert [x["status"] for x in rec] == ["cancelled"]


# -- compare, map, threads, ledger invariant -------------------------------------------------------------


def test_compare_sends_the_same_prompt_to_each_provider(fresh):
    fresh.inject("gamma", ["invalid_request"])
    with make_router(fresh) as r:
        df = r.compare("What is CAP?", max_tokens=16)
    assert list(df["provider"]) == ["alpha", "beta", "gamma"]
    assert df.loc[df.provider == "gamma", "error"].str.contains("invalid_request").all()
    ok = df[df.error.isna()]
    assert (ok.output_tokens > 0).all() and ok.text.str.len().gt(0).all()
    assert set(df.columns) >= {
        "provider",
        "model",
        "text",
        "latency_s",
        "input_tokens",
        "output_tokens",
        "cost",
        "error",
    }


def test_compare_rows_show_what_each_arm_spent_and_only_its_own_time(fresh):
    # alpha answers off-schema three times (billed each time, then gives up), beta is slow,
    # gamma refuses the key at once: a failed arm is not free, and no arm wears beta's second.
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fresh.inject("alpha", ["ignore_schema"] * 3)
    fresh.inject("gamma", ["unauthorized"])
    fresh.update("beta", latency_s=0.5)
    with make_router(fresh, max_retries=2) as r:
        df = r.compare("Where is Paris?", response_format=schema).set_index("provider")
        ledger = r.usage_df().groupby("provider")[["input_tokens", "output_tokens", "cost"]].sum()
    billed = fresh.stats()["providers"]["alpha"]
    assert df.loc["alpha", "error"] and billed["output_tokens"] > 0
    assert df.loc["alpha", "input_tokens"] == billed["input_tokens"] == ledger.loc["alpha", "input_tokens"]
    assert df.loc["alpha", "output_tokens"] == billed["output_tokens"]
    assert df.loc["alpha", "cost"] == pytest.approx(billed["cost"]) and df.loc["alpha", "cost"] > 0
    assert df.loc["beta", "latency_s"] >= 0.5
    assert df.loc["alpha", "latency_s"] < 0.5  # its three attempts' time, not the slow arm's
    assert df.loc["gamma", "error"] and df.loc["gamma", "latency_s"] < 0.25
    assert df.loc["gamma", "cost"] == 0 and df.loc["gamma", "input_tokens"] == 0


def test_compare_latency_is_provider_time_not_the_wait_for_a_slot_or_a_retry(fresh):
    # three samples of a one-slot provider queue behind each other; gamma's first attempt fails
    # and is retried after a backoff: each row's latency is what its attempts took, as in the ledger.
    fresh.update("alpha", latency_s=0.3)
    fresh.inject("gamma", ["server_error"])
    specs = [s.with_max_concurrency(1) if s.name == "alpha" else s for s in fresh.provider_specs(["alpha", "gamma"])]
    with make_router(fresh, specs=specs, max_retries=1) as r:
        df = r.compare("hello there", providers=["alpha", "gamma"], n=3, max_tokens=16)
        ledger = r.usage_df().groupby("request_id")["latency_s"].sum()
    assert df["error"].isna().all()
    alpha = df[df.provider == "alpha"]["latency_s"]
    assert (alpha >= 0.3).all() and (alpha < 0.5).all(), list(alpha)  # not 0.3, 0.6, 0.9
    assert sorted(df["latency_s"]) == pytest.approx(sorted(ledger), abs=1e-9)


def test_map_returns_completions_and_errors_in_order(fresh):
    fresh.inject("alpha", ["invalid_request"])
    with make_router(fresh, ("alpha",)) as r:
        out = r.map(["a", "b", "c", "d"], concurrency=1, progress=False)
    assert isinstance(out[0], ProviderError) and all(isinstance(x, Completion) for x in out[1:])


def test_router_used_from_many_threads_stays_consistent(fresh):
    with make_router(fresh, strategy="round_robin") as r:
        errors = []

        def work(k):
            try:
                for i in range(10):
                    r.complete(f"t{k}-{i}", max_tokens=8)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors and len(r.usage_df()) == 60
        assert all(h.in_flight == 0 for h in (r.health(n) for n in ("alpha", "beta", "gamma")))
    assert_ledger_matches_sim(r, fresh)


def test_ledger_equals_simulator_after_mixed_run_with_faults(fresh):
    for name in ("alpha", "beta", "gamma"):
        fresh.update(
            name,
            faults={
                "server_error": 0.1,
                "rate_limit": 0.1,
                "malformed_json": 0.05,
                "reset": 0.05,
                "stream_error": 0.05,
            },
        )
    with make_router(fresh, sleeps=Sleeps(), strategy="random", max_retries=3) as r:
        results = r.map([f"m{i}" for i in range(80)], concurrency=8, progress=False, max_tokens=12)

        async def streams():
            for i in range(20):
                try:
                    async for _ in r.astream(f"s{i}", max_tokens=12):
                        pass
                except ProviderError:
                    pass
                except AllProvidersFailed:
                    pass

        r._loop().run(streams())
        df = r.usage_df()
    assert sum(isinstance(x, Completion) for x in results) >= 70
    assert (df["status"] == "error").sum() > 0
    assert_ledger_matches_sim(r, fresh)


def test_unknown_price_is_nan_not_zero(fresh):
    spec = ProviderSpec("alpha", "alpha-1", base_url=fresh.base_url("alpha"))  # loopback, no prices
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        with pytest.warns(UserWarning, match="no price known for provider 'alpha'"):
            c = r.complete("hi")
        assert math.isnan(c.cost) and math.isnan(r.usage_df()["cost"].iloc[0])
        assert math.isnan(r.get_usage_stats().alpha_cost)


def test_sqlite_ledger_survives_a_new_router(fresh, tmp_path):
    path = tmp_path / "usage.sqlite"
    with make_router(fresh, ledger_path=str(path)) as r:
        r.complete("one")
        r.complete("two")
    with make_router(fresh, ledger_path=str(path)) as r2:
        r2.complete("three")
        df = r2.usage_df()
    assert len(df) == 3 and df["request_id"].nunique() == 3


def test_bad_prompt_and_settings_are_clear(fresh):
    with make_router(fresh) as r:
        for bad, frag in (
            ("", "prompt: empty"),
            ([], "empty message list"),
            ([{"x": 1}], "role"),
            (42, "expected a string or a list"),
        ):
            with pytest.raises(ConfigError, match=frag):
                r.complete(bad)
        with pytest.raises(ConfigError, match="max_tokens"):
            r.complete("x", max_tokens=0)
        with pytest.raises(ConfigError, match="allowed"):
            r.set_strategy("fastest")
        assert len(r.usage_df()) == 0
