"""Per-provider ``max_concurrency``: one bound for the whole router, across threads and event loops.

``asyncio.Semaphore`` belongs to one loop, and a router is awaited from many (its own loop
thread for the sync API, a notebook's loop, ``asyncio.run`` in a script): one semaphore per
loop let three requests run at a cap of one. ``SharedSlots`` keeps its count under a thread
lock and wakes a waiter on the waiter's own loop, so the cap holds however requests arrive.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterable

from ._types import ProviderSpec


class SharedSlots:
    """A counting semaphore whose waiters may sit on different event loops and threads.

    A freed slot is handed to the longest waiter directly (FIFO, no barging), on that waiter's
    loop; a waiter cancelled at the same moment gives it on at once.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._free = size
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except BaseException:
            with self._lock:
                try:
                    self._waiters.remove((loop, waiter))
                    handed_over = False
                except ValueError:  # release() already chose this waiter
                    handed_over = True
            if handed_over and waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we were cancelled: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._hand_over, waiter)
                    return
                except RuntimeError:  # that loop is closed: its waiter is gone
                    continue
            self._free += 1

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled while the hand-over was on its way
            self.release()
        else:
            waiter.set_result(None)


class ProviderSlots:
    """The ``SharedSlots`` of each provider that has a ``max_concurrency``."""

    def __init__(self, specs: Iterable[ProviderSpec]) -> None:
        self._slots = {s.name: SharedSlots(s.max_concurrency) for s in specs if s.max_concurrency}

    def get(self, name: str) -> SharedSlots | None:
        return self._slots.get(name)
