"""How long to wait before trying again: capped exponential backoff with jitter, Retry-After honoured.

A policy is a small immutable object; the random generator is passed in, so tests are exact.
Moving to another provider never waits; only a retry of the same provider (or a restart of the
candidate list) does.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.25
    multiplier: float = 2.0
    max_s: float = 8.0
    jitter: float = 0.5  # fraction of the delay drawn at random: delay × (1 - jitter·u)
    retry_after_cap_s: float = 60.0  # a provider asking for longer is skipped, not waited for

    def delay(self, retry_index: int, rng: _random.Random, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry_index`` (0-based) of the same provider.

        Returns None when the provider asked for more than ``retry_after_cap_s``: do not wait,
        fall back at once (or give up when there is nowhere to fall back to).
        """
        if retry_after is not None:
            if retry_after > self.retry_after_cap_s:
                return None
            return max(retry_after, 0.0)
        base = min(self.initial_s * self.multiplier**retry_index, self.max_s)
        return base * (1.0 - self.jitter * rng.random())
