"""Ollama's native chat API (``POST {base_url}/api/chat``; base URLs have no ``/v1``, like the SDK's host).

Why native: Ollama's OpenAI-compatible endpoint ignores ``num_ctx``, so a long prompt is silently
cut to the server's default window (2-4k tokens). Here ``options.num_ctx`` is the spec's
``context_window`` and ``"truncate": false`` asks for a 400 instead of a silently shortened prompt,
which the router treats as any context-length error (it falls back to a larger window).
``max_tokens`` is ``options.num_predict``, ``temperature`` and the sampling parameters Ollama knows
(``top_p``, ``seed``, ``stop``, ...) go into ``options`` too; other ``params`` are top-level fields
(``keep_alive``, ``think``, ``options``, ...). ``stream`` is always sent: Ollama streams by default.

Images go as base64 in the message's ``images``; Ollama cannot fetch a URL, so an image given by
URL fails the attempt with ``invalid_request`` before anything is sent (see ``_images``). Tools are
``function`` tools; tool results are ``tool`` messages naming their tool. A response schema is
``format``. Ollama has no ``tool_choice``: ``none`` sends no tools, and a forced call (a tool's name,
or ``required``) is asked for through ``format``, which Ollama enforces with a grammar: a JSON
``{"name": ..., "arguments": {...}}`` of one of the allowed tools, read back as the tool call.

Answers are one JSON object, or NDJSON lines whose last (``done: true``) has the counts:
``prompt_eval_count`` and ``eval_count``, left out by the server when zero; no counts at all means no
usage was reported (tokens unknown). Errors are ``{"error": "..."}``: a 404 is a model not pulled,
a 503 "server busy" is Ollama's overload signal, a line ``{"error": ...}`` inside a stream breaks it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._content import text_of
from .._errors import ProviderError
from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, error_from_event, error_from_status, malformed
from ._json_http import JSONOverHTTPAdapter, StreamParser, count
from ._parts import calls_of, parts_of, tool_call
from ._sse import ServerSentEvent
from ._wire_json import loads

if TYPE_CHECKING:
    import httpx

    from .._types import ToolCall

# Model options of Ollama's Modelfile / api.Options: given as params, they go into "options".
OPTION_NAMES = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "num_thread",
    }
)


class OllamaAdapter(JSONOverHTTPAdapter):
    api = "ollama"
    path = "/api/chat"
    # The inherited Bearer key: a remote Ollama (ollama.com) takes one, as the SDK sends OLLAMA_API_KEY.

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model_for(self.spec), "messages": self._messages(request)}
        options: dict[str, Any] = {}
        if self.spec.context_window is not None:
            options["num_ctx"] = self.spec.context_window
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        _add_tools_and_format(body, request)
        body["truncate"] = False  # a prompt too long for num_ctx: a 400, never a silently shortened prompt
        for name, value in request.params.items():
            if name == "options" and isinstance(value, dict):
                options.update(value)
            elif name in OPTION_NAMES:
                options[name] = [value] if name == "stop" and isinstance(value, str) else value
            else:
                body[name] = value
        if options:
            body["options"] = options
        body["stream"] = stream
        return body

    def _messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if request.system is not None:
            out.append({"role": "system", "content": request.system})
        names: dict[str, str] = {}  # tool call id -> tool name, for the results that answer them
        for m in request.messages:
            role, content = m["role"], m.get("content")
            if role == "tool":
                out.append(_tool_result(m, names))
                continue
            message: dict[str, Any] = {"role": role, "content": text_of(content)}
            images = self._images(content, request)
            if images:
                message["images"] = images
            calls = calls_of(m) if role == "assistant" else []
            if calls:
                message["tool_calls"] = [_call(c) for c in calls]
                names.update((c.id, c.name) for c in calls)
            out.append(message)
        return out

    def _images(self, content: Any, request: ChatRequest) -> list[str]:
        """The base64 data of a content's images. Ollama takes nothing else: the router never routes
        an image given by URL here (the ``image_url`` need, ``_capabilities.WIRE_NEEDS``); should one
        come anyway, it fails this attempt as ``invalid_request`` before anything is sent."""
        images = []
        for part in parts_of(content) if isinstance(content, list) else ():
            if part.get("type") != "image":
                continue
            if "url" in part:
                raise ProviderError(
                    f"Ollama takes images as bytes, not URLs ({str(part['url'])[:80]}): pass the image itself, "
                    "e.g. {'type': 'image', 'data': <bytes or base64>}, or route this request to a provider "
                    "that fetches URLs",
                    provider=self.spec.name,
                    error_type="invalid_request",
                    model=request.model_for(self.spec),
                )
            images.append(part["data"])
        return images

    def parse_response(self, payload: Any, http_status: int, request: ChatRequest) -> ProviderResult:
        message = payload["message"]
        text = message.get("content") or ""
        calls = [_tool_call(c, i) for i, c in enumerate(message.get("tool_calls") or ())]
        tokens = usage_of(payload)
        forced = _forced(request)
        if not calls and forced:
            try:
                calls, text = [_forced_call(text, forced)], ""
            except ValueError as exc:  # a whole answer, billed: the error carries its tokens to the ledger
                raise ProviderError(
                    str(exc),
                    provider=self.spec.name,
                    error_type="malformed_response",
                    status_code=http_status,
                    model=payload.get("model") or request.model_for(self.spec),
                    input_tokens=tokens[0] or 0,
                    output_tokens=tokens[1] or 0,
                ) from None
        return ProviderResult(
            text=text,
            model=payload.get("model") or request.model_for(self.spec),
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            finish_reason=payload.get("done_reason"),
            http_status=http_status,
            tool_calls=tuple(calls),
        )

    def stream_parser(self, ctx: AttemptContext, request: ChatRequest) -> StreamParser:
        return _OllamaStream(ctx, request.model_for(self.spec), _forced(request))

    def events(self, response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
        return iter_ndjson(response.aiter_bytes())

    def error_for_status(self, ctx: AttemptContext, status: int, body: bytes, headers: Any) -> ProviderError:
        err = error_from_status(ctx, status, body, headers)
        kind, message = err.error_type, err.message
        lowered = message.lower()
        if status == 404 and "not found" in lowered and "model" in lowered:
            message += f" (run `ollama pull {ctx.model}` on that server, or check the model name)"
        elif status == 503 and "server busy" in lowered:
            kind = "overloaded"  # its queue of pending requests is full (OLLAMA_MAX_QUEUE)
        elif status == 401 and self._key_from_env:
            message += f" (the key is read from {self._env_var})"
        else:
            return err
        return ctx.error(kind, message, status_code=status, retry_after=err.retry_after)


def _add_tools_and_format(body: dict[str, Any], request: ChatRequest) -> None:
    """``tools``, and ``format`` for a response schema or a forced tool call (which wins: this turn's
    answer must be the call; the schema applies to the answer after its result)."""
    tools, choice = request.tools, request.tool_choice
    mode = choice.mode if choice is not None and tools else "auto"
    if tools and mode == "auto":
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in tools
        ]
    elif choice is not None and mode in ("tool", "required"):  # (mode is "auto" without a choice)
        allowed = [t for t in tools if mode == "required" or t.name == choice.name]
        branches = [
            {
                "type": "object",
                "description": t.description,
                "required": ["name", "arguments"],
                "properties": {"name": {"const": t.name}, "arguments": dict(t.parameters)},
            }
            for t in allowed
        ]
        body["format"] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if request.response_format is not None and "format" not in body:
        body["format"] = dict(request.response_format.schema)


def _forced(request: ChatRequest) -> tuple[str, ...]:
    """The tools a forced call may name (empty: the call is not forced)."""
    choice, tools = request.tool_choice, request.tools
    if not tools or choice is None or choice.mode not in ("tool", "required"):
        return ()
    return tuple(t.name for t in tools if choice.mode == "required" or t.name == choice.name)


def _forced_call(text: str, allowed: tuple[str, ...]) -> ToolCall:
    """The call a forced ``format`` asked for, from the answer's JSON; ValueError (a malformed,
    retryable answer) when the model answered anything else (a server too old to enforce ``format``)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"a forced tool call came back as text, not JSON: {text[:60]!r}") from None
    if not isinstance(value, dict) or value.get("name") not in allowed:
        raise ValueError(f"a forced tool call came back without one of the tools {', '.join(allowed)}: {text[:60]!r}")
    return tool_call(None, value["name"], value.get("arguments"))


