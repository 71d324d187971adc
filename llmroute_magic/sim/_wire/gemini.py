"""Gemini's native API: ``POST /<provider>/{v1,v1beta}/models/<model>:generateContent`` and
``:streamGenerateContent`` (SDK base URL ``.../<provider>``; ``google-genai`` picks the version).

Request (proto JSON: every field in lowerCamelCase or snake_case, as Google's servers accept):
``contents`` ``[{role: user|model, parts: [...]}]`` with parts ``text``, ``inlineData {mimeType,
data}``, ``fileData {fileUri, mimeType}``, ``functionCall {name, args, id}`` (model turns) and
``functionResponse {name, response, id}`` (a tool result); ``systemInstruction`` (a Content);
``generationConfig`` (``maxOutputTokens``; ``responseMimeType`` ``application/json`` with
``responseJsonSchema`` (JSON Schema) or ``responseSchema`` (the OpenAPI subset, ``"OBJECT"``
types), or neither for schema-less JSON); ``tools`` ``[{functionDeclarations: [{name, description,
parameters | parametersJsonSchema}]}]`` (server tools such as ``googleSearch`` are accepted and never
called); ``toolConfig.functionCallingConfig`` ``{mode: AUTO|ANY|NONE|VALIDATED,
allowedFunctionNames}``. The key comes in ``x-goog-api-key`` (or ``?key=``). Every inline or file
media part counts as one image.

Answer: a GenerateContentResponse ``{candidates: [{content: {parts, role: model}, finishReason:
STOP|MAX_TOKENS, index: 0}], usageMetadata: {promptTokenCount, candidatesTokenCount,
totalTokenCount, promptTokensDetails}, modelVersion, responseId}``; function calls come whole as
``functionCall {name, args}`` parts (the first with a ``thoughtSignature``, as thinking models send
it), with finishReason STOP. Streams (``?alt=sse``) are ``data:`` frames, each a partial response
carrying one token (or one whole call) and ``usageMetadata {promptTokenCount, totalTokenCount}``;
the last adds ``finishReason`` and the whole usage. Without ``alt=sse`` a stream is one JSON array
of the same responses (``application/json``). Since every frame tells the client its prompt
tokens, the first bills the input and the last the output. A broken stream sends whole calls only.

Errors: ``{"error": {"code", "message", "status", "details"}}`` with Google's canonical statuses;
a 429 is RESOURCE_EXHAUSTED with a QuotaFailure and a ``RetryInfo`` ``retryDelay`` (no retry-after
header), a daily quota has a per-day quota id, a bad key is Google's 400 ``API_KEY_INVALID``, an
overloaded model is 503 UNAVAILABLE, a prompt too long is 400 INVALID_ARGUMENT ("The input token
count ... exceeds the maximum number of tokens allowed ..."). A mid-stream error is a ``data:``
frame holding such an error body. Not simulated: ``text/x.enum``, XML and YAML answers (answered
as prose), several candidates, thinking (no thought parts, no thoughtsTokenCount).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from typing import TYPE_CHECKING, Any

from .._answers import Answer, ToolCall
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
    positive_int,
    schema_object,
)

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

VERSIONS = ("v1beta", "v1")
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")
_TEXT_MIMES = ("text/plain", "application/xml", "application/yaml", "text/x.enum")  # answered as prose
_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    f"this error, head to: {_DOCS}. To monitor your current usage, head to: https://ai.dev/rate-limit. "
)
_CRLF2 = b"\r\n\r\n"

# HTTP status -> Google's canonical status name
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# fault kind -> (HTTP status, message) where Gemini's differ from FAULT_STATUS
_FAULTS = {
    "server_error": (
        500,
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "unavailable": (503, "The service is currently unavailable."),
    "overloaded": (503, "The model is overloaded. Please try again later."),
    "gateway_timeout": (504, "Deadline expired before operation could complete."),
    "invalid_request": (400, "Request contains an invalid argument."),
    "forbidden": (403, "The caller does not have permission"),
}
_FAULTS["stream_error"] = _FAULTS["server_error"]


def field(obj: Any, name: str) -> Any:
    """A proto JSON field by its lowerCamelCase name or its snake_case one (Google accepts both)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    if value is None:
        value = obj.get(_SNAKE.get(name) or _snake(name))
    return value


