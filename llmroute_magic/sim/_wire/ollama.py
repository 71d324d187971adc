"""Ollama's native chat API: ``POST /<provider>/api/chat`` (SDK host ``.../<provider>``, as
``ollama.Client(host=...)`` takes it).

Request (``api.ChatRequest`` of the Go server): ``model``, ``messages`` (``{role, content: string,
images: [base64], tool_calls: [{function: {name, arguments: object}}], tool_name, tool_call_id}``;
``system`` messages may come anywhere), ``stream`` (true when left out: Ollama streams by default),
``format`` (``"json"`` or a JSON schema), ``options`` (``num_predict`` caps the answer; ``num_ctx``
is the context window, 4096 when not given), ``tools`` (``{type: function, function: {name,
description, parameters}}``) and ``truncate``. There is no ``tool_choice``: the model decides.
An image given by URL is no base64, and a 400 as Go's JSON decoder words it: Ollama fetches nothing.

A prompt longer than the context window is cut as Ollama cuts it: the oldest messages go first
(system messages stay), then the front of the last one, and the answer is billed for what was
left (``prompt_eval_count``). With ``"truncate": false`` it is a 400 instead.

Answer: ``{model, created_at, message: {role, content, tool_calls: [{id, function: {index, name,
arguments: object}}]}, done: true, done_reason: stop|length, total_duration, load_duration,
prompt_eval_count, prompt_eval_duration, eval_count, eval_duration}`` (zero counts left out, as Go's
``omitempty`` does). Streamed as NDJSON: one ``done: false`` object per token (a tool call comes
whole, in one object), then a last ``done: true`` object with the counts. A tool call cut by
``num_predict`` never parses, so its text comes back as content. Errors: ``{"error": "..."}``;
an error after the first line of a stream is one more line ``{"error": "..."}``.
"""

from __future__ import annotations

import binascii
import json
import math
from base64 import b64decode
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._answers import Answer
from .._neutral import ASSISTANT, IMAGE_TOKENS, TOOL, USER, BadRequest, SimRequest, Tool
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
    dumps,
    json_object,
    ndjson,
    schema_object,
    tool_name,
)

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

DEFAULT_NUM_CTX = 4096  # docs/faq: "By default, Ollama uses a context window size of 4096 tokens"
PROMPT_TOO_LONG = (
    "the prompt is longer than the context length currently available to the model; shorten the "
    "prompt, adjust the context length in settings, or use a model with a longer context length"
)
SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"  # server/sched.go ErrMaxQueue
USAGE_LIMIT = "you've reached your usage limit, please upgrade to continue (simulated)"
_MESSAGES = {
    "rate_limit": "too many requests, please try again later (simulated)",
    "rate_limit_no_retry_after": "too many requests, please try again later (simulated)",
    "server_error": "an error was encountered while running the model (simulated)",
    "stream_error": "an error was encountered while running the model (simulated)",
    "unauthorized": "unauthorized",
    "forbidden": "forbidden: this key may not use this model (simulated)",
    "invalid_request": "invalid request (simulated)",
}
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_FAKE_NS = (48_000_000, 2_000_000)  # load_duration, and nanoseconds per evaluated token: plausible, not measured


def error_body(message: str) -> bytes:
    return dumps({"error": message})


def _check_images(images: Any, where: str) -> int:
    """How many images a message carries: a list of base64 strings (Go decodes them into bytes)."""
    if images is None:
        return 0
    if not isinstance(images, list):
        raise BadRequest(
            f"json: cannot unmarshal {type(images).__name__} into Go struct field Message.{where} of "
            "type []api.ImageData",
            where,
        )
    for image in images:
        try:
            if not isinstance(image, str):
                raise ValueError
            b64decode(image, validate=True)
        except (ValueError, binascii.Error):
            # What Go's JSON decoder says of a string that is not base64, e.g. an image's URL: Ollama
            # fetches nothing (https://... fails at its ':', byte 5).
            raise BadRequest(f"illegal base64 data at input byte {_first_bad_byte(image)}", where) from None
    return len(images)


def _first_bad_byte(text: Any) -> int:
    """Where base64 decoding fails: the first character outside the alphabet (or the end)."""
    if not isinstance(text, str):
        return 0
    return next((i for i, c in enumerate(text) if c not in _BASE64), len(text))


