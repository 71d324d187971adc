"""OpenAI chat completions (``POST {base_url}/chat/completions``), also every OpenAI-compatible
server (vLLM, Ollama, Groq, Together, OpenRouter, ...)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from ._json_http import JSONOverHTTPAdapter, StreamParser, count
from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, error_from_event, malformed
from ._sse import ServerSentEvent


class OpenAIAdapter(JSONOverHTTPAdapter):
    api = "openai"
    path = "/chat/completions"

    def __init__(self, spec, client) -> None:
        super().__init__(spec, client)
        # OpenAI's own API deprecated max_tokens, and its reasoning models reject it; the
        # compatible servers (vLLM, Ollama, Groq, ...) know max_tokens, not always the new name.
        host = urlsplit(spec.base_url or "").hostname or ""
        self._max_tokens_field = "max_completion_tokens" if host == "api.openai.com" else "max_tokens"

    def headers_for(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        messages = request.messages
        if request.system is not None:
            messages = [{"role": "system", "content": request.system}, *messages]
        body: dict[str, Any] = {"model": self.spec.model, "messages": messages}
        params = request.params
        # A caller passing either spelling in params wins.
        if request.max_tokens is not None and "max_completion_tokens" not in params and "max_tokens" not in params:
            body[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if params:
            body.update(params)
        if stream:
            body["stream"] = True
            # Without include_usage a stream reports no tokens, and the ledger could not bill it.
            body["stream_options"] = {**(params.get("stream_options") or {}), "include_usage": True}
        elif "stream" in body:
            del body["stream"]
        return body

    def parse_response(self, payload: Any, http_status: int) -> ProviderResult:
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
        usage = payload.get("usage") or {}  # some compatible servers omit it: tokens unknown (None)
        details = usage.get("prompt_tokens_details") or {}
        return ProviderResult(
            text=text,
            model=payload.get("model") or self.spec.model,
            input_tokens=count(usage.get("prompt_tokens")),
            output_tokens=count(usage.get("completion_tokens")),
            cache_read_tokens=int(details.get("cached_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            http_status=http_status,
        )

    def stream_parser(self, ctx: AttemptContext) -> StreamParser:
        return _OpenAIStream(ctx, self.spec.model)


class _OpenAIStream(StreamParser):
    """``data: {chunk}`` events, a final usage chunk (``choices: []``), then ``data: [DONE]``. A server
    that ignores ``stream_options.include_usage`` sends no usage chunk: the tokens stay None."""

    __slots__ = ()
    end_marker = "data: [DONE]"

    def feed(self, event: ServerSentEvent) -> str | None:
        data = event.data
        if data == "[DONE]":
            self.done = True
            return None
        try:
            chunk = json.loads(data)
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
        return delta.get("content") if delta else None