_SNAKE: dict[str, str] = {}


def _snake(name: str) -> str:
    _SNAKE[name] = out = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return out


def duration(seconds: float) -> str:
    """A google.protobuf.Duration in JSON: ``"13s"``, ``"0.700s"`` (0, 3, 6 or 9 fractional digits)."""
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos == 0:
        return f"{whole}s"
    digits = f"{nanos:09d}"
    while digits.endswith("000"):
        digits = digits[:-3]
    return f"{whole}.{digits}s"


def error_body(code: int, message: str, details: list | None = None, status: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status or _STATUS_NAMES.get(code, "UNKNOWN")}
    if details:
        err["details"] = details
    return dumps({"error": err})


def _violation(param: str | None, message: str) -> list | None:
    if not param:
        return None
    return [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": param, "description": message}],
        }
    ]


def thought_signature(call: ToolCall) -> str:
    """What the simulator sends as a call's thoughtSignature: base64 bytes, deterministic per call."""
    return base64.b64encode(b"sim-thought:" + hashlib.blake2b(call.id.encode(), digest_size=12).digest()).decode()


def _sse(req: SimRequest) -> bool:
    """Whether the request asked for an SSE stream (``?alt=sse``), as ``parse`` recorded in its extras."""
    if req.extras is None:
        raise ValueError("a Gemini answer needs the request as GeminiGenerateContent.parse built it (no extras)")
    return bool(req.extras["sse"])


class GeminiGenerateContent(WireFormat):
    api = "gemini"
    routes = tuple(
        Route(f"{v}/models/{{model}}:{m}", f"{v} {m}")
        for v in VERSIONS
        for m in ("generateContent", "streamGenerateContent")
    )
    base_path = ""
    id_prefix = "gemini-sim-"

    def api_key(self, call: Call) -> str | None:
        """``x-goog-api-key`` (what google-genai sends), else the ``key`` query parameter, else a Bearer token."""
        got = call.header(b"x-goog-api-key")
        if got is None:
            got = call.query.get("key")
        if got is None:
            auth = call.header(b"authorization") or ""
            got = auth[7:] if auth[:7].lower() == "bearer " else None
        return got

    def stream_media_type(self, req: SimRequest) -> bytes:
        return self.stream_content_type if _sse(req) else b"application/json"

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        data = json_object(body)
        version, method = call.endpoint.split(" ")
        system = _system(field(data, "systemInstruction"))
        turns, images = _contents(field(data, "contents"))
        config = field(data, "generationConfig")
        if config is not None and not isinstance(config, dict):
            raise BadRequest(
                "Invalid value at 'generation_config': expected a GenerationConfig object.", "generation_config"
            )
        config = config or {}
        max_tokens = positive_int(field(config, "maxOutputTokens"), "generation_config.max_output_tokens")
        req = SimRequest(
            call.params["model"], system, turns, max_tokens, method == "streamGenerateContent", True, images
        )
        req.extras = {"version": version, "method": method, "sse": call.query.get("alt") == "sse"}
        _tools(data, req)
        _output(config, req)
        return req

    # -- answers --------------------------------------------------------------------------------
    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        parts = (
            [{"text": answer.text}]
            if not answer.tool_calls
            else [_call_part(c, i == 0) for i, c in enumerate(answer.tool_calls)]
        )
        return dumps(_response(rid, req, parts, usage, answer))

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        sse = _sse(req)
        if fault == "malformed_json":
            return [
                ((b"data: " if sse else b"[") + b'{"candidates": [<<not json>>' + (_CRLF2 if sse else b""), False, None)
            ]
        sent = broken_stream(answer, fault)
        if answer.tool_calls:  # a call comes whole or not at all
            chunks = [[_call_part(c, i == 0)] for i, c in enumerate(sent.tool_calls) if fault is None or c.whole]
        else:
            chunks = [[{"text": p}] for p in sent.pieces]
        if fault is None and not chunks:
            chunks = [[]]
        steps: list[Step] = []
        for k, parts in enumerate(chunks):
            final = answer if fault is None and k == len(chunks) - 1 else None
            bill = None
            if usage is not None and (k == 0 or final is not None):
                bill = (usage.input_tokens if k == 0 else 0, usage.output_tokens if final is not None else 0)
            frame = dumps(_response(rid, req, parts, usage, final))
            steps.append((_frame(frame, sse, k == 0, final is not None), bool(parts), bill))
        if fault == "stream_error":
            status, message = _FAULTS["stream_error"]
            steps.append((_frame(error_body(status, message), sse, not steps, False), False, None))
        return steps

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        if kind in ("rate_limit", "rate_limit_no_retry_after", "insufficient_quota"):
            return Reply(429, _quota_error(kind, req.model, retry_after_s))
        if kind == "unauthorized":
            return Reply(
                400,
                error_body(
                    400,
                    "API key not valid. Please pass a valid API key.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                            "locale": "en-US",
                            "message": "API key not valid. Please pass a valid API key.",
                        },
                    ],
                ),
            )
        if kind == "context_length":
            return Reply(
                400,
                error_body(
                    400,
                    f"The input token count ({req.input_tokens}) exceeds the maximum "
                    f"number of tokens allowed ({profile.context_window}).",
                ),
            )
        if kind == "model_not_found":
            extras = req.extras or {}
            return Reply(
                404,
                error_body(
                    404,
                    (
                        f"models/{req.model} is not found for API version {extras.get('version', 'v1beta')}, or is not "
                        f"supported for {extras.get('method', 'generateContent')}. Call ListModels to see the list of "
                        "available models and their supported methods."
                    ),
                ),
            )
        status, message = _FAULTS.get(kind) or FAULT_STATUS[kind]
        return Reply(status, error_body(status, message))

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        status = ERROR_STATUS[kind]
        return Reply(status, error_body(status, message, _violation(param, message) if status == 400 else None))


