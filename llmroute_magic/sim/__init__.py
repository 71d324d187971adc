"""Simulated LLM providers on loopback, for tests, demos and benchmarks: one server, many providers,
each speaking a wire format registered in ``_wire``: OpenAI chat completions, Anthropic messages,
Gemini, Azure OpenAI, Ollama's native API and OpenAI Responses (``_wire/__init__.py`` says how to
add one). The default profiles give one provider of each, plus a slow local one.

    with Simulator() as sim:
        client = openai.OpenAI(base_url=sim.base_url("sim-openai"), api_key="x")

Layout: ``_neutral`` (the request every format parses into, the input-token rule), ``_answers``
(deterministic text, JSON and tool-call answers), ``_wire/`` (one module per format: parse and
render), ``_app`` (everything generic: admission, faults, latency, billing, stats, control routes),
``_state`` (counters, RNGs, queues), ``_profiles``, ``_server`` (uvicorn thread), ``_cli``.

Importing this package is cheap: starlette and uvicorn load when a Simulator is built or started.
"""

from ._bound import simulated_router, simulator_for
from ._profiles import ANSWER_FAULTS, DEFAULT_PROFILES, FAULT_KINDS, ProviderProfile, load_profiles
from ._server import Simulator

__all__ = [
    "ANSWER_FAULTS",
    "DEFAULT_PROFILES",
    "FAULT_KINDS",
    "ProviderProfile",
    "Simulator",
    "load_profiles",
    "simulated_router",
    "simulator_for",
]
