"""HTTP clients: httpx's API over the aiohttp transport of ``httpx-aiohttp``, public API only.

A router needs one pooled client per event loop for each distinct ``(verify, proxy)`` pair among
its providers; most configurations have one pair, hence one client. ``make_clients`` builds them
all and hands back a ``ClientSet`` (provider name -> client) that closes them together::

    clients = make_clients(specs, timeout=60.0)   # in the event loop that will use them
    adapter = adapter_for(spec.api)(spec, clients[spec.name])
    await clients.aclose()                         # on that loop, when done
    clients.close_without_loop()                   # instead, once that loop no longer runs

Each client is an ``httpx_aiohttp.HttpxAiohttpClient``: an ``httpx.AsyncClient`` that builds its
transports, the direct one and one per proxy route, as aiohttp transports. So the standard
environment works exactly as it does for plain httpx:

- ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (either case, read by httpx
  through ``urllib.request.getproxies``): each proxied route gets its own aiohttp transport,
  mounted by httpx's own rules; direct requests share one pooled transport. (Passing
  ``transport=`` to httpx would silently turn environment proxies off: we never do.)
- ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when verification is the default, as httpx reads them.
- Per provider, ``ProviderSpec(verify=...)`` (``False``, or a CA bundle path: a PEM file or a
  directory) and ``ProviderSpec(proxy="http://user:pw@host:port")`` (instead of the environment's,
  as httpx's ``proxy=`` does). Proxy credentials go to the proxy only and are shown nowhere.

Nothing here touches a private attribute of httpx, httpx-aiohttp or aiohttp (a test greps the
package for it). httpx is imported inside functions so ``import llmroute_magic`` stays cheap.
What every wire format does with a client is in ``providers/_json_http.py``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    import httpx

    from ._types import ProviderSpec

USER_AGENT = "llmroute_magic/0.1"


def make_client(
    *, timeout: float = 60.0, max_connections: int = 100, verify: bool | str | None = None, proxy: str | None = None
) -> httpx.AsyncClient:
    """One pooled client (an ``httpx.AsyncClient``) over aiohttp transports.

    ``verify`` and ``proxy`` mean what they mean on ``ProviderSpec``; with ``proxy=None`` the
    environment's proxies apply. The aiohttp sessions are created on first use and belong to the
    event loop of that first request: use the client from that loop only, and close it there.
    """
    import httpx

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    client: httpx.AsyncClient = _client_class()(
        verify=tls_context(verify),
        proxy=proxy,
        trust_env=True,
        limits=limits,
        timeout=httpx.Timeout(timeout),
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
        tls_label=_tls_label(verify),
    )
    return client


def make_clients(specs: Iterable[ProviderSpec], *, timeout: float = 60.0, max_connections: int = 100) -> ClientSet:
    """The clients for ``specs``: one per distinct ``(spec.verify, spec.proxy)``, shared by the
    providers that agree on both. ``max_connections`` bounds each client's pool."""
    by_key: dict[tuple[Any, ...], Any] = {}
    by_name: dict[str, Any] = {}
    for spec in specs:
        key = (spec.verify, spec.proxy)
        client = by_key.get(key)
        if client is None:
            client = by_key[key] = make_client(
                timeout=timeout, max_connections=max_connections, verify=spec.verify, proxy=spec.proxy
            )
        by_name[spec.name] = client
    return ClientSet(by_name)


class ClientSet(Mapping[str, Any]):
    """Provider name -> its ``httpx.AsyncClient``; several names may share one client."""

    __slots__ = ("_by_name", "clients")

    def __init__(self, by_name: Mapping[str, Any]) -> None:
        self._by_name = dict(by_name)
        unique: dict[int, Any] = {}
        for client in self._by_name.values():
            unique.setdefault(id(client), client)
        self.clients: tuple[Any, ...] = tuple(unique.values())  # each distinct client once

    def __getitem__(self, name: str) -> Any:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    async def aclose(self) -> None:
        """Close every client, on the event loop that used them. Safe to call twice."""
        for client in self.clients:
            await client.aclose()

    def close_without_loop(self) -> None:
        """Close every client after its event loop has stopped for good (see ``close_client_without_loop``)."""
        for client in self.clients:
            close_client_without_loop(client)

    def __repr__(self) -> str:
        return f"ClientSet({len(self._by_name)} providers, {len(self.clients)} clients)"


