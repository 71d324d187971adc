"""Anthropic messages: ``POST /<provider>/v1/messages`` (SDK base URL ``.../<provider>``).

Request: ``system`` (text or text blocks), messages with content blocks ``text``, ``image``
(``source`` ``{type: base64, media_type, data}`` or ``{type: url, url}``), ``tool_use`` and
``tool_result``; ``max_tokens``, ``stream``, ``tools`` (``{name, description, input_schema}``;
server tools with a ``type`` are ignored), ``tool_choice`` (``{type: auto|any|tool|none, name,
disable_parallel_tool_use}``), and structured output as the SDK sends it (``messages.parse(
output_format=Model)``): ``output_config: {format: {type: json_schema, schema}}``. A forced tool
whose ``input_schema`` is the schema (the older idiom) is a ``tool_choice`` of type ``tool``.

Answer: a ``message`` with a ``text`` block (text or JSON) or ``tool_use`` blocks ``{id, name,
input}`` (stop_reason ``tool_use``); streamed as message_start (usage: input tokens),
content_block_start / ping / content_block_delta (``text_delta``, or ``input_json_delta`` with
``partial_json``) / content_block_stop per block, message_delta (stop reason, output tokens),
message_stop. Errors: ``{"type": "error", "error": {"type", "message"}}``.

Refused as the API refuses them (400 ``invalid_request_error``): a ``temperature`` outside 0..1,
a message with empty content (but for a final assistant message, a prefill) and an empty text
block.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._answers import Answer
from .._neutral import ASSISTANT, TOOL, BadRequest, SimRequest, Tool
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
    sse,
    tool_name,
)

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

_FAULT_TYPES = {
    "rate_limit": "rate_limit_error",
    "rate_limit_no_retry_after": "rate_limit_error",
    "server_error": "api_error",
    "stream_error": "api_error",
    "bad_gateway": "api_error",
    "unavailable": "api_error",
    "gateway_timeout": "api_error",
    "overloaded": "overloaded_error",
    "invalid_request": "invalid_request_error",
    "unauthorized": "authentication_error",
    "forbidden": "permission_error",
}
_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "not_found": "not_found_error",
    "method_not_allowed": "invalid_request_error",
}
LOW_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)
_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
EMPTY_CONTENT = "all messages must have non-empty content except for the optional final assistant message"


def error_body(type_: str, message: str) -> bytes:
    return dumps({"type": "error", "error": {"type": type_, "message": message}})


def _image(block: dict, where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") not in _MEDIA_TYPES:
            raise BadRequest(
                f"{where}.source.media_type: expected one of {', '.join(_MEDIA_TYPES)}, got "
                f"{source.get('media_type')!r}.",
                f"{where}.source.media_type",
            )
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise BadRequest(f"{where}.source.data: base64 image data is required.", f"{where}.source.data")
    elif kind == "url":
        image_url(source.get("url"), f"{where}.source.url")
    else:
        raise BadRequest(
            f'{where}.source: expected {{"type": "base64", ...}} or {{"type": "url", ...}}.', f"{where}.source"
        )


def _temperature(value: Any) -> None:
    """Anthropic's range is 0..1 (OpenAI's 0..2): anything else is the API's 400."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest("temperature: Input should be a valid number", "temperature")
    if not 0 <= value <= 1:
        raise BadRequest("temperature: range: 0..1", "temperature")


