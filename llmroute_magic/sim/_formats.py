"""The two wire formats: parsing requests and rendering answers, stream events and error bodies.

Pure functions over bytes and dicts; nothing here knows about sockets or timing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ._text import content_text, count_input_tokens, prompt_key

OPENAI = "openai"
ANTHROPIC = "anthropic"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> bytes:
    return _dumps(obj).encode("utf-8")


class BadRequest(Exception):
    """The request body is unusable; the message says which field and why."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(slots=True)
class ParsedRequest:
    model: str
    system: str
    turns: list[tuple[str, str]]
    max_tokens: int | None
    stream: bool
    include_usage: bool  # OpenAI stream_options.include_usage

    @property
    def input_tokens(self) -> int:
        return count_input_tokens(self.system, (t for _, t in self.turns))

    @property
    def key(self) -> str:
        return prompt_key(self.system, self.turns)


def parse_request(fmt: str, body: bytes) -> ParsedRequest:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("We could not parse the JSON body of your request. The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: a non-empty string is required.", "model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: a non-empty array of messages is required.", "messages")
    system_parts: list[str] = []
    if fmt == ANTHROPIC and data.get("system") is not None:
        system_parts.append(content_text(data["system"]))
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages.{i}: each message must be an object with a role and content.",
                             f"messages.{i}")
        text = content_text(m.get("content"))
        if m["role"] in ("system", "developer") and fmt == OPENAI:
            system_parts.append(text)
        else:
            turns.append((m["role"], text))
    max_tokens = data.get("max_tokens")
    if max_tokens is None and fmt == OPENAI:
        max_tokens = data.get("max_completion_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise BadRequest(f"max_tokens: expected an integer >= 1, got {max_tokens!r}.", "max_tokens")
    stream = data.get("stream") is True
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ParsedRequest(model, "\n".join(system_parts), turns, max_tokens, stream, include_usage)


# -- errors ------------------------------------------------------------------------------------

# fault kind -> (HTTP status, OpenAI type, OpenAI code, Anthropic type, message)
_FAULT_ERRORS: dict[str, tuple[int, str, str | None, str, str]] = {
    "rate_limit": (429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error",
                   "Rate limit reached for requests (simulated). Please try again later."),
    "server_error": (500, "server_error", None, "api_error",
                     "The server had an error while processing your request (simulated)."),
    "bad_gateway": (502, "server_error", None, "api_error", "Bad gateway (simulated)."),
    "unavailable": (503, "server_error", None, "api_error", "The service is temporarily unavailable (simulated)."),
    "gateway_timeout": (504, "server_error", None, "api_error", "Gateway timeout (simulated)."),
    "overloaded": (529, "overloaded_error", None, "overloaded_error", "Overloaded"),
    "invalid_request": (400, "invalid_request_error", None, "invalid_request_error",
                        "Invalid request (simulated)."),
    "unauthorized": (401, "invalid_request_error", "invalid_api_key", "authentication_error",
                     "Incorrect or missing API key (simulated)."),
    "forbidden": (403, "permission_error", "permission_denied", "permission_error",
                  "Your API key does not have permission to use this resource (simulated)."),
}
_FAULT_ERRORS["rate_limit_no_retry_after"] = _FAULT_ERRORS["rate_limit"]
_FAULT_ERRORS["stream_error"] = _FAULT_ERRORS["server_error"]  # what a plain request gets

ANTHROPIC_LOW_CREDIT = ("Your credit balance is too low to access the Anthropic API. "
                        "Please go to Plans & Billing to upgrade or purchase credits.")


def error_body(fmt: str, message: str, openai_type: str, anthropic_type: str, code: str | None = None,
               param: str | None = None) -> bytes:
    if fmt == ANTHROPIC:
        return dumps({"type": "error", "error": {"type": anthropic_type, "message": message}})
    return dumps({"error": {"message": message, "type": openai_type, "param": param, "code": code}})


def fault_error(fmt: str, kind: str, *, model: str, input_tokens: int, context_window: int) -> tuple[int, bytes]:
    """(status, body) of a fault that answers with an HTTP error."""
    if kind == "insufficient_quota":
        if fmt == ANTHROPIC:
            return 400, error_body(fmt, ANTHROPIC_LOW_CREDIT, "", "invalid_request_error")
        return 429, error_body(fmt, "You exceeded your current quota, please check your plan and billing details "
                                    "(simulated).", "insufficient_quota", "", "insufficient_quota")
    if kind == "context_length":
        return 400, context_length_error(fmt, input_tokens, context_window)
    if kind == "model_not_found":
        if fmt == ANTHROPIC:
            return 404, error_body(fmt, f"model: {model}", "", "not_found_error")
        return 404, error_body(fmt, f"The model `{model}` does not exist or you do not have access to it.",
                               "invalid_request_error", "", "model_not_found")
    status, o_type, o_code, a_type, message = _FAULT_ERRORS[kind]
    return status, error_body(fmt, message, o_type, a_type, o_code)


def context_length_error(fmt: str, input_tokens: int, context_window: int) -> bytes:
    if fmt == ANTHROPIC:
        return error_body(fmt, f"prompt is too long: {input_tokens} tokens > {context_window} maximum", "",
                          "invalid_request_error")
    return error_body(fmt, f"This model's maximum context length is {context_window} tokens. However, your messages "
                           f"resulted in {input_tokens} tokens. Please reduce the length of the messages.",
                      "invalid_request_error", "", "context_length_exceeded", "messages")


def not_found(fmt: str, message: str) -> bytes:
    return error_body(fmt, message, "invalid_request_error", "not_found_error", "not_found")


def bad_request(fmt: str, exc: BadRequest) -> bytes:
    return error_body(fmt, exc.message, "invalid_request_error", "invalid_request_error", None, exc.param)


# -- answers -----------------------------------------------------------------------------------

def openai_completion(rid: str, model: str, text: str, finish: str, input_tokens: int, output_tokens: int,
                      usage: bool = True) -> bytes:
    body = {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens},
        "system_fingerprint": None,
    }
    if not usage:
        del body["usage"]
    return dumps(body)


