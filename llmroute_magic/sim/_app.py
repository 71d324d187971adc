"""The simulator's HTTP surface: provider routes in both wire formats, faults, billing and /_sim control.

Billing follows one rule so a client's ledger can equal the stats exactly: count only the tokens
reported in a usage block the client received whole (see ``_Stream``).

Each request to a known provider ends under exactly one key of ``statuses``: the HTTP status as a
string ("200" only for a complete answer, "429", "500", ...) or, when there was no proper answer,
"reset", "hang", "malformed_json", "truncated_stream" (plain or streamed), "stream_error" (streamed
only; a plain request with that fault gets "500"), or "disconnected" (the client left first).
Error statuses answer at once; latency applies to answers and to the stream faults.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import math
import socket
import struct
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import ConfigError
from . import _formats as F
from ._state import Plan, SimState
from ._text import answer_pieces

HANG_CAP_S = 600.0
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Faults that are not a plain HTTP error answer; everything else in FAULT_KINDS is one.
_BODY_FAULTS = frozenset({"hang", "reset", "malformed_json", "truncated_stream", "stream_error"})


class _JSON:
    """A complete JSON answer as two raw ASGI messages (cheaper than a framework Response on the hot path)."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    async def __call__(self, scope, receive, send) -> None:
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        if self.headers:
            raw.extend((k.encode(), v.encode()) for k, v in self.headers.items())
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


_json = _JSON


