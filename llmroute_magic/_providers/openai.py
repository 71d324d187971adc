"""OpenAI chat completions (``POST {base_url}/chat/completions``), also every OpenAI-compatible
server (vLLM, Ollama, Groq, Together, OpenRouter, ...).

Images go as ``image_url`` parts (https or data: URLs), tools as ``function`` tools, a response
schema as ``response_format: json_schema`` (not strict: the router checks the answer itself, and
strict mode rejects many ordinary schemas). Tool calls come back in ``message.tool_calls``, or
streamed as ``delta.tool_calls`` pieces whose argument strings are joined per index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, error_from_event, malformed
from ._json_http import JSONOverHTTPAdapter, StreamParser, count, with_params_and_stream_flag
from ._parts import arguments_json, calls_of, data_url, parts_of, tool_call
from ._sse import ServerSentEvent
from ._wire_json import loads

if TYPE_CHECKING:
    import httpx

    from .._types import ProviderSpec, ToolCall


# Hosts that refuse stream_options (422 extra_forbidden) and send a stream's usage without it.
_NO_STREAM_OPTIONS = frozenset({"api.mistral.ai"})


class OpenAIAdapter(JSONOverHTTPAdapter):
    api = "openai"
    path = "/chat/completions"
    own_fields = ("stream_options",)

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        super().__init__(spec, client)
        # OpenAI's own API deprecated max_tokens, and its reasoning models reject it; the
        # compatible servers (vLLM, Ollama, Groq, ...) know max_tokens, not always the new name.
        host = urlsplit(spec.base_url or "").hostname or ""
        self._max_tokens_field = "max_completion_tokens" if host == "api.openai.com" else "max_tokens"
        if host in _NO_STREAM_OPTIONS:
            self.refused_fields.add("stream_options")

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        messages = [openai_message(m) for m in request.messages]
        if request.system is not None:
            messages = [{"role": "system", "content": request.system}, *messages]
        body: dict[str, Any] = {"model": request.model_for(self.spec), "messages": messages}
        params = request.params
        # A caller passing either spelling in params wins.
        if request.max_tokens is not None and "max_completion_tokens" not in params and "max_tokens" not in params:
            body[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        add_tools_and_schema(body, request)
        with_params_and_stream_flag(body, params, stream)
        if stream:
            # Without include_usage a stream reports no tokens, and the ledger could not bill it.
            if "stream_options" not in self.refused_fields:  # a server that refuses it: tokens as it sends them
                body["stream_options"] = {**(params.get("stream_options") or {}), "include_usage": True}
        return body

    def parse_response(self, payload: Any, http_status: int, request: ChatRequest) -> ProviderResult:
        choice = payload["choices"][0]
        message = choice["message"]
        usage = payload.get("usage") or {}  # some compatible servers omit it: tokens unknown (None)
        details = usage.get("prompt_tokens_details") or {}
        wanted = message.get("tool_calls")
        calls = tuple(_call(c) for c in wanted) if wanted else ()  # most answers: no generator to build
        return ProviderResult(
            text=message.get("content") or "",
            model=payload.get("model") or request.model_for(self.spec),
            input_tokens=count(usage.get("prompt_tokens")),
            output_tokens=count(usage.get("completion_tokens")),
            cache_read_tokens=int(details.get("cached_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            http_status=http_status,
            tool_calls=calls,
        )

    def stream_parser(self, ctx: AttemptContext, request: ChatRequest) -> StreamParser:
        return _OpenAIStream(ctx, request.model_for(self.spec))


def _call(c: dict[str, Any]) -> ToolCall:
    fn = c.get("function") or {}
    return tool_call(c.get("id"), fn.get("name"), fn.get("arguments"))


def openai_message(m: dict[str, Any]) -> dict[str, Any]:
    """A neutral message in chat-completions form (also Azure's and every compatible server's)."""
    role, content = m["role"], m.get("content")
    if role == "tool":
        return {"role": "tool", "tool_call_id": m.get("tool_call_id", ""), "content": _text(content)}
    out: dict[str, Any] = {"role": role}
    if isinstance(content, list):
        out["content"] = [
            {"type": "text", "text": p["text"]}
            if p["type"] == "text"
            else {"type": "image_url", "image_url": {"url": data_url(p)}}
            for p in parts_of(content)
        ]
    else:
        out["content"] = content
    calls = calls_of(m) if role == "assistant" else []
    if calls:
        out["content"] = out["content"] or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": arguments_json(c)}}
            for c in calls
        ]
    return out


def add_tools_and_schema(body: dict[str, Any], request: ChatRequest) -> None:
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        body["tool_choice"] = (
            choice.mode if choice.mode != "tool" else {"type": "function", "function": {"name": choice.name}}
        )
    fmt = request.response_format
    if fmt is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name(fmt.name), "schema": dict(fmt.schema), "strict": False},
        }


def schema_name(name: str) -> str:
    """A response format's name as OpenAI allows it: letters, digits, '_' and '-', at most 64."""
    import re

    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "answer")[:64]


def _text(content: Any) -> str:
    return "".join(p.get("text", "") for p in parts_of(content)) if not isinstance(content, str) else content


class _OpenAIStream(StreamParser):
    """``data: {chunk}`` events, a final usage chunk (``choices: []``), then ``data: [DONE]``. A server
    that ignores ``stream_options.include_usage`` sends no usage chunk: the tokens stay None."""

    __slots__ = ("_calls",)
    end_marker = "data: [DONE]"

    def __init__(self, ctx: AttemptContext, model: str) -> None:
        super().__init__(ctx, model)
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]

    def feed(self, event: ServerSentEvent) -> str | None:
        data = event.data
        if data == "[DONE]":
            self.done = True
            self.tool_calls = [tool_call(c[0], c[1], "".join(c[2])) for _, c in sorted(self._calls.items())]
            return None
        try:
            chunk = loads(data)
        except ValueError:
            raise malformed(self.ctx, f"stream chunk is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise malformed(self.ctx, f"stream chunk is not an object: {data[:80]!r}")
        if "error" in chunk:
            raise error_from_event(self.ctx, chunk)
        model = chunk.get("model")
        if model:
            self.model = model
        usage = chunk.get("usage")  # null in every chunk but the last with some servers; absent with others
        if usage:
            self.ctx.input_tokens = count(usage.get("prompt_tokens"))
            self.ctx.output_tokens = count(usage.get("completion_tokens"))
            self.cache_read_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        reason = choice.get("finish_reason")
        if reason:
            self.finish_reason = reason
        delta = choice.get("delta")
        if not delta:
            return None
        for piece in delta.get("tool_calls") or ():
            call = self._calls.setdefault(int(piece.get("index") or 0), [None, None, []])
            fn = piece.get("function") or {}
            call[0] = piece.get("id") or call[0]
            call[1] = fn.get("name") or call[1]
            if fn.get("arguments"):
                call[2].append(fn["arguments"])
        content: str | None = delta.get("content")
        return content
