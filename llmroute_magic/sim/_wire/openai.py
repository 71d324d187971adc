"""OpenAI chat completions: ``POST /<provider>/v1/chat/completions`` (SDK base URL ``.../<provider>/v1``).

Request: messages (system/developer text; user content parts ``text`` and ``image_url`` with an
http(s) or base64 data: URL; assistant ``tool_calls``; ``tool`` results), ``max_tokens`` /
``max_completion_tokens``, ``stream`` + ``stream_options.include_usage``, ``tools``
(``{type: function, function: {name, description, parameters}}``), ``tool_choice`` (``auto``,
``none``, ``required``, ``{type: function, function: {name}}``), ``parallel_tool_calls``,
``response_format`` (``json_schema`` with ``{name, schema, strict}``, ``json_object``, ``text``).

Answer: ``chat.completion`` with ``message.content`` (text or JSON) or ``message.tool_calls``
(finish_reason ``tool_calls``); streamed as ``chat.completion.chunk`` SSE frames, tool calls as
``delta.tool_calls`` (a header with id and name, then the arguments string over several chunks),
usage in a last chunk with empty choices when include_usage is set, then ``data: [DONE]``.
Errors: ``{"error": {"message", "type", "param", "code"}}``; 429s carry retry-after(-ms).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from .._answers import Answer
from .._neutral import ASSISTANT, BadRequest, SimRequest, Tool
from ._base import (
    ERROR_STATUS,
    FAULT_STATUS,
    Call,
    Reply,
    Route,
    Step,
    Usage,
    WireFormat,
    broken_stream,
    content_text,
    dumps,
    image_url,
    json_object,
    positive_int,
    retry_after_headers,
    schema_object,
    tool_name,
)

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

# fault kind -> (error type, error code)
_FAULT_TYPES: dict[str, tuple[str, str | None]] = {
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "rate_limit_no_retry_after": ("rate_limit_error", "rate_limit_exceeded"),
    "server_error": ("server_error", None),
    "stream_error": ("server_error", None),
    "bad_gateway": ("server_error", None),
    "unavailable": ("server_error", None),
    "gateway_timeout": ("server_error", None),
    "overloaded": ("overloaded_error", None),
    "invalid_request": ("invalid_request_error", None),
    "unauthorized": ("invalid_request_error", "invalid_api_key"),
    "forbidden": ("permission_error", "permission_denied"),
}
_ERROR_CODES = {"invalid_request": None, "not_found": "not_found", "method_not_allowed": None}
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


class OpenAIChat(WireFormat):
    api = "openai"
    routes: ClassVar[tuple[Route, ...]] = (Route("v1/chat/completions"),)  # AzureChat serves two
    base_path = "/v1"
    id_prefix = "chatcmpl-sim"

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        data = json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: a non-empty string is required.", "model")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: a non-empty array of messages is required.", "messages")
        system_parts: list[str] = []
        turns: list[tuple[str, str]] = []
        images = 0
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise BadRequest(
                    f"messages.{i}: each message must be an object with a role and content.", f"messages.{i}"
                )
            content = m.get("content")
            if isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        where = f"messages.{i}.content.{j}.image_url"
                        url = part.get("image_url")
                        image_url(url.get("url") if isinstance(url, dict) else None, where + ".url")
                        images += 1
            text = content if isinstance(content, str) else content_text(content)
            role = m["role"]
            if role in ("system", "developer"):
                system_parts.append(text)
                continue
            if role == ASSISTANT and isinstance(m.get("tool_calls"), list):
                for c in m["tool_calls"]:
                    f = c.get("function") if isinstance(c, dict) else None
                    if isinstance(f, dict):
                        text += f"{f.get('name', '')}({f.get('arguments', '')})"
            turns.append((role, text))
        max_tokens = data.get("max_tokens")
        if max_tokens is not None:
            positive_int(max_tokens, "max_tokens")
        elif "max_completion_tokens" in data:
            max_tokens = positive_int(data["max_completion_tokens"], "max_completion_tokens")
        stream = data.get("stream") is True
        options = data.get("stream_options") if stream else None
        req = SimRequest(
            model,
            "\n".join(system_parts) if system_parts else "",
            turns,
            max_tokens,
            stream,
            isinstance(options, dict) and options.get("include_usage") is True,
            images,
        )
        if "tools" in data or "tool_choice" in data:
            self._parse_tools(data, req)
        if data.get("response_format") is not None:
            self._parse_response_format(data["response_format"], req)
        return req

    @staticmethod
    def _parse_tools(data: dict, req: SimRequest) -> None:
        tools = data.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise BadRequest("tools: expected an array of tools.", "tools")
        parsed = []
        for i, t in enumerate(tools or []):
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
                raise BadRequest(f'tools.{i}: expected {{"type": "function", "function": {{...}}}}.', f"tools.{i}")
            f = t["function"]
            description = f.get("description")
            parsed.append(
                Tool(
                    tool_name(f.get("name"), f"tools.{i}.function.name"),
                    description if isinstance(description, str) else "",
                    schema_object(f.get("parameters"), f"tools.{i}.function.parameters", _EMPTY_PARAMETERS),
                )
            )
        req.tools = tuple(parsed)
        choice = data.get("tool_choice")
        if choice is not None and not req.tools:
            raise BadRequest("tool_choice: only allowed when tools are specified.", "tool_choice")
        if choice in (None, "auto", "none", "required"):
            req.tool_choice = choice or "auto"
        elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
            name = choice["function"].get("name")
            if req.tool(name) is None:
                raise BadRequest(f"tool_choice: the tool {name!r} is not among the tools given.", "tool_choice")
            req.tool_choice, req.tool_name = "tool", name
        else:
            raise BadRequest(
                "tool_choice: expected 'auto', 'none', 'required' or "
                '{"type": "function", "function": {"name": ...}}.',
                "tool_choice",
            )
        if data.get("parallel_tool_calls") is False:
            req.parallel_tool_calls = False

    @staticmethod
    def _parse_response_format(fmt: Any, req: SimRequest) -> None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            return
        if kind == "json_object":
            req.json_mode = True
            return
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
                raise BadRequest(
                    'response_format.json_schema: expected {"name": ..., "schema": {...}}.',
                    "response_format.json_schema",
                )
            req.json_schema = schema_object(spec.get("schema"), "response_format.json_schema.schema", _EMPTY_PARAMETERS)
            req.json_mode = True
            return
        raise BadRequest(
            "response_format: expected a type of 'text', 'json_object' or 'json_schema'.", "response_format"
        )

    # -- answers --------------------------------------------------------------------------------
    @staticmethod
    def _finish(answer: Answer) -> str:
        if answer.cut:
            return "length"
        return "tool_calls" if answer.tool_calls else "stop"

    @staticmethod
    def _usage(usage: Usage) -> dict:
        return {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }

    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        if answer.tool_calls:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "call_" + c.id, "type": "function", "function": {"name": c.name, "arguments": c.sent}}
                    for c in answer.tool_calls
                ],
            }
        else:
            message = {"role": "assistant", "content": "".join(answer.pieces), "refusal": None}
        body: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "length" if answer.cut else "tool_calls" if answer.tool_calls else "stop",
                }
            ],
        }
        if usage is not None:
            i, o = usage
            body["usage"] = {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}
        body["system_fingerprint"] = None
        return dumps(body)

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        if fault == "malformed_json":
            return [(b'data: {"id": "' + rid.encode() + b'", "choices": [<<not json>>\n\n', False, None)]
        base = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": None,
        }
        with_usage = req.stream_usage and usage is not None

        def frame(delta: dict, finish: str | None = None) -> bytes:
            obj = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            if with_usage:
                obj["usage"] = None
            return b"data: " + dumps(obj) + b"\n\n"

        sent = broken_stream(answer, fault)
        steps: list[Step] = []
        if answer.tool_calls:
            for i, c in enumerate(sent.tool_calls):
                head = {
                    "index": i,
                    "id": "call_" + c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": ""},
                }
                delta = (
                    {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
                    if i == 0
                    else {"tool_calls": [head]}
                )
                steps.append((frame(delta), False, None))
                steps.extend(
                    (frame({"tool_calls": [{"index": i, "function": {"arguments": p}}]}), True, None) for p in c.pieces
                )
            if not sent.tool_calls:
                steps.append((frame({"role": "assistant", "content": None, "refusal": None}), False, None))
        else:
            steps.append((frame({"role": "assistant", "content": "", "refusal": None}), False, None))
            steps.extend((frame({"content": p}), True, None) for p in sent.pieces)
        if fault == "stream_error":
            steps.append(
                (b"data: " + error_body(FAULT_STATUS["server_error"][1], "server_error") + b"\n\n", False, None)
            )
        elif fault is None:
            steps.append((frame({}, self._finish(answer)), False, None))
            if req.stream_usage and usage is not None:  # with_usage, spelled out for the type checker
                obj = dict(base, choices=[], usage=self._usage(usage))
                steps.append((b"data: " + dumps(obj) + b"\n\n", False, (usage.input_tokens, usage.output_tokens)))
            steps.append((b"data: [DONE]\n\n", False, None))
        return steps

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        if kind == "insufficient_quota":
            return Reply(429, error_body(FAULT_STATUS[kind][1], "insufficient_quota", "insufficient_quota"))
        if kind == "context_length":
            return Reply(
                400,
                error_body(
                    f"This model's maximum context length is {profile.context_window} tokens. However, your messages "
                    f"resulted in {req.input_tokens} tokens. Please reduce the length of the messages.",
                    "invalid_request_error",
                    "context_length_exceeded",
                    "messages",
                ),
            )
        if kind == "model_not_found":
            return Reply(
                404,
                error_body(
                    f"The model `{req.model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
        status, message = FAULT_STATUS[kind]
        type_, code = _FAULT_TYPES[kind]
        return Reply(
            status,
            error_body(message, type_, code),
            retry_after_headers(retry_after_s) if kind == "rate_limit" else None,
        )

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        return Reply(ERROR_STATUS[kind], error_body(message, "invalid_request_error", _ERROR_CODES[kind], param))
