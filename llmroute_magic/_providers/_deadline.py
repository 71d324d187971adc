"""Whole-answer deadlines for plain requests: every deadline of one adapter on one loop timer.

httpx bounds each connect and each read; a server that trickles a byte now and then passes
every read, so a plain answer also gets a deadline for the whole of it. ``asyncio.timeout``
costs two coroutines and a state machine per use, and even one ``loop.call_at`` per request
(a ``TimerHandle``, a heap push and a cancelled handle for the loop to pop, ~20k instructions)
was the largest single cost of a plain request in the router. An adapter's deadlines all have
the same length, so they expire in the order they began: a queue in that order and one timer,
armed for the oldest live deadline, serve them all. Beginning a deadline is an append, ending it
a flag; the timer fires about once per deadline length, not once per request.

    deadlines = DeadlineWatch(60.0)       # one per adapter (an adapter serves one event loop)
    with deadlines.start():
        response = await send()           # TimeoutError once 60 s have passed

On the way out the same check ``asyncio.Timeout`` makes (``uncancel``) tells the deadline's own
cancellation from the caller's: a caller cancelling at the same moment still gets its
``CancelledError``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Any


class Deadline:
    """One request's deadline: a context manager around the awaits it bounds."""

    __slots__ = ("_watch", "task", "_cancelling", "expires", "expired")

    def __init__(self, watch: DeadlineWatch, task: asyncio.Task[Any], expires: float) -> None:
        self._watch = watch
        self.task: asyncio.Task[Any] | None = task  # None once over: a finished task is not kept alive
        self._cancelling = task.cancelling()  # cancellations asked for before ours: not ours to take back
        self.expires = expires
        self.expired = False

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self.task = self.task, None
        if task is None:  # left twice: nothing more to do
            return
        self._watch.ended()
        # Once expired, the deadline's cancel request is taken back whatever the way out (as
        # asyncio.Timeout does): code that turned the cancellation into another error must not
        # leave the task marked as cancelling for the caller's own timeouts and task groups.
        if self.expired and task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class DeadlineWatch:
    """The deadlines, all ``seconds`` long, of the requests of one event loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: deque[Deadline] = deque()  # in the order they began, hence of expiry
        self._live = 0  # deadlines begun and not yet ended
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> Deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline must be used inside a task")
        if loop is not self._loop:  # first use, or (never, for an adapter) another loop
            self._rebind(loop)
        deadline = Deadline(self, task, loop.time() + self.seconds)
        self._queue.append(deadline)
        self._live += 1
        if self._timer is None:
            self._timer = loop.call_at(deadline.expires, self._fire)
        return deadline

    def __len__(self) -> int:
        """Deadlines kept: the live ones, and ended ones behind a live one (at most as many again, plus 64)."""
        return len(self._queue)

    def ended(self) -> None:
        """Drop the ended deadlines at the head (usually all but the ones still running). Behind
        one slow request they would pile up (a minute of requests, at a 60 s deadline) and go in
        one long sweep when it ends: once they outnumber the live ones (and 64), the queue is
        rebuilt without them, which costs each ended deadline one step, once."""
        if self._live:  # (a deadline begun on a loop this watch has left is not counted)
            self._live -= 1
        self._drop_ended_head()
        if len(self._queue) > 2 * self._live + 64:
            self._queue = deque(d for d in self._queue if d.task is not None)

    def _drop_ended_head(self) -> None:
        queue = self._queue
        while queue and queue[0].task is None:
            queue.popleft()

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        queue = self._queue
        try:
            now = loop.time()
            while queue and (queue[0].task is None or queue[0].expires <= now):
                head = queue.popleft()
                if head.task is not None:
                    head.expired = True
                    head.task.cancel()
        finally:  # even if interrupted (Ctrl-C lands anywhere), the next live deadline has its timer
            self._drop_ended_head()
            if queue and self._timer is None:
                self._timer = loop.call_at(queue[0].expires, self._fire)

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()  # another loop's deadlines cannot be served from this one
        self._live = 0
        self._loop = loop