def _header(scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def _key_matches(scope, expected: str) -> bool:
    got = _header(scope, b"x-api-key")
    if got is None:
        auth = _header(scope, b"authorization") or ""
        got = auth[7:] if auth[:7].lower() == "bearer " else None
    return got is not None and hmac.compare_digest(got.encode(), expected.encode())


async def _read_body(receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _retry_after_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": str(math.ceil(seconds)), "retry-after-ms": str(math.ceil(seconds * 1000))}


async def _wait_unless_gone(seconds: float, receive: Callable, stopping: asyncio.Event | None = None) -> bool:
    """Sleep, but return False early if the client disconnects (or the server is stopping)."""
    gone = asyncio.ensure_future(receive())
    waiters = {gone}
    stop = None
    if stopping is not None:
        stop = asyncio.ensure_future(stopping.wait())
        waiters.add(stop)
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            if not w.done():
                w.cancel()
    if stop is not None and stop.done() and not stop.cancelled():
        return False
    return not (gone.done() and not gone.cancelled() and gone.result().get("type") == "http.disconnect")


def _abort(transport: Any, *, rst: bool) -> None:
    if transport is None or transport.is_closing():
        return
    if rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # linger 0: close() sends a TCP RST instead of a FIN, like a crashed peer or a dropped proxy
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
    transport.abort()


class _Nothing:
    """No response at all: the client already left."""

    async def __call__(self, scope, receive, send) -> None:
        return None


class _Reset:
    """Drop the connection without any response."""

    async def __call__(self, scope, receive, send) -> None:
        _abort(scope.get("sim.transport"), rst=True)
        await asyncio.sleep(0)  # let the server see connection_lost, so it does not try to answer


class _Hang:
    """Accept the request and never answer; give up when the client leaves, the server stops, or after the cap."""

    def __init__(self, app: "SimApp") -> None:
        self._app = app

    async def __call__(self, scope, receive, send) -> None:
        await _wait_unless_gone(HANG_CAP_S, receive, self._app.stopping)
        _abort(scope.get("sim.transport"), rst=False)
        await asyncio.sleep(0)


class _Stream:
    """An SSE answer. ``steps`` are (frame, paced, bill) where bill = (input, output) tokens charged once sent.

    A frame counts as received when the send returned with the connection still open. Without
    pacing, frames are coalesced up to each billing point so a fast stream costs few writes.
    """

    def __init__(self, app: "SimApp", plan: Plan, rid: str, steps: list[tuple[bytes, bool, tuple[int, int] | None]],
                 status: str, close: bool) -> None:
        self._app = app
        self._plan = plan
        self._rid = rid
        self._steps = steps
        self._status = status
        self._close = close

    async def __call__(self, scope, receive, send) -> None:
        state, plan = self._app.state, self._plan
        name = plan.profile.name
        transport = scope.get("sim.transport")

        def alive() -> bool:
            return transport is None or not transport.is_closing()

        if plan.delay_s > 0 and not await _wait_unless_gone(plan.delay_s, receive):
            state.record(name, "disconnected")
            return
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                   (b"x-request-id", self._rid.encode())]
        if self._close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        interval = 1.0 / plan.profile.tokens_per_s if plan.profile.tokens_per_s > 0 else 0.0
        first_paced = True
        buffer: list[bytes] = []
        for frame, paced, bill in self._steps:
            if paced and interval:
                if buffer:
                    await send({"type": "http.response.body", "body": b"".join(buffer), "more_body": True})
                    buffer.clear()
                if not first_paced:
                    await asyncio.sleep(interval)
                first_paced = False
                if not alive():
                    state.record(name, "disconnected")
                    return
            buffer.append(frame)
            if bill is not None or (paced and interval):
                await send({"type": "http.response.body", "body": b"".join(buffer), "more_body": True})
                buffer.clear()
                if not alive():
                    state.record(name, "disconnected")
                    return
                if bill is not None:
                    state.bill(plan.profile, *bill)
        # Counted before the last send, so a client that has read the whole stream always finds it in the
        # stats (and because with connection: close the server closes the transport right after it).
        state.record(name, self._status if alive() else "disconnected")
        await send({"type": "http.response.body", "body": b"".join(buffer), "more_body": False})


class SimApp:
    """ASGI entry point. Wraps a Starlette app and hands each request the raw transport (for resets)."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._ids = itertools.count(1)
        self.stopping: asyncio.Event | None = None
        self.starlette = Starlette(routes=[
            Route("/_sim/stats", self._stats, methods=["GET"]),
            Route("/_sim/reset", self._reset, methods=["POST"]),
            Route("/_sim/profiles", self._list_profiles, methods=["GET"]),
            Route("/_sim/profiles/{name}", self._update_profile, methods=["POST"]),
            Route("/_sim/inject/{name}", self._inject, methods=["POST"]),
            Route("/{provider}/v1/chat/completions", self._openai, methods=_ALL_METHODS),
            Route("/{provider}/v1/messages", self._anthropic, methods=_ALL_METHODS),
            Route("/{path:path}", self._unknown, methods=_ALL_METHODS),
        ])

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if self.stopping is None:
                self.stopping = asyncio.Event()
            # uvicorn's send is a bound method of its per-request cycle, which holds the transport.
            scope["sim.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
            # Provider calls skip the framework's routing and Request objects: benchmarks measure against
            # this server, so its own cost per request must stay far below the client's.
            if scope["method"] == "POST":
                parts = scope["path"].split("/")
                fmt = None
                if len(parts) == 5 and parts[2] == "v1" and parts[3] == "chat" and parts[4] == "completions":
                    fmt = F.OPENAI
                elif len(parts) == 4 and parts[2] == "v1" and parts[3] == "messages":
                    fmt = F.ANTHROPIC
                if fmt is not None and self.state.get(parts[1]) is not None:
                    responder = await self._provider(scope, receive, fmt, parts[1])
                    await responder(scope, receive, send)
                    return
        await self.starlette(scope, receive, send)

    def stop_waiting(self) -> None:
        """Release hung requests; call on the server's event loop."""
        if self.stopping is not None:
            self.stopping.set()

    # -- provider routes ----------------------------------------------------------------------
    async def _openai(self, request: Request) -> Any:
        return self._provider_not_served(request, F.OPENAI)

    async def _anthropic(self, request: Request) -> Any:
        return self._provider_not_served(request, F.ANTHROPIC)

    def _provider_not_served(self, request: Request, fmt: str) -> Any:
        """A provider route the fast path did not take: an unknown provider or a method other than POST."""
        name = request.path_params["provider"]
        if self.state.get(name) is None:
            return _json(404, F.not_found(fmt, (
                f"Unknown simulated provider {name!r}; known providers: {', '.join(self.state.names())}.")))
        return _json(405, F.error_body(fmt, f"Method {request.method} not allowed; use POST.",
                                       "invalid_request_error", "invalid_request_error"), {"allow": "POST"})

    async def _unknown(self, request: Request) -> Response:
        fmt = F.ANTHROPIC if request.url.path.rstrip("/").endswith("/messages") else F.OPENAI
        return _json(404, F.not_found(fmt, (
            f"Unknown path {request.url.path!r}. The simulator serves POST /<provider>/v1/chat/completions and "
            f"POST /<provider>/v1/messages; known providers: {', '.join(self.state.names())}.")))

    async def _provider(self, scope, receive, fmt: str, name: str) -> Any:
        state = self.state
        body = await _read_body(receive)
        try:
            req = F.parse_request(fmt, body)
        except F.BadRequest as exc:
            state.count_unadmitted(name, "400")
            return _json(400, F.bad_request(fmt, exc))
        plan = state.admit(name, stream=req.stream, key_ok=lambda p: _key_matches(scope, p.require_api_key))
        profile, fault = plan.profile, plan.fault
        input_tokens = req.input_tokens

        if fault == "hang":
            state.record(name, "hang")
            return _Hang(self)
        if fault == "reset":
            state.record(name, "reset")
            return _Reset()
        if fault is not None and (fault not in _BODY_FAULTS or (fault == "stream_error" and not req.stream)):
            status, err = F.fault_error(fmt, fault, model=req.model, input_tokens=input_tokens,
                                        context_window=profile.context_window)
            state.record(name, str(status))
            headers = _retry_after_headers(plan.retry_after_s or 0.0) if fault == "rate_limit" else None
            return _json(status, err, headers)
        if input_tokens > profile.context_window:
            state.record(name, "400")
            return _json(400, F.context_length_error(fmt, input_tokens, profile.context_window))

        pieces, cut = answer_pieces(req.key, profile.seed, req.max_tokens)
        n = next(self._ids)
        if req.stream:
            return self._stream(fmt, plan, req, pieces, cut, n, input_tokens)

        if plan.delay_s > 0 and not await _wait_unless_gone(plan.delay_s, receive):
            state.record(name, "disconnected")
            return _Nothing()
        text = "".join(pieces)
        usage = not profile.no_usage
        if fmt == F.OPENAI:
            rid = f"chatcmpl-sim{n:08x}"
            out = F.openai_completion(rid, req.model, text, "length" if cut else "stop", input_tokens, len(pieces),
                                      usage)
        else:
            rid = f"msg_sim{n:08x}"
            out = F.anthropic_message(rid, req.model, text, "max_tokens" if cut else "end_turn", input_tokens,
                                      len(pieces), usage)
        if fault == "malformed_json":
            state.record(name, "malformed_json")
            return _json(200, out[: len(out) // 3] + b"<<not json>>", {"x-request-id": rid})
        if fault == "truncated_stream":
            state.record(name, "truncated_stream")
            return _json(200, out[: len(out) // 2], {"x-request-id": rid})
        if usage:  # tokens the client was never told of are not billed (the module's one rule)
            state.bill(profile, input_tokens, len(pieces))
        state.record(name, "200")
        return _json(200, out, {"x-request-id": rid})

    def _stream(self, fmt: str, plan: Plan, req: F.ParsedRequest, pieces: tuple[str, ...], cut: bool, n: int,
                input_tokens: int) -> _Stream:
        fault = plan.fault
        out_tokens = len(pieces)
        usage = not plan.profile.no_usage
        partial = pieces[: max(1, len(pieces) // 2)]
        steps: list[tuple[bytes, bool, tuple[int, int] | None]] = []
        if fmt == F.OPENAI:
            rid = f"chatcmpl-sim{n:08x}"
            ev = F.OpenAIChunks(rid, req.model, req.include_usage and usage)
            if fault == "malformed_json":
                steps.append((b'data: {"id": "' + rid.encode() + b'", "choices": [<<not json>>\n\n', False, None))
            else:
                steps.append((ev.start(), False, None))
                body = partial if fault in ("truncated_stream", "stream_error") else pieces
                steps.extend((ev.delta(p), True, None) for p in body)
                if fault == "stream_error":
                    steps.append((ev.error(), False, None))
                elif fault is None:
                    steps.append((ev.finish("length" if cut else "stop"), False, None))
                    if req.include_usage and usage:
                        steps.append((ev.usage(input_tokens, out_tokens), False, (input_tokens, out_tokens)))
                    steps.append((ev.done(), False, None))
        else:
            rid = f"msg_sim{n:08x}"
            ev = F.AnthropicEvents(rid, req.model, usage)
            if fault == "malformed_json":
                steps.append((b'event: message_start\ndata: {"type": "message_start", <<not json>>\n\n', False, None))
            else:
                steps.append((ev.message_start(input_tokens), False, (input_tokens, 0) if usage else None))
                steps.append((ev.block_start(), False, None))
                steps.append((ev.ping(), False, None))
                body = partial if fault in ("truncated_stream", "stream_error") else pieces
                steps.extend((ev.delta(p), True, None) for p in body)
                if fault == "stream_error":
                    steps.append((ev.error(), False, None))
                elif fault is None:
                    steps.append((ev.block_stop(), False, None))
                    steps.append((ev.message_delta("max_tokens" if cut else "end_turn", out_tokens), False,
                                  (0, out_tokens) if usage else None))
                    steps.append((ev.message_stop(), False, None))
        return _Stream(self, plan, rid, steps, status=fault or "200", close=fault is not None)

    # -- control routes -------------------------------------------------------------------------
    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.state.stats())

    async def _reset(self, request: Request) -> Response:
        everything = request.query_params.get("all", "").lower() in ("1", "true", "yes")
        if everything:
            self.state.reset_all()
        else:
            self.state.reset_stats()
        return JSONResponse({"ok": True, "reset": "all" if everything else "stats"})

    async def _list_profiles(self, request: Request) -> Response:
        return JSONResponse({"profiles": {n: p.to_dict() for n, p in self.state.profiles().items()}})

    async def _control_body(self, request: Request, expected: type) -> Any:
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise ConfigError("the request body must be JSON") from None
        if not isinstance(data, expected):
            raise ConfigError(f"the request body must be a JSON {'object' if expected is dict else 'array'}")
        return data

    async def _update_profile(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            changes = await self._control_body(request, dict)
            profile = self.state.update(name, **changes)
        except ConfigError as exc:
            return self._control_error(name, exc)
        return JSONResponse({"profile": profile.to_dict()})

    async def _inject(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            queued = self.state.inject(name, await self._control_body(request, list))
        except ConfigError as exc:
            return self._control_error(name, exc)
        return JSONResponse({"queued": queued})

    def _control_error(self, name: str, exc: ConfigError) -> Response:
        unknown = self.state.get(name) is None
        return _json(404 if unknown else 400, F.error_body(
            F.OPENAI, str(exc), "invalid_request_error", "invalid_request_error", "not_found" if unknown else None))