# -- parsing --------------------------------------------------------------------------------------------


def _system(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, dict) or not isinstance(value.get("parts"), list):
        raise BadRequest(
            f"Invalid value at 'system_instruction' (type.googleapis.com/google.ai.generativelanguage."
            f"v1beta.Content), {json.dumps(value)[:60]}",
            "system_instruction",
        )
    return "".join(p["text"] for p in value["parts"] if isinstance(p, dict) and isinstance(p.get("text"), str))


def _contents(contents: Any) -> tuple[list[tuple[str, str]], int]:
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified\n", "contents")
    turns: list[tuple[str, str]] = []
    images = 0
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise BadRequest(f"Invalid value at '{where}': expected a Content object.", where)
        role = content.get("role") or "user"
        if role not in ("user", "model", "function"):
            raise BadRequest("Please use a valid role: user, model.", f"{where}.role")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise BadRequest(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n", f"{where}.parts"
            )
        text, media, answered = _parts(parts, where, role == "model")
        images += media
        turns.append((TOOL if answered else ASSISTANT if role == "model" else USER, text))
    return turns, images


def _parts(parts: list, where: str, model_turn: bool) -> tuple[str, int, bool]:
    """(the turn's text, its media parts, whether it carries function responses)."""
    text, media, answered = "", 0, False
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise BadRequest(f"Invalid value at '{at}': expected a Part object.", at)
        if isinstance(part.get("text"), str):
            text += part["text"]
        elif field(part, "inlineData") is not None:
            _blob(field(part, "inlineData"), f"{at}.inline_data")
            media += 1
        elif field(part, "fileData") is not None:
            _file(field(part, "fileData"), f"{at}.file_data")
            media += 1
        elif field(part, "functionCall") is not None:
            call = field(part, "functionCall")
            if not model_turn or not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise BadRequest(
                    f"* GenerateContentRequest.{at}.function_call: a function call needs a name and "
                    "belongs to a model turn.\n",
                    f"{at}.function_call",
                )
            text += f"{call['name']}({json.dumps(call.get('args') or {})})"
        elif field(part, "functionResponse") is not None:
            response = field(part, "functionResponse")
            if not isinstance(response, dict) or not isinstance(response.get("name"), str):
                raise BadRequest(
                    f"* GenerateContentRequest.{at}.function_response.name: name is not specified.\n",
                    f"{at}.function_response.name",
                )
            text += json.dumps(response.get("response") or {})
            answered = True
        elif field(part, "executableCode") is not None or field(part, "codeExecutionResult") is not None:
            text += json.dumps(field(part, "executableCode") or field(part, "codeExecutionResult"))
        else:
            raise BadRequest(
                f"* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field\n",
                f"{at}.data",
            )
    return text, media, answered


