"""The stream objects ``astream()`` and ``stream()`` return.

``AsyncStream`` reads the reply of the request path as the caller iterates. ``SyncStream`` runs
that reading on the router's loop thread and hands the chunks over through a buffer: the loop
reads the provider as fast as it sends, the caller takes whatever has arrived without a thread
hop per chunk (a hop cost about 0.12 ms a chunk), and a slow consumer — a notebook rendering
each update — never holds the connection back. Closing either stream early (``close()``,
``break`` + garbage collection, Ctrl-C) cancels the request, which is recorded as 'cancelled'.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from ._errors import LLMRouteError
from ._types import Completion

if TYPE_CHECKING:
    from ._loop import LoopThread, TaskHandle
    from ._reply import Reply


class AsyncStream:
    """``async for chunk in router.astream(...)``; ``.completion`` once exhausted.

    Closing it early (``aclose()``, or leaving the loop and dropping it) cancels the request,
    which the ledger records as ``cancelled``.

    Examples:
        >>> import asyncio
        >>> async def first_chunk():
        ...     s = router.astream("Tell me a story")
        ...     async for chunk in s:
        ...         return chunk
        >>> isinstance(asyncio.run(first_chunk()), str)
        True
    """

    def __init__(self, serve: Callable[[], Awaitable[Reply]]) -> None:
        self._serve = serve
        self._reply: Reply | None = None
        self._parts: list[str] = []
        self._closed = False
        self.completion: Completion | None = None

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> str:
        if self._reply is None:
            if self._closed:
                raise StopAsyncIteration
            self._reply = await self._serve()
        try:
            chunk = await self._reply.__anext__()
        except StopAsyncIteration:
            self.completion = self._reply.completion
            raise
        self._parts.append(chunk)
        return chunk

    async def aclose(self) -> None:
        self._closed = True
        if self._reply is not None:
            await self._reply.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Handoff:
    """Chunks from the loop thread to the caller's thread. Holds no reference to the SyncStream,
    so a stream the caller drops is collected (and cancelled) while its reader still runs."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.ready: deque[str] = deque()
        self.finished = False
        self.error: BaseException | None = None

    async def pump(self, inner: AsyncStream) -> None:
        try:
            async for chunk in inner:
                with self.cond:
                    self.ready.append(chunk)
                    self.cond.notify()
        except BaseException as e:
            self.error = e
            if not isinstance(e, Exception):
                raise  # cancellation goes on up, as it must
        finally:
            with self.cond:
                self.finished = True
                self.cond.notify()


class SyncStream:
    """``for chunk in router.stream(...)``: read on the router's loop, handed over in batches.

    ``completion`` holds the finished ``Completion`` once it is exhausted; ``close()`` (or
    leaving a ``with`` block) cancels a request still running, recorded as ``cancelled``.

    Examples:
        >>> with router.stream("Tell me a story", max_tokens=20) as s:
        ...     text = "".join(s)
        >>> s.completion.output_tokens <= 20
        True
    """

    def __init__(self, loop_thread: LoopThread, inner: AsyncStream) -> None:
        self._lt = loop_thread
        self._inner = inner
        self._handoff = _Handoff()
        self._task: TaskHandle[None] | None = None
        self._parts: list[str] = []
        self._closed = False

    @property
    def completion(self) -> Completion | None:
        return self._inner.completion

    @property
    def text(self) -> str:
        """The text handed to the caller so far."""
        return "".join(self._parts)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._task is None:
            if self._closed:
                raise StopIteration
            self._task = self._lt.start(self._handoff.pump(self._inner))
        h = self._handoff
        try:
            with h.cond:
                while not h.ready and not h.finished:
                    h.cond.wait(0.1)  # in slices: Ctrl-C sent by interrupt_main() is seen promptly
                chunk = h.ready.popleft() if h.ready else None
        except KeyboardInterrupt:
            self.close()
            raise
        if chunk is not None:
            self._parts.append(chunk)
            return chunk
        if h.error is not None:
            error = h.error
            if isinstance(error, asyncio.CancelledError):  # the router was closed under us
                raise LLMRouteError("the request was cancelled: the router was closed while it was in flight")
            if isinstance(error, LLMRouteError):
                raise error.with_traceback(None) from error.__cause__
            raise error
        raise StopIteration

    def close(self) -> None:
        """Stop now: a request still running is cancelled and recorded as such before this returns."""
        self._closed = True
        if self._task is not None:
            self._task.cancel_and_wait()

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        task = self._task
        if task is not None and not task.done() and self._lt.thread.is_alive():
            task.cancel()
