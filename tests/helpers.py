"""Shared test helpers: simulator fixtures, a sleep that never waits, routers over the simulator, the
ledger == simulator check, the fault table.

Importable from any test module (pytest puts ``tests/`` on ``sys.path``: ``from helpers import ...``).
"""

from __future__ import annotations

import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pydantic
import pytest

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig
from llmroute_magic.sim import ProviderProfile, Simulator


def simulator_fixture(profiles: Iterable[ProviderProfile] | None = None, *, scope: str = "module", **options: Any):
    """A fixture: one simulator over ``profiles`` (None: the default ones) for the whole module (or
    ``scope``), since starting one per test would cost more than most tests. Bind it to the name tests
    ask for: ``sim = simulator_fixture(PROFILES)``."""

    @pytest.fixture(scope=scope)
    def simulator():
        with Simulator(profiles, **options) as s:
            yield s

    return simulator


def fresh_simulator_fixture(simulator: str = "sim", *, quiet_within_s: float = 0.0):
    """A fixture: the module's simulator (the fixture named ``simulator``) with its profiles as started,
    no queued faults and zero counters, before the test and again after it, so no test sees another's.

    ``quiet_within_s``: first wait (up to that long) until every request it admitted has ended, for
    modules whose tests walk away from requests: the simulator counts a dropped connection a moment
    later, and that count belongs to the test that dropped it.
    """

    @pytest.fixture
    def fresh(request):
        sim = request.getfixturevalue(simulator)
        sim.reset()
        yield sim
        if quiet_within_s:
            wait_until(lambda: sim_quiet(sim), quiet_within_s)
        sim.reset()

    return fresh


def simulator_fixtures(profiles: Iterable[ProviderProfile] | None = None, *, quiet_within_s: float = 0.0):
    """``sim, fresh = simulator_fixtures(PROFILES)``: the module's simulator and its reset-per-test view."""
    return simulator_fixture(profiles), fresh_simulator_fixture(quiet_within_s=quiet_within_s)


