"""OpenAI Responses: ``POST /<provider>/v1/responses`` (SDK base URL ``.../<provider>/v1``).

Request: ``model``; ``input``, a string or a list of items: messages ``{role, content}`` (role
user, assistant, system or developer; content a string or parts ``input_text``, ``input_image``
with ``image_url`` (an http(s) or base64 data: URL) or ``file_id``, and ``output_text`` in earlier
assistant turns), ``function_call`` ``{call_id, name, arguments}`` (an earlier tool call) and
``function_call_output`` ``{call_id, output}`` (its result); ``reasoning`` items are skipped.
``instructions`` is the system prompt (system and developer messages join it); ``max_output_tokens``
(at least 16, as the API demands: less is a 400 ``integer_below_min_value``), ``stream``, ``tools``
(``{type: function, name, description, parameters, strict}``; hosted tools such as
``web_search`` are accepted and never called), ``tool_choice`` (``auto``, ``none``, ``required``,
``{type: function, name}``), ``parallel_tool_calls``, ``text.format`` (``text``, ``json_object``,
``json_schema`` with ``{name, schema, strict}``). Other settings (``store``, ``temperature``,
``metadata``, ...) are echoed back, not acted on. ``previous_response_id`` and ``conversation`` are
refused: the simulator stores no responses, so the whole conversation goes in ``input``.

Answer: a ``response`` object whose ``output`` holds one ``message`` item with an ``output_text``
part (text or JSON), or ``function_call`` items ``{id, call_id, name, arguments}``. ``status`` is
``completed``, or ``incomplete`` with ``incomplete_details.reason: max_output_tokens`` when
max_output_tokens cut the answer. ``usage``: ``{input_tokens, input_tokens_details: {cached_tokens,
cache_write_tokens}, output_tokens, output_tokens_details: {reasoning_tokens}, total_tokens}``
(null when the profile sends no usage).

Stream: named SSE events, each with a ``sequence_number`` (no ``[DONE]``): response.created,
response.in_progress, then per output item response.output_item.added, either
response.content_part.added / response.output_text.delta... / response.output_text.done /
response.content_part.done or response.function_call_arguments.delta... /
response.function_call_arguments.done, then response.output_item.done; last
response.completed (or response.incomplete) with the whole response and its usage, the one event
that bills. A failure mid-stream is a ``response.failed`` event (``response.error: {code:
server_error, message}``, no usage). HTTP errors have OpenAI's shape, as chat completions
(``{"error": {message, type, param, code}}``; 429s carry retry-after and retry-after-ms).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._answers import Answer, ToolCall
from .._neutral import ASSISTANT, TOOL, USER, BadRequest, SimRequest, Tool
from ._base import (
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
    schema_object,
    sse,
    tool_name,
)
from .openai import OpenAIChat, error_body

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

_CHAT = OpenAIChat()  # the same vendor's HTTP errors: Responses answers them exactly as chat completions does
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_ROLES = (USER, ASSISTANT, "system", "developer")
_TEXT_PARTS = ("input_text", "output_text")
_ECHOED = ("instructions", "temperature", "top_p", "store", "metadata", "tools", "tool_choice", "text")
MIN_OUTPUT_TOKENS = 16  # the API refuses a smaller max_output_tokens


def _max_output_tokens(value: Any) -> int | None:
    """``max_output_tokens``, refused below 16 with the API's own error body."""
    if isinstance(value, int) and not isinstance(value, bool) and value < MIN_OUTPUT_TOKENS:
        message = (
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= {MIN_OUTPUT_TOKENS}, "
            f"but got {value} instead."
        )
        body = error_body(message, "invalid_request_error", "integer_below_min_value", "max_output_tokens")
        raise BadRequest(message, "max_output_tokens", body=body)
    return positive_int(value, "max_output_tokens")


def _message_id(rid: str) -> str:
    return "msg_" + rid.partition("_")[2]


