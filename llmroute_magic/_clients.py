"""HTTP clients and adapters per event loop.

An aiohttp session (under the httpx client) belongs to the loop that first used it, and a router
is awaited from several loops: its own loop thread, a notebook's loop, ``asyncio.run`` in a
script. So each loop gets its own pooled clients (``_http.make_clients``: one per distinct
verify/proxy setting) and adapters, made on first use and closed when that loop ends or the
router closes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from ._errors import LLMRouteError
from ._types import ProviderSpec

if TYPE_CHECKING:
    from ._http import ClientSet
    from ._providers import ProviderAdapter
    from ._providers._base import RefusedFields


class ClientsPerLoop:
    def __init__(self, specs: Iterable[ProviderSpec], timeout: float) -> None:
        self._specs = tuple(specs)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._entries: dict[asyncio.AbstractEventLoop, tuple[ClientSet, dict[str, ProviderAdapter], Any]] = {}
        self._refused: dict[str, RefusedFields] = {}  # provider -> fields it refused, learnt on any loop
        self.closed = False

    def adapters(self) -> dict[str, ProviderAdapter]:
        """The running loop's adapters, made on first use."""
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None:
            entry = self._open(loop)
        return entry[1]

    def _open(self, loop: asyncio.AbstractEventLoop) -> tuple[ClientSet, dict[str, ProviderAdapter], Any]:
        if self.closed:
            raise LLMRouteError("this router is closed; create a new ModelClientRouter")
        from ._http import make_clients
        from ._providers import adapter_for

        clients = make_clients(self._specs, timeout=self._timeout)
        adapters = {p.name: adapter_for(p.api or "openai")(p, clients[p.name]) for p in self._specs}
        entry = (clients, adapters, _closed_with_loop(clients))
        with self._lock:
            for name, adapter in adapters.items():  # what a provider refused holds on every loop
                adapter.refused_fields = self._refused.setdefault(name, adapter.refused_fields)
            for old in [lp for lp in self._entries if lp.is_closed()]:
                _close_clients_on(old, self._entries.pop(old)[0])
            self._entries[loop] = entry
        return entry

    def client_for(self, loop: asyncio.AbstractEventLoop, name: str | None = None) -> Any:
        """The client ``loop`` uses for provider ``name`` (the first provider's when None)."""
        entry = self._entries.get(loop)
        if entry is None:
            return None
        return entry[0][name if name is not None else self._specs[0].name]

    def clients_of(self, loop: asyncio.AbstractEventLoop) -> ClientSet | None:
        entry = self._entries.get(loop)
        return None if entry is None else entry[0]

    async def close_on_running_loop(self) -> None:
        """Close the running loop's client (``async with router`` ends on the caller's loop)."""
        entry = self._entries.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()

    def close_all(self) -> None:
        """Stop handing out clients and close every one: on its loop while it runs, else at once."""
        self.closed = True
        with self._lock:
            entries, self._entries = self._entries, {}
        for loop, (client, *_) in entries.items():
            _close_clients_on(loop, client)


def _closed_with_loop(clients: ClientSet) -> Any:
    """Tie ``clients`` to the running loop's end: loops close their async generators before they
    close (asyncio.run, pytest-asyncio, the router's own), so a parked generator whose finally
    awaits ``client.aclose()`` closes the client while its loop can still run it. Without this a
    client made for ``asyncio.run(router.acomplete(...))`` outlived its loop with sockets open."""

    async def keeper() -> AsyncIterator[None]:
        try:
            yield
        finally:
            await clients.aclose()

    gen = keeper()
    step = gen.__anext__()  # registers the generator with the running loop (firstiter hook)
    try:
        step.send(None)  # type: ignore[attr-defined]  # run to the first yield: no awaits before it
    except StopIteration:
        pass
    return gen  # the caller keeps it: the loop only holds it weakly


def _close_clients_on(loop: asyncio.AbstractEventLoop, clients: ClientSet) -> None:
    """Close clients that belong to another loop: on it if it still runs, else without it."""
    try:
        running_here = asyncio.get_running_loop() is loop
    except RuntimeError:
        running_here = False
    try:
        if loop.is_running() and not loop.is_closed() and not running_here:
            asyncio.run_coroutine_threadsafe(clients.aclose(), loop)
            return
    except RuntimeError:
        pass
    clients.close_without_loop()