class Sleeps:
    """Injected sleep: records what the router waited for, without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make_router(
    sim, names, *, sleeps: Sleeps | None = None, clock: Callable[[], float] | None = None, specs=None, **cfg: Any
) -> ModelClientRouter:
    specs = list(specs) if specs is not None else sim.provider_specs(list(names))
    extra: dict[str, Any] = {}
    if sleeps is not None:
        extra["sleep"] = sleeps
    if clock is not None:
        extra["clock"] = clock
    return ModelClientRouter(ProviderRoutingConfig(specs, **cfg), **extra)


def rows(router) -> list[dict]:
    return list(router.ledger.records())


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Attempts that failed before any byte reached the simulator: the simulator cannot count them.
NEVER_ARRIVED = ("missing_api_key", "connect_error")


def _sim_settled(sim, router) -> bool:
    """The simulator records a client that walked away (timeout, cancel) a moment after the client
    saw it; wait until it has counted as many requests as the ledger has network attempts."""
    stats = sim.stats()["providers"]
    net = [r for r in router.ledger.records() if r["error_type"] not in NEVER_ARRIVED]
    per = Counter(r["provider"] for r in net)
    for name, s in stats.items():
        if s["requests"] != per.get(name, 0):
            return False
        if sum(s["statuses"].values()) != s["requests"]:
            return False
    return True


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def sim_quiet(sim) -> bool:
    """Every request the simulator admitted has ended (a client that left is noticed a little later)."""
    return all(sum(s["statuses"].values()) == s["requests"] for s in sim.stats()["providers"].values())


def assert_ledger_matches_sim(router, sim, *, settle_s: float = 5.0) -> None:
    """The invariant: what the ledger recorded equals what the simulator served and billed, exactly.

    Requests, input/output tokens and cost per provider; HTTP statuses one for one; failures inside
    a 200 (malformed, truncated, error event) or without any status (reset, hang, a client that left)
    counted by the simulator under the fault's name.
    """
    wait_until(lambda: _sim_settled(sim, router), settle_s)
    stats = sim.stats()["providers"]
    net = [r for r in router.ledger.records() if r["error_type"] not in NEVER_ARRIVED]
    assert {r["provider"] for r in net} <= set(stats), "the ledger names a provider the simulator never saw"
    for name, s in stats.items():
        mine = [r for r in net if r["provider"] == name]
        assert len(mine) == s["requests"], (name, len(mine), s)
        assert sum(r["input_tokens"] for r in mine) == s["input_tokens"], (name, s)
        assert sum(r["output_tokens"] for r in mine) == s["output_tokens"], (name, s)
        assert math.fsum(r["cost"] for r in mine) == pytest.approx(s["cost"], rel=1e-9, abs=1e-12), name
        http = [r for r in mine if r["status"] == "ok" or r["http_status"] not in (None, 200)]
        body_level = len(mine) - len(http)
        codes = Counter(str(r["http_status"]) for r in http)
        assert dict(codes) == {k: v for k, v in s["statuses"].items() if k.isdigit()}, (name, s["statuses"])
        assert body_level == sum(v for k, v in s["statuses"].items() if not k.isdigit()), (name, s["statuses"])


# fault -> (error_type, http status) of the attempt, for a plain request over the OpenAI format.
FAULT_OUTCOMES = {
    "rate_limit": ("rate_limit", 429),
    "rate_limit_no_retry_after": ("rate_limit", 429),
    "insufficient_quota": ("insufficient_quota", 429),
    "server_error": ("server_error", 500),
    "bad_gateway": ("server_error", 502),
    "unavailable": ("server_error", 503),
    "gateway_timeout": ("server_error", 504),
    "overloaded": ("overloaded", 529),
    "invalid_request": ("invalid_request", 400),
    "context_length": ("context_length", 400),
    "unauthorized": ("authentication", 401),
    "forbidden": ("permission", 403),
    "model_not_found": ("not_found", 404),
    "hang": ("timeout", None),
    "reset": ("connection_reset", None),
    "malformed_json": ("malformed_response", 200),
    "truncated_stream": ("malformed_response", 200),
    "stream_error": ("server_error", 500),
    # made by the network, not injected by the simulator
    "connect_refused": ("connect_error", None),
    "read_timeout": ("timeout", None),
    "stalled_stream": ("timeout", None),
}
NETWORK_FAULTS = ("connect_refused", "read_timeout", "stalled_stream")


def injected_fault_outcomes(
    differences: Mapping[str, tuple[str, int | None]] | None = None,
) -> dict[str, tuple[str, int | None]]:
    """fault -> (error_type, http status) of a plain request, for the faults the simulator injects:
    ``FAULT_OUTCOMES`` with ``differences``, where a wire format answers a fault its own way."""
    outcomes = {fault: outcome for fault, outcome in FAULT_OUTCOMES.items() if fault not in NETWORK_FAULTS}
    unknown = set(differences or ()) - set(outcomes)
    assert not unknown, f"not a fault the simulator injects: {sorted(unknown)}"
    return {**outcomes, **(differences or {})}


def streamed_or_plain_outcome(
    outcomes: Mapping[str, tuple[str, int | None]], fault: str, streamed: bool
) -> tuple[str, int | None]:
    """The outcome from a table of plain outcomes. Streamed, a ``stream_error`` fault is an error after
    the first words, inside the 200 stream (Anthropic names it otherwise: see ``expected_fault``)."""
    return ("stream_error", 200) if streamed and fault == "stream_error" else outcomes[fault]


def expected_fault(fault: str, api: str, streamed: bool) -> tuple[str, int | None]:
    """(error_type, http_status) of the attempt a fault causes, per wire format and mode."""
    error_type, status = FAULT_OUTCOMES[fault]
    if fault == "insufficient_quota" and api == "anthropic":
        status = 400  # "Your credit balance is too low" comes as a 400 invalid_request_error
    if fault == "stream_error" and streamed:
        error_type, status = ("stream_error" if api == "openai" else "overloaded"), 200
    return error_type, status


async def cancel_after_first_item(stream) -> None:
    """Read ``stream`` in a task, cancel the task once the first item arrived, wait for it to end."""
    import asyncio

    import pytest

    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream:
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def ask(router, streamed: bool, prompt, **options):
    """The Completion of ``prompt``, plain or streamed; a stream's chunks must add up to its text."""
    if not streamed:
        return router.complete(prompt, **options)
    s = router.stream(prompt, **options)
    assert "".join(s) == s.completion.text
    return s.completion


# A tool and a response model that the tests of every wire format share.
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class City(pydantic.BaseModel):
    name: str
    population: int
