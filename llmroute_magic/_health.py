"""What the router knows about each provider at run time: load, speed, failures.

One ``ProviderHealth`` per provider, owned by the router and mutated only under the router's lock
(requests run on several threads and event loops). Strategies read it; they never change it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ._types import ProviderSpec

Clock = Callable[[], float]

DEFAULT_OUTPUT_TOKENS = 256.0


@dataclass(slots=True)
class LatencyEstimate:
    """Peak-EWMA latency estimate: jumps up at once on a slow sample, decays toward fast ones.

    The weight of the old estimate decays with the time since the last sample (``tau_s``), so a
    provider that was slow a minute ago is not judged by it forever. ``last`` (the latest sample)
    and ``samples`` (how many) let a strategy tell a fresh answer from an old estimate: it counts
    the requests routed since a provider's last sample and follows up on a probe that came back
    fast, so recovery is counted in requests as well as seconds (see ``LeastLatencyStrategy``).
    """

    tau_s: float = 5.0
    min_share: float = 0.1
    value: float | None = None
    last_sample: float = -math.inf  # when (clock time)
    last: float | None = None  # the latest sample, seconds
    samples: int = 0

    def observe(self, latency_s: float, now: float) -> None:
        if self.value is None or latency_s > self.value:
            self.value = latency_s  # peak: react to slowness at once
        else:
            # Old knowledge fades with time (tau_s) and, so that a burst of back-to-back samples
            # still counts, each sample gets at least min_share of the estimate.
            w = min(math.exp(-max(now - self.last_sample, 0.0) / self.tau_s), 1.0 - self.min_share)
            self.value = self.value * w + latency_s * (1.0 - w)
        self.last_sample = now
        self.last = latency_s
        self.samples += 1


@dataclass(slots=True)
class ProviderHealth:
    spec: ProviderSpec
    clock: Clock
    enabled: bool = True
    in_flight: int = 0
    latency: LatencyEstimate = field(default_factory=LatencyEstimate)
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    last_failure: float = -math.inf
    output_tokens_mean: float | None = None
    completed: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def cooling_down(self, now: float | None = None) -> bool:
        return (self.clock() if now is None else now) < self.cooldown_until

    def expected_output_tokens(self) -> float:
        return DEFAULT_OUTPUT_TOKENS if self.output_tokens_mean is None else self.output_tokens_mean

    def record_success(self, latency_s: float, output_tokens: int) -> None:
        now = self.clock()
        self.latency.observe(latency_s, now)
        self.consecutive_failures = 0
        self.cooldown_until = 0.0
        self.completed += 1
        n = min(self.completed, 50)  # running mean that keeps adapting after 50 samples
        prev = self.output_tokens_mean
        self.output_tokens_mean = float(output_tokens) if prev is None else prev + (output_tokens - prev) / n

    def record_failure(
        self, *, threshold: int, cooldown_s: float, immediate: bool = False, latency_s: float | None = None
    ) -> bool:
        """Count a failure; returns True when this failure starts a cooldown."""
        now = self.clock()
        self.last_failure = now
        self.consecutive_failures += 1
        if latency_s is not None:
            self.latency.observe(latency_s, now)
        if (immediate or self.consecutive_failures >= threshold) and cooldown_s > 0 and not self.cooling_down(now):
            self.cooldown_until = now + cooldown_s
            return True
        return False
