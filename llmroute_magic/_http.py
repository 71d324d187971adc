"""The HTTP client: one pooled httpx client per router, over the ``httpx-aiohttp`` transport.

httpx gives the API and the exception tree; the ``httpx-aiohttp`` transport gives aiohttp's speed
(DESIGN.md section 6). httpx is imported inside functions so ``import llmroute_magic`` stays cheap.
What every wire format does with it is in ``providers/_json_http.py``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

USER_AGENT = "llmroute_magic/0.1"


def make_client(*, timeout: float = 60.0, max_connections: int = 100) -> "httpx.AsyncClient":
    """The one pooled client a router shares across all its providers (TLS verification on).

    Its aiohttp session is created on first use and belongs to the event loop that made that
    first request; use the client from that loop only.
    """
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return _client_class()(
        transport=AiohttpTransport(verify=_tls_context(), limits=limits),
        timeout=httpx.Timeout(timeout),
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
    )


@functools.cache
def _tls_context():
    """One verifying TLS context for the process. Building one loads the CA bundle (0.1-0.2 s), which
    every router, and every event loop a router serves, would otherwise pay again; a context is
    safe to share between connections and threads."""
    import httpx

    return httpx.create_ssl_context(verify=True)


@functools.cache
def _client_class() -> type:
    import httpx

    class PooledClient(httpx.AsyncClient):
        """An ``httpx.AsyncClient`` that names its transport, so adapters can hand it requests
        directly. A JSON API call needs none of the per-request cookie-jar, auth, redirect and
        event-hook bookkeeping of ``send`` (a third of the client's cost per call); any other
        httpx client still works, through ``send``."""

        def __init__(self, *, transport: "httpx.AsyncBaseTransport", **kwargs: Any) -> None:
            super().__init__(transport=transport, **kwargs)
            self.direct_transport = transport

    return PooledClient
