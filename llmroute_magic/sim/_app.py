"""The simulator's HTTP surface, the same for every wire format: routing, admission, faults, latency,
pacing, billing, disconnects, stats and the /_sim control routes. What a request and an answer look
like on the wire is each format's business (``_wire/``); nothing here knows a format.

Billing follows one rule so a client's ledger can equal the stats exactly: count only the tokens
reported in a usage block the client received whole (see ``_Stream``).

Each request to a known provider ends under exactly one key of ``statuses``: the HTTP status as a
string ("200" only for a complete answer, "429", "500", ...) or, when there was no proper answer,
"reset", "hang", "malformed_json", "truncated_stream" (plain or streamed), "stream_error" (streamed
only; a plain request with that fault gets "500"), "ignore_schema" (a complete, billed 200 answer in
prose to a request that demanded structure), or "disconnected" (the client left first).
Error statuses answer at once; latency applies to answers and to the stream faults.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._errors import ConfigError
from ._answers import make_answer
from ._neutral import BadRequest, SimRequest
from ._state import Plan, SimState
from ._wire import DEFAULT_FORMAT, FORMATS, ROUTES, Call, Reply, Step, Usage, WireFormat
from ._wire._base import NO_VISION

HANG_CAP_S = 600.0
_STATIC = ROUTES.static_hits
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Faults that break a 200 answer's body (plain or streamed).
_BODY_FAULTS = frozenset({"malformed_json", "truncated_stream", "stream_error"})
# Faults that still produce an answer (broken or changed), as stream_error does on a stream; the others
# (HTTP_FAULTS, hang, reset, and stream_error on a plain request) answer nothing or an HTTP error.
_ANSWERED_FAULTS = frozenset({"malformed_json", "truncated_stream", "ignore_schema"})


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


def _reply(reply: Reply) -> _JSON:
    return _JSON(reply.status, reply.body, reply.headers)


def _key_matches(got: str | None, expected: str) -> bool:
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

    def __init__(self, app: SimApp) -> None:
        self._app = app

    async def __call__(self, scope, receive, send) -> None:
        await _wait_unless_gone(HANG_CAP_S, receive, self._app.stopping)
        _abort(scope.get("sim.transport"), rst=False)
        await asyncio.sleep(0)


class _Stream:
    """A streamed answer. ``steps`` are (frame, paced, bill) where bill = (input, output) tokens charged once sent.

    A frame counts as received when the send returned with the connection still open. Without
    pacing, frames are coalesced up to each billing point so a fast stream costs few writes.
    """

    def __init__(
        self, app: SimApp, plan: Plan, rid: str, steps: list[Step], content_type: bytes, status: str, close: bool
    ) -> None:
        self._app = app
        self._plan = plan
        self._rid = rid
        self._steps = steps
        self._content_type = content_type
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
        headers = [
            (b"content-type", self._content_type),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self._rid.encode()),
        ]
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


# What a provider call answers with: an ASGI app for that one request.
_Responder = _JSON | _Nothing | _Reset | _Hang | _Stream


class SimApp:
    """ASGI entry point. Provider calls go straight to ``_provider``; /_sim control routes and unknown
    paths go through Starlette. Each request gets the raw transport (for resets)."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._ids = itertools.count(1)
        self.stopping: asyncio.Event | None = None
        self.starlette = Starlette(
            routes=[
                Route("/_sim/stats", self._stats, methods=["GET"]),
                Route("/_sim/reset", self._reset, methods=["POST"]),
                Route("/_sim/profiles", self._list_profiles, methods=["GET"]),
                Route("/_sim/profiles/{name}", self._update_profile, methods=["POST"]),
                Route("/_sim/inject/{name}", self._inject, methods=["POST"]),
                Route("/{path:path}", self._unknown, methods=_ALL_METHODS),
            ]
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if self.stopping is None:
                self.stopping = asyncio.Event()
            # uvicorn's send is a bound method of its per-request cycle, which holds the transport.
            scope["sim.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
            # Provider calls skip the framework's routing and Request objects: benchmarks measure against
            # this server, so its own cost per request must stay far below the client's.
            parts = scope["path"].split("/", 2)
            hit = (_STATIC.get(parts[2]) or ROUTES.match_dynamic(parts[2])) if len(parts) == 3 else None
            if hit is not None:
                fmt, route, params = hit
                name = parts[1]
                if self.state.get(name) is None:
                    responder: _Responder = _reply(
                        fmt.error(
                            "not_found",
                            (f"Unknown simulated provider {name!r}; known providers: {', '.join(self.state.names())}."),
                        )
                    )
                elif scope["method"] != "POST":
                    reply = fmt.error("method_not_allowed", f"Method {scope['method']} not allowed; use POST.")
                    responder = _JSON(reply.status, reply.body, {**(reply.headers or {}), "allow": "POST"})
                else:
                    call = Call(name, route.endpoint, params, scope.get("query_string", b""), scope["headers"])
                    responder = await self._provider(scope, receive, fmt, call)
                await responder(scope, receive, send)
                return
        await self.starlette(scope, receive, send)

    def stop_waiting(self) -> None:
        """Release hung requests; call on the server's event loop."""
        if self.stopping is not None:
            self.stopping.set()

    async def _unknown(self, request: Request) -> _JSON:
        path = request.url.path
        first = path.split("/")[1] if path.count("/") >= 2 else ""
        profile = self.state.get(first)
        fmt = FORMATS.get(profile.api, DEFAULT_FORMAT) if profile is not None else ROUTES.guess(path)
        return _reply(
            fmt.error(
                "not_found",
                (
                    f"Unknown path {path!r}. The simulator serves {ROUTES.describe()}; known providers: "
                    f"{', '.join(self.state.names())}."
                ),
            )
        )

    # -- a provider call, in any format -----------------------------------------------------------
    async def _provider(self, scope, receive, fmt: WireFormat, call: Call) -> _Responder:
        state, name = self.state, call.provider
        body = await _read_body(receive)
        try:
            req = fmt.parse(body, call)
        except BadRequest as exc:
            state.count_unadmitted(name, str(exc.status))
            if exc.body is not None:
                return _reply(Reply(exc.status, exc.body))
            return _reply(fmt.error("invalid_request", exc.message, exc.param))
        except Exception as exc:  # noqa: BLE001 - a format bug still ends as a counted answer, never a bare crash
            state.count_unadmitted(name, "400")
            return _reply(
                fmt.error(
                    "invalid_request", f"The simulator could not read this request ({type(exc).__name__}: {exc})."
                )
            )
        plan = state.admit(name, stream=req.stream, key_ok=lambda key: _key_matches(fmt.api_key(call), key))
        profile, fault = plan.profile, plan.fault
        try:  # zero-cost in Python 3.11; a failure below still ends the admitted request under one status
            if fault is not None and fault not in _ANSWERED_FAULTS and (fault != "stream_error" or not req.stream):
                return self._without_answer(fmt, req, plan, fault)
            input_tokens = req.input_tokens
            if input_tokens > profile.context_window:
                reply = fmt.fault("context_length", req, profile, 0.0)
                state.record(name, str(reply.status))
                return _reply(reply)
            if req.images and not profile.vision:
                reply = fmt.error("invalid_request", NO_VISION, "messages")
                state.record(name, str(reply.status))
                return _reply(reply)
            return await self._answer(receive, fmt, req, plan, input_tokens)
        except Exception:  # noqa: BLE001 - a simulator bug: answer 500 and count it, never crash uncounted
            state.record(name, "500")
            return _reply(fmt.fault("server_error", req, profile, 0.0))

    async def _answer(self, receive, fmt: WireFormat, req: SimRequest, plan: Plan, input_tokens: int) -> _Responder:
        """The answer to an admitted request the profile can take: a stream, or a plain body after the
        profile's latency. Either may carry the plan's body fault; ignore_schema answers in prose."""
        state, profile, fault, name = self.state, plan.profile, plan.fault, plan.profile.name
        answer = make_answer(req, profile.seed, ignore_schema=fault == "ignore_schema")
        usage = None if profile.no_usage else Usage((input_tokens, answer.output_tokens))
        status = "ignore_schema" if answer.ignored_schema else "200"
        rid = f"{fmt.id_prefix}{next(self._ids):08x}"
        if req.stream:
            body_fault = fault if fault in _BODY_FAULTS else None
            steps = fmt.render_stream(rid, req, answer, usage, body_fault)
            return _Stream(
                self,
                plan,
                rid,
                steps,
                fmt.stream_media_type(req),
                status=body_fault or status,
                close=body_fault is not None,
            )

        if plan.delay_s > 0 and not await _wait_unless_gone(plan.delay_s, receive):
            state.record(name, "disconnected")
            return _Nothing()
        out = fmt.render(rid, req, answer, usage)
        if fault == "malformed_json":
            state.record(name, "malformed_json")
            return _JSON(200, fmt.malformed(out), {"x-request-id": rid})
        if fault == "truncated_stream":
            state.record(name, "truncated_stream")
            return _JSON(200, fmt.truncated(out), {"x-request-id": rid})
        if usage is not None:  # tokens the client was never told of are not billed (the module's one rule)
            state.bill(profile, usage.input_tokens, usage.output_tokens)
        state.record(name, status)
        return _JSON(200, out, {"x-request-id": rid})

    def _without_answer(self, fmt: WireFormat, req: SimRequest, plan: Plan, fault: str) -> _Responder:
        """A fault (``plan.fault``) that answers nothing: hang, reset, or an HTTP error in the format's shape."""
        name = plan.profile.name
        if fault == "hang":
            self.state.record(name, "hang")
            return _Hang(self)
        if fault == "reset":
            self.state.record(name, "reset")
            return _Reset()
        reply = fmt.fault(fault, req, plan.profile, plan.retry_after_s or 0.0)
        self.state.record(name, str(reply.status))
        return _reply(reply)

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

    async def _update_profile(self, request: Request) -> JSONResponse | _JSON:
        name = request.path_params["name"]
        try:
            changes = await self._control_body(request, dict)
            profile = self.state.update(name, **changes)
        except ConfigError as exc:
            return self._control_error(name, exc)
        return JSONResponse({"profile": profile.to_dict()})

    async def _inject(self, request: Request) -> JSONResponse | _JSON:
        name = request.path_params["name"]
        try:
            queued = self.state.inject(name, await self._control_body(request, list))
        except ConfigError as exc:
            return self._control_error(name, exc)
        return JSONResponse({"queued": queued})

    def _control_error(self, name: str, exc: ConfigError) -> _JSON:
        unknown = self.state.get(name) is None
        return _reply(DEFAULT_FORMAT.error("not_found" if unknown else "invalid_request", str(exc)))
