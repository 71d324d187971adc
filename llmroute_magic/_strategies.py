"""Routing strategies: each turns the available providers into an ordered candidate list.

The head serves; the rest is the fallback order. A strategy reads ``ProviderHealth`` (load,
latency, output size) and never changes it; the only state a strategy keeps is its own
(round-robin weights, its random generator, least-latency's probe bookkeeping). Every ``order``
returns a permutation of its candidates. Clock and randomness are injected so tests are pure and
never sleep. The router calls ``order`` under its lock, once per candidate list.

Candidates arrive already sorted by priority (unset last), then config order; every sort here is stable, so that order
breaks ties.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._health import Clock, ProviderHealth
from ._types import ProviderSpec, RoutingStrategy

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

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
        return list(candidates)


class RoundRobinStrategy(Strategy):
    """Smooth weighted round robin (as in nginx): weights 2:1 give A B A A B A, never A A B bursts."""

    kind = RoutingStrategy.ROUND_ROBIN

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
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

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
        rand = self.rng.random
        return sorted(candidates, key=lambda h: -(rand() ** (1.0 / h.spec.weight)))


class LeastBusyStrategy(Strategy):
    """Fewest requests in flight relative to weight."""

    kind = RoutingStrategy.LEAST_BUSY

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
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

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
        return sorted(candidates, key=lambda h: self.expected_cost(h, request))


class LeastLatencyStrategy(Strategy):
    """Fastest expected answer, counting the queue: latency estimate × (requests in flight + 1).

    Each call picks the head in this order; the fallback order is every other provider with an
    estimate, best score first, then the unseen ones (fewest in flight first). A fallback attempt
    follows a failure: it goes where answers are known to come fast, exploring is the head's job.

    1. **Explore an unseen provider, one request at a time.** An unseen provider that is idle gets
       the request; one that already has a request in flight ranks after every provider with a
       trusted estimate (Finagle's peak-EWMA gives a node with no latency yet but work pending a
       large penalty for the same reason). So a burst sends one request to a new (or re-enabled)
       provider and routes the rest by what is known; when nothing at all is known, the burst is
       spread by requests in flight instead of herding onto the first provider. The same holds
       for a provider being probed (its probe not answered yet). A stale estimate otherwise
       counts as it is: most providers keep their speed, and distrusting every estimate not
       refreshed lately would herd a burst onto whichever provider served last (in a steady
       sequential batch every other provider is only probed now and then).
    2. **Follow up a probe that came back fast.** A probe answers one question: is this provider
       faster now than the one we use? When its answer beats the head's score, the provider gets
       the next request too (one in flight), and so on while its answers keep beating the head,
       until its own estimate wins on merit. Probes alone are not enough when requests come
       fast: the estimate (peak-EWMA, which jumped to a 200 ms cold-start sample at once) weighs
       its past by the time since its last sample, and a probe 20 requests (1 s) later still
       leaves it 82 % of the old value, 165 ms against a steady 50 ms provider; each later probe
       takes a sixth of the excess off, about eight probes (160 requests) in all. Weighing every
       fast sample more instead would make every estimate noisier; a follow-up touches only the
       provider in question, costs nothing when its fast answer was real, and one request when it
       was a fluke (its next answer is slow and ends the chain). Follow-ups are not counted as
       probes: each goes to a provider whose latest answer beat the alternative, not a waste.
    3. **Probe stale providers, by time and by requests.** An idle provider not sampled for
       ``probe_after_s`` seconds *or* for ``probe_after_requests`` routed requests gets a probe,
       so one slow answer never locks a fast provider out, whether requests are one a minute or
       twenty a second: a sequential batch at 50 ms a request wins a fast provider back after
       ``probe_after_requests`` requests, not after an idle interval. Probes are capped at
       ``explore_share`` of the requests routed (the first is free), so re-probing idle providers
       never eats a fifth of the traffic.
    4. **Otherwise the best score.** With few candidates every score is compared: in-flight
       counts are exact (the router updates them under its lock), so a burst cannot herd, each
       start raises that provider's score at once. Above ``sample_above`` candidates it uses
       power of two choices among the providers with an estimate: two sampled at random (the
       injected rng), the better score serves. It stays robust when estimates are wrong together.

    State kept here (its own, never the providers'): requests routed, probes sent, the requests
    routed since each provider's last sample, and the probe being followed up.
    """

    kind = RoutingStrategy.LEAST_LATENCY

    def __init__(
        self,
        clock: Clock,
        rng: _random.Random | None = None,
        *,
        probe_after_s: float = 10.0,
        probe_after_requests: int = 20,
        explore_share: float = 0.05,
        sample_above: int = 4,
    ) -> None:
        self.clock = clock
        self.rng = rng or _random.Random()
        self.probe_after_s = probe_after_s
        self.probe_after_requests = probe_after_requests
        self.explore_share = explore_share
        self.sample_above = sample_above
        self._routed = 0
        self._probes = 0
        # provider -> (its sample count when last seen changing, self._routed at that moment)
        self._marks: dict[str, tuple[int, int]] = {}
        # provider -> its sample count when the probe (or follow-up) was sent
        self._following: dict[str, int] = {}

    @staticmethod
    def score(h: ProviderHealth) -> float:
        """Expected wait for an answer: the estimate times the queue this request would join."""
        est = h.latency.value
        return (h.in_flight + 1) * (est if est is not None else 0.0)

    def order(self, candidates: Sequence[ProviderHealth], request: RequestInfo) -> list[ProviderHealth]:
        if len(candidates) <= 1:
            return list(candidates)
        self._routed += 1
        now = self.clock()
        self._settle(candidates)
        # A provider with no estimate, or one being probed, gets one request in flight, no more:
        # while it has one it ranks after the providers with a trusted estimate.
        exploring = {h.name for h in candidates if h.in_flight > 0 and self._in_doubt(h)}
        known = [h for h in candidates if h.latency.value is not None and h.name not in exploring]
        since = {h.name: self._requests_since_sample(h) for h in candidates if h.latency.value is not None}
        head = next((h for h in candidates if h.latency.value is None and h.in_flight == 0), None)
        if head is None:
            best = self._best(known, candidates)
            if known:
                head = self._follow_up(known, best) or self._probe(known, best, since, now) or best
            else:
                head = best

        def fallback_key(h: ProviderHealth) -> tuple[int, float]:
            if h.latency.value is None or h.name in exploring:
                return (1, h.in_flight)
            return (0, self.score(h))

        rest = sorted((h for h in candidates if h is not head), key=fallback_key)
        return [head, *rest]

    def _in_doubt(self, h: ProviderHealth) -> bool:
        return h.latency.value is None or self._following.get(h.name) == h.latency.samples

    def _settle(self, candidates: Sequence[ProviderHealth]) -> None:
        """Forget probes that ended without an answer (failed, cancelled, or never sent)."""
        for h in candidates:
            sent = self._following.get(h.name)
            if sent is not None and h.latency.samples == sent and h.in_flight == 0:
                del self._following[h.name]

    def _best(self, known: list[ProviderHealth], candidates: Sequence[ProviderHealth]) -> ProviderHealth:
        if not known:  # nothing trusted: every provider is being explored; spread, don't herd
            return min(candidates, key=lambda h: h.in_flight)
        if len(known) > self.sample_above:
            a, b = self.rng.sample(known, 2)
            return a if self.score(a) <= self.score(b) else b
        return min(known, key=self.score)

    def _requests_since_sample(self, h: ProviderHealth) -> int:
        n = h.latency.samples
        mark = self._marks.get(h.name)
        if mark is None or mark[0] != n:
            self._marks[h.name] = (n, self._routed)
            return 0
        return self._routed - mark[1]

    def _follow_up(self, known: list[ProviderHealth], best: ProviderHealth) -> ProviderHealth | None:
        """A provider whose probe (or follow-up) answer beat the head's score serves next."""
        if not self._following:
            return None
        bar = self.score(best)
        chosen = None
        for h in known:
            sent = self._following.get(h.name)
            if sent is None or h.latency.samples == sent:
                continue  # not followed, or its answer is not in yet
            last = h.latency.last
            if h is best or h.in_flight > 0 or last is None or last >= bar:
                del self._following[h.name]  # it wins on merit now, or its answer did not beat the head
                continue
            if chosen is None or last < chosen.latency.last:  # type: ignore[operator]
                chosen = h
        if chosen is not None:
            self._following[chosen.name] = chosen.latency.samples
        return chosen

    def _probe(
        self, known: list[ProviderHealth], best: ProviderHealth, since: dict[str, int], now: float
    ) -> ProviderHealth | None:
        if self._probes + 1 > 1 + self.explore_share * self._routed:
            return None
        stale = [
            h
            for h in known
            if h is not best
            and h.in_flight == 0
            and (now - h.latency.last_sample > self.probe_after_s or since[h.name] >= self.probe_after_requests)
        ]
        if not stale:
            return None
        h = min(stale, key=lambda h: (h.latency.last_sample, -since[h.name]))
        self._probes += 1
        self._following[h.name] = h.latency.samples
        return h


def make_strategy(
    kind: RoutingStrategy | str, *, prices: PriceLookup, clock: Clock, rng: _random.Random | None = None
) -> Strategy:
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