def _call(c: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"function": {"name": c.name, "arguments": c.arguments}}
    if c.id:
        out["id"] = c.id  # newer servers keep ids; older ones ignore the field
    return out


def _tool_result(m: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A tool result: Ollama matches it to its call by ``tool_name`` (and, on newer servers, the id)."""
    out: dict[str, Any] = {"role": "tool", "content": text_of(m.get("content"))}
    call_id = m.get("tool_call_id")
    name = m.get("name") or names.get(call_id or "")
    if name:
        out["tool_name"] = name
    if call_id:
        out["tool_call_id"] = call_id
    return out


def _tool_call(c: dict[str, Any], index: int) -> ToolCall:
    fn = c["function"]
    return tool_call(c.get("id") or f"call_{index}", fn.get("name"), fn.get("arguments"))


def usage_of(payload: dict[str, Any]) -> tuple[int | None, int | None]:
    """(input, output) tokens of a final object. Go's ``omitempty`` drops a count of 0, so one count
    without the other means 0; neither means the server reported no usage (unknown, None)."""
    prompt, output = payload.get("prompt_eval_count"), payload.get("eval_count")
    if prompt is None and output is None:
        return None, None
    return count(prompt) or 0, count(output) or 0


async def iter_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
    """One event per line of newline-delimited JSON, however the bytes were chunked. Split on bytes
    (a raw U+2028 inside a JSON string is no line end); a last line without its newline is still
    delivered (a cut one then fails to parse: a malformed, retryable answer)."""
    tail = b""
    async for chunk in chunks:
        lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
        tail = lines.pop()
        for line in lines:
            line = line.strip()
            if line:
                yield ServerSentEvent("message", line.decode("utf-8", "replace"))
    tail = tail.strip()
    if tail:
        yield ServerSentEvent("message", tail.decode("utf-8", "replace"))


class _OllamaStream(StreamParser):
    """``done: false`` lines with ``message.content`` pieces (a tool call whole in one line), then
    a ``done: true`` line with done_reason and the counts; or an ``{"error": ...}`` line."""

    __slots__ = ("_forced", "_pieces")
    end_marker = "a line with done: true"

    def __init__(self, ctx: AttemptContext, model: str, forced: tuple[str, ...]) -> None:
        super().__init__(ctx, model)
        self._forced = forced  # the tools of a forced call: the content is its JSON, not text to show
        self._pieces: list[str] = []

    def feed(self, event: ServerSentEvent) -> str | None:
        try:
            obj = loads(event.data)
        except ValueError:
            raise malformed(self.ctx, f"stream line is not JSON: {event.data[:80]!r}") from None
        if not isinstance(obj, dict):
            raise malformed(self.ctx, f"stream line is not an object: {event.data[:80]!r}")
        if "error" in obj:
            raise error_from_event(self.ctx, obj)
        self.model = obj.get("model") or self.model
        message = obj.get("message") or {}
        for c in message.get("tool_calls") or ():
            self.tool_calls.append(_tool_call(c, len(self.tool_calls)))
        piece = message.get("content") or None
        if obj.get("done"):
            self._finish(obj)
        if self._forced and piece:
            self._pieces.append(piece)
            return None
        return piece

    def _finish(self, obj: dict[str, Any]) -> None:
        self.done = True
        self.finish_reason = obj.get("done_reason")
        self.ctx.input_tokens, self.ctx.output_tokens = usage_of(obj)

    def result(self, http_status: int, ttft_s: float | None) -> ProviderResult:
        if self.done and self._forced and not self.tool_calls:
            try:
                self.tool_calls = [_forced_call("".join(self._pieces), self._forced)]
            except ValueError as exc:
                raise malformed(self.ctx, str(exc)) from None
        return super().result(http_status, ttft_s)
