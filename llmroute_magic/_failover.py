"""The failover layer: candidate order, retries, backoff and the error policy — nothing else.

A request makes at most ``1 + max_retries`` attempts. ``FailoverPolicy`` decides, from a
``FailoverState`` alone and without I/O, what comes next:

    next_step(state)          -> Try(provider, wait_s)   or Stop(error)
    after_failure(state, err) -> None (go on)            or Stop(error)

and ``FailoverLayer`` is the small driver that waits, asks the attempt layer and feeds the
result back. What to do about a failed attempt depends on its ``error_type`` alone
(``_errors.ERROR_POLICY``):

    RETRY          next candidate at once (fallback on) or the same provider after a backoff
    DROP_PROVIDER  skip that provider for this request (the pool cools it down)
    LARGER_CONTEXT only providers with a larger context window remain; none -> ProviderError
    FAIL_FAST      raise the ProviderError (the request itself is wrong)
    RESEND         the same provider again at once: it refused a field the adapter adds on its own
                   (not the caller's), which the adapter now leaves out; not counted as a retry

Moving to another provider never waits; a backoff (or the provider's Retry-After) comes only
before retrying the same provider or starting the candidate list again. Errors after a stream's
first text never reach this layer: the attempt layer's reply surfaces them to the caller.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import AllProvidersFailed, LLMRouteError, Policy, ProviderError
from ._health import ProviderHealth
from ._retry import Backoff

if TYPE_CHECKING:
    from ._attempt import AttemptLayer
    from ._pool import ProviderPool
    from ._reply import Reply
    from ._request import Request

# (excluded names, smallest context window that is too small) -> the strategy's order over the rest
CandidateSource = Callable[[set[str], "int | None"], "list[ProviderHealth]"]

NO_PROVIDER_HINT = (
    "What to do: no provider is available — every one is disabled. Enable one with "
    "router.enable(name) (or %llm enable NAME)."
)


class Try(NamedTuple):  # named tuples: a step is made on every request, and they cost a fifth of a dataclass
    provider: ProviderHealth
    wait_s: float = 0.0


class Stop(NamedTuple):
    error: LLMRouteError


@dataclass(slots=True)
class FailoverState:
    """Everything the policy knows about one request so far."""

    candidates: CandidateSource
    max_attempts: int
    fallback_enabled: bool
    pinned: ProviderHealth | None = None  # a provider the caller named, or the one retried with fallback off
    attempts: int = 0
    errors: list[ProviderError] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)
    min_context: int | None = None
    order: list[ProviderHealth] = field(default_factory=list)
    position: int = 0
    retries_of: dict[str, int] = field(default_factory=dict)  # same-provider retries so far, per provider
    named: bool = False  # pinned by the caller (never falls back), not by fallback being off
    resend: ProviderHealth | None = None  # serves the next attempt at once (Policy.RESEND)


class FailoverPolicy:
    def __init__(self, backoff: Backoff, rng: random.Random) -> None:
        self.backoff = backoff
        self.rng = rng

    def next_step(self, state: FailoverState) -> Try | Stop:
        while state.attempts < state.max_attempts:
            if state.resend is not None:
                again, state.resend = state.resend, None
                return Try(again)
            h, retrying = self._choose(state)
            if h is None:
                break
            if not retrying:
                return Try(h)
            n = state.retries_of.get(h.name, 0)
            state.retries_of[h.name] = n + 1
            last = next((e for e in reversed(state.errors) if e.provider == h.name), None)
            wait = self.backoff.delay(n, self.rng, last.retry_after if last else None)
            if wait is not None:
                return Try(h, wait)
            # It asked to wait beyond the cap: not worth waiting for, skip it.
            if state.pinned is not None:
                break
            state.excluded.add(h.name)
            state.order = [p for p in state.order if p is not h]
            state.position = max(state.position - 1, 0)
        return Stop(self._all_failed(state))

    def _choose(self, state: FailoverState) -> tuple[ProviderHealth | None, bool]:
        """Who serves the next attempt, and whether that is a retry of the same provider."""
        previous = state.errors[-1] if state.errors else None
        if state.pinned is None and not state.fallback_enabled and previous is not None:
            state.pinned = next((h for h in state.order if h.name == previous.provider), None)
        if state.pinned is not None:
            h = state.pinned
            return (None, False) if h.name in state.excluded else (h, previous is not None)
        # Every candidate has failed once: the list starts again, after a backoff (not when it is
        # empty: before the first attempt, or when the providers left were skipped).
        restarting = previous is not None and bool(state.order) and state.position >= len(state.order)
        if state.position >= len(state.order):
            state.order, state.position = state.candidates(state.excluded, state.min_context), 0
            if not state.order:
                return None, False
        h = state.order[state.position]
        state.position += 1
        return h, previous is not None and (restarting or previous.provider == h.name)

    def after_failure(self, state: FailoverState, err: ProviderError) -> Stop | None:
        state.errors.append(err)
        policy = err.policy
        if policy in (Policy.FAIL_FAST, Policy.SURFACE):
            return Stop(err)
        if policy is Policy.RESEND:
            # The router's own request was at fault, and the adapter now leaves the field out: the
            # same provider again, at once, without spending one of the caller's retries.
            h = next((h for h in state.order if h.name == err.provider), state.pinned)
            if h is None or h.name != err.provider:
                return Stop(err)
            state.resend = h
            state.max_attempts += 1
            return None
        if policy is Policy.DROP_PROVIDER:
            state.excluded.add(err.provider)
        elif policy is Policy.LARGER_CONTEXT:
            window = next((h.spec.context_window for h in state.order if h.name == err.provider), None)
            if window is None and state.pinned is not None:
                window = state.pinned.spec.context_window
            if window is None or state.named or not state.fallback_enabled:
                return Stop(err)
            state.min_context = max(state.min_context or 0, window)
            # The new list serves the next attempt as it is: asking the strategy twice would
            # advance a stateful one (round robin) twice.
            state.order, state.position = state.candidates(state.excluded, state.min_context), 0
            if not state.order:
                return Stop(err)
        return None

    @staticmethod
    def _all_failed(state: FailoverState) -> AllProvidersFailed:
        if not state.errors:
            return AllProvidersFailed([], hint=NO_PROVIDER_HINT)
        return AllProvidersFailed(state.errors)


class FailoverLayer:
    """Drives ``FailoverPolicy`` over the attempt layer; returns the first attempt's reply that commits."""

    def __init__(
        self,
        attempts: AttemptLayer,
        pool: ProviderPool,
        policy: FailoverPolicy,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self._attempts = attempts
        self._pool = pool
        self._policy = policy
        self._sleep = sleep

    def start(self, request: Request) -> FailoverState:
        settings = request.settings
        pinned = self._pool.get(request.provider) if request.provider is not None else None
        self._pool.require(request.needs, request.provider)
        # A partial, not a closure: one object per request in flight instead of a function and its cells.
        candidates = partial(self._pool.candidates, settings.strategy, request.info, request.needs)
        return FailoverState(
            candidates, 1 + settings.max_retries, settings.fallback_enabled, pinned=pinned, named=pinned is not None
        )

    async def handle(self, request: Request) -> Reply:
        state = self.start(request)
        while True:
            with self._pool.lock:  # choose and count it in flight in one step
                step = self._policy.next_step(state)
                if isinstance(step, Stop):
                    raise step.error
                claim = self._pool.claim(step.provider)
            state.attempts += 1
            try:
                if step.wait_s > 0:
                    await self._sleep(step.wait_s)
                return await self._attempts.handle(request, step.provider.spec, state.attempts, claim)
            except ProviderError as err:
                stop = self._policy.after_failure(state, err)
                if stop is not None:
                    raise stop.error from None
            except BaseException:
                claim.release()  # cancelled before the attempt began (a no-op once it began)
                raise
