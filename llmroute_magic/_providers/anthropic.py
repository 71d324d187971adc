"""Anthropic messages API (``POST {base_url}/v1/messages``; base URLs have no ``/v1``, like the SDK's)."""

from __future__ import annotations

import json
from typing import Any

from ._json_http import JSONOverHTTPAdapter, StreamParser, count
from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, error_from_event, malformed
from ._sse import ServerSentEvent

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is what we send when the caller gave none


class AnthropicAdapter(JSONOverHTTPAdapter):
    api = "anthropic"
    path = "/v1/messages"

    def headers_for(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json",
                   "anthropic-version": API_VERSION}
        if key is not None:
            headers["x-api-key"] = key
        return headers

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        messages = request.messages
        system = request.system
        if any(m.get("role") == "system" for m in messages):
            # The messages API has no system role: such turns join the top-level system prompt.
            extra = [_as_text(m.get("content")) for m in messages if m.get("role") == "system"]
            system = "\n\n".join(([system] if system else []) + extra)
            messages = [m for m in messages if m.get("role") != "system"]
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
        }
        if system is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.params:
            body.update(request.params)
        if stream:
            body["stream"] = True
        elif "stream" in body:
            del body["stream"]
        return body

    def parse_response(self, payload: Any, http_status: int) -> ProviderResult:
        blocks = payload["content"]
        text = "".join(b["text"] for b in blocks if b.get("type") == "text")
        usage = payload.get("usage") or {}  # always sent by Anthropic; a compatible server may omit it
        return ProviderResult(
            text=text,
            model=payload.get("model") or self.spec.model,
            input_tokens=prompt_tokens(usage),
            output_tokens=count(usage.get("output_tokens")),
            cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
            cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
            finish_reason=payload.get("stop_reason"),
            http_status=http_status,
        )

    def stream_parser(self, ctx: AttemptContext) -> StreamParser:
        return _AnthropicStream(ctx, self.spec.model)


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
    return (int(usage["input_tokens"]) + int(usage.get("cache_read_input_tokens") or 0)
            + int(usage.get("cache_creation_input_tokens") or 0))


def _as_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


class _AnthropicStream(StreamParser):
    """message_start (input tokens) · content_block_* (text) · ping · message_delta (output tokens,
    stop_reason) · message_stop; or ``event: error`` at any point."""

    __slots__ = ()
    end_marker = "message_stop"

    def feed(self, event: ServerSentEvent) -> str | None:
        name = event.event
        if name == "ping":
            return None
        try:
            payload = json.loads(event.data)
        except ValueError:
            raise malformed(self.ctx, f"stream event {name!r} is not JSON: {event.data[:80]!r}") from None
        if not isinstance(payload, dict):
            raise malformed(self.ctx, f"stream event {name!r} is not an object")
        kind = payload.get("type", name)  # the data's type is authoritative; event names may be absent
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            return delta.get("text") if delta.get("type") == "text_delta" else None
        if kind == "message_start":
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

    def _take_usage(self, usage: dict[str, Any]) -> None:
        tokens = prompt_tokens(usage)
        if tokens is not None:
            self.ctx.input_tokens = tokens
            self.cache_read_tokens = int(usage.get("cache_read_input_tokens") or 0)
            self.cache_write_tokens = int(usage.get("cache_creation_input_tokens") or 0)
