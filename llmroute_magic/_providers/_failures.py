"""Every way an attempt can fail, turned into one ``ProviderError`` with an ``error_type``.

Both wire formats share this module, so a 429 or a dropped connection is classified the same way
whichever API sent it. Four entry points, one per kind of evidence:

    error_from_status(...)     the server answered with an HTTP error status (and maybe a JSON body)
    error_from_exception(...)  the transport raised (timeout, refused, reset, truncated body)
    error_from_event(...)      a stream carried an error event after a 200
    malformed(...)             the answer arrived but cannot be understood

The functions only classify; what to do about each ``error_type`` is ``_errors.ERROR_POLICY``'s job.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from .._errors import ProviderError

# Phrases providers use for a prompt that does not fit (OpenAI, Anthropic, vLLM, llama.cpp, Ollama).
_CONTEXT_PHRASES = (
    "prompt is too long",
    "maximum context length",
    "context length",
    "context_length_exceeded",
    "context window",
    "too many tokens",
)
_MAX_MESSAGE = 500  # a provider's message is shown to users; an HTML error page is not


class AttemptContext:
    """One attempt's running state: who it is for, plus what it has received so far.

    The caller makes it and passes it to the adapter, which fills it in as it reads. The caller
    keeps it for the attempt's whole life: an attempt cancelled mid-way raises no ProviderError
    to carry what the provider had already reported (Anthropic bills message_start's input
    tokens), so the 'cancelled' ledger row is read from here.

    Tokens stay None until the provider reports them: None is "not reported" (unknown), which a
    cancelled attempt must keep apart from a reported 0.
    """

    __slots__ = (
        "provider",
        "model",
        "secret",
        "hidden",
        "parts",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
    )

    def __init__(self, provider: str, model: str, secret: str | None = None) -> None:
        self.provider = provider
        self.model = model
        self.secret = secret  # scrubbed from every message, in case a provider echoes it
        self.hidden: tuple[str, ...] = ()  # more to scrub: the proxy's credentials
        self.parts: list[str] = []  # text deltas streamed so far
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens = 0  # shares of input_tokens, as reported so far
        self.cache_write_tokens = 0

    @property
    def partial_text(self) -> str:
        return "".join(self.parts)

    def error(
        self, error_type: str, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> ProviderError:
        # ProviderError's tokens are ints: what a failed attempt was billed for, and providers bill
        # no failed request they did not report (a stream cut before its usage block gives 0 here).
        return ProviderError(
            _clean_message(message, self.secret, self.hidden),
            provider=self.provider,
            error_type=error_type,
            status_code=status_code,
            retry_after=retry_after,
            model=self.model,
            input_tokens=self.input_tokens or 0,
            output_tokens=self.output_tokens or 0,
            partial_text=self.partial_text,
        )


def _clean_message(message: str, secret: str | None, hidden: tuple[str, ...] = ()) -> str:
    message = " ".join(str(message).split())
    for text in (secret, *hidden):
        if text and len(text) >= 4:
            message = message.replace(text, "***")
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return message


# -- retry-after ------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait as the server asked: ``retry-after-ms`` wins over ``retry-after``.

    ``retry-after`` may be seconds (int or float) or an HTTP date. Dates in the past give 0;
    anything unparsable gives None (no advice rather than a wrong one).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        value = _finite_float(raw_ms)
        if value is not None:
            return max(value, 0.0) / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    value = _finite_float(raw)
    if value is not None:
        return max(value, 0.0)
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def _finite_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# -- HTTP error statuses ----------------------------------------------------------------------


def _error_fields(body: bytes) -> tuple[str, str, str]:
    """(type, code, message) from an OpenAI ``{"error": {...}}`` or Anthropic ``{"type": "error", ...}`` body."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return "", "", text
    err: Any = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(err, str):  # some OpenAI-compatible servers send {"error": "text"}
        return "", "", err
    if not isinstance(err, dict):
        return "", "", str(payload)
    message = err.get("message") or err.get("detail") or ""
    if not isinstance(message, str):
        message = json.dumps(message)
    return str(err.get("type") or ""), str(err.get("code") or ""), message


def classify_status(status: int, err_type: str = "", code: str = "", message: str = "") -> str:
    """The ``error_type`` for an HTTP error answer, from its status and the body's type/code/message."""
    lowered = message.lower()
    if err_type == "overloaded_error" or status == 529:
        return "overloaded"
    if status == 429:
        return "insufficient_quota" if "insufficient_quota" in (err_type, code) else "rate_limit"
    if status == 407:  # from a proxy on the way, not the provider: its credentials are wrong or missing
        return "authentication"
    if status == 402 or "insufficient_quota" in (err_type, code) or "credit balance" in lowered:
        return "insufficient_quota"
    if status == 400 and (code == "context_length_exceeded" or any(p in lowered for p in _CONTEXT_PHRASES)):
        return "context_length"
    simple = _BY_STATUS.get(status)
    if simple is not None:
        return simple
    if status >= 500:
        return "server_error"
    if 300 <= status < 400:  # redirects are not followed: the base_url is wrong
        return "not_found"
    return "invalid_request"