def anthropic_message(rid: str, model: str, text: str, stop: str, input_tokens: int, output_tokens: int,
                      usage: bool = True) -> bytes:
    body = {
        "id": rid, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    if not usage:
        del body["usage"]
    return dumps(body)


class OpenAIChunks:
    """SSE frames of an OpenAI chat.completion.chunk stream."""

    def __init__(self, rid: str, model: str, include_usage: bool) -> None:
        self._base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                      "system_fingerprint": None}
        self._include_usage = include_usage

    def _frame(self, choices: list, usage: Any = None, *, with_usage: bool | None = None) -> bytes:
        obj = dict(self._base, choices=choices)
        if self._include_usage if with_usage is None else with_usage:
            obj["usage"] = usage
        return b"data: " + dumps(obj) + b"\n\n"

    def start(self) -> bytes:
        return self._frame([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                             "logprobs": None, "finish_reason": None}])

    def delta(self, piece: str) -> bytes:
        return self._frame([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])

    def finish(self, reason: str) -> bytes:
        return self._frame([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])

    def usage(self, input_tokens: int, output_tokens: int) -> bytes:
        return self._frame([], {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                                "total_tokens": input_tokens + output_tokens}, with_usage=True)

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"

    @staticmethod
    def error(kind: str = "server_error") -> bytes:
        _, o_type, o_code, _, message = _FAULT_ERRORS[kind]
        return b"data: " + dumps({"error": {"message": message, "type": o_type, "param": None, "code": o_code}}) \
            + b"\n\n"


def _event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


class AnthropicEvents:
    """SSE frames of an Anthropic messages stream."""

    def __init__(self, rid: str, model: str, usage: bool = True) -> None:
        self._rid = rid
        self._model = model
        self._usage = usage

    def message_start(self, input_tokens: int) -> bytes:
        message = {"id": self._rid, "type": "message", "role": "assistant", "model": self._model, "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": input_tokens, "output_tokens": 0}}
        if not self._usage:
            del message["usage"]
        return _event("message_start", {"type": "message_start", "message": message})

    @staticmethod
    def block_start() -> bytes:
        return _event("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})

    @staticmethod
    def ping() -> bytes:
        return _event("ping", {"type": "ping"})

    @staticmethod
    def delta(piece: str) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": piece}})

    @staticmethod
    def block_stop() -> bytes:
        return _event("content_block_stop", {"type": "content_block_stop", "index": 0})

    def message_delta(self, stop: str, output_tokens: int) -> bytes:
        event = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                 "usage": {"output_tokens": output_tokens}}
        if not self._usage:
            del event["usage"]
        return _event("message_delta", event)

    @staticmethod
    def message_stop() -> bytes:
        return _event("message_stop", {"type": "message_stop"})

    @staticmethod
    def error() -> bytes:
        return _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