class AnthropicMessages(WireFormat):
    api = "anthropic"
    routes = (Route("v1/messages"),)
    base_path = ""
    id_prefix = "msg_sim"

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        data = json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: a non-empty string is required.", "model")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: a non-empty array of messages is required.", "messages")
        system = content_text(data["system"]) if data.get("system") is not None else ""
        turns: list[tuple[str, str]] = []
        images = 0
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise BadRequest(
                    f"messages.{i}: each message must be an object with a role and content.", f"messages.{i}"
                )
            content, role = m.get("content"), m["role"]
            if content is None:
                raise BadRequest(f"messages.{i}.content: Field required", f"messages.{i}.content")
            if not content and (i < len(messages) - 1 or role != ASSISTANT):
                raise BadRequest(f"messages.{i}: {EMPTY_CONTENT}", f"messages.{i}")
            text = content if isinstance(content, str) else content_text(content)
            if isinstance(content, list):
                for j, block in enumerate(content):
                    kind = block.get("type") if isinstance(block, dict) else None
                    if kind == "text" and block.get("text") == "":
                        raise BadRequest("messages: text content blocks must be non-empty", f"messages.{i}.content.{j}")
                    if kind == "image":
                        _image(block, f"messages.{i}.content.{j}")
                        images += 1
                    elif kind == "tool_use" and role == ASSISTANT:
                        text += f"{block.get('name', '')}({json.dumps(block.get('input'))})"
                    elif kind == "tool_result":
                        role = TOOL
                        inner = block.get("content")
                        text += content_text(inner)
                        if isinstance(inner, list):
                            for k, sub in enumerate(inner):
                                if isinstance(sub, dict) and sub.get("type") == "image":
                                    _image(sub, f"messages.{i}.content.{j}.content.{k}")
                                    images += 1
            turns.append((role, text))
        max_tokens = data.get("max_tokens")
        if max_tokens is not None:
            positive_int(max_tokens, "max_tokens")
        _temperature(data.get("temperature"))
        req = SimRequest(model, system, turns, max_tokens, data.get("stream") is True, True, images)
        if "tools" in data or "tool_choice" in data:
            self._parse_tools(data, req)
        config = data.get("output_config")
        if config is not None and isinstance(config, dict) and config.get("format") is not None:
            fmt = config["format"]
            if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
                raise BadRequest(
                    'output_config.format: expected {"type": "json_schema", "schema": {...}}.', "output_config.format"
                )
            req.json_schema = schema_object(fmt.get("schema"), "output_config.format.schema")
            req.json_mode = True
        return req

    @staticmethod
    def _parse_tools(data: dict, req: SimRequest) -> None:
        tools = data.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise BadRequest("tools: expected an array of tools.", "tools")
        parsed = []
        for i, t in enumerate(tools or []):
            if not isinstance(t, dict):
                raise BadRequest(f"tools.{i}: expected a tool object.", f"tools.{i}")
            if t.get("type") not in (None, "custom"):
                continue  # a server tool (web search, code execution, ...): the simulator never calls those
            description = t.get("description")
            parsed.append(
                Tool(
                    tool_name(t.get("name"), f"tools.{i}.name"),
                    description if isinstance(description, str) else "",
                    schema_object(t.get("input_schema"), f"tools.{i}.input_schema"),
                )
            )
        req.tools = tuple(parsed)
        choice = data.get("tool_choice")
        if choice is None:
            return
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise BadRequest('tool_choice: expected {"type": "auto" | "any" | "tool" | "none"}.', "tool_choice")
        kind: str = choice["type"]
        if kind != "none" and not req.tools:
            raise BadRequest("tool_choice: may only be specified while providing tools.", "tool_choice")
        if kind == "tool":
            name = choice.get("name")
            if not isinstance(name, str) or req.tool(name) is None:
                raise BadRequest(
                    f"tool_choice.name: the tool {name!r} is not among the tools given.", "tool_choice.name"
                )
            req.tool_choice, req.tool_name = "tool", name
        else:
            req.tool_choice = {"any": "required"}.get(kind, kind)
        if choice.get("disable_parallel_tool_use") is True:
            req.parallel_tool_calls = False

    # -- answers --------------------------------------------------------------------------------
    @staticmethod
    def _stop(answer: Answer) -> str:
        if answer.cut:
            return "max_tokens"
        return "tool_use" if answer.tool_calls else "end_turn"

    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        if answer.tool_calls:
            content = [
                {"type": "tool_use", "id": "toolu_" + c.id, "name": c.name, "input": c.value if c.whole else {}}
                for c in answer.tool_calls
            ]
        else:
            content = [{"type": "text", "text": answer.text}]
        body: dict[str, Any] = {
            "id": rid,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": self._stop(answer),
            "stop_sequence": None,
        }
        if usage is not None:
            body["usage"] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        return dumps(body)

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        if fault == "malformed_json":
            return [(b'event: message_start\ndata: {"type": "message_start", <<not json>>\n\n', False, None)]
        sent = broken_stream(answer, fault)
        steps = [_message_start(rid, req, usage)]
        steps += _tool_use_blocks(sent, fault) if answer.tool_calls else _text_block(sent, fault)
        if fault == "stream_error":
            steps.append((_OVERLOADED, False, None))
        elif fault is None:
            steps += _message_end(self._stop(answer), usage)
        return steps

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        if kind == "insufficient_quota":
            return Reply(400, error_body("invalid_request_error", LOW_CREDIT))
        if kind == "context_length":
            return Reply(
                400,
                error_body(
                    "invalid_request_error",
                    f"prompt is too long: {req.input_tokens} tokens > {profile.context_window} maximum",
                ),
            )
        if kind == "model_not_found":
            return Reply(404, error_body("not_found_error", f"model: {req.model}"))
        status, message = FAULT_STATUS[kind]
        return Reply(
            status,
            error_body(_FAULT_TYPES[kind], message),
            retry_after_headers(retry_after_s) if kind == "rate_limit" else None,
        )

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        return Reply(ERROR_STATUS[kind], error_body(_ERROR_TYPES[kind], message))


