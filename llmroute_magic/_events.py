"""What the request path tells the rest of the world: three events and the bus that carries them.

    AttemptStarted   an attempt is about to send its request to a provider
    AttemptEnded     it ended (ok, error or cancelled); ``record`` is its ledger row, final
    RequestEnded     the request as a whole ended (a completion, an error, or cancelled)
    UsageReset       the usage view was reset (panels and other running displays start again)

The attempt layer emits the first two the moment the fact is known; the outermost layer emits
the third. Health updates, the ledger, the panel (and later budgets and shared state) are
listeners: the request path imports none of them. Listeners run synchronously in the emitting
task (so a started attempt is counted before the next request is routed); one that raises is
logged and skipped, never allowed to fail the request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._types import AttemptRecord, Completion

if TYPE_CHECKING:
    from ._errors import LLMRouteError, ProviderError

log = logging.getLogger("llmroute_magic")


# Named tuples, not dataclasses: events are made on every attempt, and a tuple costs a fifth.
class AttemptStarted(NamedTuple):
    request_id: str
    attempt: int
    provider: str
    model: str
    streamed: bool


class AttemptEnded(NamedTuple):
    """``error`` is the failure (None when ok or cancelled); ``after_text`` says whether the
    caller had already been given text when it failed (then the request cannot move on)."""

    record: AttemptRecord
    error: ProviderError | None = None
    after_text: bool = False


class RequestEnded(NamedTuple):
    request_id: str
    completion: Completion | None
    error: LLMRouteError | BaseException | None


class UsageReset(NamedTuple):
    """``reset_usage()`` started a new view of the ledger: displays built on it start again."""


Event = AttemptStarted | AttemptEnded | RequestEnded | UsageReset
Listener = Callable[[Any], None]


class EventBus:
    """Listeners by event type; emitting copies nothing and takes no lock (copy-on-write list)."""

    def __init__(self) -> None:
        self._listeners: dict[type, tuple[Listener, ...]] = {}
        self._lock = threading.Lock()

    def subscribe(self, event_type: type, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event of ``event_type``; returns the unsubscribe function."""
        with self._lock:
            self._listeners[event_type] = (*self._listeners.get(event_type, ()), listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners[event_type] = tuple(f for f in self._listeners.get(event_type, ()) if f is not listener)

        return unsubscribe

    def wants(self, event_type: type) -> bool:
        """Whether anyone listens for ``event_type`` (so an event nobody hears is not even built)."""
        return bool(self._listeners.get(event_type))

    def emit(self, event: Event) -> None:
        for listener in self._listeners.get(type(event), ()):
            try:
                listener(event)
            except Exception:  # a broken listener must not lose usage or fail a request
                log.exception("llmroute_magic: %s listener %r failed", type(event).__name__, listener)
