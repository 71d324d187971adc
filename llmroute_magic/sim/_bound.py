"""Routers bound to a simulator of their own: the simulator starts with the router and stops with it.

``simulated_router()`` is what ``%load_ext`` uses when nothing is configured, and the shortest way
to try the router from Python with no keys and no network. ``simulator_for(router)`` finds the
simulator behind such a router, e.g. to inject a fault into it from a notebook.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._router import ModelClientRouter
    from ._server import Simulator

# Simulators started for routers, stopped with them: id(router) -> (finalizer, simulator).
_bound: dict[int, tuple[Callable[[], Any], Simulator]] = {}


def simulated_router(**config: Any) -> ModelClientRouter:
    """A router over a new simulator's default providers; the simulator lives as long as the router.

    ``config`` takes the keyword settings of ``ProviderRoutingConfig`` (strategy, max_retries, ...).
    This is what ``%load_ext`` uses when nothing is configured.

    Examples:
        >>> r = simulated_router(strategy="round_robin")
        >>> [r.complete("hello").provider for _ in range(3)]
        ['sim-openai', 'sim-anthropic', 'sim-local']
        >>> r.close()
    """
    from .. import ModelClientRouter, ProviderRoutingConfig
    from ._server import Simulator

    sim = Simulator()
    sim.start()
    try:
        router = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs(), **config))
    except BaseException:
        sim.stop()
        raise
    # Stop the simulator when the router is closed, garbage collected, or at interpreter exit.
    stop: Callable[[], Any] = weakref.finalize(router, _stop, sim, id(router))
    _bound[id(router)] = (stop, sim)
    router._on_close.append(stop)
    return router


def simulator_for(router: Any) -> Simulator | None:
    """The simulator started for ``router`` by ``simulated_router`` (or ``%load_ext``), else None.

    Examples:
        >>> r = simulated_router()
        >>> simulator_for(r).inject("sim-openai", ["server_error"])
        >>> r.complete("hello").provider      # the 500 made it fall back
        'sim-anthropic'
        >>> simulator_for(ModelClientRouter(config)) is None
        True
        >>> r.close()
    """
    entry = _bound.get(id(router))
    return entry[1] if entry else None


def release(router: Any) -> None:
    """Close ``router`` and stop the simulator started for it, if any."""
    try:
        router.close()
    finally:
        entry = _bound.get(id(router))
        if entry is not None:
            entry[0]()


def _stop(sim: Simulator, key: int) -> None:
    _bound.pop(key, None)
    try:
        sim.stop()
    except Exception:  # noqa: BLE001 - best effort at shutdown
        pass
