"""Fixtures shared by every test module. Keep generic: modules with special needs define their own."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sim():
    """One running simulator with the default profiles (sim-openai, sim-anthropic, sim-local) for the session."""
    from llmroute_magic.sim import Simulator

    with Simulator() as s:
        yield s


@pytest.fixture
def fresh_sim(sim):
    """The session simulator with default profiles, no queued faults and zero counters."""
    sim.reset()
    yield sim
    sim.reset()
