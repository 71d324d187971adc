"""A whole-answer deadline for one plain request, cheaper than ``asyncio.timeout``.

httpx bounds each connect and each read; a server that trickles a byte now and then passes
every read, so a plain answer also gets a deadline for the whole of it. ``asyncio.timeout`` does
that with an async context manager (two coroutines and a state machine per use: about 7 µs a
request here); every plain request pays for it, so this is the same mechanism in its plainest
form: one timer that cancels the task, and on the way out the same check ``asyncio.Timeout``
makes (``uncancel``) to tell its own cancellation from the caller's. ~2 µs.

    with Deadline(seconds):
        response = await send()      # TimeoutError once ``seconds`` have passed
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    __slots__ = ("_task", "_cancelling", "_expired", "_timer")

    def __init__(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()  # cancellations asked for before ours: not ours to take back
        self._expired = False
        self._timer = loop.call_at(loop.time() + seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        # As asyncio.Timeout: a cancellation is the deadline's only when no one else asked for one
        # meanwhile (a caller cancelling at the same moment still gets its CancelledError).
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
