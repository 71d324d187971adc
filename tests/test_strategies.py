"""Strategies are pure: a fake clock and a seeded rng, no network, no sleeping."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llmroute_magic import ConfigError, ProviderSpec, RoutingStrategy
from llmroute_magic._health import ProviderHealth
from llmroute_magic._strategies import RequestInfo, make_strategy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def healths(clock, *specs):
    return sorted((ProviderHealth(s, clock) for s in specs), key=lambda h: (h.spec.priority, h.name))


def spec(name, **kw):
    return ProviderSpec(name, "m", base_url=f"http://127.0.0.1:1/{name}/v1", **kw)


PRICES = {"a": (2.5, 10.0), "b": (0.15, 0.6), "c": (0.8, 4.0)}


def strategy(kind, clock=None, seed=0):
    return make_strategy(kind, prices=lambda s: PRICES.get(s.name), clock=clock or FakeClock(),
                         rng=random.Random(seed))


def names(order):
    return [h.name for h in order]


def test_strategy_names_accept_value_and_seed_spelling():
    assert RoutingStrategy.parse("least_latency") is RoutingStrategy.LEAST_LATENCY
    assert RoutingStrategy.parse("LeastLatency") is RoutingStrategy.LEAST_LATENCY
    assert RoutingStrategy.parse("RoundRobin") is RoutingStrategy.ROUND_ROBIN
    assert RoutingStrategy.parse("LOWEST_COST") is RoutingStrategy.LOWEST_COST
    with pytest.raises(ConfigError, match="allowed: round_robin, least_latency"):
        RoutingStrategy.parse("fastest")


def test_priority_orders_by_priority_then_name():
    clock = FakeClock()
    hs = healths(clock, spec("z", priority=1), spec("b", priority=2), spec("a", priority=1))
    assert names(strategy("priority").order(hs, RequestInfo())) == ["a", "z", "b"]


def test_round_robin_alternates_and_lists_the_rest_as_fallback():
    clock = FakeClock()
    hs = healths(clock, spec("a"), spec("b"))
    rr = strategy("round_robin")
    orders = [names(rr.order(hs, RequestInfo())) for _ in range(4)]
    assert orders == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]


def test_round_robin_weights_are_smooth():
    clock = FakeClock()
    hs = healths(clock, spec("a", weight=2), spec("b"))
    rr = strategy("round_robin")
    heads = "".join(rr.order(hs, RequestInfo())[0].name for _ in range(6))
    assert heads == "abaaba"  # 2:1 without an "aab" burst


def test_random_is_weighted_and_seedable():
    clock = FakeClock()
    hs = healths(clock, spec("a", weight=3), spec("b"))
    r1, r2 = strategy("random", seed=7), strategy("random", seed=7)
    seq1 = [names(r1.order(hs, RequestInfo())) for _ in range(50)]
    seq2 = [names(r2.order(hs, RequestInfo())) for _ in range(50)]
    assert seq1 == seq2
    r = strategy("random", seed=1)
    heads = Counter(r.order(hs, RequestInfo())[0].name for _ in range(4000))
    assert 0.70 < heads["a"] / 4000 < 0.80  # weight 3:1 -> 75 %
    assert all(sorted(o) == ["a", "b"] for o in seq1)


def test_least_busy_prefers_fewest_in_flight_per_weight():
    clock = FakeClock()
    a, b, c = healths(clock, spec("a"), spec("b", weight=2), spec("c"))
    a.in_flight, b.in_flight, c.in_flight = 1, 3, 2
    assert names(strategy("least_busy").order([a, b, c], RequestInfo())) == ["a", "b", "c"]


def test_lowest_cost_uses_prompt_and_expected_output():
    clock = FakeClock()
    hs = healths(clock, spec("a"), spec("b"), spec("c"))
    lc = strategy("lowest_cost")
    assert names(lc.order(hs, RequestInfo(prompt_tokens=100, max_tokens=50))) == ["b", "c", "a"]


def test_lowest_cost_ranks_unknown_price_last_and_uses_running_output_mean():
    clock = FakeClock()
    # x: cheap input, dear output; y: dear input, cheap output
    prices = {"x": (0.1, 100.0), "y": (10.0, 0.1)}
    lc = make_strategy("lowest_cost", prices=lambda s: prices.get(s.name), clock=clock)
    u, x, y = healths(clock, spec("x"), spec("y"), spec("u"))
    info = RequestInfo(prompt_tokens=1000)
    # 256 expected output tokens before data: x = 0.0001+0.0256, y = 0.01+0.0000256 -> y cheaper
    assert names(lc.order([x, y, u], info)) == ["y", "x", "u"]
    x.record_success(0.1, 2)  # x turns out to answer in 2 tokens
    assert names(lc.order([x, y, u], info)) == ["x", "y", "u"]


def test_least_latency_explores_unseen_then_picks_fastest():
    clock = FakeClock()
    a, b, c = healths(clock, spec("a"), spec("b"), spec("c"))
    ll = strategy("least_latency", clock)
    a.record_success(0.30, 10)
    assert ll.order([a, b, c], RequestInfo())[0].name in {"b", "c"}
    b.record_success(0.05, 10)
    c.record_success(0.10, 10)
    assert names(ll.order([a, b, c], RequestInfo())) == ["b", "c", "a"]


def test_least_latency_counts_requests_in_flight_so_a_burst_does_not_herd():
    clock = FakeClock()
    hs = healths(clock, spec("a"), spec("b"), spec("c"))
    for h, lat in zip(hs, (0.10, 0.11, 0.12)):
        h.record_success(lat, 10)
    ll = strategy("least_latency", clock)
    heads = Counter()
    for _ in range(30):  # 30 requests start before any finishes
        head = ll.order(hs, RequestInfo())[0]
        head.in_flight += 1
        heads[head.name] += 1
    assert max(heads.values()) <= 12 and min(heads.values()) >= 8


def test_least_latency_reacts_at_once_to_a_slowdown_and_reprobes_stale_providers():
    clock = FakeClock()
    fast, slow = healths(clock, spec("fast"), spec("slow"))
    fast.record_success(0.05, 10)
    slow.record_success(0.50, 10)  # one slow cold start
    ll = strategy("least_latency", clock)
    assert ll.order([fast, slow], RequestInfo())[0].name == "fast"
    clock.now += 1
    fast.record_success(0.9, 10)  # fast became slow: the peak estimate jumps up at once
    assert ll.order([fast, slow], RequestInfo())[0].name == "slow"
    # "slow" is not sampled for a while: it gets a probe even though its estimate is higher
    clock.now += 1
    fast.record_success(0.2, 10)
    clock.now += 30
    fast.record_success(0.2, 10)
    assert ll.order([fast, slow], RequestInfo())[0].name == "slow"


def test_latency_estimate_decays_toward_recent_fast_samples():
    clock = FakeClock()
    (h,) = healths(clock, spec("a"))
    h.record_success(1.0, 1)
    for _ in range(30):
        clock.now += 0.5
        h.record_success(0.1, 1)
    assert h.latency.value < 0.15


def test_least_latency_caps_probes_at_its_exploration_share():
    clock = FakeClock()
    fast, mid, slow = healths(clock, spec("a"), spec("b"), spec("c"))
    ll = make_strategy("least_latency", prices=lambda s: None, clock=clock, rng=random.Random(0))
    for h, lat in ((fast, 0.03), (mid, 0.06), (slow, 0.09)):
        h.record_success(lat, 1)
    heads = Counter()
    for _ in range(400):  # one request per second: every idle provider is "stale" again and again
        clock.now += 1.0
        head = ll.order([fast, mid, slow], RequestInfo())[0]
        heads[head.name] += 1
        head.record_success({"a": 0.03, "b": 0.06, "c": 0.09}[head.name], 1)
    probes = heads["b"] + heads["c"]
    assert 2 <= probes <= 1 + 0.05 * 400  # idle providers are re-probed, but at most 5 % of traffic
    assert heads["a"] == 400 - probes  # everything else goes to the fastest
