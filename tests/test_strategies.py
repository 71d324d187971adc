"""Strategies are pure: a fake clock and a seeded rng, no network, no sleeping."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    return make_strategy(kind, prices=lambda s: PRICES.get(s.name), clock=clock or FakeClock(), rng=random.Random(seed))


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


# -- least latency: cold starts, recovery counted in requests, power of two choices -------------------
# Each test drives the strategy as the router does: ask for an order, the head's in_flight goes up
# while its attempt runs, then down, and record_success(latency) with the fake clock advanced.


def least_latency(clock, seed=0, **kw):
    from llmroute_magic._strategies import LeastLatencyStrategy

    return LeastLatencyStrategy(clock, random.Random(seed), **kw)


def start_burst(ll, hs, n):
    """n requests start before any finishes: each head's in_flight goes up at once."""
    heads = Counter()
    for _ in range(n):
        order = ll.order(hs, RequestInfo())
        assert sorted(names(order)) == sorted(names(hs))
        order[0].in_flight += 1
        heads[order[0].name] += 1
    return heads


def finish(clock, h, latency):
    h.in_flight -= 1
    h.record_success(latency, 10)


def run_sequential(ll, hs, clock, latency_of, n):
    """n requests one after another; latency_of(name, answers so far) is the provider's answer time."""
    heads = []
    answered = Counter()
    for _ in range(n):
        h = ll.order(hs, RequestInfo())[0]
        h.in_flight += 1
        lat = latency_of(h.name, answered[h.name])
        answered[h.name] += 1
        clock.now += lat
        finish(clock, h, lat)
        heads.append(h.name)
    return heads


def test_cold_burst_on_unseen_providers_explores_each_once_then_spreads():
    clock = FakeClock()
    hs = healths(clock, spec("a"), spec("b"), spec("c"))
    ll = least_latency(clock)
    first = ll.order(hs, RequestInfo())[0]
    assert first.name == "a"  # config order breaks the tie between unseen providers
    first.in_flight += 1
    heads = start_burst(ll, hs, 29)
    heads["a"] += 1
    # nothing is known yet: the burst is spread by requests in flight, not herded onto one provider
    assert heads == {"a": 10, "b": 10, "c": 10}


def test_an_unseen_provider_gets_one_request_in_flight_while_the_rest_go_by_what_is_known():
    clock = FakeClock()
    a, b, c = healths(clock, spec("a"), spec("b"), spec("c"))
    ll = least_latency(clock)
    a.record_success(0.05, 10)  # only a is measured; b and c have never answered
    heads = start_burst(ll, [a, b, c], 50)
    assert heads == {"a": 48, "b": 1, "c": 1}
    # b answers (slowly): from now on it is scored like any other provider with an estimate;
    # with 48 in flight on a, a's score is (48 + 1) x 0.05 s = 2.45 s against b's 1 x 1.5 s
    finish(clock, b, 1.5)
    assert names(ll.order([a, b, c], RequestInfo())) == ["b", "a", "c"]  # c: still being explored


def test_a_re_enabled_slow_provider_takes_one_request_of_a_burst_not_all_of_them():
    """The case from issue 10 item 7a: a re-enabled 1.5 s provider took 50/50 of a concurrent burst."""
    clock = FakeClock()
    fast, mid, slow = healths(clock, spec("fast"), spec("mid"), spec("slow"))
    for _ in range(3):
        fast.record_success(0.05, 10)
        mid.record_success(0.06, 10)
    ll = least_latency(clock)
    # slow was disabled from the start and is enabled now, unseen, just before a burst of 50
    heads = start_burst(ll, [fast, mid, slow], 50)
    assert heads["slow"] == 1
    assert heads["fast"] + heads["mid"] == 49
    assert min(heads["fast"], heads["mid"]) >= 18  # the known ones share the burst: no herding either
    # the fallback order lists the known providers before the one being explored
    order = ll.order([fast, mid, slow], RequestInfo())
    assert order[-1].name == "slow"


