"""The simulator's wire formats: one module each, registered in ``FORMATS``.

How to add a format (e.g. Ollama's native API)
-----------------------------------------------

1. Write ``sim/_wire/ollama.py`` with one subclass of ``WireFormat`` (``_base.py``)::

       class OllamaChat(WireFormat):
           api = "ollama"                          # the ProviderProfile / ProviderSpec api value
           routes = (Route("api/chat"),)           # POST paths under /<provider>/; "{model}" etc. for
                                                   # values in the path, handed to parse in call.params
           base_path = ""                          # the SDK's base URL is .../<provider>
           stream_content_type = b"application/x-ndjson"
           id_prefix = "ollama-sim"

           def parse(self, body: bytes, call: Call) -> SimRequest: ...        # raise BadRequest
           def render(self, rid, req, answer, usage: Usage | None) -> bytes: ...
           def render_stream(self, rid, req, answer, usage, fault) -> list[Step]: ...
           def fault(self, kind, req, profile, retry_after_s) -> Reply: ...   # HTTP error faults
           def error(self, kind, message, param=None) -> Reply: ...         # 400 / 404 / 405

   Optional overrides: ``api_key(call)`` (which header carries the key; default ``x-api-key`` or
   ``Authorization: Bearer``), ``base_url(root, provider)``, ``spec_fields(profile)`` (extra
   ``ProviderSpec`` fields, e.g. Azure's ``api_version``), ``malformed(body)`` / ``truncated(body)``.

   ``parse`` fills a neutral ``SimRequest`` (``_neutral.py``): model, system, turns, images,
   max_tokens, stream, stream_usage, tools, tool_choice, json_schema / json_mode, and ``extras``
   for anything only its renderer needs (query parameters come in ``call.query``). The answer is
   a neutral ``Answer`` (``_answers.py``: text, JSON text or tool calls, as tokens); ``usage`` is
   None when the profile sends no usage. ``render_stream`` returns steps ``(frame, paced, bill)``:
   a frame may bill only when it tells the client its usage; for the faults it is given
   (``truncated_stream``, ``stream_error``, ``malformed_json``) send ``broken_stream(answer,
   fault)`` and no end frames. Everything else (admission, auth, rate limit, faults, latency,
   pacing, billing, disconnects, stats, 404/405 routing) is generic in ``_app.py``.

2. Add one line to the registry tuple at the end of this module: ``OllamaChat(),``. ``register``
   checks its paths against the other formats' at import.
   ``ProviderProfile(api="ollama")`` is accepted from then on, and ``Simulator.base_url`` /
   ``provider_specs`` use the format's base URL. Optionally give ``llmroute sim`` a default
   provider of the format in ``_profiles.DEFAULT_PROFILES``.

3. Tests: add a client for the format to ``CLIENTS`` in ``tests/test_sim_wire.py`` (how to write a
   request in the format and read its answers, streams and errors back); the conformance tests
   there then run every answer kind, fault and billing check over loopback for it, and fail until
   every registered format has a client. Add the official SDK's checks to ``tests/test_sim_sdks.py``
   (or a ``tests/test_sim_<format>_sdk.py``).
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

from ._base import (ERROR_STATUS, FAULT_STATUS, HTTP_FAULTS, Call, Reply, Route, Step, Usage, WireFormat,
                    broken_stream)
from .anthropic import AnthropicMessages
from .openai import OpenAIChat

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
                raise RuntimeError(f"sim wire formats {other.api!r} and {fmt.api!r} both serve "
                                   f"/<provider>/{route.pattern}")
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
):
    register(_format)

DEFAULT_FORMAT = FORMATS["openai"]  # the shape of errors that belong to no format (control routes, unknown paths)

__all__ = ["DEFAULT_FORMAT", "ERROR_STATUS", "FAULT_STATUS", "FORMATS", "HTTP_FAULTS", "ROUTES", "Call", "Reply",
           "Route", "RouteTable", "Step", "Usage", "WireFormat", "broken_stream", "register", "unregister"]
