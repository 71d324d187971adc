"""Whole-answer deadlines on one timer: each fires on time, for its own request only, and a
request that ended is neither cancelled nor kept alive."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from llmroute_magic._providers._deadline import DeadlineWatch


async def _bounded(watch: DeadlineWatch, work_s: float) -> str:
    try:
        with watch.start():
            await asyncio.sleep(work_s)
    except TimeoutError:
        return "timeout"
    return "done"


def test_only_the_requests_that_outlive_the_deadline_time_out():
    async def main():
        watch = DeadlineWatch(0.2)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        finished_at = {}

        def begin(work_s):
            task = asyncio.create_task(_bounded(watch, work_s))
            i = len(finished_at)
            finished_at[i] = None
            task.add_done_callback(lambda _t: finished_at.__setitem__(i, loop.time() - t0))
            return task

        # Out of order: a slow one first, quick ones after it; a slow one begun 60 ms later has
        # to be served by the timer armed again after the first expiry.
        tasks = [begin(s) for s in (1.0, 0.01, 0.05, 0.1)]
        await asyncio.sleep(0.06)
        tasks.append(begin(1.2))
        results = await asyncio.gather(*tasks)
        return results, finished_at, len(watch)

    results, finished_at, kept = asyncio.run(main())
    assert results == ["timeout", "done", "done", "done", "timeout"]
    assert 0.19 <= finished_at[0] < 0.6  # at its deadline, long before its work would have ended
    assert 0.25 <= finished_at[4] < 0.7  # 0.2 s after it began: not at the first one's expiry, nor never
    assert kept == 0


def test_the_callers_own_cancellation_stays_a_cancellation():
    async def main():
        watch = DeadlineWatch(0.05)
        task = asyncio.create_task(_bounded(watch, 1.0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_cancellation_at_the_moment_of_expiry_is_the_callers():
    async def main():
        watch = DeadlineWatch(0.05)

        async def victim():
            with watch.start():
                await asyncio.sleep(5)

        task = asyncio.create_task(victim())
        await asyncio.sleep(0)  # the victim is inside its deadline
        asyncio.get_running_loop().call_later(0.06, task.cancel)  # the caller's, 10 ms after expiry
        time.sleep(0.15)  # hold the loop: when it runs again, both are due in one pass
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_an_expired_deadline_takes_its_cancel_request_back_whatever_the_way_out():
    async def main():
        watch = DeadlineWatch(0.02)
        try:
            with watch.start():
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    raise ConnectionError("closing the connection failed while cancelling") from None
        except ConnectionError:
            pass
        left = asyncio.current_task().cancelling()
        # The caller's own timeout, later in the same task, still works as a timeout.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        return left

    assert asyncio.run(main()) == 0


def test_ended_requests_are_not_kept_alive_while_an_older_one_runs():
    async def main():
        watch = DeadlineWatch(5.0)
        slow = asyncio.create_task(_bounded(watch, 0.3))
        refs = []
        for _ in range(50):
            t = asyncio.create_task(_bounded(watch, 0))
            refs.append(weakref.ref(t))
            await t
        del t
        await asyncio.sleep(0)  # the loop lets go of the last task's wake-up handle
        gc.collect()
        alive = sum(r() is not None for r in refs)
        queued = len(watch)
        await slow
        return alive, queued, len(watch)

    alive, queued, after = asyncio.run(main())
    assert alive == 0  # ended deadlines behind a running one hold no task
    assert queued == 51 and after == 0


def test_ended_deadlines_behind_a_slow_one_do_not_pile_up():
    async def main():
        watch = DeadlineWatch(60.0)
        slow = asyncio.create_task(_bounded(watch, 0.2))
        await asyncio.sleep(0)
        most = 0
        for _ in range(2000):
            await _bounded(watch, 0)
            most = max(most, len(watch))
        await slow
        return most, len(watch)

    most, after = asyncio.run(main())
    assert most <= 2 * 1 + 64 + 1  # the slow one, and at most as many ended ones again plus 64
    assert after == 0


def test_a_watch_serves_a_new_loop_after_its_first_one_closed():
    watch = DeadlineWatch(0.05)
    assert asyncio.run(_bounded(watch, 0.2)) == "timeout"
    assert asyncio.run(_bounded(watch, 0.2)) == "timeout"
    assert asyncio.run(_bounded(watch, 0)) == "done"


def test_outside_a_task_it_says_so():
    loop = asyncio.new_event_loop()
    said = []

    def callback():  # on the loop, but in no task
        try:
            DeadlineWatch(1.0).start()
        except RuntimeError as e:
            said.append(str(e))
        loop.stop()

    loop.call_soon(callback)
    loop.run_forever()
    loop.close()
    assert said == ["a deadline must be used inside a task"]