def test_a_stale_provider_re_enabled_during_a_burst_gets_one_probe_in_flight():
    clock = FakeClock()
    fast, mid, old = healths(clock, spec("fast"), spec("mid"), spec("old"))
    old.record_success(0.08, 10)  # measured (slow) long ago, then disabled
    clock.now += 600
    fast.record_success(0.05, 10)
    mid.record_success(0.06, 10)
    ll = least_latency(clock)
    heads = start_burst(ll, [fast, mid, old], 50)
    # its estimate is stale: it gets a probe, and while the probe is out, nothing more
    assert heads["old"] == 1
    assert heads["fast"] >= 20 and heads["mid"] >= 20
    for _ in range(heads["fast"]):
        finish(clock, fast, 0.05)
    for _ in range(heads["mid"]):
        finish(clock, mid, 0.06)
    finish(clock, old, 0.02)  # it answers faster than the others now: followed up at once
    assert ll.order([fast, mid, old], RequestInfo())[0] is old


def test_stale_estimates_still_spread_a_burst():
    """Providers only probed now and then are not distrusted: that would herd a burst onto one."""
    clock = FakeClock()
    a, b, c = healths(clock, spec("a"), spec("b"), spec("c"))
    b.record_success(0.055, 10)
    c.record_success(0.06, 10)
    clock.now += 30
    for _ in range(5):
        a.record_success(0.05, 10)
    heads = start_burst(least_latency(clock), [a, b, c], 60)
    # b gets the (free) probe, one in flight; c, stale too but not probed (the cap), is scored as it is
    assert heads["b"] == 1
    assert heads["a"] <= 35 and heads["c"] >= 24


def test_after_an_idle_spell_every_stale_estimate_still_counts():
    """A notebook user thinks for a minute between cells: every estimate is stale, none is in doubt."""
    clock = FakeClock()
    fast, slow = healths(clock, spec("fast"), spec("slow"))
    fast.record_success(0.05, 10)
    slow.record_success(1.5, 10)
    clock.now += 60
    heads = start_burst(least_latency(clock), [fast, slow], 30)
    assert heads["slow"] <= 2  # its probe, perhaps; the batch is not spread evenly onto a slow provider


@pytest.mark.parametrize("cold_start_s", [0.2, 1.5])
def test_one_slow_cold_start_sample_is_won_back_within_a_few_dozen_sequential_requests(cold_start_s):
    """Issue 10 item 7b: 200 ms once, then 5 ms for good, beside a steady 50 ms provider."""
    clock = FakeClock()
    fast, steady = healths(clock, spec("fast"), spec("steady"))
    ll = least_latency(clock)

    def latency_of(name, samples):
        if name == "steady":
            return 0.05
        return cold_start_s if samples == 0 else 0.005

    heads = run_sequential(ll, [fast, steady], clock, latency_of, 300)
    assert heads[0] == "fast"  # explored first: the slow cold start
    won_back = next(i for i in range(1, len(heads)) if heads[i : i + 10] == ["fast"] * 10)
    assert won_back <= 36, heads[:60]  # a few dozen requests (1.8 s of the batch), not 10 s (200 requests)
    after = heads[won_back:]
    assert after.count("steady") <= 1 + 0.05 * len(heads)  # then "steady" gets only its probes
    assert after.count("steady") >= 2  # ... and it does get them


def test_recovery_is_counted_in_requests_even_when_the_clock_barely_moves():
    clock = FakeClock()
    fast, steady = healths(clock, spec("fast"), spec("steady"))
    fast.record_success(0.2, 10)  # a slow first answer
    steady.record_success(0.05, 10)
    ll = least_latency(clock)
    heads = []
    for _ in range(40):  # the clock advances 1 ms a request: no time-based probe can fire
        head = ll.order([fast, steady], RequestInfo())[0]
        clock.now += 0.001
        head.record_success(0.005 if head is fast else 0.05, 10)
        heads.append(head.name)
    assert heads[:20] == ["steady"] * 20
    assert heads[-10:] == ["fast"] * 10


def test_a_fast_fluke_from_a_slow_provider_costs_one_follow_up_at_most():
    clock = FakeClock()
    fast, slow = healths(clock, spec("fast"), spec("slow"))
    fast.record_success(0.03, 10)
    slow.record_success(0.09, 10)
    ll = least_latency(clock)
    flukes = iter([0.01])  # the first probe of "slow" comes back fast once

    def latency_of(name, samples):
        return 0.03 if name == "fast" else next(flukes, 0.09)

    heads = run_sequential(ll, [fast, slow], clock, latency_of, 200)
    assert heads.count("slow") <= 1 + 1 + 0.05 * 200  # its probes, plus one follow-up of the fluke
    first_probe = heads.index("slow")
    assert heads[first_probe + 1] == "slow" and heads[first_probe + 2] == "fast"


