"""The interface one wire format implements, and the small pieces formats share.

A format is pure: bytes in, ``SimRequest`` out; neutral answers in, bytes out. It never sleeps,
counts, bills or touches a socket; ``_app.py`` does all of that the same way for every format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from urllib.parse import parse_qs

from .._answers import Answer
from .._neutral import BadRequest, SimRequest

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (what every format sends)."""
    return _dumps(obj).encode("utf-8")


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: ``event: NAME`` (if given) and ``data: JSON``."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + dumps(data) + b"\n\n"


def ndjson(data: Any) -> bytes:
    """One newline-delimited JSON line."""
    return dumps(data) + b"\n"


class Usage(tuple):
    """``Usage((input_tokens, output_tokens))``: the counts to put in an answer's usage block; renderers
    get None when the profile sends no usage. A bare tuple subclass built from a pair: a NamedTuple's
    constructor runs Python code, a measurable share of the simulator's per-request cost."""

    __slots__ = ()
    input_tokens = property(itemgetter(0))
    output_tokens = property(itemgetter(1))


# A stream is a list of steps: (frame bytes, paced, bill). ``paced``: a token, sent at the profile's
# tokens_per_s. ``bill``: (input, output) tokens charged once this frame has reached the client
# whole; only a frame that tells the client its usage may bill (the simulator's one billing rule).
Step = tuple[bytes, bool, tuple[int, int] | None]


class Reply(NamedTuple):
    """A complete JSON answer: status, body, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A path the format serves under ``/<provider>/``: literal text and ``{name}`` placeholders.

    ``"v1/chat/completions"``; ``"v1beta/models/{model}:generateContent"`` (the model comes from the
    path). Placeholders match within one path segment. ``endpoint`` is handed to ``parse`` (e.g.
    ``"stream"`` for a streaming-only path).
    """

    pattern: str
    endpoint: str = ""

    @property
    def is_static(self) -> bool:
        return "{" not in self.pattern

    def regex(self) -> re.Pattern:
        out, pos = [], 0
        for m in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.pattern):
            out.append(re.escape(self.pattern[pos : m.start()]))
            out.append(f"(?P<{m.group(1)}>[^/]+)")
            pos = m.end()
        out.append(re.escape(self.pattern[pos:]))
        return re.compile("".join(out))

    @property
    def tail(self) -> str:
        """The literal end of the pattern (``completions``, ``:generateContent``): a hint for 404s."""
        return re.split(r"[/}]", self.pattern)[-1]


@dataclass(slots=True)
class Call:
    """How a request reached the format: the provider, the route it matched, its parameters and query."""

    provider: str
    endpoint: str
    params: Mapping[str, str]  # the route's {placeholders}
    query_string: bytes
    headers: list[tuple[bytes, bytes]]

    def header(self, name: bytes) -> str | None:
        """A request header by lower-case name."""
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the last value of each)."""
        if not self.query_string:
            return {}
        return {k: v[-1] for k, v in parse_qs(self.query_string.decode("latin-1"), keep_blank_values=True).items()}


# fault kind -> (HTTP status most providers use, a message formats may reuse)
FAULT_STATUS: dict[str, tuple[int, str]] = {
    "rate_limit": (429, "Rate limit reached for requests (simulated). Please try again later."),
    "rate_limit_no_retry_after": (429, "Rate limit reached for requests (simulated). Please try again later."),
    "insufficient_quota": (
        429,
        "You exceeded your current quota, please check your plan and billing details (simulated).",
    ),
    "server_error": (500, "The server had an error while processing your request (simulated)."),
    "stream_error": (500, "The server had an error while processing your request (simulated)."),
    "bad_gateway": (502, "Bad gateway (simulated)."),
    "unavailable": (503, "The service is temporarily unavailable (simulated)."),
    "gateway_timeout": (504, "Gateway timeout (simulated)."),
    "overloaded": (529, "Overloaded"),
    "invalid_request": (400, "Invalid request (simulated)."),
    "context_length": (400, "The prompt is too long for the model's context window (simulated)."),
    "unauthorized": (401, "Incorrect or missing API key (simulated)."),
    "forbidden": (403, "Your API key does not have permission to use this resource (simulated)."),
    "model_not_found": (404, "The model does not exist or you do not have access to it (simulated)."),
}

# Faults that answer with an HTTP error: those with a status above but stream_error, which breaks a
# stream after its first words (a plain request gets its 500). The other fault kinds are handled by
# the app (hang, reset) or change a 200 answer (malformed_json, truncated_stream, ignore_schema).
HTTP_FAULTS = frozenset(FAULT_STATUS) - {"stream_error"}

# The simulator's own errors, passed to ``WireFormat.error``: kind -> HTTP status.
ERROR_STATUS = {"invalid_request": 400, "not_found": 404, "method_not_allowed": 405}

NO_VISION = "This model does not accept images (simulated: the provider's profile has vision = false)."


def retry_after_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``, as OpenAI and Anthropic send them."""
    return {"retry-after": str(math.ceil(seconds)), "retry-after-ms": str(math.ceil(seconds * 1000))}


