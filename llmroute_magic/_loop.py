"""The router's own event loop, in a daemon thread.

The sync API submits coroutines here and waits, so ``complete()`` works in a script and inside a
running Jupyter kernel alike (no nest_asyncio). Waiting is interruptible: Ctrl-C / a kernel
interrupt cancels the coroutine on the loop and waits for it to finish cancelling, so the ledger
records ``cancelled`` before the KeyboardInterrupt reaches the user.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from ._errors import LLMRouteError

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "llmroute-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def start(self, coro: Coroutine[Any, Any, T]) -> TaskHandle[T]:
        """Run ``coro`` on the loop in the background; the handle cancels it or waits for it."""
        task_box: list[asyncio.Task[Any]] = []
        return TaskHandle(self.loop, self.submit(_remember_task(coro, task_box)), task_box, coro)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait; an interrupt cancels it cleanly, then re-raises.

        A failed request is raised with the caller's frames only: the loop thread's and the
        futures' frames say nothing to someone whose prompt could not be answered."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("the sync API cannot be called from the router's own event loop; use the a* methods")
        handle = self.start(coro)
        try:
            return handle.wait()
        except concurrent.futures.CancelledError:
            # Only the loop's owner cancels its tasks: close() (or interpreter exit) from another thread.
            raise LLMRouteError("the request was cancelled: the router was closed while it was in flight") from None
        except LLMRouteError as exc:
            raise exc.with_traceback(None) from exc.__cause__
        except BaseException:
            handle.cancel_and_wait()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return

        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)

        if not self.in_loop_thread():
            try:
                asyncio.run_coroutine_threadsafe(_drain(), self.loop).result(timeout + 1)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout)


class TaskHandle(Generic[T]):
    """A coroutine running on a ``LoopThread``, seen from another thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: concurrent.futures.Future[T],
        task_box: list[asyncio.Task[Any]],
        coro: Coroutine[Any, Any, T],
    ) -> None:
        self._loop = loop
        self._fut = fut
        self._task_box = task_box
        self._coro = coro

    def done(self) -> bool:
        return self._fut.done()

    def wait(self) -> T:
        """The result; waits in slices so a KeyboardInterrupt raised by ``_thread.interrupt_main()``
        (IDEs, some kernels) is noticed: it only arrives when this thread runs Python code."""
        while True:
            try:
                return self._fut.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                if self._fut.done():
                    raise

    def cancel(self) -> None:
        """Cancel the task itself, not the future: cancelling the future marks it done at once,
        before the task has run its cleanup, and a caller waiting on it would stop too early."""

        def on_loop() -> None:
            if self._task_box:
                self._task_box[0].cancel()
            else:  # not started yet: nothing to clean up
                self._fut.cancel()
                self._coro.close()

        try:
            self._loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # the loop is closed
            self._fut.cancel()

    def cancel_and_wait(self, timeout: float = 5.0) -> None:
        """Cancel, then let the coroutine run its cancellation (ledger row, connection release)."""
        if self._fut.done():
            return
        self.cancel()
        try:
            self._fut.result(timeout=timeout)
        except BaseException:  # noqa: BLE001 - cancelled, failed or timed out: it is over for us
            pass


async def _remember_task(coro: Coroutine[Any, Any, T], task_box: list[asyncio.Task[Any]]) -> T:
    task_box.append(asyncio.current_task())  # type: ignore[arg-type]  # always run inside a task
    return await coro
