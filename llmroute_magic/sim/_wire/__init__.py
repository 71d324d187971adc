"""The simulator's wire formats: one module each, registered in one tuple at the end of this module.

How to add a format (e.g. Ollama's native API)
-----------------------------------------------

1. Write ``sim/_wire/ollama.py`` with one subclass of ``WireFormat`` (``_base.py``)::

       class OllamaChat(WireFormat):
           api = "ollama"                       # the ProviderProfile / ProviderSpec api value
           routes = (Route("api/chat"),)        # POST paths under /<provider>/; a "{name}" placeholder
                                                # (one path segment) arrives in call.params, e.g.
                                                # Route("v1beta/models/{model}:generateContent")
           base_path = ""                       # the official SDK's base URL is .../<provider>
           stream_content_type = b"application/x-ndjson"
           id_prefix = "ollama-sim-"            # response ids: id_prefix + 8 hex digits

           def parse(self, body: bytes, call: Call) -> SimRequest: ...
           def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes: ...
           def render_stream(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None,
                             fault: str | None) -> list[Step]: ...
           def fault(self, kind: str, req: SimRequest, profile: ProviderProfile,
                     retry_after_s: float) -> Reply: ...
           def error(self, kind: str, message: str, param: str | None = None) -> Reply: ...

   - ``parse`` reads the body (``json_object(body)`` helps) into a neutral ``SimRequest``
     (``_neutral.py``): model, system, turns, images, max_tokens, stream, stream_usage, tools,
     tool_choice / tool_name, parallel_tool_calls, json_schema / json_mode, and ``extras`` (a dict
     of anything only its renderer needs). Path values are in ``call.params``, query parameters in
     ``call.query``, headers via ``call.header(b"name")``. An unusable body raises
     ``BadRequest(message, param)``: a counted, unbilled 400 in ``error``'s shape.
   - ``render`` / ``render_stream`` turn the neutral ``Answer`` (``_answers.py``: ``pieces`` of text
     or JSON text, or ``tool_calls`` with ``id``, ``name``, ``value``, ``pieces``; ``cut`` when
     max_tokens stopped it) into the format's body. ``usage`` is ``(input_tokens, output_tokens)``,
     or None when the profile sends no usage. A stream is a list of steps ``(frame, paced, bill)``:
     ``paced`` frames are tokens, sent at the profile's speed; ``bill=(input, output)`` only on a
     frame that tells the client its usage (the simulator bills nothing the client was not told).
     For ``fault`` in ``truncated_stream`` / ``stream_error`` send ``broken_stream(answer, fault)``
     and no end frames (plus the format's error frame for ``stream_error``); for
     ``malformed_json`` a first frame that does not parse.
   - ``fault`` answers each kind in ``HTTP_FAULTS`` (and ``stream_error`` on a plain request) with
     the format's error shape and status (``FAULT_STATUS`` has the usual ones) and, for
     ``rate_limit``, its retry headers; ``error`` answers the simulator's own ``invalid_request``
     (400), ``not_found`` (404) and ``method_not_allowed`` (405).
   - Optional overrides: ``api_key(call)`` (default: ``x-api-key`` or ``Authorization: Bearer``),
     ``base_url(root, provider)``, ``spec_fields(profile)`` (extra ``ProviderSpec`` fields),
     ``stream_media_type(req)`` (a content type that depends on the request), ``malformed(body)`` /
     ``truncated(body)`` (the plain-answer body faults).

   Everything else is generic (``_app.py``): admission, the key check, rate limits, fault draws,
   context window, ``vision``, ``ignore_schema``, latency and pacing, billing, disconnects, stats,
   404s and 405s. A format never sleeps, counts or bills.

2. Add one line to the registry tuple at the end of this module: ``OllamaChat(),``. ``register``
   refuses a path another format already serves. From then on ``ProviderProfile(api="ollama")`` is
   accepted and ``Simulator.base_url`` / ``provider_specs`` use the format's base URL. Optionally
   give ``llmroute sim`` a default provider of the format in ``_profiles.DEFAULT_PROFILES``.

3. Tests: add a client for the format to ``CLIENTS`` in ``tests/test_sim_wire.py`` (how to write a
   neutral request in the format and read its answers, streams and errors back, about 80 lines);
   the conformance tests there then run text, tools, schemas, images, vision=False, ignore_schema
   and the faults, plain and streamed, for it, and ``test_every_registered_format_has_a_test_client``
   fails until it has one. Add the official SDK's checks in ``tests/test_sim_<format>_sdk.py``.
   ``ToyChat`` in ``tests/test_sim_wire.py`` is a complete small format to copy from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from ._base import ERROR_STATUS, FAULT_STATUS, HTTP_FAULTS, Call, Reply, Route, Step, Usage, WireFormat, broken_stream
from .anthropic import AnthropicMessages
from .azure import AzureChat
from .gemini import GeminiGenerateContent
from .ollama import OllamaChat
from .openai import OpenAIChat
from .openai_responses import OpenAIResponses

_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


class RouteTable:
    """Maps ``/<provider>/<rest>`` to (format, route, params): a dict for fixed paths, regexes after."""

    def __init__(self) -> None:
        self.static_hits: dict[str, tuple[WireFormat, Route, Mapping[str, str]]] = {}  # fixed paths: ready answers
        self.dynamic: list[tuple[re.Pattern, WireFormat, Route]] = []

    def add(self, fmt: WireFormat) -> None:
        for route in fmt.routes:
            if route.is_static and route.pattern in self.static_hits:
                other = self.static_hits[route.pattern][0]
                raise RuntimeError(
                    f"sim wire formats {other.api!r} and {fmt.api!r} both serve /<provider>/{route.pattern}"
                )
        for route in fmt.routes:
            if route.is_static:
                self.static_hits[route.pattern] = (fmt, route, _NO_PARAMS)
            else:
                self.dynamic.append((route.regex(), fmt, route))

    def remove(self, fmt: WireFormat) -> None:
        for pattern in [p for p, hit in self.static_hits.items() if hit[0] is fmt]:
            del self.static_hits[pattern]
        self.dynamic[:] = [d for d in self.dynamic if d[1] is not fmt]

    def match(self, path: str) -> tuple[WireFormat, Route, Mapping[str, str]] | None:
        """(format, route, path parameters) for ``/<provider>/<rest>``, or None."""
        parts = path.split("/", 2)
        if len(parts) != 3:
            return None
        return self.static_hits.get(parts[2]) or self.match_dynamic(parts[2])

    def match_dynamic(self, rest: str) -> tuple[WireFormat, Route, Mapping[str, str]] | None:
        for regex, fmt, route in self.dynamic:
            m = regex.fullmatch(rest)
            if m is not None:
                return fmt, route, m.groupdict()
        return None

    def guess(self, path: str) -> WireFormat:
        """The format a request to an unknown path probably expected, from how the path ends."""
        path = path.rstrip("/")
        for fmt in FORMATS.values():
            if any(r.tail and path.endswith(r.tail) for r in fmt.routes):
                return fmt
        return FORMATS["openai"]

    def describe(self) -> str:
        return ", ".join(f"POST /<provider>/{r.pattern} ({fmt.api})" for fmt in FORMATS.values() for r in fmt.routes)


FORMATS: dict[str, WireFormat] = {}  # api name -> format
ROUTES = RouteTable()


def register(fmt: WireFormat) -> WireFormat:
    """Serve ``fmt`` (its routes must not clash with another format's) and accept its api in profiles."""
    if fmt.api in FORMATS:
        raise RuntimeError(f"a sim wire format for api {fmt.api!r} is already registered")
    ROUTES.add(fmt)
    FORMATS[fmt.api] = fmt
    return fmt


def unregister(api: str) -> None:
    """Stop serving a format (tests that register a format of their own clean up with this)."""
    fmt = FORMATS.pop(api)
    ROUTES.remove(fmt)


# The registry. Adding a format is one line here.
for _format in (
    OpenAIChat(),
    AnthropicMessages(),
    OpenAIResponses(),
    GeminiGenerateContent(),
    AzureChat(),
    OllamaChat(),
):
    register(_format)

DEFAULT_FORMAT = FORMATS["openai"]  # the shape of errors that belong to no format (control routes, unknown paths)

__all__ = [
    "DEFAULT_FORMAT",
    "ERROR_STATUS",
    "FAULT_STATUS",
    "FORMATS",
    "HTTP_FAULTS",
    "ROUTES",
    "Call",
    "Reply",
    "Route",
    "RouteTable",
    "Step",
    "Usage",
    "WireFormat",
    "broken_stream",
    "register",
    "unregister",
]