def _call_text(calls: Any, where: str) -> str:
    """An assistant turn's tool calls as text (what they add to the prompt)."""
    if not isinstance(calls, list):
        raise BadRequest(f"{where}: expected an array of tool calls.", where)
    text = ""
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("arguments", {}), dict):
            raise BadRequest(f'{where}: expected {{"function": {{"name": ..., "arguments": {{...}}}}}}.', where)
        text += f"{fn.get('name', '')}({json.dumps(fn.get('arguments') or {})})"
    return text


class OllamaChat(WireFormat):
    api = "ollama"
    routes = (Route("api/chat"),)
    base_path = ""
    stream_content_type = b"application/x-ndjson"
    id_prefix = "ollama-sim-"  # Ollama answers carry no id; it is only the x-request-id header

    def api_key(self, call: Call) -> str | None:
        auth = call.header(b"authorization") or ""
        return auth[7:] if auth[:7].lower() == "bearer " else None

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        data = json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model is required", "model")
        system, turns = self._messages(data.get("messages"))
        stream = data.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise BadRequest(
                f"json: cannot unmarshal {type(stream).__name__} into Go struct field ChatRequest.stream of type bool",
                "stream",
            )
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequest("options: expected an object of model options.", "options")
        predict = options.get("num_predict")
        if predict is not None and (isinstance(predict, bool) or not isinstance(predict, int)):
            raise BadRequest(f"options.num_predict: expected an integer, got {predict!r}.", "options.num_predict")
        num_ctx = options.get("num_ctx")
        if num_ctx is None:
            num_ctx = DEFAULT_NUM_CTX
        elif isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx < 1:
            raise BadRequest(f"options.num_ctx: expected an integer >= 1, got {num_ctx!r}.", "options.num_ctx")
        req = SimRequest(
            model,
            "\n".join(system),
            [t[:2] for t in turns],
            predict if predict and predict > 0 else None,
            stream is not False,
            True,
            sum(t[2] for t in turns),
        )
        if data.get("tools") is not None:
            req.tools = self._tools(data["tools"])
        self._format(data.get("format"), req)
        if req.input_tokens > num_ctx:
            if data.get("truncate") is False:
                raise BadRequest(PROMPT_TOO_LONG, "messages")
            self._truncate(req, turns, num_ctx)
        return req

    @staticmethod
    def _messages(messages: Any) -> tuple[list[str], list[tuple[str, str, int]]]:
        """(system texts, turns as (role, text, images)) of the messages array."""
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: a non-empty array of messages is required.", "messages")
        system: list[str] = []
        turns: list[tuple[str, str, int]] = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise BadRequest(
                    f"messages.{i}: each message must be an object with a role and content.", f"messages.{i}"
                )
            content = m.get("content")
            if content is not None and not isinstance(content, str):
                raise BadRequest(
                    f"json: cannot unmarshal {type(content).__name__} into Go struct field "
                    f"Message.messages.content of type string",
                    f"messages.{i}.content",
                )
            text, role = content or "", m["role"]
            images = _check_images(m.get("images"), f"messages.{i}.images")
            if role == "system":
                system.append(text)
                continue
            if role == ASSISTANT and m.get("tool_calls") is not None:
                text += _call_text(m["tool_calls"], f"messages.{i}.tool_calls")
            turns.append((role if role in (ASSISTANT, TOOL) else USER, text, images))
        if not turns:
            raise BadRequest("messages: at least one message besides the system prompt is required.", "messages")
        return system, turns

    @staticmethod
    def _tools(tools: Any) -> tuple[Tool, ...]:
        if not isinstance(tools, list):
            raise BadRequest("tools: expected an array of tools.", "tools")
        parsed = []
        for i, t in enumerate(tools):
            if (
                not isinstance(t, dict)
                or t.get("type", "function") != "function"
                or not isinstance(t.get("function"), dict)
            ):
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
        return tuple(parsed)

    @staticmethod
    def _format(fmt: Any, req: SimRequest) -> None:
        if fmt is None or fmt == "":
            return
        if fmt == "json":
            req.json_mode = True
        elif isinstance(fmt, dict):
            req.json_schema, req.json_mode = fmt, True
        else:
            raise BadRequest(f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON Schema', "format")

    @staticmethod
    def _truncate(req: SimRequest, turns: list[tuple[str, str, int]], num_ctx: int) -> None:
        """Cut the prompt to ``num_ctx`` tokens as Ollama does: whole messages from the oldest (the
        system prompt stays), then, if the last message alone is too long, its front."""
        while len(turns) > 1:
            turns = turns[1:]
            req.turns, req.images = [t[:2] for t in turns], sum(t[2] for t in turns)
            if req.input_tokens <= num_ctx:
                return
        role, text, images = turns[0]
        overhead = 3 * (1 + (1 if req.system else 0)) + IMAGE_TOKENS * images
        keep = max(0, (num_ctx - overhead) * 4 - len(req.system))
        req.turns = [(role, text[len(text) - keep :] if keep else "")]

    # -- answers --------------------------------------------------------------------------------
    @staticmethod
    def _head(req: SimRequest) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return {"model": req.model, "created_at": now}

    @staticmethod
    def _end(answer: Answer, usage: Usage | None) -> dict[str, Any]:
        """The fields of the last object: why it stopped, durations, and the counts (zeros left out)."""
        end: dict[str, Any] = {"done": True, "done_reason": "length" if answer.cut else "stop"}
        load, per_token = _FAKE_NS
        i, o = usage if usage is not None else (0, 0)
        end["total_duration"] = load + per_token * (i + o)
        end["load_duration"] = load
        if i:
            end["prompt_eval_count"] = i
            end["prompt_eval_duration"] = per_token * i
        if o:
            end["eval_count"] = o
            end["eval_duration"] = per_token * o
        return end

    @staticmethod
    def _calls(answer: Answer) -> tuple[list[dict[str, Any]], str]:
        """(the tool calls that parsed, the text of one cut short): a call cut by num_predict is not JSON."""
        calls, text = [], ""
        for i, c in enumerate(answer.tool_calls):
            if c.whole:
                calls.append({"id": "call_" + c.id[:8], "function": {"index": i, "name": c.name, "arguments": c.value}})
            else:
                text += c.sent
        return calls, text

    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        if answer.tool_calls:
            calls, message["content"] = self._calls(answer)
            if calls:
                message["tool_calls"] = calls
        return dumps({**self._head(req), "message": message, **self._end(answer, usage)})

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        if fault == "malformed_json":
            return [(b'{"model":"' + req.model.encode() + b'","created_at":<<not json>>\n', False, None)]
        head = self._head(req)

        def line(message: dict[str, Any], **more: Any) -> bytes:
            return ndjson({**head, "message": {"role": "assistant", **message}, **more})

        sent = broken_stream(answer, fault)
        steps: list[Step] = [(line({"content": p}, done=False), True, None) for p in sent.pieces]
        left = ""  # a call cut by num_predict: held back by the server's tool parser, sent as text at the end
        if answer.tool_calls:  # the parser sends each call whole, in one line, once it has parsed
            calls, left = self._calls(sent)
            steps += [(line({"content": "", "tool_calls": [c]}, done=False), True, None) for c in calls]
        if fault == "stream_error":
            steps.append((ndjson({"error": _MESSAGES["stream_error"]}), False, None))
        elif fault is None:
            end = line({"content": left}, **self._end(answer, usage))
            steps.append((end, False, tuple(usage) if usage is not None else None))
        return steps

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        if kind == "model_not_found":
            return Reply(404, error_body(f"model '{req.model}' not found, try pulling it first"))
        if kind == "context_length":
            return Reply(400, error_body(PROMPT_TOO_LONG))
        if kind == "insufficient_quota":  # ollama.com: 402 when a plan's usage limit is reached
            return Reply(402, error_body(USAGE_LIMIT))
        if kind == "overloaded":  # Ollama's own overload signal: its request queue is full
            return Reply(503, error_body(SERVER_BUSY))
        status, message = FAULT_STATUS[kind]
        headers = {"retry-after": str(math.ceil(retry_after_s))} if kind == "rate_limit" else None
        return Reply(status, error_body(_MESSAGES.get(kind, message)), headers)

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        return Reply(ERROR_STATUS[kind], error_body(message))