def _blob(blob: Any, at: str) -> None:
    mime = field(blob, "mimeType")
    if not isinstance(mime, str) or "/" not in mime:
        raise BadRequest(
            f"* GenerateContentRequest.{at}.mime_type: a MIME type such as image/png is required.\n", f"{at}.mime_type"
        )
    data = blob.get("data")
    if not isinstance(data, str) or not _BASE64.match(data):
        raise BadRequest(
            f"Invalid value at '{at}.data' (TYPE_BYTES), Base64 decoding failed for \"{str(data)[:20]}\"", f"{at}.data"
        )


def _file(data: Any, at: str) -> None:
    uri = field(data, "fileUri")
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://", "gs://")):
        raise BadRequest(
            f"* GenerateContentRequest.{at}.file_uri: expected a Files API, gs:// or http(s) URI, "
            f"got {str(uri)[:40]!r}.\n",
            f"{at}.file_uri",
        )


def _tools(data: dict, req: SimRequest) -> None:
    tools = field(data, "tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("Invalid value at 'tools': expected a list of Tool objects.", "tools")
    declared: list[Tool] = []
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise BadRequest(f"Invalid value at 'tools[{i}]': expected a Tool object.", f"tools[{i}]")
        declarations = field(tool, "functionDeclarations")
        if declarations is None:
            continue  # googleSearch, codeExecution, urlContext...: server tools the simulator never calls
        if not isinstance(declarations, list):
            raise BadRequest(
                f"Invalid value at 'tools[{i}].function_declarations': expected a list.",
                f"tools[{i}].function_declarations",
            )
        declared += [_declaration(d, f"tools[{i}].function_declarations[{j}]") for j, d in enumerate(declarations)]
    req.tools = tuple(declared)
    config = field(field(data, "toolConfig"), "functionCallingConfig")
    if config is not None:
        _calling(config, req)


def _declaration(decl: Any, at: str) -> Tool:
    name = decl.get("name") if isinstance(decl, dict) else None
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise BadRequest(
            f"* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter or an "
            "underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a "
            "maximum length of 128.\n",
            f"{at}.name",
        )
    openapi, schema = field(decl, "parameters"), field(decl, "parametersJsonSchema")
    if openapi is not None and schema is not None:
        raise BadRequest(
            f"* GenerateContentRequest.{at}: parameters and parameters_json_schema cannot both be set.\n", at
        )
    description = decl.get("description")
    return Tool(
        name,
        description if isinstance(description, str) else "",
        schema_object(openapi if openapi is not None else schema, f"{at}.parameters", _EMPTY_PARAMETERS),
    )


def _calling(config: Any, req: SimRequest) -> None:
    at = "tool_config.function_calling_config"
    mode = str(field(config, "mode") or "AUTO").upper()
    if mode not in _MODES:
        raise BadRequest(
            f"Invalid value at '{at}.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta."
            f'FunctionCallingConfig.Mode), "{mode}"',
            f"{at}.mode",
        )
    allowed = field(config, "allowedFunctionNames")
    if allowed:
        if mode not in ("ANY", "VALIDATED"):
            raise BadRequest(
                f"* GenerateContentRequest.{at}.allowed_function_names: only allowed when the mode is "
                "ANY or VALIDATED.\n",
                f"{at}.allowed_function_names",
            )
        unknown = [n for n in allowed if req.tool(n) is None]
        if unknown:
            raise BadRequest(
                f"* GenerateContentRequest.{at}.allowed_function_names: function {unknown[0]!r} is not "
                "declared in tools.\n",
                f"{at}.allowed_function_names",
            )
        req.tools = tuple(t for t in req.tools if t.name in allowed)
    if mode == "NONE":
        req.tool_choice = "none"
    elif mode == "ANY":
        if not req.tools:
            raise BadRequest(
                f"* GenerateContentRequest.{at}.mode: ANY needs function declarations in tools.\n", f"{at}.mode"
            )
        if allowed and len(req.tools) == 1:
            req.tool_choice, req.tool_name = "tool", req.tools[0].name
        else:
            req.tool_choice = "required"


def _output(config: dict, req: SimRequest) -> None:
    at = "generation_config"
    mime = field(config, "responseMimeType")
    openapi, schema = field(config, "responseSchema"), field(config, "responseJsonSchema")
    if openapi is not None and schema is not None:
        raise BadRequest(
            f"* GenerateContentRequest.{at}.response_schema: response_schema and response_json_schema "
            "cannot both be set.\n",
            f"{at}.response_schema",
        )
    if (openapi is not None or schema is not None) and mime not in ("application/json", "text/x.enum"):
        raise BadRequest(
            f"* GenerateContentRequest.{at}.response_mime_type: When using response_schema, "
            "response_mime_type must be application/json or text/x.enum.\n",
            f"{at}.response_mime_type",
        )
    if mime is None or mime in _TEXT_MIMES:
        return
    if mime != "application/json":
        raise BadRequest(
            f"* GenerateContentRequest.{at}.response_mime_type: allowed mimetypes are `text/plain`, "
            "`application/json`, `application/xml`, `application/yaml` and `text/x.enum`.\n",
            f"{at}.response_mime_type",
        )
    req.json_mode = True
    if openapi is not None or schema is not None:
        req.json_schema = schema_object(openapi if openapi is not None else schema, f"{at}.response_schema")


# -- rendering ------------------------------------------------------------------------------------------


def _call_part(call: ToolCall, first: bool) -> dict:
    part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.value if call.whole else {}}}
    if first:
        part["thoughtSignature"] = thought_signature(call)
    return part


