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
from typing import Any, Coroutine, TypeVar

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

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait; an interrupt cancels it cleanly, then re-raises."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("the sync API cannot be called from the router's own event loop; use the a* methods")
        task_box: list[asyncio.Task] = []
        fut = self.submit(_remember_task(coro, task_box))
        try:
            while True:
                # Wait in slices: a KeyboardInterrupt raised by _thread.interrupt_main() (IDEs,
                # some kernels) is only noticed when this thread runs Python code again.
                try:
                    return fut.result(timeout=0.1)
                except concurrent.futures.TimeoutError:
                    if fut.done():
                        raise
        except concurrent.futures.CancelledError:
            # Only the loop's owner cancels its tasks: close() (or interpreter exit) from another thread.
            raise LLMRouteError("the request was cancelled: the router was closed while it was in flight") from None
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not fut.done():
                self._cancel(fut, task_box, coro)
                try:  # let the coroutine run its cancellation (ledger row, connection release)
                    fut.result(timeout=5)
                except BaseException:
                    pass
            raise

    def _cancel(self, fut: "concurrent.futures.Future", task_box: list, coro: Coroutine) -> None:
        """Cancel the task itself, not ``fut``: cancelling ``fut`` marks it done at once, before the
        task has run its cleanup, and the caller would stop waiting too early."""

        def on_loop() -> None:
            if task_box:
                task_box[0].cancel()
            else:  # not started yet: nothing to clean up
                fut.cancel()
                coro.close()

        try:
            self.loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # the loop is closed
            fut.cancel()

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


async def _remember_task(coro: Coroutine[Any, Any, T], task_box: list) -> T:
    task_box.append(asyncio.current_task())
    return await coro
