"""Routing strategies: each turns the available providers into an ordered candidate list.

The head serves; the rest is the fallback order. A strategy reads ``ProviderHealth`` (load,
latency, output size) and never changes it; the only state a strategy keeps is its own
(round-robin weights, its random generator). Clock and randomness are injected so tests are
pure and never sleep.

Candidates arrive already sorted by priority (unset last), then config order; every sort here is stable, so that order
breaks ties.
"""

from __future__ import annotations

import math
import random as _random
from dataclasses import dataclass
from typing import Callable, Sequence

from ._types import ProviderSpec, RoutingStrategy
from ._health import Clock, ProviderHealth

# (input, output) USD per 1M tokens, or None when the price is unknown.
PriceLookup = Callable[[ProviderSpec], "tuple[float, float] | None"]


@dataclass(slots=True, frozen=True)
class RequestInfo:
    """What a strategy may know about the request it routes."""

    prompt_tokens: int = 0
    max_tokens: int | None = None


class Strategy:
    kind: RoutingStrategy

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PriorityStrategy(Strategy):
    """Lowest priority number first; the config's order among equals."""

    kind = RoutingStrategy.PRIORITY

    def order(self, candidates, request):
        return list(candidates)


class RoundRobinStrategy(Strategy):
    """Smooth weighted round robin (as in nginx): weights 2:1 give A B A A B A, never A A B bursts."""

    kind = RoutingStrategy.ROUND_ROBIN

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def order(self, candidates, request):
        if len(candidates) <= 1:
            return list(candidates)
        cur = self._current
        total = 0.0
        for h in candidates:
            w = h.spec.weight
            cur[h.name] = cur.get(h.name, 0.0) + w
            total += w
        ranked = sorted(candidates, key=lambda h: -cur[h.name])
        cur[ranked[0].name] -= total
        # The fallback order is who would serve next: highest current weight after the pick.
        return [ranked[0], *sorted(ranked[1:], key=lambda h: -cur[h.name])]


class RandomStrategy(Strategy):
    """Weighted random order without replacement (keys u^(1/w), largest first)."""

    kind = RoutingStrategy.RANDOM

    def __init__(self, rng: _random.Random | None = None) -> None:
        self.rng = rng or _random.Random()

    def order(self, candidates, request):
        rand = self.rng.random
        return sorted(candidates, key=lambda h: -(rand() ** (1.0 / h.spec.weight)))


class LeastBusyStrategy(Strategy):
    """Fewest requests in flight relative to weight."""

    kind = RoutingStrategy.LEAST_BUSY

    def order(self, candidates, request):
        return sorted(candidates, key=lambda h: h.in_flight / h.spec.weight)


class LowestCostStrategy(Strategy):
    """Cheapest expected cost of this request: prompt × input price + expected output × output price.

    Expected output is ``max_tokens`` when given, else the provider's running mean (256 before
    data). A provider whose price is unknown ranks after every priced one.
    """

    kind = RoutingStrategy.LOWEST_COST

    def __init__(self, prices: PriceLookup) -> None:
        self.prices = prices

    def expected_cost(self, h: ProviderHealth, request: RequestInfo) -> float:
        price = self.prices(h.spec)
        if price is None:
            return math.inf
        out = request.max_tokens if request.max_tokens is not None else h.expected_output_tokens()
        return (request.prompt_tokens * price[0] + out * price[1]) / 1e6

    def order(self, candidates, request):
        return sorted(candidates, key=lambda h: self.expected_cost(h, request))


class LeastLatencyStrategy(Strategy):
    """Fastest expected answer, counting the queue: latency estimate × (requests in flight + 1).

    - Unseen providers are explored first (fewest in flight first), so each gets measured.
    - A provider not sampled for ``probe_after_s`` gets a probe request, so a single slow
      cold-start answer never locks a fast provider out; probes are capped at ``explore_share``
      of the requests routed (the first is free), so at low traffic re-probing every idle
      provider cannot eat a fifth of the requests.
    - With few candidates the in-flight counts are exact (one event loop), so comparing all of
      them is the best choice and a burst cannot herd: each start raises that provider's score at
      once. Above ``sample_above`` candidates it uses power of two choices, O(1) and robust to
      estimates that are wrong together.
    """

    kind = RoutingStrategy.LEAST_LATENCY

    def __init__(self, clock: Clock, rng: _random.Random | None = None, *, probe_after_s: float = 10.0,
                 explore_share: float = 0.05, sample_above: int = 4) -> None:
        self.clock = clock
        self.rng = rng or _random.Random()
        self.probe_after_s = probe_after_s
        self.explore_share = explore_share
        self.sample_above = sample_above
        self._routed = 0
        self._probes = 0

    @staticmethod
    def score(h: ProviderHealth) -> float:
        est = h.latency.value
        return (h.in_flight + 1) * (est if est is not None else 0.0)

    def order(self, candidates, request):
        if len(candidates) <= 1:
            return list(candidates)
        unseen = [h for h in candidates if h.latency.value is None]
        if unseen:
            head = min(unseen, key=lambda h: h.in_flight)
        else:
            now = self.clock()
            self._routed += 1
            stale = None
            if self._probes < 1 + self.explore_share * self._routed:
                stale = [h for h in candidates
                         if h.in_flight == 0 and now - h.latency.last_sample > self.probe_after_s]
            if stale:
                self._probes += 1
                head = min(stale, key=lambda h: h.latency.last_sample)
            elif len(candidates) > self.sample_above:
                a, b = self.rng.sample(list(candidates), 2)
                head = a if self.score(a) <= self.score(b) else b
            else:
                head = min(candidates, key=self.score)
        rest = sorted((h for h in candidates if h is not head),
                      key=lambda h: (h.latency.value is not None, self.score(h)))
        return [head, *rest]


def make_strategy(kind: RoutingStrategy | str, *, prices: PriceLookup, clock: Clock,
                  rng: _random.Random | None = None) -> Strategy:
    kind = RoutingStrategy.parse(kind)
    if kind is RoutingStrategy.ROUND_ROBIN:
        return RoundRobinStrategy()
    if kind is RoutingStrategy.RANDOM:
        return RandomStrategy(rng)
    if kind is RoutingStrategy.LEAST_BUSY:
        return LeastBusyStrategy()
    if kind is RoutingStrategy.LOWEST_COST:
        return LowestCostStrategy(prices)
    if kind is RoutingStrategy.LEAST_LATENCY:
        return LeastLatencyStrategy(clock, rng)
    return PriorityStrategy()
