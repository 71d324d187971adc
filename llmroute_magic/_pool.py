"""The providers of one router and what is known about them: enabled, in flight, speed, failures.

``ProviderPool`` answers one question for the failover layer, ``candidates()``: the strategy's
order over the providers that may serve now. The failover layer ``claim``s the one it picks in
the same locked step (so a burst routed in the same instant, from any thread, sees it in
flight) and the attempt releases the claim when it ends. Latency, failures and cooldown are
learnt from ``AttemptEnded`` events only: the attempt layer never touches health. One lock guards
it all: requests arrive from many threads and event loops.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Iterator

from ._capabilities import describe_need, remedy, unmet
from ._errors import ConfigError, Policy
from ._events import AttemptEnded, EventBus
from ._health import Clock, ProviderHealth
from ._strategies import PriceLookup, RequestInfo, Strategy, make_strategy
from ._types import ProviderSpec, RoutingStrategy

COOLDOWN_THRESHOLD = 3  # consecutive failures before a provider rests for cooldown_s


class ProviderPool:
    def __init__(
        self,
        specs: Iterable[ProviderSpec],
        *,
        clock: Clock,
        rng: random.Random,
        prices: PriceLookup,
        cooldown_s: Callable[[], float],
    ) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self._rng = rng
        self._prices = prices
        self._cooldown_s = cooldown_s
        self._health = {s.name: ProviderHealth(s, clock) for s in specs}
        # Explicit priorities first (lowest number first), then the rest; ties keep the config's order.
        self._by_priority = sorted(self._health.values(), key=lambda h: (h.spec.priority is None, h.spec.priority or 0))
        self._strategies: dict[RoutingStrategy, Strategy] = {}

    # -- what users see and switch ------------------------------------------------------------
    def get(self, name: str) -> ProviderHealth:
        try:
            return self._health[name]
        except KeyError:
            raise ConfigError(
                f"provider: unknown provider {name!r}; configured: {', '.join(self._health)}", field="provider"
            ) from None

    def __iter__(self) -> Iterator[ProviderHealth]:
        return iter(self._health.values())

    @property
    def enabled(self) -> list[str]:
        return [name for name, h in self._health.items() if h.enabled]

    def set_enabled(self, name: str, enabled: bool) -> None:
        h = self.get(name)
        with self.lock:
            h.enabled = enabled

    def cooling_down(self) -> list[str]:
        now = self._clock()
        return [name for name, h in self._health.items() if h.cooling_down(now)]

    # -- what the failover layer asks ----------------------------------------------------------
    def candidates(
        self,
        strategy: RoutingStrategy,
        info: RequestInfo,
        needs: frozenset[str],
        excluded: set[str],
        min_context: int | None,
    ) -> list[ProviderHealth]:
        """The strategy's order over usable providers; all cooling down -> the least recently failed."""
        with self.lock:
            now = self._clock()
            usable: list[ProviderHealth] = []
            resting: list[ProviderHealth] = []
            for h in self._by_priority:
                if not h.enabled or h.name in excluded or (needs and _unmet(needs, h.spec)):
                    continue
                if min_context is not None and (h.spec.context_window or 0) <= min_context:
                    continue
                (resting if h.cooling_down(now) else usable).append(h)
            if usable:
                return self._strategy(strategy).order(usable, info)
            if resting:
                return [min(resting, key=lambda h: h.last_failure)]
            return []

    def require(self, needs: frozenset[str], pinned: str | None = None) -> None:
        """A ConfigError when no provider that may serve has every capability the request needs."""
        if not needs:
            return
        names = [pinned] if pinned is not None else self.enabled
        missing = [(s.name, _unmet(needs, s)) for s in (self._health[n].spec for n in names)]
        if any(not m for _, m in missing):
            return
        lacking = "; ".join(f"{name} lacks {', '.join(sorted(m))}" for name, m in missing)
        wanted = ", ".join(describe_need(c) for c in sorted(needs))
        unserved = frozenset().union(*(m for _, m in missing)) or needs
        raise ConfigError(
            f"capabilities: this request needs {wanted}, and no {'such' if pinned is None else 'pinned'} provider "
            f"has it ({lacking or 'no provider is enabled'}). {remedy(unserved, pinned=pinned is not None)}",
            field="capabilities",
        )

    def _strategy(self, kind: RoutingStrategy) -> Strategy:
        s = self._strategies.get(kind)
        if s is None:
            s = self._strategies[kind] = make_strategy(kind, prices=self._prices, clock=self._clock, rng=self._rng)
        return s

    def claim(self, h: ProviderHealth) -> InFlight:
        """Count a request in flight at ``h`` from the moment it is chosen (call under ``lock``, in the
        same hold as ``candidates``): a burst routed meanwhile, from any thread, sees it at once."""
        h.in_flight += 1
        return InFlight(self, h)

    # -- what the request path tells it (event listeners) --------------------------------------
    def listen(self, events: EventBus) -> None:
        events.subscribe(AttemptEnded, self._on_ended)

    def _on_ended(self, event: AttemptEnded) -> None:
        record = event.record
        h = self._health[record.provider]
        with self.lock:
            if record.status == "ok":
                out = record.output_tokens
                h.record_success(record.latency_s, h.expected_output_tokens() if out is None else out)  # type: ignore[arg-type]
            elif event.error is not None and not event.after_text:
                policy = event.error.policy
                if policy is Policy.DROP_PROVIDER:
                    h.record_failure(threshold=COOLDOWN_THRESHOLD, cooldown_s=self._cooldown_s(), immediate=True)
                elif policy is Policy.RETRY:
                    h.record_failure(
                        threshold=COOLDOWN_THRESHOLD,
                        cooldown_s=self._cooldown_s(),
                        latency_s=record.latency_s if record.error_type == "timeout" else None,
                    )


def _unmet(needs: frozenset[str], spec: ProviderSpec) -> frozenset[str]:
    return unmet(needs, spec.api or "openai", spec.effective_capabilities)


class InFlight:
    """One request counted in flight at a provider; ``release()`` ends it (once, whoever calls)."""

    __slots__ = ("_pool", "_health", "_released")

    def __init__(self, pool: ProviderPool, health: ProviderHealth) -> None:
        self._pool = pool
        self._health = health
        self._released = False

    def release(self) -> None:
        with self._pool.lock:
            if not self._released:
                self._released = True
                self._health.in_flight -= 1