def _usage(req: SimRequest, usage: Usage, final: bool) -> dict:
    i = usage.input_tokens
    if not final:  # what every frame of a stream says before the last
        return {"promptTokenCount": i, "totalTokenCount": i}
    media = IMAGE_TOKENS * req.images
    details = [{"modality": "TEXT", "tokenCount": i - media}] + (
        [{"modality": "IMAGE", "tokenCount": media}] if media else []
    )
    return {
        "promptTokenCount": i,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": i + usage.output_tokens,
        "promptTokensDetails": details,
    }


def _response(rid: str, req: SimRequest, parts: list, usage: Usage | None, final: Answer | None) -> dict:
    """A GenerateContentResponse; ``final`` is the answer when this is the whole answer or a stream's last frame."""
    content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    candidate: dict[str, Any] = {"content": content}
    if final is not None:
        candidate["finishReason"] = "MAX_TOKENS" if final.cut else "STOP"
    candidate["index"] = 0
    body: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        body["usageMetadata"] = _usage(req, usage, final is not None)
    body["modelVersion"] = req.model
    body["responseId"] = rid
    return body


def _frame(body: bytes, sse: bool, first: bool, last: bool) -> bytes:
    """One response of a stream: an SSE ``data:`` event, or an element of the JSON array."""
    if sse:
        return b"data: " + body + _CRLF2
    return (b"[" if first else b",\r\n") + body + (b"]" if last else b"")


def _quota_error(kind: str, model: str, retry_after_s: float) -> bytes:
    if kind == "rate_limit_no_retry_after":
        return error_body(429, "Resource has been exhausted (e.g. check quota).")
    daily = kind == "insufficient_quota"
    quota_id = (
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
        if daily
        else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    limit = 250 if daily else 15
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    details: list[dict] = [
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more about Gemini API quotas", "url": _DOCS}],
        },
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": metric,
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": str(limit),
                }
            ],
        },
    ]
    message = f"{_QUOTA}\n* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}"
    if not daily:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration(retry_after_s)})
        message += f"\nPlease retry in {retry_after_s:g}s."
    return error_body(429, message, details)
