"""The send/receive loop every JSON-over-HTTP wire format shares.

``JSONOverHTTPAdapter`` owns what is the same for every API: API-key lookup, the POST, status
and transport-failure mapping, reading a stream, time to first token. A wire format adds only:

    key_header, key_scheme               where the API key goes (default: a Bearer ``authorization``)
    headers_for(key)                     the auth and content headers, when more than the key
    url_for(request, stream)             where to POST (default: base_url + ``path``)
    build_body(request, stream)          the JSON body, translated from the neutral ChatRequest
    parse_response(payload, status, request)   a plain answer -> ProviderResult
    stream_parser(ctx, request)          a StreamParser for its events
    events(response)                     how a stream is framed (default SSE; NDJSON formats override)
    error_for_status(ctx, status, body, headers)  its error bodies (default: OpenAI's and Anthropic's)
    own_fields                           fields it adds on its own that a compatible server may refuse

The neutral request (text and image parts, tools, tool choice, a response schema, a model for
this request) is described in ``_content.py``; what a format cannot express it leaves out, and
the router never sends it a request that needs it (``_capabilities.py``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .._errors import ProviderError
from ._base import ChatRequest, ProviderAdapter, ProviderResult, StreamItem
from ._deadline import DeadlineWatch
from ._failures import (
    AttemptContext,
    error_from_exception,
    error_from_status,
    malformed,
    missing_key_error,
)
from ._sse import ServerSentEvent, iter_sse
from ._wire_json import dumps, loads

if TYPE_CHECKING:
    import httpx

    from .._types import ProviderSpec, ToolCall

# What parsing JSON of the wrong shape raises (a field missing, a list where an object belongs).
_SHAPE_ERRORS = (KeyError, TypeError, IndexError, ValueError, AttributeError)


def with_params_and_stream_flag(body: dict[str, Any], params: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    """``body`` with the caller's ``params`` laid over it, then ``stream`` as this call needs it: params
    may set any field of the API, but a plain call reads one JSON answer and a stream reads events."""
    body.update(params)
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def count(value: Any) -> int | None:
    """A token count from a usage block: None when absent (unknown, never 0)."""
    return None if value is None else int(value)


class StreamParser:
    """Reads one SSE stream of one wire format. ``feed`` returns the text delta an event carried
    (or None), keeps the usage it reports in ``ctx`` and raises ``ProviderError`` for an error
    event; it sets ``done`` at the format's proper end (``end_marker``). ``result`` is called at
    the end of the stream and raises ``malformed_response`` if that end never came. Tokens that the
    stream never reported stay None in the result (unknown, never 0)."""

    __slots__ = ("ctx", "model", "finish_reason", "done", "tool_calls")
    end_marker = ""

    def __init__(self, ctx: AttemptContext, model: str) -> None:
        self.ctx = ctx
        self.model = model
        self.finish_reason: str | None = None
        self.done = False
        self.tool_calls: list[ToolCall] = []  # complete calls, in order, as the stream finished them

    # Cache shares live in the context with the other tokens: a stream cancelled after
    # message_start is billed for them too.
    @property
    def cache_read_tokens(self) -> int:
        return self.ctx.cache_read_tokens

    @cache_read_tokens.setter
    def cache_read_tokens(self, value: int) -> None:
        self.ctx.cache_read_tokens = value

    @property
    def cache_write_tokens(self) -> int:
        return self.ctx.cache_write_tokens

    @cache_write_tokens.setter
    def cache_write_tokens(self, value: int) -> None:
        self.ctx.cache_write_tokens = value

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
            cache_write_tokens=self.cache_write_tokens,
            finish_reason=self.finish_reason,
            http_status=http_status,
            ttft_s=ttft_s,
            tool_calls=tuple(self.tool_calls),
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
    # OpenAI's way is the most common one: the OpenAI-compatible formats only inherit it.
    key_header = "authorization"
    key_scheme = "Bearer "  # before the key in that header
    # Fields the format adds on its own, not asked for by the caller, that some compatible servers
    # refuse with a 400 or 422 naming them (Mistral: stream_options). Such an answer fails the
    # attempt as ``unsupported_parameter``, the router sends the request again at once without the
    # field (``Policy.RESEND``), and ``refused_fields`` keeps it out for this provider from then on
    # — unless that request is refused as well: then the error only quoted the field.
    own_fields: tuple[str, ...] = ()

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        super().__init__(spec, client)
        import httpx

        self._url = httpx.URL(f"{spec.base_url}{self.path}")
        self._timeout: Any = httpx.Timeout(spec.timeout) if spec.timeout is not None else httpx.USE_CLIENT_DEFAULT
        # httpx's timeouts bound each connect and each read; a plain answer also gets the same
        # number as a deadline for the whole of it, so a server that trickles bytes cannot hold a
        # request forever. (A stream may run long while text flows: only its reads are bounded.)
        self._deadline_s: float | None = (
            spec.timeout if spec.timeout is not None else getattr(getattr(client, "timeout", None), "read", None)
        )
        self._deadlines = DeadlineWatch(self._deadline_s) if self._deadline_s is not None else None
        self._needs_key = not spec.is_local
        self._env_vars = spec.key_env_vars
        self._env_var = self._env_vars[0]  # the one to name when none is set
        # A key given on the spec never changes; one from the environment is looked up per call
        # (it may be set after the router was built), by the name worked out once here.
        key = spec.resolve_api_key({})
        self._key_from_env = key is None
        self._auth = _Auth(key, self.headers_for(key))
        self._hidden = _proxy_credentials(spec.proxy)

    # -- what a wire format provides ---------------------------------------------------------
    def headers_for(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if key is not None:
            headers[self.key_header] = f"{self.key_scheme}{key}"
        return headers

    def url_for(self, request: ChatRequest, stream: bool) -> httpx.URL | str:
        return self._url

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_response(self, payload: Any, http_status: int, request: ChatRequest) -> ProviderResult:
        """Raises KeyError/TypeError/IndexError/ValueError when a field is missing or wrong."""
        raise NotImplementedError

    def stream_parser(self, ctx: AttemptContext, request: ChatRequest) -> StreamParser:
        raise NotImplementedError

    def error_for_status(self, ctx: AttemptContext, status: int, body: bytes, headers: Any) -> ProviderError:
        """An HTTP error answer as a ProviderError. The shared rules read OpenAI's and Anthropic's
        error bodies; a format whose errors look otherwise overrides this (and may call them)."""
        return error_from_status(ctx, status, body, headers)

    def events(self, response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
        """The stream's events: server-sent events here; a format framed otherwise overrides this."""
        return iter_sse(response.aiter_bytes())

    # -- the shared call ---------------------------------------------------------------------
    def _begin(self, ctx: AttemptContext | None) -> tuple[dict[str, str], AttemptContext]:
        auth = self._auth
        if self._key_from_env:
            key = None
            for var in self._env_vars:  # a plain loop: this runs on every request
                key = os.environ.get(var) or None
                if key is not None:
                    break
            if key != auth.key:  # set, changed or removed since the last call: rebuild the headers once
                auth = self._auth = _Auth(key, self.headers_for(key))
        if auth.key is None and self._needs_key:
            raise missing_key_error(self.spec.name, self.spec.model, self._env_var)
        if ctx is None:
            ctx = AttemptContext(self.spec.name, self.spec.model)  # model: the caller's ctx names the request's
        ctx.secret = auth.key
        ctx.hidden = self._hidden
        return auth.headers, ctx

    def _send(
        self, url: httpx.URL | str, headers: dict[str, str], content: bytes, stream: bool
    ) -> Awaitable[httpx.Response]:
        """One POST through the client's public API: its mounts pick the proxy route, if any; with
        ``stream=False`` the whole body has been read (and the connection released) once awaited.
        Not a coroutine itself: ``client.send``'s is awaited by the caller, one frame fewer for
        every suspension of every request in flight."""
        client = self.client
        request = client.build_request("POST", url, content=content, headers=headers, timeout=self._timeout)
        return client.send(request, stream=stream)

    def _status_error(
        self, ctx: AttemptContext, status: int, body: bytes, headers: Any, sent: dict[str, Any], request: ChatRequest
    ) -> ProviderError:
        """``error_for_status``, unless the answer refuses one of ``own_fields`` that ``sent`` carried."""
        err = self.error_for_status(ctx, status, body, headers)
        if not self.own_fields or status not in (400, 422) or err.error_type != "invalid_request":
            return err
        if self.refused_fields.on_trial:  # refused without the field too: it was not the cause
            self.refused_fields.refused_anyway()
        for name in self.own_fields:
            if name in sent and name not in request.params and _names_field(body, name):
                self.refused_fields.add(name, on_trial=True)
                return ctx.error(
                    "unsupported_parameter",
                    f"refused {name!r}, which the router adds on its own; sending again without it ({err.message})",
                    status_code=status,
                )
        return err

    async def complete(self, request: ChatRequest, ctx: AttemptContext | None = None) -> ProviderResult:
        headers, ctx = self._begin(ctx)
        body = self.build_body(request, False)
        content = dumps(body)
        url = self.url_for(request, False)
        try:
            deadlines = self._deadlines
            if deadlines is None:
                response = await self._send(url, headers, content, stream=False)
            else:
                with deadlines.start():
                    response = await self._send(url, headers, content, stream=False)
        except TimeoutError:
            raise ctx.error("timeout", f"no complete answer within {self._deadline_s:g} s") from None
        except Exception as exc:
            err = error_from_exception(ctx, exc)
            if err is None:
                raise
            raise err from exc
        status = response.status_code
        if status >= 300:
            raise self._status_error(ctx, status, response.content, response.headers, body, request)
        if self.refused_fields.on_trial:
            self.refused_fields.answered()
        return self._parse_body(ctx, response.content, status, request)

    def _parse_body(self, ctx: AttemptContext, body: bytes, status: int, request: ChatRequest) -> ProviderResult:
        try:
            payload = loads(body)
        except ValueError:
            raise malformed(ctx, f"response body is not JSON: {_preview(body)}") from None
        try:
            return self.parse_response(payload, status, request)
        except _SHAPE_ERRORS as exc:
            raise malformed(ctx, f"response JSON lacks an expected field ({type(exc).__name__}: {exc})") from None

    async def stream(self, request: ChatRequest, ctx: AttemptContext | None = None) -> AsyncIterator[StreamItem]:
        headers, ctx = self._begin(ctx)
        body = self.build_body(request, True)
        content = dumps(body)
        url = self.url_for(request, True)
        parser = self.stream_parser(ctx, request)
        ttft: float | None = None
        started = perf_counter()
        try:
            # The response is closed on every way out (end, error, cancellation, the consumer
            # dropping the generator), so no connection is left half-read in the pool.
            response = await self._send(url, headers, content, stream=True)
            try:
                status = response.status_code
                if status >= 300:
                    raise self._status_error(ctx, status, await response.aread(), response.headers, body, request)
                if self.refused_fields.on_trial:
                    self.refused_fields.answered()
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores "stream": true answers in one piece; take it as such.
                    result = self._parse_body(ctx, await response.aread(), status, request)
                    result.ttft_s = perf_counter() - started
                    if result.text:
                        yield result.text
                    yield result
                    return
                async for event in self.events(response):
                    try:
                        text = parser.feed(event)
                    except _SHAPE_ERRORS as exc:
                        raise malformed(
                            ctx,
                            f"stream event lacks an expected field ({type(exc).__name__}: {exc}): {event.data[:80]!r}",
                        ) from None
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


def _names_field(body: bytes, name: str) -> bool:
    """Whether an error body names the field ``name``: in its messages, parameter names and
    locations, not in the request values a server may echo back (pydantic's ``input``)."""
    word = re.compile(rf"\b{re.escape(name)}\b")

    def names(value: Any) -> bool:
        if isinstance(value, str):
            return word.search(value) is not None
        if isinstance(value, dict):
            return any(names(v) for k, v in value.items() if k != "input")
        if isinstance(value, list):
            return any(names(v) for v in value)
        return False

    try:
        return names(json.loads(body))
    except ValueError:
        return names(body.decode("utf-8", "replace"))


def _proxy_credentials(proxy: str | None) -> tuple[str, ...]:
    """What of a proxy URL must never appear in a message: its user info and password, raw and decoded."""
    if not proxy:
        return ()
    from urllib.parse import unquote, urlsplit

    userinfo = urlsplit(proxy).netloc.rpartition("@")[0]
    if not userinfo:
        return ()
    password = userinfo.partition(":")[2]
    found = {userinfo, unquote(userinfo), password, unquote(password)}
    return tuple(sorted((t for t in found if t), key=len, reverse=True))


def _preview(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(body) > limit else ""))
