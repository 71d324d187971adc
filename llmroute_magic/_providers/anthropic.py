"""Anthropic messages API (``POST {base_url}/v1/messages``; base URLs have no ``/v1``, like the SDK's).

Images go as ``image`` blocks (a URL or base64 source), tools as ``tools`` with ``input_schema``,
tool results as ``tool_result`` blocks in a user turn. The API has no response format, so a
schema is asked for the way Anthropic documents: one more tool, ``SCHEMA_TOOL``, whose input
schema is the response schema, chosen by ``tool_choice``; its input comes back as the answer's
JSON text (streamed as its ``input_json_delta`` pieces arrive), not as a tool call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, error_from_event, malformed
from ._json_http import JSONOverHTTPAdapter, StreamParser, count, with_params_and_stream_flag
from ._parts import calls_of, parts_of, tool_call
from ._sse import ServerSentEvent
from ._wire_json import loads

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is what we send when the caller gave none
SCHEMA_TOOL = "respond_with_json"  # the tool that carries a response_format's schema


class AnthropicAdapter(JSONOverHTTPAdapter):
    api = "anthropic"
    path = "/v1/messages"
    key_header = "x-api-key"
    key_scheme = ""

    def headers_for(self, key: str | None) -> dict[str, str]:
        return {**super().headers_for(key), "anthropic-version": API_VERSION}

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        messages = request.messages
        system = request.system
        if any(m.get("role") == "system" for m in messages):
            # The messages API has no system role: such turns join the top-level system prompt.
            extra = [_as_text(m.get("content")) for m in messages if m.get("role") == "system"]
            system = "\n\n".join(([system] if system else []) + extra)
            messages = [m for m in messages if m.get("role") != "system"]
        body: dict[str, Any] = {
            "model": request.model_for(self.spec),
            "messages": anthropic_messages(messages),
            "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
        }
        if system is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        _add_tools_and_schema(body, request)
        return with_params_and_stream_flag(body, request.params, stream)

    def parse_response(self, payload: Any, http_status: int, request: ChatRequest) -> ProviderResult:
        blocks = payload["content"]
        text = "".join(b["text"] for b in blocks if b.get("type") == "text")
        calls = []
        for b in blocks:
            if b.get("type") != "tool_use":
                continue
            if b.get("name") == SCHEMA_TOOL and request.response_format is not None:
                text = json.dumps(b.get("input") or {}, ensure_ascii=False)  # the schema's answer
            else:
                calls.append(tool_call(b.get("id"), b.get("name"), b.get("input")))
        usage = payload.get("usage") or {}  # always sent by Anthropic; a compatible server may omit it
        return ProviderResult(
            text=text,
            model=payload.get("model") or request.model_for(self.spec),
            input_tokens=prompt_tokens(usage),
            output_tokens=count(usage.get("output_tokens")),
            cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
            cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
            finish_reason=payload.get("stop_reason"),
            http_status=http_status,
            tool_calls=tuple(calls),
        )

    def stream_parser(self, ctx: AttemptContext, request: ChatRequest) -> StreamParser:
        return _AnthropicStream(ctx, request.model_for(self.spec), request.response_format is not None)


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages as Anthropic turns: parts as blocks, tool calls as tool_use blocks, tool
    results as tool_result blocks in a user turn (consecutive results share one turn)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
                "content": _as_text(m.get("content")),
            }
            if (
                out
                and out[-1]["role"] == "user"
                and isinstance(out[-1]["content"], list)
                and all(b.get("type") == "tool_result" for b in out[-1]["content"])
            ):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        content = m.get("content")
        calls = calls_of(m) if role == "assistant" else []
        if isinstance(content, list) or calls:
            blocks = [_block(p) for p in parts_of(content)]
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in calls]
            out.append({"role": role, "content": blocks})
        else:
            out.append({"role": role, "content": content})
    return out


def _block(part: Mapping[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    if "url" in part:
        return {"type": "image", "source": {"type": "url", "url": part["url"]}}
    return {"type": "image", "source": {"type": "base64", "media_type": part["media_type"], "data": part["data"]}}


def _add_tools_and_schema(body: dict[str, Any], request: ChatRequest) -> None:
    tools = [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)} for t in request.tools]
    fmt = request.response_format
    if fmt is not None:
        tools.append(
            {
                "name": SCHEMA_TOOL,
                "input_schema": dict(fmt.schema),
                "description": f"Give the answer as {fmt.name}: its input is the whole answer.",
            }
        )
    if tools:
        body["tools"] = tools
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = {"type": {"auto": "auto", "none": "none", "required": "any"}.get(choice.mode, "tool")}
        if choice.mode == "tool":
            body["tool_choice"]["name"] = choice.name
    elif fmt is not None and not request.tools:
        body["tool_choice"] = {"type": "tool", "name": SCHEMA_TOOL}


def prompt_tokens(usage: dict[str, Any]) -> int | None:
    """All prompt tokens, cache reads and writes included, as OpenAI counts ``prompt_tokens``; None
    when the usage block has no ``input_tokens`` (unknown).

    Anthropic's ``input_tokens`` leaves the cached part out; the ledger and pricing expect one
    meaning across providers (pricing then charges the ``cache_read_tokens`` and
    ``cache_write_tokens`` shares, from ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens``, each at its own rate).
    """
    if usage.get("input_tokens") is None:
        return None
    return (
        int(usage["input_tokens"])
        + int(usage.get("cache_read_input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
    )


def _as_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


class _AnthropicStream(StreamParser):
    """message_start (input tokens) · content_block_* (text, or tool_use and its input_json_delta
    pieces) · ping · message_delta (output tokens, stop_reason) · message_stop; or ``event: error``
    at any point."""

    __slots__ = ("_blocks", "_schema")
    end_marker = "message_stop"

    def __init__(self, ctx: AttemptContext, model: str, schema: bool) -> None:
        super().__init__(ctx, model)
        self._blocks: dict[int, list[Any]] = {}  # index -> [id, name, JSON pieces] of tool_use blocks
        self._schema = schema  # the SCHEMA_TOOL's input is the answer's text

    def feed(self, event: ServerSentEvent) -> str | None:
        name = event.event
        if name == "ping":
            return None
        try:
            payload = loads(event.data)
        except ValueError:
            raise malformed(self.ctx, f"stream event {name!r} is not JSON: {event.data[:80]!r}") from None
        if not isinstance(payload, dict):
            raise malformed(self.ctx, f"stream event {name!r} is not an object")
        kind = payload.get("type", name)  # the data's type is authoritative; event names may be absent
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._blocks[int(payload.get("index") or 0)] = [block.get("id"), block.get("name"), []]
        elif kind == "content_block_stop":
            call = self._blocks.get(int(payload.get("index") or 0))
            if call is not None and not self._is_schema(call):
                self.tool_calls.append(tool_call(call[0], call[1], "".join(call[2])))
        elif kind == "message_start":
            message = payload.get("message") or {}
            self.model = message.get("model") or self.model
            usage = message.get("usage") or {}
            self._take_usage(usage)
            if usage.get("output_tokens") is not None:
                self.ctx.output_tokens = int(usage["output_tokens"])
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            if usage.get("output_tokens") is not None:  # cumulative count for the whole message
                self.ctx.output_tokens = int(usage["output_tokens"])
            if usage.get("input_tokens"):  # newer API versions repeat the (cumulative) prompt counts here
                self._take_usage(usage)
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason:
                self.finish_reason = reason
        elif kind == "message_stop":
            self.done = True
        elif kind == "error" or name == "error":
            raise error_from_event(self.ctx, payload)
        return None

    def _delta(self, payload: dict[str, Any]) -> str | None:
        delta = payload.get("delta") or {}
        if delta.get("type") == "text_delta":
            return delta.get("text")
        if delta.get("type") == "input_json_delta":
            call = self._blocks.get(int(payload.get("index") or 0))
            piece = delta.get("partial_json") or ""
            if call is not None:
                call[2].append(piece)
                if self._is_schema(call):
                    return piece  # the schema's answer, as it is written
        return None

    def _is_schema(self, call: list[Any]) -> bool:
        return self._schema and call[1] == SCHEMA_TOOL

    def _take_usage(self, usage: dict[str, Any]) -> None:
        tokens = prompt_tokens(usage)
        if tokens is not None:
            self.ctx.input_tokens = tokens
            self.cache_read_tokens = int(usage.get("cache_read_input_tokens") or 0)
            self.cache_write_tokens = int(usage.get("cache_creation_input_tokens") or 0)
