"""Fixtures shared by every test module. Keep generic: modules with special needs define their own."""

from __future__ import annotations

from helpers import fresh_simulator_fixture, simulator_fixture

# One running simulator with the default profiles (one provider per wire format, and sim-local) for the session.
sim = simulator_fixture(scope="session")
# The session simulator with default profiles, no queued faults and zero counters.
fresh_sim = fresh_simulator_fixture()


def pytest_collection_modifyitems(config, items):
    """Run the real-browser tests last: they start JupyterLab and Chromium, the heaviest part of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