_BY_STATUS = {
    401: "authentication",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "conflict",
}


def error_from_status(ctx: AttemptContext, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
    err_type, code, message = _error_fields(body)
    if status == 407 and not message:
        message = "proxy authentication required: check the user and password in the proxy URL"
    kind = classify_status(status, err_type, code, message)
    label = err_type or code
    text = f"{label}: {message}" if label and message else (message or label or f"HTTP {status}")
    return ctx.error(kind, text, status_code=status, retry_after=parse_retry_after(headers))


# -- stream error events ----------------------------------------------------------------------


def error_from_event(ctx: AttemptContext, payload: Any, *, status_code: int = 200) -> ProviderError:
    """An error event inside a 200 stream: ``overloaded_error`` stays overloaded, anything else is a stream error."""
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(err, dict):
        err_type = str(err.get("type") or err.get("code") or "")
        message = str(err.get("message") or err_type or "error event in stream")
    else:
        err_type, message = "", str(err)
    kind = "overloaded" if err_type == "overloaded_error" else "stream_error"
    text = f"{err_type}: {message}" if err_type and err_type != message else message
    return ctx.error(kind, f"mid-stream {text}", status_code=status_code)


def malformed(ctx: AttemptContext, what: str, *, status_code: int | None = 200) -> ProviderError:
    return ctx.error("malformed_response", what, status_code=status_code)


# -- transport exceptions ---------------------------------------------------------------------


def classify_exception(exc: BaseException) -> str | None:
    """The ``error_type`` for a transport failure, or None if ``exc`` is not one.

    httpx-aiohttp turns every ``aiohttp.ClientConnectionError`` (a server disconnect, a reset, a
    refused connect) into ``httpx.ConnectTimeout``, so the aiohttp exception kept in
    ``__cause__`` is consulted first; the httpx class is the fallback for other transports.
    """
    cause = exc.__cause__
    if cause is not None:
        kind = _classify_aiohttp(cause) or _classify_os(cause)
        if kind is not None:
            return kind
    return _classify_aiohttp(exc) or _classify_httpx(exc) or _classify_os(exc)


def _classify_aiohttp(exc: BaseException) -> str | None:
    import aiohttp

    if not isinstance(exc, aiohttp.ClientError):
        return None
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection_reset"
    if isinstance(exc, aiohttp.ServerTimeoutError):  # connect and socket-read timeouts alike
        return "timeout"
    if isinstance(exc, aiohttp.ClientSSLError):  # certificate not trusted, handshake refused
        return "tls_error"
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS
        return "connect_error"
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientOSError, aiohttp.ClientConnectionError)):
        return "connection_reset"
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel (407, 403) or failed (502)
        return "authentication" if exc.status == 407 else "connect_error"
    if isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line or headers
        return "malformed_response"
    return "connect_error"


def _classify_httpx(exc: BaseException) -> str | None:
    import httpx

    if not isinstance(exc, httpx.TransportError):
        return None
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError)):
        return "connection_reset"
    if isinstance(exc, httpx.LocalProtocolError):
        return "invalid_request"
    return "connect_error"  # UnsupportedProtocol, ProxyError: this provider cannot be reached as configured


def _classify_os(exc: BaseException) -> str | None:
    import ssl

    if isinstance(exc, ssl.SSLError):  # another transport's TLS failure (httpx's own: ConnectError from it)
        return "tls_error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_error"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError)):
        return "connection_reset"
    if isinstance(exc, OSError):
        return "connect_error"
    return None


_EXCEPTION_WORDS = {
    "timeout": "timed out",
    "connect_error": "could not connect",
    "authentication": "the proxy refused its credentials (check the user and password in the proxy URL)",
    "tls_error": "TLS failed (for a server whose certificate is not trusted, give its CA bundle: "
    "SSL_CERT_FILE, or the provider's verify='ca.pem')",
    "connection_reset": "connection closed by the server before the answer was complete",
    "malformed_response": "unparsable HTTP response",
    "invalid_request": "request could not be sent",
}


def error_from_exception(ctx: AttemptContext, exc: BaseException) -> ProviderError | None:
    """A ``ProviderError`` for a transport failure, or None for anything else (a bug: let it raise)."""
    kind = classify_exception(exc)
    if kind is None:
        return None
    root = exc.__cause__ or exc
    detail = str(root) or type(root).__name__
    return ctx.error(kind, f"{_EXCEPTION_WORDS[kind]} ({type(root).__name__}: {detail})")


def missing_key_error(provider: str, model: str, env_var: str) -> ProviderError:
    return ProviderError(
        f"no API key: set {env_var} or pass api_key=",
        provider=provider,
        error_type="missing_api_key",
        model=model,
    )