def test_a_follow_up_keeps_one_request_in_flight_during_a_burst():
    clock = FakeClock()
    fast, steady = healths(clock, spec("fast"), spec("steady"))
    fast.record_success(0.2, 10)
    steady.record_success(0.05, 10)
    ll = least_latency(clock, probe_after_requests=5)
    for _ in range(5):  # sequential traffic on steady until fast is stale by count
        h = ll.order([fast, steady], RequestInfo())[0]
        assert h is steady
        h.record_success(0.05, 10)
    probe = ll.order([fast, steady], RequestInfo())[0]
    assert probe is fast
    probe.in_flight += 1
    assert start_burst(ll, [fast, steady], 10) == {"steady": 10}  # the probe is pending: one in flight
    for _ in range(10):
        finish(clock, steady, 0.05)
    finish(clock, fast, 0.005)  # it comes back fast: fast is followed up, one request at a time
    assert start_burst(ll, [fast, steady], 10) == {"fast": 1, "steady": 9}


def test_a_probe_that_fails_ends_without_a_follow_up():
    clock = FakeClock()
    fast, steady = healths(clock, spec("fast"), spec("steady"))
    fast.record_success(0.2, 10)
    steady.record_success(0.05, 10)
    ll = least_latency(clock, probe_after_requests=3)
    for _ in range(3):
        ll.order([fast, steady], RequestInfo())[0].record_success(0.05, 10)
    assert ll.order([fast, steady], RequestInfo())[0] is fast  # the probe
    fast.record_failure(threshold=3, cooldown_s=30.0)  # it failed (in_flight went up and down)
    assert ll.order([fast, steady], RequestInfo())[0] is steady


def test_probing_by_request_count_stays_within_the_exploration_share():
    clock = FakeClock()
    hs = healths(clock, spec("a"), spec("b"), spec("c"), spec("d"))
    lat = {"a": 0.03, "b": 0.05, "c": 0.07, "d": 0.09}
    for h in hs:
        h.record_success(lat[h.name], 10)
    ll = least_latency(clock)
    heads = run_sequential(ll, hs, clock, lambda n, k: lat[n], 1000)
    others = len(heads) - heads.count("a")
    assert others <= 1 + 0.05 * 1000  # three idle providers stale every 20 requests: still 5 % at most
    assert {"b", "c", "d"} <= set(heads)  # every one is re-measured now and then


def burst_heads_p2c(seed, n_providers=6, n=60):
    clock = FakeClock()
    hs = healths(clock, *(spec(f"p{i}") for i in range(n_providers)))
    for i, h in enumerate(hs):
        h.record_success(0.05 + 0.005 * i, 10)
    ll = least_latency(clock, seed=seed)
    return start_burst(ll, hs, n)


def test_power_of_two_choices_spreads_a_burst_across_six_providers():
    heads = burst_heads_p2c(seed=3)
    assert sum(heads.values()) == 60 and len(heads) == 6
    assert max(heads.values()) <= 16  # 10 each if even; no provider takes a quarter of the burst


def test_power_of_two_choices_serves_the_faster_of_each_sampled_pair():
    class Recording(random.Random):
        def sample(self, population, k, **kw):
            self.pair = super().sample(population, k, **kw)
            return self.pair

    from llmroute_magic._strategies import LeastLatencyStrategy

    clock = FakeClock()
    hs = healths(clock, *(spec(f"p{i}") for i in range(7)))
    lat = [0.09, 0.02, 0.05, 0.07, 0.03, 0.08, 0.04]
    for h, x in zip(hs, lat):
        h.record_success(x, 10)
    rng = Recording(5)
    ll = LeastLatencyStrategy(clock, rng, probe_after_requests=10**9, probe_after_s=1e9)
    heads = Counter()
    for _ in range(700):
        head = ll.order(hs, RequestInfo())[0]
        a, b = rng.pair
        assert head is min((a, b), key=lambda h: h.latency.value)
        heads[head.name] += 1
    assert "p0" not in heads  # the slowest loses every pair it is drawn in
    by_speed = [heads[h.name] for h in sorted(hs, key=lambda h: h.latency.value)]
    assert by_speed[0] > by_speed[2] > by_speed[4]  # the faster, the more often it wins


