"""OpenAI Responses API (``POST {base_url}/responses``; base URLs end in ``/v1``, like the SDK's).

The request: ``input`` items (messages with ``input_text`` / ``input_image`` parts, earlier tool calls as
``function_call`` items and their results as ``function_call_output`` items), the system prompt as
``instructions``, ``max_output_tokens`` (at least 16: the API's minimum), function tools
(``strict: false``: the API's default is strict, which rejects ordinary schemas; the router
checks answers itself), ``tool_choice`` and a
response schema as ``text.format: json_schema`` (not strict, for the same reason). ``store: false``:
the router sends the whole conversation every time and never refers back to a stored response, so
storing one would only keep the user's prompts on the provider's side for nothing (a caller's
``params={"store": True}`` still wins).

The answer: ``output`` items (``message`` text parts, ``function_call`` items whose ``call_id`` is
what a ``function_call_output`` answers; a message labelled ``phase: commentary``, a newer model's
remark on its way to the answer, is left out of the text, plain and streamed alike), ``status``
(``incomplete`` with ``max_output_tokens`` becomes finish reason ``length``, as chat completions
says it) and ``usage`` (``input_tokens`` counts every prompt token; ``cached_tokens`` and
``cache_write_tokens`` are shares of it). A stream is named SSE events: text in
``response.output_text.delta``, tool calls in ``response.output_item.added`` /
``...function_call_arguments.delta`` / ``response.output_item.done``, usage in the last event,
``response.completed`` or ``response.incomplete``; a failure is an ``error`` event or
``response.failed``. HTTP errors have OpenAI's shape (the shared rules read them).
"""

from __future__ import annotations

from typing import Any

from .._types import ToolCall
from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, error_from_event, malformed
from ._json_http import JSONOverHTTPAdapter, StreamParser, count, with_params_and_stream_flag
from ._parts import arguments_json, calls_of, data_url, parts_of, tool_call
from ._sse import ServerSentEvent
from ._wire_json import loads
from .openai import schema_name

# The API refuses max_output_tokens below this (400 integer_below_min_value).
MIN_OUTPUT_TOKENS = 16
# Why an answer stopped, in chat completions' words (what Completion.finish_reason says for OpenAI).
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
_END_EVENTS = ("response.completed", "response.incomplete")


class OpenAIResponsesAdapter(JSONOverHTTPAdapter):
    api = "openai-responses"
    path = "/responses"

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model_for(self.spec),
            "input": responses_input(request.messages),
            "store": False,
        }
        if request.system is not None:
            body["instructions"] = request.system
        params = request.params
        if request.max_tokens is not None and "max_output_tokens" not in params:
            # A smaller max_tokens is raised to the API's minimum rather than refused (a 400 that no
            # retry mends): the answer may run to 16 tokens and is shown and billed whole, as the
            # provider sent it. Cutting it here would show text that the billed tokens do not match.
            body["max_output_tokens"] = max(MIN_OUTPUT_TOKENS, request.max_tokens)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        _add_tools_and_schema(body, request)
        return with_params_and_stream_flag(body, params, stream)

    def parse_response(self, payload: Any, http_status: int, request: ChatRequest) -> ProviderResult:
        if payload.get("status") == "failed":  # a 200 that says the response failed: nothing to use
            error = payload.get("error") or {}
            raise ValueError(f"the response failed: {error.get('code')}: {error.get('message')}")
        text: list[str] = []
        calls: list[ToolCall] = []
        for item in payload["output"]:
            kind = item.get("type")
            if kind == "message" and item.get("phase") != "commentary":
                text.extend(p["text"] for p in item.get("content") or () if p.get("type") == "output_text")
            elif kind == "function_call":
                calls.append(tool_call(item.get("call_id"), item.get("name"), item.get("arguments")))
        usage = payload.get("usage") or {}  # a compatible gateway may leave it out: tokens unknown (None)
        details = usage.get("input_tokens_details") or {}
        return ProviderResult(
            text="".join(text),
            model=payload.get("model") or request.model_for(self.spec),
            input_tokens=count(usage.get("input_tokens")),
            output_tokens=count(usage.get("output_tokens")),
            cache_read_tokens=int(details.get("cached_tokens") or 0),
            cache_write_tokens=int(details.get("cache_write_tokens") or 0),
            finish_reason=finish_reason(payload, bool(calls)),
            http_status=http_status,
            tool_calls=tuple(calls),
        )

    def stream_parser(self, ctx: AttemptContext, request: ChatRequest) -> StreamParser:
        return _ResponsesStream(ctx, request.model_for(self.spec))


def finish_reason(response: dict[str, Any], called: bool) -> str | None:
    """``stop``, ``tool_calls``, ``length`` (max_output_tokens), ``content_filter``, or the API's own word."""
    status: str | None = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE.get(reason, reason) if reason else "incomplete"
    if status in (None, "completed"):
        return "tool_calls" if called else "stop"
    return status


