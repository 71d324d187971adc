"""Fixtures for tests that drive ``%%llm`` / ``%llm`` through a real IPython shell over a simulator.

Import what a module uses (``from ipython_fixtures import shell, magics, router, sim, run, usage_error``):
pytest finds fixtures in the module's namespace. The shell is IPython's process-wide instance, with
the extension loaded once per module (forced onto the simulator) and unloaded after it.
"""

from __future__ import annotations

import copy
import os

import pytest
from helpers import simulator_fixture
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig

MAGIC_SETTINGS = (
    "display_mode",
    "default_format",
    "stream",
    "router_var",
    "chat_max_turns",
    "chat_max_tokens",
    "format_instructions",
    "code_to_cell",
    "stream_interval_s",
    "short_errors",
)


sim = simulator_fixture()


@pytest.fixture(scope="module")
def shell():
    old = os.environ.get("LLMROUTE_SIMULATE")
    os.environ["LLMROUTE_SIMULATE"] = "1"
    ip = InteractiveShell.instance()
    try:
        with capture_output():
            ip.run_line_magic("load_ext", "llmroute_magic")
        yield ip
        ip.run_line_magic("unload_ext", "llmroute_magic")
    finally:
        if old is None:
            os.environ.pop("LLMROUTE_SIMULATE", None)
        else:
            os.environ["LLMROUTE_SIMULATE"] = old


@pytest.fixture
def magics(shell):
    """The magics in text mode (a terminal), every setting back as it was after the test, no conversations."""
    m = shell._llmroute_magics
    saved = {k: getattr(m, k) for k in MAGIC_SETTINGS}
    saved_config = copy.deepcopy(shell.config.get("LLMRouteMagics"))  # %config writes here too, for later loads
    m.display_mode = "text"
    m.conversations.reset()
    yield m
    for k, v in saved.items():
        setattr(m, k, v)
    if saved_config is None:
        shell.config.pop("LLMRouteMagics", None)
    else:
        shell.config["LLMRouteMagics"] = saved_config
    m.conversations.reset()
    shell.rl_next_input = None


def bind(shell, router):
    """Make ``router`` the magics' ``llm`` for one test; returns a function that puts the old one back."""
    default = shell.user_ns.get("llm")
    shell.user_ns["llm"] = router

    def restore():
        shell.user_ns["llm"] = default

    return restore


@pytest.fixture
def router(shell, sim, magics):
    """A fresh router over the module's simulator (its default providers: one per wire format, and
    sim-local), bound as ``llm``."""
    sim.reset()
    r = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs()))
    restore = bind(shell, r)
    yield r
    restore()
    r.close()


def run(shell, source: str, cell_id: str | None = None):
    """Run a cell like a user (``cell_id`` as a Jupyter front end sends it); (result, captured output)."""
    with capture_output() as out:
        result = shell.run_cell(source, cell_id=cell_id)
    return result, out


def usage_error(shell, source: str, cell_id: str | None = None) -> str:
    result, _ = run(shell, source, cell_id)
    assert isinstance(result.error_in_exec, UsageError), f"expected UsageError, got {result.error_in_exec!r}"
    return str(result.error_in_exec)


def ok(shell, source: str, cell_id: str | None = None):
    result, out = run(shell, source, cell_id)
    assert result.success, (source, result.error_in_exec, out.stderr)
    return out