def test_power_of_two_choices_is_deterministic_with_a_seeded_rng():
    assert burst_heads_p2c(seed=11) == burst_heads_p2c(seed=11)
    seqs = []
    for _ in range(2):
        clock = FakeClock()
        hs = healths(clock, *(spec(f"p{i}") for i in range(6)))
        ll = least_latency(clock, seed=11)
        seqs.append(run_sequential(ll, hs, clock, lambda n, k: 0.01 * (1 + int(n[1:])), 200))
    assert seqs[0] == seqs[1]
    assert len(set(seqs[0])) == 6


def test_power_of_two_choices_samples_only_measured_providers():
    clock = FakeClock()
    hs = healths(clock, *(spec(f"p{i}") for i in range(6)), spec("q-new"))
    assert hs[-1].name == "q-new"
    for h in hs[:-1]:
        h.record_success(0.05, 10)
    heads = start_burst(least_latency(clock, seed=2), hs, 60)
    assert heads["q-new"] == 1  # explored once; the pairs are drawn from the measured six


# -- property: every strategy returns a permutation of its candidates, whatever the state ---------------

_op = st.one_of(
    st.tuples(st.just("order"), st.integers(0, 127), st.integers(0, 5000), st.none() | st.integers(1, 4096)),
    st.tuples(st.just("start"), st.integers(0, 6)),
    st.tuples(st.just("end"), st.integers(0, 6), st.floats(0.0, 3.0)),
    st.tuples(st.just("fail"), st.integers(0, 6), st.none() | st.floats(0.0, 3.0)),
    st.tuples(st.just("tick"), st.floats(0.0, 60.0)),
)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(list(RoutingStrategy)),
    weights=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=7),
    priorities=st.lists(st.none() | st.integers(0, 3), min_size=7, max_size=7),
    ops=st.lists(_op, max_size=80),
    seed=st.integers(0, 2**16),
)
def test_order_is_always_a_permutation_of_its_candidates(kind, weights, priorities, ops, seed):
    clock = FakeClock()
    prices = {f"p{i}": (0.1 * i, 0.4 * i) if i % 3 else None for i in range(7)}
    strat = make_strategy(kind, prices=lambda s: prices.get(s.name), clock=clock, rng=random.Random(seed))
    hs = [ProviderHealth(spec(f"p{i}", weight=w, priority=priorities[i]), clock) for i, w in enumerate(weights)]
    hs.sort(key=lambda h: (h.spec.priority is None, h.spec.priority or 0))  # as the router hands them over
    for op in ops:
        if op[0] == "order":
            mask = op[1]
            cands = [h for i, h in enumerate(hs) if not mask or mask >> i & 1] or hs
            out = strat.order(cands, RequestInfo(prompt_tokens=op[2], max_tokens=op[3]))
            assert len(out) == len(cands)
            assert {id(h) for h in out} == {id(h) for h in cands}
        elif op[0] == "start":
            hs[op[1] % len(hs)].in_flight += 1
        elif op[0] == "end":
            h = hs[op[1] % len(hs)]
            if h.in_flight:
                h.in_flight -= 1
                h.record_success(op[2], 10)
        elif op[0] == "fail":
            h = hs[op[1] % len(hs)]
            if h.in_flight:
                h.in_flight -= 1
            h.record_failure(threshold=3, cooldown_s=30.0, latency_s=op[2])
        else:
            clock.now += op[1]


@settings(max_examples=150, deadline=None)
@given(
    latencies=st.lists(st.none() | st.floats(0.001, 5.0), min_size=2, max_size=8),
    burst=st.integers(1, 80),
    seed=st.integers(0, 2**16),
    age=st.floats(0.0, 30.0),
)
def test_a_burst_never_puts_two_requests_on_a_provider_it_knows_nothing_about(latencies, burst, seed, age):
    clock = FakeClock()
    hs = [ProviderHealth(spec(f"p{i}"), clock) for i in range(len(latencies))]
    for h, lat in zip(hs, latencies):
        if lat is not None:
            h.record_success(lat, 10)
    clock.now += age  # some estimates may be stale by now
    start_burst(least_latency(clock, seed=seed), hs, burst)
    unseen = [h for h, lat in zip(hs, latencies) if lat is None]
    if len(unseen) < len(hs):  # something is known (stale or not): explore one request at a time
        assert all(h.in_flight <= 1 for h in unseen)
    else:  # nothing known at all: spread, don't herd
        assert max(h.in_flight for h in hs) - min(h.in_flight for h in hs) <= 1
