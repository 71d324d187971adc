"""Interrupts and shutdown: cancelling mid-request or mid-stream, Ctrl-C, close(), interpreter exit.

What a user would notice if any of these went wrong: a request still running (and billing) after
they pressed stop, a connection or thread left behind, a usage row missing, a traceback or a
warning printed when their script ends, a router that is confused after being used from threads.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import (
    Sleeps,
    assert_ledger_matches_sim,
    cancel_after_first_item,
    make_router,
    rows,
    simulator_fixtures,
    wait_until,
)

from llmroute_magic import Completion, LLMRouteError
from llmroute_magic.sim import ProviderProfile

PROFILES = [
    ProviderProfile("slow", api="openai", model="slow-1", latency_s=30.0, input_price=1, output_price=2),
    ProviderProfile("drip", api="openai", model="drip-1", tokens_per_s=20.0, input_price=1, output_price=2),
    ProviderProfile("drip-a", api="anthropic", model="drip-a-1", tokens_per_s=20.0, input_price=1, output_price=2),
    ProviderProfile("fast", api="openai", model="fast-1", input_price=1, output_price=2),
    ProviderProfile("fast-a", api="anthropic", model="fast-a-1", input_price=1, output_price=2),
]


sim, fresh = simulator_fixtures(PROFILES, quiet_within_s=3)


def router_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("llmroute-") and not t.name.startswith("llmroute-sim")
    ]


def disconnected(sim, name: str) -> bool:
    return sim.stats()["providers"][name]["statuses"].get("disconnected", 0) >= 1


def admitted(sim, name: str, n: int = 1) -> bool:
    return sim.stats()["providers"][name]["requests"] >= n


# -- cancelling from asyncio ----------------------------------------------------------------------


async def test_cancel_mid_request_records_cancelled_and_drops_the_connection(fresh):
    with make_router(fresh, ["slow"]) as r:
        task = asyncio.create_task(r.acomplete("take your time"))
        while not admitted(fresh, "slow"):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the row is there the moment the caller sees the cancellation
        assert [(x["status"], x["error_type"], x["streamed"]) for x in rows(r)] == [("cancelled", "cancelled", False)]
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        await asyncio.to_thread(wait_until, lambda: disconnected(fresh, "slow"))
        assert fresh.stats()["providers"]["slow"]["statuses"] == {"disconnected": 1}  # the server saw it go


@pytest.mark.parametrize("name", ["drip", "drip-a"])
async def test_cancel_mid_stream_records_cancelled_and_drops_the_connection(fresh, name):
    with make_router(fresh, [name]) as r:
        await cancel_after_first_item(r.astream("a long story", max_tokens=200))
        rec = rows(r)
        assert [(x["status"], x["streamed"]) for x in rec] == [("cancelled", True)]
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        await asyncio.to_thread(wait_until, lambda: disconnected(fresh, name))
    assert_ledger_matches_sim(r, fresh)  # Anthropic billed the input tokens of message_start: so does the ledger


async def test_breaking_out_of_an_astream_closes_it(fresh):
    with make_router(fresh, ["drip"]) as r:
        s = r.astream("a long story", max_tokens=200)
        async with s:
            async for _ in s:
                break
        assert [x["status"] for x in rows(r)] == ["cancelled"]
        await asyncio.to_thread(wait_until, lambda: disconnected(fresh, "drip"))


# -- the sync API ----------------------------------------------------------------------------------


def test_an_abandoned_sync_stream_is_cancelled_when_collected(fresh):
    with make_router(fresh, ["drip"]) as r:
        s = r.stream("a long story", max_tokens=200)
        next(iter(s))
        del s
        gc.collect()
        assert wait_until(lambda: [x["status"] for x in rows(r)] == ["cancelled"])
        assert wait_until(lambda: disconnected(fresh, "drip"))
        assert r.complete("still works", provider="drip", max_tokens=4).text


def test_close_while_other_threads_wait_cancels_them_cleanly(fresh):
    before = set(router_threads())
    r = make_router(fresh, ["slow"])
    outcomes: list = []

    def wait_for_answer():
        try:
            outcomes.append(r.complete("never answered"))
        except BaseException as e:  # noqa: BLE001 - what the thread sees is the point of the test
            outcomes.append(e)

    threads = [threading.Thread(target=wait_for_answer) for _ in range(3)]
    [t.start() for t in threads]
    assert wait_until(lambda: admitted(fresh, "slow", 3))
    t0 = time.monotonic()
    r.close()
    [t.join(5) for t in threads]
    assert time.monotonic() - t0 < 3
    assert len(outcomes) == 3 and all(type(e) is LLMRouteError and "router was closed" in str(e) for e in outcomes)
    assert [x["status"] for x in rows(r)] == ["cancelled"] * 3
    assert set(router_threads()) <= before  # the loop thread is gone
    assert wait_until(lambda: fresh.stats()["providers"]["slow"]["statuses"].get("disconnected") == 3)
    with pytest.raises(LLMRouteError, match="closed"):
        r.complete("after close")


def test_close_stops_its_threads_and_flushes_the_ledger(fresh, tmp_path):
    before = set(router_threads())
    path = tmp_path / "usage.sqlite"
    r = make_router(fresh, ["fast", "drip"], ledger_path=path)
    r.complete("one")
    half = r.stream("half read", provider="drip", max_tokens=200)
    next(iter(half))
    asyncio.run(r.acomplete("from another loop"))
    assert set(router_threads()) - before  # a loop thread and a ledger writer are running
    r.close()
    r.close()  # idempotent
    assert set(router_threads()) <= before
    import sqlite3

    with sqlite3.connect(path) as db:
        statuses = sorted(s for (s,) in db.execute("select status from attempts"))
    assert statuses == ["cancelled", "ok", "ok"]  # the half-read stream's row is there too


def test_a_router_used_from_many_threads_at_once_stays_consistent(fresh):
    """Threads mix plain, streamed and async requests (each thread its own event loop) while others
    flip the strategy and disable/enable providers; faults fire at random."""
    for name in ("fast", "fast-a"):
        fresh.update(name, faults={"server_error": 0.1, "reset": 0.05, "stream_error": 0.05})
    errors: list[BaseException] = []
    stop = threading.Event()
    with make_router(fresh, ["fast", "fast-a"], sleeps=Sleeps(), max_retries=3) as r:

        def requests(k: int) -> None:
            rng = random.Random(k)
            try:
                for i in range(15):
                    kind = rng.choice(("plain", "stream", "async"))
                    try:
                        if kind == "plain":
                            assert isinstance(r.complete(f"{k}-{i}", max_tokens=8), Completion)
                        elif kind == "stream":
                            s = r.stream(f"{k}-{i}", max_tokens=8)
                            assert "".join(s) == s.completion.text
                        else:
                            assert isinstance(asyncio.run(r.acomplete(f"{k}-{i}", max_tokens=8)), Completion)
                    except LLMRouteError:
                        pass
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        def meddle() -> None:
            rng = random.Random(99)
            try:
                while not stop.is_set():
                    r.set_strategy(rng.choice(["round_robin", "random", "least_busy", "least_latency"]))
                    r.disable("fast-a")
                    time.sleep(0.001)
                    r.enable("fast-a")
                    r.fallback_enabled = rng.random() < 0.8
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        workers = [threading.Thread(target=requests, args=(k,)) for k in range(6)]
        meddler = threading.Thread(target=meddle)
        meddler.start()
        [t.start() for t in workers]
        [t.join(60) for t in workers]
        stop.set()
        meddler.join(5)
        assert not errors, errors[:3]
        assert all(r.health(n).in_flight == 0 for n in ("fast", "fast-a"))
        rec = rows(r)
        assert len({x["request_id"] for x in rec}) == 6 * 15  # every request has its rows, ids never collide
        assert r.enabled == ["fast", "fast-a"]
    assert_ledger_matches_sim(r, fresh)


# -- Ctrl-C and interpreter exit, in a fresh interpreter ------------------------------------------


def run_script(source: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # show any warning a user would see
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


CTRL_C = """
    import _thread, json, os, signal, sys, threading, time
    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig
    from llmroute_magic.sim import ProviderProfile, Simulator

    how = sys.argv[1]
    # What a terminal or a kernel gives the process; a job started in the background by a
    # non-interactive shell inherits SIGINT ignored, and then no Ctrl-C would ever arrive.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def press_ctrl_c():
        if how == "signal":
            os.kill(os.getpid(), signal.SIGINT)  # what a terminal or a Jupyter kernel interrupt sends
        else:
            _thread.interrupt_main()  # what IDEs and some kernels do
    report = {}
    with Simulator([ProviderProfile("slow", latency_s=30.0), ProviderProfile("drip", tokens_per_s=20.0)]) as sim:
        r = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs()))
        r.complete("warm up", provider="drip", max_tokens=2)
        for what in ("complete", "stream"):
            threading.Timer(0.3, press_ctrl_c).start()
            t0 = time.monotonic()
            try:
                if what == "complete":
                    r.complete("hello", provider="slow")
                else:
                    for chunk in r.stream("a long story", provider="drip", max_tokens=400):
                        pass
                report[what] = "not interrupted"
            except KeyboardInterrupt:
                report[what] = {"after_s": time.monotonic() - t0,
                                "last_row": [x["status"] for x in r.ledger.records()][-1]}
        report["then"] = r.complete("still usable?", provider="drip", max_tokens=4).provider
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            st = sim.stats()["providers"]
            if st["slow"]["statuses"].get("disconnected") and st["drip"]["statuses"].get("disconnected"):
                break
            time.sleep(0.02)
        report["sim"] = {n: s["statuses"] for n, s in sim.stats()["providers"].items()}
        r.close()
    print(json.dumps(report))