def responses_input(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages as input items: an assistant turn's tool calls become ``function_call`` items
    after its text, a tool result a ``function_call_output`` item."""
    items: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], m.get("content")
        if role == "tool":  # a result with images goes as parts, as the API takes them
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m.get("tool_call_id", ""),
                    "output": _input_parts(content) if _has_image(content) else _text(content),
                }
            )
            continue
        if role == "assistant":  # earlier answers are text (output_text); input_* parts are for the caller's turns
            text = _text(content)
            if text:
                items.append({"role": "assistant", "content": text})
            items.extend(
                {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": arguments_json(c)}
                for c in calls_of(m)
            )
            continue
        items.append({"role": role, "content": _input_parts(content) if isinstance(content, list) else content})
    return items


def _input_parts(content: Any) -> list[dict[str, Any]]:
    return [
        {"type": "input_text", "text": p["text"]}
        if p["type"] == "text"
        else {"type": "input_image", "image_url": data_url(p), "detail": "auto"}
        for p in parts_of(content)
    ]


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(p.get("type") == "image" for p in content)


def _add_tools_and_schema(body: dict[str, Any], request: ChatRequest) -> None:
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
                "strict": False,
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = choice.mode if choice.mode != "tool" else {"type": "function", "name": choice.name}
    fmt = request.response_format
    if fmt is not None:
        body["text"] = {
            "format": {
                "type": "json_schema",
                "name": schema_name(fmt.name),
                "schema": dict(fmt.schema),
                "strict": False,
            }
        }


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in parts_of(content))


class _ResponsesStream(StreamParser):
    """response.created · response.in_progress · per item output_item.added, its deltas, output_item.done ·
    response.completed or response.incomplete (usage, status); or ``error`` / ``response.failed``."""

    __slots__ = ("_calls", "_commentary")
    end_marker = "response.completed"

    def __init__(self, ctx: AttemptContext, model: str) -> None:
        super().__init__(ctx, model)
        self._calls: dict[int, list[Any]] = {}  # output_index -> [call_id, name, argument pieces]
        self._commentary: set[Any] = set()  # ids of messages that are commentary, not the answer

    def feed(self, event: ServerSentEvent) -> str | None:
        try:
            payload = loads(event.data)
        except ValueError:
            raise malformed(self.ctx, f"stream event {event.event!r} is not JSON: {event.data[:80]!r}") from None
        if not isinstance(payload, dict):
            raise malformed(self.ctx, f"stream event {event.event!r} is not an object")
        kind = payload.get("type") or event.event  # the data's type is authoritative; event names may be absent
        if kind == "response.output_text.delta":
            return payload["delta"] if payload.get("item_id") not in self._commentary else None
        if kind == "response.function_call_arguments.delta":
            call = self._calls.get(int(payload.get("output_index") or 0))
            if call is not None:
                call[2].append(payload.get("delta") or "")
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self._item(kind, int(payload.get("output_index") or 0), payload.get("item") or {})
        elif kind in _END_EVENTS:
            self._end(payload["response"])
        elif kind in ("response.created", "response.in_progress"):
            self.model = (payload.get("response") or {}).get("model") or self.model
        elif kind == "response.failed":
            response = payload.get("response") or {}
            self._take_usage(response.get("usage"))  # what the provider says it billed for the failed part
            raise error_from_event(self.ctx, response.get("error") or {"message": "response.failed"})
        elif kind == "error":
            err = payload["error"] if isinstance(payload.get("error"), dict) else payload
            raise error_from_event(
                self.ctx, {"code": err.get("code") or err.get("type"), "message": err.get("message") or "error event"}
            )
        return None

    def _item(self, kind: str, index: int, item: dict[str, Any]) -> None:
        if item.get("type") == "message" and item.get("phase") == "commentary":
            self._commentary.add(item.get("id"))
        if item.get("type") != "function_call":
            return
        if kind == "response.output_item.added":
            self._calls[index] = [item.get("call_id"), item.get("name"), []]
            return
        call = self._calls.pop(index, None) or [None, None, []]
        arguments = item.get("arguments")  # the whole string; the deltas if a server left it out
        self.tool_calls.append(
            tool_call(
                item.get("call_id") or call[0],
                item.get("name") or call[1],
                arguments if arguments is not None else "".join(call[2]),
            )
        )

    def _end(self, response: dict[str, Any]) -> None:
        for index in sorted(self._calls):  # calls a server never sent output_item.done for: their deltas
            call_id, name, pieces = self._calls.pop(index)
            self.tool_calls.append(tool_call(call_id, name, "".join(pieces)))
        self.model = response.get("model") or self.model
        self._take_usage(response.get("usage"))
        self.finish_reason = finish_reason(response, bool(self.tool_calls))
        self.done = True

    def _take_usage(self, usage: Any) -> None:
        if not usage:  # null when the provider reports none: the tokens stay unknown
            return
        details = usage.get("input_tokens_details") or {}
        self.ctx.input_tokens = count(usage.get("input_tokens"))
        self.ctx.output_tokens = count(usage.get("output_tokens"))
        self.cache_read_tokens = int(details.get("cached_tokens") or 0)
        self.cache_write_tokens = int(details.get("cache_write_tokens") or 0)