def close_client_without_loop(client: httpx.AsyncClient) -> None:
    """Close ``client`` when the event loop it served is closed or will never run again.

    Runs ``await client.aclose()`` on a private, short-lived event loop (in a helper thread if this
    thread is running a loop), so only public API is used. aiohttp then marks its sessions and
    connectors closed, which is what stops the "Unclosed client session" reports; sockets that a
    closed loop can no longer shut down are released when they are garbage-collected, as before.
    For a loop that still runs, call ``asyncio.run_coroutine_threadsafe(client.aclose(), loop)``
    instead. Never raises.
    """

    def close() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(client.aclose())
        except Exception:  # noqa: BLE001 - best effort: a dead loop's transports may refuse to close
            pass
        finally:
            loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        close()
        return
    worker = threading.Thread(target=close, name="llmroute-close-client", daemon=True)
    worker.start()
    worker.join(5)


def tls_context(verify: bool | str | None = None) -> ssl.SSLContext:
    """The TLS context for a ``ProviderSpec.verify`` value, as httpx would build it.

    ``None``/``True``: default verification with certifi's bundle, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when set (httpx's rule); ``False``: no verification; a path: that CA bundle
    (a PEM file or a directory of certificates). Contexts are cached per setting and per CA file
    (path and modification time): loading a bundle costs 0.1-0.2 s, which every router and every
    event loop would otherwise pay again, and a context is safe to share.
    """
    if verify is None or verify is True:
        env = tuple((name, os.environ.get(name) or None) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"))
        return _cached_context("default", env, tuple(_stamp(path) for _, path in env))
    if verify is False:
        return _cached_context("off", (), ())
    path = os.path.expanduser(verify)
    return _cached_context("bundle", path, _stamp(path))


def _stamp(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=32)
def _cached_context(kind: str, where: Any, _stamp: Any) -> ssl.SSLContext:
    import ssl

    import httpx

    if kind == "default":
        return httpx.create_ssl_context(verify=True, trust_env=True)
    if kind == "off":
        return httpx.create_ssl_context(verify=False)
    # httpx >= 0.28 deprecates verify=<path>; this is what it builds for one.
    from ._errors import ConfigError

    try:
        if os.path.isdir(where):
            return ssl.create_default_context(capath=where)
        return ssl.create_default_context(cafile=where)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"providers.verify: cannot load the CA bundle {where!r}: {exc}", field="verify") from None


def _tls_label(verify: bool | str | None) -> str:
    if verify is None or verify is True:
        return "default"
    return "off" if verify is False else f"CA bundle {verify}"


@functools.cache
def _client_class() -> type[Any]:  # an httpx.AsyncClient subclass taking tls_label=
    from httpx_aiohttp import HttpxAiohttpClient

    class PooledClient(HttpxAiohttpClient):
        """An ``HttpxAiohttpClient`` that says how it was configured (for reprs, tests and errors):
        ``ssl_context`` (what verifies servers) and ``proxy_label`` (its proxy, credentials hidden)."""

        def __init__(self, *, verify: ssl.SSLContext, proxy: str | None, tls_label: str, **kwargs: Any) -> None:
            from ._types import redact_url

            super().__init__(verify=verify, proxy=proxy, **kwargs)
            self.ssl_context = verify
            self.tls_label = tls_label
            self.proxy_label = "environment" if proxy is None else redact_url(proxy)

        def __repr__(self) -> str:
            return f"PooledClient(tls={self.tls_label!r}, proxy={self.proxy_label!r})"

    return PooledClient
