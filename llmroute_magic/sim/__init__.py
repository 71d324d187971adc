"""Simulated LLM providers (OpenAI and Anthropic wire formats) on loopback, for tests, demos and benchmarks.

    with Simulator() as sim:
        client = openai.OpenAI(base_url=sim.base_url("sim-openai"), api_key="x")

Importing this package is cheap: starlette and uvicorn load when a Simulator is built or started.
"""

from ._profiles import DEFAULT_PROFILES, FAULT_KINDS, ProviderProfile, load_profiles
from ._bound import simulated_router, simulator_for
from ._server import Simulator

__all__ = ["DEFAULT_PROFILES", "FAULT_KINDS", "ProviderProfile", "Simulator", "load_profiles", "simulated_router",
           "simulator_for"]
