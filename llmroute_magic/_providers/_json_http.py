"""The send/receive loop every JSON-over-HTTP wire format shares.

``JSONOverHTTPAdapter`` owns what is the same for every API: API-key lookup, the POST, status
and transport-failure mapping, SSE reading, time to first token. A wire format adds only its
URL path, headers, request body and response/stream parsing.
"""

from __future__ import annotations

import asyncio
import json
import os
from time import perf_counter
from typing import TYPE_CHECKING, Any, AsyncIterator

from .._errors import ProviderError
from ._base import ChatRequest, ProviderAdapter, ProviderResult, StreamItem
from ._failures import (
    AttemptContext,
    error_from_exception,
    error_from_status,
    malformed,
    missing_key_error,
)
from ._sse import ServerSentEvent, iter_sse

if TYPE_CHECKING:
    import httpx

    from .._types import ProviderSpec

# What parsing JSON of the wrong shape raises (a field missing, a list where an object belongs).
_SHAPE_ERRORS = (KeyError, TypeError, IndexError, ValueError, AttributeError)

# Compact separators: fewer bytes on the wire; ensure_ascii off: non-English prompts stay small.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(body: dict[str, Any]) -> bytes:
    return _encode_json(body).encode("utf-8")


class StreamParser:
    """Reads one SSE stream of one wire format. ``feed`` returns the text delta an event carried
    (or None), keeps the usage it reports in ``ctx`` and raises ``ProviderError`` for an error
    event; it sets ``done`` at the format's proper end (``end_marker``). ``result`` is called at
    the end of the stream and raises ``malformed_response`` if that end never came."""

    __slots__ = ("ctx", "model", "finish_reason", "cache_read_tokens", "done")
    end_marker = ""

    def __init__(self, ctx: AttemptContext, model: str) -> None:
        self.ctx = ctx
        self.model = model
        self.finish_reason: str | None = None
        self.cache_read_tokens = 0
        self.done = False

    def feed(self, event: ServerSentEvent) -> str | None:
        raise NotImplementedError

    def result(self, http_status: int, ttft_s: float | None) -> ProviderResult:
        if not self.done:
            raise malformed(self.ctx, f"stream ended before {self.end_marker}")
        ctx = self.ctx
        return ProviderResult(
            text=ctx.partial_text,
            model=self.model,
            input_tokens=ctx.input_tokens,
            output_tokens=ctx.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            finish_reason=self.finish_reason,
            http_status=http_status,
            ttft_s=ttft_s,
        )


class _Auth:
    """The key in use and the headers carrying it; hidden from reprs like the spec's own key."""

    __slots__ = ("key", "headers")

    def __init__(self, key: str | None, headers: dict[str, str]) -> None:
        self.key = key
        self.headers = headers

    def __repr__(self) -> str:
        return "_Auth(***)"