"""


@pytest.mark.parametrize("how", ["signal", "interrupt_main"])
def test_ctrl_c_during_complete_and_stream_cancels_cleanly(how):
    proc = run_script(CTRL_C, how)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for what in ("complete", "stream"):
        assert isinstance(report[what], dict), report
        assert report[what]["after_s"] < 2.0  # the interrupt is felt at once, not when the answer comes
        assert report[what]["last_row"] == "cancelled"  # recorded before the KeyboardInterrupt arrived
    assert report["then"] == "drip"
    assert report["sim"]["slow"] == {"disconnected": 1}  # the request stopped at the server too
    assert report["sim"]["drip"]["disconnected"] == 1
    assert proc.stderr == ""


EXIT_WITHOUT_CLOSE = """
    import asyncio, sys
    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig
    from llmroute_magic.sim import ProviderProfile, Simulator

    sim = Simulator([ProviderProfile("a", tokens_per_s=50.0), ProviderProfile("b", api="anthropic")]).start()
    r = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs(), ledger_path=sys.argv[1]))
    r.complete("hello")
    s = r.stream("a long story", max_tokens=300)
    next(iter(s))  # a stream left half read
    asyncio.run(r.acomplete("from asyncio.run", provider="b"))  # a client on another, now closed, loop
    print("done", flush=True)
    # no close(), no sim.stop(): the interpreter just ends
"""


def test_exit_without_close_is_prompt_silent_and_keeps_every_row(tmp_path):
    path = tmp_path / "usage.sqlite"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(EXIT_WITHOUT_CLOSE), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert proc.stdout.readline().strip() == "done"
    t_done = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t_done < 3, "the interpreter hung on exit"
    assert proc.returncode == 0 and err == "", err
    import sqlite3

    with sqlite3.connect(path) as db:
        got = sorted(db.execute("select provider, status, streamed from attempts"))
    assert got == [("a", "cancelled", 1), ("a", "ok", 0), ("b", "ok", 0)]
    assert time.monotonic() - t0 < 30
