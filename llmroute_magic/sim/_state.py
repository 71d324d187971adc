"""The simulator's mutable state: live profiles, fault queues, rate windows, RNGs and the counters.

The server's event loop thread and the caller's thread both touch it, so every access holds one
lock; each critical section is a few dictionary operations, never an await.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from ._profiles import INJECTABLE, ProviderProfile

RATE_WINDOW_S = 60.0


@dataclass(slots=True)
class Plan:
    """What to do with one admitted request: which fault (None = answer), and how long to wait first."""

    profile: ProviderProfile
    fault: str | None
    delay_s: float
    retry_after_s: float | None = None  # for 429s


def _empty_counters() -> dict[str, Any]:
    # max_in_flight: the most requests this provider was serving at once (admitted, not yet ended)
    return {"requests": 0, "statuses": {}, "input_tokens": 0, "output_tokens": 0, "cost": 0.0, "max_in_flight": 0}


class SimState:
    def __init__(self, profiles: Iterable[ProviderProfile], clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._initial: dict[str, ProviderProfile] = {}
        self._profiles: dict[str, ProviderProfile] = {}
        self._fault_rng: dict[str, random.Random] = {}
        self._jitter_rng: dict[str, random.Random] = {}
        self._queued: dict[str, deque[Any]] = {}
        self._window: dict[str, deque[Any]] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        for p in profiles:
            self.add(p)
        if not self._profiles:
            raise ConfigError("profiles: the simulator needs at least one provider profile", field="profiles")

    # -- profiles ---------------------------------------------------------------------------
    def add(self, profile: ProviderProfile) -> None:
        if not isinstance(profile, ProviderProfile):
            raise ConfigError(f"profiles: expected a ProviderProfile, got {type(profile).__name__}", field="profiles")
        with self._lock:
            self._initial.setdefault(profile.name, profile)
            self._install(profile)
            self._queued.setdefault(profile.name, deque())
            self._window.setdefault(profile.name, deque())
            self._stats.setdefault(profile.name, _empty_counters())

    def _install(self, profile: ProviderProfile) -> None:
        old = self._profiles.get(profile.name)
        self._profiles[profile.name] = profile
        if old is None or old.seed != profile.seed:
            self._fault_rng[profile.name] = random.Random(f"faults:{profile.seed}")
            self._jitter_rng[profile.name] = random.Random(f"jitter:{profile.seed}")

    def get(self, name: str) -> ProviderProfile | None:
        return self._profiles.get(name)

    def names(self) -> list[str]:
        return list(self._profiles)

    def profiles(self) -> dict[str, ProviderProfile]:
        with self._lock:
            return dict(self._profiles)

    def known(self, name: str) -> ProviderProfile:
        """The profile of ``name``, or a ConfigError naming the providers there are."""
        profile = self._profiles.get(name)
        if profile is None:
            raise ConfigError(
                f"provider: unknown simulated provider {name!r}; known: {', '.join(self._profiles)}", field="provider"
            )
        return profile

    def update(self, name: str, **changes: Any) -> ProviderProfile:
        with self._lock:
            new = self.known(name).replace(**changes)
            if new.name != name:
                raise ConfigError(f"profiles.{name}.name: a provider cannot be renamed", field=f"profiles.{name}.name")
            self._install(new)
            return new

    def inject(self, name: str, faults: Iterable[str | None]) -> int:
        faults = list(faults)
        for f in faults:
            if f is not None and f not in INJECTABLE:
                raise ConfigError(
                    f"inject: unknown fault kind {f!r}; allowed: None (a normal answer), {', '.join(INJECTABLE)}",
                    field="inject",
                )
        with self._lock:
            self.known(name)
            self._queued[name].extend(faults)
            return len(self._queued[name])

    # -- per request ------------------------------------------------------------------------
    def admit(self, name: str, *, stream: bool, key_ok: Callable[[str], bool]) -> Plan:
        """Count the request and decide its fate: auth, then the rpm limit, then injected, then random faults.

        ``key_ok(key)``: whether the request carries the API key ``key`` (asked only of a profile that requires one).
        """
        with self._lock:
            profile = self._profiles[name]
            s = self._stats[name]
            s["requests"] += 1
            s["max_in_flight"] = max(s["max_in_flight"], s["requests"] - sum(s["statuses"].values()))
            if profile.require_api_key is not None and not key_ok(profile.require_api_key):
                return Plan(profile, "unauthorized", 0.0)
            if profile.rate_limit_rpm is not None:
                now = self._clock()
                window = self._window[name]
                while window and window[0] <= now - RATE_WINDOW_S:
                    window.popleft()
                if len(window) >= profile.rate_limit_rpm:
                    return Plan(profile, "rate_limit", 0.0, retry_after_s=max(0.0, window[0] + RATE_WINDOW_S - now))
                window.append(now)
            fault = None
            queue = self._queued[name]
            if queue:
                fault = queue.popleft()
            elif profile.faults:
                r = self._fault_rng[name].random()
                acc = 0.0
                for kind, p in profile.faults.items():
                    acc += p
                    if r < acc:
                        fault = kind
                        break
            delay = (profile.ttft_s or profile.latency_s) if stream else profile.latency_s
            if profile.jitter_s:
                delay += self._jitter_rng[name].uniform(0.0, profile.jitter_s)
            return Plan(profile, fault, delay, retry_after_s=profile.retry_after_s)

    def record(self, name: str, status: str) -> None:
        with self._lock:
            statuses = self._stats[name]["statuses"]
            statuses[status] = statuses.get(status, 0) + 1

    def count_unadmitted(self, name: str, status: str) -> None:
        """A request to a known provider that was rejected before admission (e.g. a malformed body)."""
        with self._lock:
            s = self._stats[name]
            s["requests"] += 1
            s["statuses"][status] = s["statuses"].get(status, 0) + 1

    def bill(self, profile: ProviderProfile, input_tokens: int = 0, output_tokens: int = 0) -> None:
        cost = input_tokens * profile.input_price / 1e6 + output_tokens * profile.output_price / 1e6
        with self._lock:
            s = self._stats[profile.name]
            s["input_tokens"] += input_tokens
            s["output_tokens"] += output_tokens
            s["cost"] += cost

    # -- reporting ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"providers": copy.deepcopy(self._stats)}

    def reset_stats(self) -> None:
        with self._lock:
            for name in self._stats:
                self._stats[name] = _empty_counters()

    def reset_all(self) -> None:
        """Back to the starting profiles, fresh RNGs, empty queues and rate windows, zero counters."""
        with self._lock:
            for name in list(self._profiles):
                self._profiles.pop(name)
                self._install(self._initial[name])
                self._queued[name].clear()
                self._window[name].clear()
                self._stats[name] = _empty_counters()
