"""Fixtures shared by every test module. Keep generic: modules with special needs define their own."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sim():
    """One running simulator with the default profiles (one provider per wire format, and sim-local) for the session."""
    from llmroute_magic.sim import Simulator

    with Simulator() as s:
        yield s


@pytest.fixture
def fresh_sim(sim):
    """The session simulator with default profiles, no queued faults and zero counters."""
    sim.reset()
    yield sim
    sim.reset()


def pytest_collection_modifyitems(config, items):
    """Run the real-browser tests last: they start JupyterLab and Chromium, the heaviest part of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