def broken_stream(answer: Answer, fault: str | None) -> Answer:
    """What a stream with this fault carries before it breaks off: half the tokens (at least one)."""
    if fault in ("truncated_stream", "stream_error"):
        return answer.prefix(max(1, answer.output_tokens // 2))
    return answer


class WireFormat:
    """One provider wire format. Subclass it in ``_wire/<name>.py`` and add an instance to ``FORMATS``.

    Class attributes:
        api                  the ``ProviderProfile.api`` / ``ProviderSpec.api`` value it serves
        routes               the POST paths it serves under ``/<provider>/``
        base_path            what the official SDK's base URL adds after ``/<provider>`` (``"/v1"`` or ``""``)
        stream_content_type  the content type of its streams (SSE, NDJSON, ...)
        id_prefix            response ids are ``id_prefix`` + 8 hex digits

    Methods to implement: ``parse``, ``render``, ``render_stream``, ``fault``, ``error``.
    Methods with defaults: ``base_url``, ``api_key``, ``spec_fields``, ``stream_media_type``,
    ``malformed``, ``truncated``.
    """

    api: ClassVar[str]
    routes: ClassVar[tuple[Route, ...]]
    base_path: ClassVar[str] = ""
    stream_content_type: ClassVar[bytes] = b"text/event-stream; charset=utf-8"
    id_prefix: ClassVar[str] = "sim-"

    # -- addresses ------------------------------------------------------------------------------
    def base_url(self, root: str, provider: str) -> str:
        """The base URL the format's official SDK takes for ``provider`` on a server at ``root``."""
        return f"{root}/{provider}{self.base_path}"

    def spec_fields(self, profile: ProviderProfile) -> dict[str, Any]:
        """Extra ``ProviderSpec`` fields for a provider of this format (e.g. Azure's ``api_version``)."""
        return {}

    def api_key(self, call: Call) -> str | None:
        """The key the request carries (checked against ``require_api_key``): ``x-api-key`` or a Bearer token."""
        got = call.header(b"x-api-key")
        if got is None:
            auth = call.header(b"authorization") or ""
            got = auth[7:] if auth[:7].lower() == "bearer " else None
        return got

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        """The request as a ``SimRequest``; raise ``BadRequest`` (a 400 in ``error``'s shape) if unusable."""
        raise NotImplementedError

    # -- answers --------------------------------------------------------------------------------
    def response_id(self, n: int) -> str:
        return f"{self.id_prefix}{n:08x}"

    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        """A complete plain (non-streamed) answer body."""
        raise NotImplementedError

    def stream_media_type(self, req: SimRequest) -> bytes:
        """The content type of this request's stream (override when it depends on the request, as
        Gemini's JSON-array streams without ``?alt=sse`` do)."""
        return self.stream_content_type

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        """The frames of a streamed answer.

        ``fault`` is None (a whole stream), ``"truncated_stream"`` (stop after ``broken_stream(answer,
        fault)``, without the end frames or the final usage), ``"stream_error"`` (the same, then the
        format's mid-stream error frame) or ``"malformed_json"`` (a first frame that is not valid).
        Only frames that tell the client its usage may bill (``Step``).
        """
        raise NotImplementedError

    def malformed(self, body: bytes) -> bytes:
        """A plain answer's body for the ``malformed_json`` fault: not parseable."""
        return body[: len(body) // 3] + b"<<not json>>"

    def truncated(self, body: bytes) -> bytes:
        """A plain answer's body for the ``truncated_stream`` fault: cut in half."""
        return body[: len(body) // 2]

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        """The HTTP error answer for a fault kind in ``HTTP_FAULTS`` (and ``stream_error`` on a plain request).

        Uses the format's own error shape; ``rate_limit`` carries the format's retry headers
        (``retry_after_s``), ``rate_limit_no_retry_after`` none; ``context_length`` says the real
        numbers (``req.input_tokens``, ``profile.context_window``).
        """
        raise NotImplementedError

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        """The simulator's own errors, in the format's shape: ``kind`` is a key of ``ERROR_STATUS``
        (``invalid_request`` for an unusable body or an image sent to a text-only model, ``not_found``
        for an unknown provider or path, ``method_not_allowed``)."""
        raise NotImplementedError


# Parsing helpers shared by formats -----------------------------------------------------------------

_decode = json.JSONDecoder().decode


def json_object(body: bytes) -> dict:
    """The body as a JSON object, or BadRequest."""
    try:
        if body[:3] == b"\xef\xbb\xbf" or b"\x00" in body[:4]:  # a BOM, UTF-16/32: let json.loads sniff it
            data = json.loads(body)
        else:  # UTF-8 straight to the decoder: json.loads(bytes) sniffs the encoding in Python first
            data = _decode(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("We could not parse the JSON body of your request. The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def positive_int(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{param}: expected an integer >= 1, got {value!r}.", param)
    return value


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def tool_name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _TOOL_NAME.match(value):
        raise BadRequest(f"{param}: a tool name of letters, digits, '_' or '-' is required, got {value!r}.", param)
    return value


def schema_object(value: Any, param: str, default: dict | None = None) -> dict:
    if value is None and default is not None:
        return default
    if not isinstance(value, dict):
        raise BadRequest(f"{param}: expected a JSON schema object, got {value!r}.", param)
    return value


_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of content blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def image_url(value: Any, param: str) -> str:
    """An image given by URL: an http(s) URL or a base64 data: URL."""
    if not isinstance(value, str) or not (value.startswith(("http://", "https://")) or _DATA_URL.match(value)):
        raise BadRequest(
            f"{param}: expected an http(s) URL or a data:image/...;base64, URL, got {str(value)[:40]!r}.", param
        )
    return value
