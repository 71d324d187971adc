"""Pure classification: HTTP statuses and bodies, transport exceptions, retry-after headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import httpx
import pytest

from llmroute_magic._errors import ERROR_POLICY, ProviderError
from llmroute_magic._providers._failures import (
    AttemptContext,
    classify_exception,
    error_from_event,
    error_from_exception,
    error_from_status,
    missing_key_error,
    parse_retry_after,
)

CANARY = "sk-canary-XYZ"


def ctx(secret: str | None = CANARY) -> AttemptContext:
    return AttemptContext("prov", "m-1", secret)


def openai_body(message: str, type_: str = "", code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def anthropic_body(type_: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, openai_body("Rate limit reached", "requests", "rate_limit_exceeded"), "rate_limit"),
        (429, anthropic_body("rate_limit_error", "slow down"), "rate_limit"),
        (
            429,
            openai_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
            "insufficient_quota",
        ),
        (402, b'{"error": "Payment required"}', "insufficient_quota"),
        (
            400,
            anthropic_body("invalid_request_error", "Your credit balance is too low to access the Anthropic API."),
            "insufficient_quota",
        ),
        (401, openai_body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"), "authentication"),
        (403, anthropic_body("permission_error", "no"), "permission"),
        (404, openai_body("The model `x` does not exist", "invalid_request_error", "model_not_found"), "not_found"),
        (408, b"", "timeout"),
        (409, b"", "conflict"),
        (
            400,
            openai_body(
                "This model's maximum context length is 8192 tokens", "invalid_request_error", "context_length_exceeded"
            ),
            "context_length",
        ),
        (400, openai_body("too long", "invalid_request_error", "context_length_exceeded"), "context_length"),
        (
            400,
            anthropic_body("invalid_request_error", "prompt is too long: 200001 tokens > 200000 maximum"),
            "context_length",
        ),
        (400, openai_body("'messages' is required", "invalid_request_error"), "invalid_request"),
        (422, b'{"detail": [{"loc": ["body"], "msg": "field required"}]}', "invalid_request"),
        (500, openai_body("The server had an error", "server_error"), "server_error"),
        (502, b"<html>Bad Gateway</html>", "server_error"),
        (503, b"", "server_error"),
        (504, b"", "server_error"),
        (599, b"", "server_error"),
        (529, anthropic_body("overloaded_error", "Overloaded"), "overloaded"),
        (500, anthropic_body("overloaded_error", "Overloaded"), "overloaded"),
        (307, b"", "not_found"),
    ],
)
def test_status_and_body_map_to_error_type(status, body, expected):
    err = error_from_status(ctx(), status, body, {})
    assert err.error_type == expected
    assert err.error_type in ERROR_POLICY
    assert err.status_code == status
    assert err.provider == "prov" and err.model == "m-1"


def test_provider_message_is_kept_and_secret_scrubbed():
    body = openai_body(f"Incorrect API key provided: {CANARY}.", "invalid_request_error", "invalid_api_key")
    err = error_from_status(ctx(), 401, body, {})
    assert "Incorrect API key provided" in err.message
    for text in (str(err), repr(err), err.message):
        assert CANARY not in text


def test_html_error_page_is_shortened():
    err = error_from_status(ctx(), 502, b"<html>" + b"x" * 5000 + b"</html>", {})
    assert len(err.message) <= 500


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "-10"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "nan", "retry-after": "4"}, 4.0),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers, expected):
    assert parse_retry_after(headers) == expected


def test_retry_after_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": earlier}, now=now.timestamp()) == 0.0


def test_status_error_carries_retry_after_from_httpx_headers():
    headers = httpx.Headers({"Retry-After-Ms": "250", "Retry-After": "1"})
    err = error_from_status(ctx(), 429, anthropic_body("rate_limit_error", "x"), headers)
    assert err.retry_after == 0.25


def _mapped(cause: BaseException, wrapper: type[Exception] = httpx.ConnectTimeout) -> BaseException:
    """What httpx-aiohttp raises: an httpx exception whose __cause__ is the aiohttp one."""
    try:
        raise wrapper(str(cause)) from cause
    except Exception as exc:  # noqa: BLE001
        return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_mapped(aiohttp.ServerDisconnectedError()), "connection_reset"),
        (_mapped(aiohttp.ClientOSError(104, "Connection reset by peer")), "connection_reset"),
        (
            _mapped(
                aiohttp.ClientConnectorError(
                    aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
                    ConnectionRefusedError(111, "refused"),
                )
            ),
            "connect_error",
        ),
        (_mapped(aiohttp.ClientPayloadError("Response payload is not completed"), httpx.ReadError), "connection_reset"),
        (_mapped(aiohttp.SocketTimeoutError("Timeout on reading data from socket"), httpx.ReadTimeout), "timeout"),
        (_mapped(aiohttp.ConnectionTimeoutError("Connection timeout"), httpx.ConnectTimeout), "timeout"),
        (httpx.ReadTimeout("t"), "timeout"),
        (httpx.PoolTimeout("t"), "timeout"),
        (httpx.WriteTimeout("t"), "timeout"),
        (httpx.ConnectError("refused"), "connect_error"),
        (httpx.RemoteProtocolError("peer closed"), "connection_reset"),
        (httpx.ReadError("reset"), "connection_reset"),
        (ConnectionResetError(), "connection_reset"),
        (ConnectionRefusedError(), "connect_error"),
        (TimeoutError(), "timeout"),
    ],
)
def test_transport_exceptions(exc, expected):
    assert classify_exception(exc) == expected
    err = error_from_exception(ctx(), exc)
    assert isinstance(err, ProviderError) and err.error_type == expected and err.status_code is None


def test_programming_errors_are_not_disguised_as_provider_failures():
    assert classify_exception(KeyError("x")) is None
    assert error_from_exception(ctx(), ValueError("bug")) is None


def test_stream_error_event_keeps_partial_text_and_tokens():
    c = ctx()
    c.parts.extend(["Hello", " wor"])
    c.input_tokens = 12
    err = error_from_event(c, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert (err.error_type, err.partial_text, err.input_tokens) == ("overloaded", "Hello wor", 12)
    err = error_from_event(c, {"error": {"message": "boom", "type": "server_error"}})
    assert err.error_type == "stream_error" and "boom" in err.message


def test_missing_key_names_the_variable():
    err = missing_key_error("openai", "gpt-4o", "OPENAI_API_KEY")
    assert err.error_type == "missing_api_key" and "OPENAI_API_KEY" in str(err) and err.status_code is None