class JSONOverHTTPAdapter(ProviderAdapter):
    path = ""  # appended to the spec's base_url

    def __init__(self, spec: "ProviderSpec", client: "httpx.AsyncClient") -> None:
        super().__init__(spec, client)
        import httpx

        self._url = httpx.URL(f"{spec.base_url}{self.path}")
        self._timeout: Any = httpx.Timeout(spec.timeout) if spec.timeout is not None else httpx.USE_CLIENT_DEFAULT
        # httpx's timeouts bound each connect and each read; a plain answer also gets the same
        # number as a deadline for the whole of it, so a server that trickles bytes cannot hold a
        # request forever. (A stream may run long while text flows: only its reads are bounded.)
        self._deadline_s: float | None = spec.timeout if spec.timeout is not None else \
            getattr(getattr(client, "timeout", None), "read", None)
        self._direct = getattr(client, "direct_transport", None)
        if self._direct is not None:
            timeout = self._timeout if spec.timeout is not None else client.timeout
            self._client_headers = dict(client.headers)
            self._extensions = {"timeout": timeout.as_dict()}
            self._httpx_request = httpx.Request
            self._httpx_headers = httpx.Headers
            self._byte_stream = httpx.ByteStream
            self._wire_source: dict[str, str] | None = None
            self._wire_headers: Any = None
            from httpx_aiohttp.transport import map_aiohttp_exceptions

            self._map_transport_errors = map_aiohttp_exceptions
        self._needs_key = not spec.is_local
        self._env_var = spec.key_env_var
        # A key given on the spec never changes; one from the environment is looked up per call
        # (it may be set after the router was built), by the name worked out once here.
        key = spec.resolve_api_key({})
        self._key_from_env = key is None
        self._auth = _Auth(key, self._full_headers(key))

    # -- what a wire format provides ---------------------------------------------------------
    def headers_for(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_response(self, payload: Any, http_status: int) -> ProviderResult:
        """Raises KeyError/TypeError/IndexError/ValueError when a field is missing or wrong."""
        raise NotImplementedError

    def stream_parser(self, ctx: AttemptContext) -> StreamParser:
        raise NotImplementedError

    # -- the shared call ---------------------------------------------------------------------
    def _begin(self, ctx: AttemptContext | None) -> tuple[dict[str, str], AttemptContext]:
        auth = self._auth
        if self._key_from_env:
            key = os.environ.get(self._env_var) or None
            if key != auth.key:  # set, changed or removed since the last call: rebuild the headers once
                auth = self._auth = _Auth(key, self._full_headers(key))
        if auth.key is None and self._needs_key:
            raise missing_key_error(self.spec.name, self.spec.model, self._env_var)
        if ctx is None:
            ctx = AttemptContext(self.spec.name, self.spec.model)
        ctx.secret = auth.key
        return auth.headers, ctx

    def _full_headers(self, key: str | None) -> dict[str, str]:
        if self._direct is None:
            return self.headers_for(key)  # send() merges in the client's own headers
        return {**self._client_headers, **self.headers_for(key)}

    async def _send(self, headers: dict[str, str], content: bytes, stream: bool) -> "httpx.Response":
        if self._direct is None:
            request = self.client.build_request("POST", self._url, content=content, headers=headers,
                                                timeout=self._timeout)
            return await self.client.send(request, stream=stream)
        if headers is not self._wire_source:  # new key headers: convert them once, not per call
            self._wire_headers = self._httpx_headers(headers)
            self._wire_source = headers
        # stream= skips httpx's per-request header merging (host and content-length are added by
        # aiohttp, as before); read() then makes the body available to the transport as content.
        request = self._httpx_request("POST", self._url, headers=self._wire_headers,
                                      stream=self._byte_stream(content), extensions=self._extensions)
        request.read()
        response = await self._direct.handle_async_request(request)
        if not stream:
            try:
                raw = getattr(response.stream, "_aiohttp_response", None)
                if raw is not None and "content-encoding" not in raw.headers:
                    # One read of the whole body from aiohttp, errors mapped to httpx's as the
                    # transport's own stream does: a fifth of the CPU per call, versus reading it
                    # through httpx's byte-stream, decoder and chunker layers. Encoded bodies, or
                    # another transport, take the general path.
                    with self._map_transport_errors():
                        response._content = await raw.read()
                    await response.aclose()
                else:
                    await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    async def complete(self, request: ChatRequest, ctx: AttemptContext | None = None) -> ProviderResult:
        headers, ctx = self._begin(ctx)
        content = dumps(self.build_body(request, False))
        try:
            if self._deadline_s is None:
                response = await self._send(headers, content, stream=False)
            else:
                async with asyncio.timeout(self._deadline_s):
                    response = await self._send(headers, content, stream=False)
        except TimeoutError:
            raise ctx.error("timeout", f"no complete answer within {self._deadline_s:g} s") from None
        except Exception as exc:
            err = error_from_exception(ctx, exc)
            if err is None:
                raise
            raise err from exc
        status = response.status_code
        if status >= 300:
            raise error_from_status(ctx, status, response.content, response.headers)
        return self._parse_body(ctx, response.content, status)

    def _parse_body(self, ctx: AttemptContext, body: bytes, status: int) -> ProviderResult:
        try:
            payload = json.loads(body)
        except ValueError:
            raise malformed(ctx, f"response body is not JSON: {_preview(body)}") from None
        try:
            return self.parse_response(payload, status)
        except _SHAPE_ERRORS as exc:
            raise malformed(ctx, f"response JSON lacks an expected field ({type(exc).__name__}: {exc})") from None

    async def stream(self, request: ChatRequest, ctx: AttemptContext | None = None) -> AsyncIterator[StreamItem]:
        headers, ctx = self._begin(ctx)
        content = dumps(self.build_body(request, True))
        parser = self.stream_parser(ctx)
        ttft: float | None = None
        started = perf_counter()
        try:
            # The response is closed on every way out (end, error, cancellation, the consumer
            # dropping the generator), so no connection is left half-read in the pool.
            response = await self._send(headers, content, stream=True)
            try:
                status = response.status_code
                if status >= 300:
                    raise error_from_status(ctx, status, await response.aread(), response.headers)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores "stream": true answers in one piece; take it as such.
                    result = self._parse_body(ctx, await response.aread(), status)
                    result.ttft_s = perf_counter() - started
                    if result.text:
                        yield result.text
                    yield result
                    return
                async for event in iter_sse(self._body_chunks(response)):
                    try:
                        text = parser.feed(event)
                    except _SHAPE_ERRORS as exc:
                        raise malformed(ctx, f"stream event lacks an expected field ({type(exc).__name__}: "
                                             f"{exc}): {event.data[:80]!r}") from None
                    if text:
                        if ttft is None:
                            ttft = perf_counter() - started
                        ctx.parts.append(text)
                        yield text
            finally:
                await response.aclose()
        except ProviderError:
            raise
        except Exception as exc:
            err = error_from_exception(ctx, exc)
            if err is None:
                raise
            raise err from exc
        yield parser.result(status, ttft)


    def _body_chunks(self, response: "httpx.Response") -> AsyncIterator[bytes]:
        """The body as it arrives. Straight from aiohttp when the transport is ours and the body is
        not encoded (SSE never is): each chunk then skips httpx's byte-stream, decoder and chunker
        layers (time to first token about 8% lower on loopback); errors are mapped to httpx's
        exactly as the transport's own stream maps them."""
        raw = getattr(response.stream, "_aiohttp_response", None) if self._direct is not None else None
        if raw is None or "content-encoding" in raw.headers:
            return response.aiter_bytes()
        return self._raw_chunks(raw)

    async def _raw_chunks(self, raw: Any) -> AsyncIterator[bytes]:
        with self._map_transport_errors():
            async for chunk in raw.content.iter_any():
                yield chunk


def _preview(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(body) > limit else ""))