# -- stream events (render_stream) ---------------------------------------------------------------
_PING = sse({"type": "ping"}, "ping")
_OVERLOADED = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")


def _message_start(rid: str, req: SimRequest, usage: Usage | None) -> Step:
    """message_start: the empty message, with (and billing) the input tokens when the profile sends usage."""
    message: dict[str, Any] = {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        message["usage"] = {"input_tokens": usage.input_tokens, "output_tokens": 0}
    return (
        sse({"type": "message_start", "message": message}, "message_start"),
        False,
        (usage.input_tokens, 0) if usage is not None else None,
    )


def _block_start(index: int, block: dict[str, Any]) -> list[Step]:
    """content_block_start, and after the first block's start the ping Anthropic sends there."""
    start: Step = (
        sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start"),
        False,
        None,
    )
    return [start, (_PING, False, None)] if index == 0 else [start]


def _delta(index: int, delta: dict[str, Any], paced: bool = True) -> Step:
    return sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"), paced, None


def _block_stop(index: int) -> Step:
    return sse({"type": "content_block_stop", "index": index}, "content_block_stop"), False, None


def _tool_use_blocks(sent: Answer, fault: str | None) -> list[Step]:
    """A tool_use block per call sent, its input as input_json_delta pieces; a broken stream leaves the last open."""
    steps: list[Step] = []
    for i, c in enumerate(sent.tool_calls):
        steps += _block_start(i, {"type": "tool_use", "id": "toolu_" + c.id, "name": c.name, "input": {}})
        steps.append(_delta(i, {"type": "input_json_delta", "partial_json": ""}, False))
        steps.extend(_delta(i, {"type": "input_json_delta", "partial_json": p}) for p in c.pieces)
        if fault is None or i < len(sent.tool_calls) - 1:
            steps.append(_block_stop(i))
    return steps


def _text_block(sent: Answer, fault: str | None) -> list[Step]:
    """The one text block, as text_delta pieces; a broken stream leaves it open."""
    steps = _block_start(0, {"type": "text", "text": ""})
    steps.extend(_delta(0, {"type": "text_delta", "text": p}) for p in sent.pieces)
    if fault is None:
        steps.append(_block_stop(0))
    return steps


def _message_end(stop_reason: str, usage: Usage | None) -> list[Step]:
    """message_delta (the stop reason, and the output tokens it bills when the profile sends usage), message_stop."""
    event: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    if usage is not None:
        event["usage"] = {"output_tokens": usage.output_tokens}
    return [
        (sse(event, "message_delta"), False, (0, usage.output_tokens) if usage is not None else None),
        (sse({"type": "message_stop"}, "message_stop"), False, None),
    ]