def _text_part(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


class _Events:
    """A stream's steps, numbered: every event carries its ``type`` and ``sequence_number``."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, name: str, payload: dict, *, paced: bool = False, bill: tuple[int, int] | None = None) -> None:
        self.steps.append((sse({"type": name, "sequence_number": len(self.steps), **payload}, name), paced, bill))


class OpenAIResponses(WireFormat):
    api = "openai-responses"
    routes = (Route("v1/responses"),)
    base_path = "/v1"
    id_prefix = "resp_sim"

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        data = json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: a non-empty string is required.", "model")
        for field in ("previous_response_id", "conversation"):
            if data.get(field) is not None:
                raise BadRequest(
                    f"{field}: the simulator stores no responses; send the whole conversation in "
                    "input (and store: false).",
                    field,
                )
        instructions = data.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise BadRequest("instructions: expected a string.", "instructions")
        system, turns, images = self._parse_input(data.get("input"))
        if instructions:
            system = [instructions, *system]
        max_tokens = _max_output_tokens(data.get("max_output_tokens"))
        req = SimRequest(model, "\n".join(system), turns, max_tokens, data.get("stream") is True, True, images)
        if "tools" in data or "tool_choice" in data:
            self._parse_tools(data, req)
        if data.get("parallel_tool_calls") is False:
            req.parallel_tool_calls = False
        text = data.get("text")
        if text is not None:
            fmt = text.get("format") if isinstance(text, dict) else None
            if fmt is not None:
                self._parse_format(fmt, req)
        req.extras = {k: data[k] for k in _ECHOED if data.get(k) is not None}
        return req

    def _parse_input(self, items: Any) -> tuple[list[str], list[tuple[str, str]], int]:
        """(system texts, turns, images) of ``input``."""
        if isinstance(items, str):
            return [], [(USER, items)], 0
        if not isinstance(items, list) or not items:
            raise BadRequest("input: a string or a non-empty array of input items is required.", "input")
        system: list[str] = []
        turns: list[tuple[str, str]] = []
        images = 0
        for i, item in enumerate(items):
            where = f"input.{i}"
            kind = item.get("type", "message") if isinstance(item, dict) else None
            if kind == "message":
                role, text, n = self._message(item, where)
                images += n
                if role in ("system", "developer"):
                    system.append(text)
                else:
                    turns.append((role, text))
            elif kind == "function_call":
                name, arguments = item.get("name"), item.get("arguments")
                if (
                    not isinstance(item.get("call_id"), str)
                    or not isinstance(name, str)
                    or not isinstance(arguments, str)
                ):
                    raise BadRequest(
                        f"{where}: a function_call needs call_id, name and arguments (a JSON string).", where
                    )
                call = f"{name}({arguments})"
                if turns and turns[-1][0] == ASSISTANT:  # the calls of one answer are one assistant turn
                    turns[-1] = (ASSISTANT, turns[-1][1] + call)
                else:
                    turns.append((ASSISTANT, call))
            elif kind == "function_call_output":
                if not isinstance(item.get("call_id"), str):
                    raise BadRequest(
                        f"{where}.call_id: the id of the function call answered is required.", f"{where}.call_id"
                    )
                text, n = self._content(item.get("output"), f"{where}.output")
                images += n
                turns.append((TOOL, text))
            elif kind != "reasoning":
                raise BadRequest(
                    f"{where}.type: expected 'message', 'function_call' or 'function_call_output', got {kind!r}.",
                    f"{where}.type",
                )
        if not turns:
            raise BadRequest("input: at least one user, assistant or tool item is required.", "input")
        return system, turns, images

    def _message(self, item: dict, where: str) -> tuple[str, str, int]:
        role = item.get("role")
        if role not in _ROLES:
            raise BadRequest(f"{where}.role: expected one of {', '.join(_ROLES)}, got {role!r}.", f"{where}.role")
        text, images = self._content(item.get("content"), f"{where}.content")
        return role, text, images

    @staticmethod
    def _content(content: Any, where: str) -> tuple[str, int]:
        """The text and the number of images of a message's content (or a tool result's output)."""
        if isinstance(content, str):
            return content, 0
        if not isinstance(content, list):
            raise BadRequest(f"{where}: expected a string or an array of content parts.", where)
        images = 0
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "input_image":
                if part.get("image_url") is not None:
                    image_url(part["image_url"], f"{where}.{j}.image_url")
                elif not isinstance(part.get("file_id"), str) or not part["file_id"]:
                    raise BadRequest(f"{where}.{j}: an input_image needs image_url or file_id.", f"{where}.{j}")
                images += 1
            elif kind != "refusal" and (kind not in _TEXT_PARTS or not isinstance(part.get("text"), str)):
                raise BadRequest(
                    f"{where}.{j}: expected a part of type input_text, input_image, output_text or "
                    f"refusal, got {kind!r}.",
                    f"{where}.{j}",
                )
        return content_text(content), images

    @staticmethod
    def _parse_tools(data: dict, req: SimRequest) -> None:
        tools = data.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise BadRequest("tools: expected an array of tools.", "tools")
        parsed = []
        for i, t in enumerate(tools or []):
            if not isinstance(t, dict) or not isinstance(t.get("type"), str):
                raise BadRequest(f"tools.{i}: expected a tool object with a type.", f"tools.{i}")
            if t["type"] != "function":
                continue  # a hosted tool (web_search, file_search, ...): the simulator never calls those
            description = t.get("description")
            parsed.append(
                Tool(
                    tool_name(t.get("name"), f"tools.{i}.name"),
                    description if isinstance(description, str) else "",
                    schema_object(t.get("parameters"), f"tools.{i}.parameters", _EMPTY_PARAMETERS),
                )
            )
        req.tools = tuple(parsed)
        choice = data.get("tool_choice")
        if choice in (None, "auto", "none"):
            req.tool_choice = choice or "auto"
        elif choice == "required":
            if not req.tools:
                raise BadRequest("tool_choice: 'required' needs at least one function tool.", "tool_choice")
            req.tool_choice = "required"
        elif isinstance(choice, dict) and choice.get("type") == "function":
            name = choice.get("name")
            if not isinstance(name, str) or req.tool(name) is None:
                raise BadRequest(
                    f"tool_choice.name: the function {name!r} is not among the tools given.", "tool_choice.name"
                )
            req.tool_choice, req.tool_name = "tool", name
        else:
            raise BadRequest(
                "tool_choice: expected 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}.",
                "tool_choice",
            )

    @staticmethod
    def _parse_format(fmt: Any, req: SimRequest) -> None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            return
        if kind == "json_object":
            req.json_mode = True
            return
        if kind == "json_schema":
            if not isinstance(fmt.get("name"), str) or not fmt["name"]:
                raise BadRequest("text.format.name: a name for the schema is required.", "text.format.name")
            req.json_schema = schema_object(fmt.get("schema"), "text.format.schema")
            req.json_mode = True
            return
        raise BadRequest("text.format: expected a type of 'text', 'json_object' or 'json_schema'.", "text.format")

    # -- answers --------------------------------------------------------------------------------
    def _response(self, rid: str, req: SimRequest, status: str, output: list, usage: Usage | None) -> dict:
        """The response object, as every answer and lifecycle event carries it."""
        x = req.extras or {}
        return {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": x.get("instructions"),
            "max_output_tokens": req.max_tokens,
            "max_tool_calls": None,
            "model": req.model,
            "output": output,
            "parallel_tool_calls": req.parallel_tool_calls,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": x.get("store", True),
            "temperature": x.get("temperature", 1.0),
            "text": x.get("text", {"format": {"type": "text"}}),
            "tool_choice": x.get("tool_choice", "auto"),
            "tools": x.get("tools", []),
            "top_p": x.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": None
            if usage is None
            else {
                "input_tokens": usage.input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
            "user": None,
            "metadata": x.get("metadata", {}),
        }

    @staticmethod
    def _call(c: ToolCall, status: str) -> dict:
        return {
            "id": "fc_" + c.id,
            "type": "function_call",
            "status": status,
            "arguments": c.sent,
            "call_id": "call_" + c.id,
            "name": c.name,
        }

    @staticmethod
    def _message_item(rid: str, text: str, status: str) -> dict:
        return {
            "id": _message_id(rid),
            "type": "message",
            "status": status,
            "content": [_text_part(text)],
            "role": "assistant",
        }

    def _output(self, rid: str, answer: Answer, sent: Answer, whole: bool) -> list[dict]:
        """The output items of ``sent``: ``answer`` itself (``whole``), or what a broken stream had sent of it.
        The last item is ``incomplete`` when max_output_tokens cut it or the stream broke inside it."""
        cut = answer.cut or not whole
        if not answer.tool_calls:
            return [self._message_item(rid, sent.text, "incomplete" if cut else "completed")]
        last = len(sent.tool_calls) - 1
        return [
            self._call(c, "incomplete" if cut and i == last else "completed") for i, c in enumerate(sent.tool_calls)
        ]

    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        status = "incomplete" if answer.cut else "completed"
        return dumps(self._response(rid, req, status, self._output(rid, answer, answer, True), usage))

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        if fault == "malformed_json":
            return [
                (
                    b'event: response.created\ndata: {"type":"response.created","response":{"id":"'
                    + rid.encode()
                    + b'", <<not json>>\n\n',
                    False,
                    None,
                )
            ]
        events = _Events()
        started = self._response(rid, req, "in_progress", [], None)
        events.add("response.created", {"response": started})
        events.add("response.in_progress", {"response": started})
        sent = broken_stream(answer, fault)
        if answer.tool_calls:
            self._stream_calls(events, answer, sent, fault is None)
        else:
            self._stream_message(events, rid, answer, sent, fault is None)
        if fault == "stream_error":
            failed = self._response(rid, req, "failed", self._output(rid, answer, sent, False), None)
            failed["error"] = {"code": "server_error", "message": FAULT_STATUS["server_error"][1]}
            events.add("response.failed", {"response": failed})
        elif fault is None:
            status = "incomplete" if answer.cut else "completed"
            events.add(
                f"response.{status}",
                {"response": self._response(rid, req, status, self._output(rid, answer, answer, True), usage)},
                bill=None if usage is None else (usage.input_tokens, usage.output_tokens),
            )
        return events.steps

    def _stream_message(self, events: _Events, rid: str, answer: Answer, sent: Answer, whole: bool) -> None:
        item_id = _message_id(rid)
        events.add(
            "response.output_item.added",
            {
                "output_index": 0,
                "item": {"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
            },
        )
        at = {"item_id": item_id, "output_index": 0, "content_index": 0}
        events.add("response.content_part.added", {**at, "part": _text_part("")})
        for piece in sent.pieces:
            events.add("response.output_text.delta", {**at, "delta": piece, "logprobs": []}, paced=True)
        if whole:
            text = answer.text
            events.add("response.output_text.done", {**at, "text": text, "logprobs": []})
            events.add("response.content_part.done", {**at, "part": _text_part(text)})
            events.add(
                "response.output_item.done",
                {"output_index": 0, "item": self._message_item(rid, text, "incomplete" if answer.cut else "completed")},
            )

    def _stream_calls(self, events: _Events, answer: Answer, sent: Answer, whole: bool) -> None:
        last = len(sent.tool_calls) - 1
        for i, c in enumerate(sent.tool_calls):
            added = dict(self._call(c, "in_progress"), arguments="")
            events.add("response.output_item.added", {"output_index": i, "item": added})
            for piece in c.pieces:
                events.add(
                    "response.function_call_arguments.delta",
                    {"item_id": added["id"], "output_index": i, "delta": piece},
                    paced=True,
                )
            if whole or i < last:  # a broken stream stops inside its last call
                events.add(
                    "response.function_call_arguments.done",
                    {"item_id": added["id"], "output_index": i, "arguments": c.sent},
                )
                events.add(
                    "response.output_item.done",
                    {
                        "output_index": i,
                        "item": self._call(
                            c, "incomplete" if answer.cut and i == len(answer.tool_calls) - 1 else "completed"
                        ),
                    },
                )

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        if kind == "context_length":
            return Reply(
                400,
                error_body(
                    f"Your input exceeds the context window of this model ({profile.context_window} tokens; the input "
                    f"has {req.input_tokens}). Please adjust your input and try again.",
                    "invalid_request_error",
                    "context_length_exceeded",
                    "input",
                ),
            )
        return _CHAT.fault(kind, req, profile, retry_after_s)

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        return _CHAT.error(kind, message, "input" if param == "messages" else param)
