"""Gemini's native API: ``POST {base_url}/{version}/models/{model}:generateContent``, streamed with
``:streamGenerateContent?alt=sse``; base URL ``https://generativelanguage.googleapis.com``, the key
in ``x-goog-api-key``, as ``google-genai`` sends them.

- Version: ``v1``, google-genai's default; ``ProviderSpec(api_version="v1beta")`` (or a base URL
  ending in ``/v1beta``) for the beta API.
- Key: ``<NAME>_API_KEY`` (``GEMINI_API_KEY`` for a provider named gemini); for Google's own
  endpoint with no ``api_key_env`` given, the SDK's variables too, in its order (``GOOGLE_API_KEY``,
  ``GEMINI_API_KEY``): the key goes to the service it was issued for, nowhere else.
- Request: the system prompt (and system turns) as ``systemInstruction``; user and model turns as
  ``contents`` with ``text``, ``inlineData`` (base64 images) and ``fileData`` (image URLs) parts;
  earlier calls as ``functionCall`` parts and tool results as ``functionResponse`` parts in a user
  turn (a JSON-object result as is, other text as ``{"output": text}``). ``max_tokens`` and
  ``temperature`` go in ``generationConfig``; so does every other param except the request's own
  top-level fields (``safetySettings``, ``cachedContent``, ...), so ``top_p=0.9`` works as it does
  for the other formats. Tools are ``functionDeclarations`` with ``parametersJsonSchema`` and a
  schema is ``responseMimeType: application/json`` + ``responseJsonSchema``: both take JSON Schema
  as the router has it (pydantic's ``$defs``/``$ref`` included), where ``parameters`` and
  ``responseSchema`` take Google's OpenAPI subset (upper-case types, no ``$ref``), which would need
  a lossy translation; google-genai marks ``responseSchema`` deprecated and sends
  ``responseJsonSchema`` for a JSON schema. ``tool_choice``: auto/none/required -> AUTO/NONE/ANY, a
  tool's name -> ANY with ``allowedFunctionNames``.
- Answer: the text of ``candidates[0].content.parts`` (thought summaries left out), function calls
  as tool calls, ``finishReason`` as given. Gemini's calls have no ids unless the API sets one:
  such a call gets a stable id (``gcall_`` + a hash of its position, name and arguments) that is
  never sent back to the API. Thinking models sign their calls (``thoughtSignature``); the
  adapter keeps the signatures by call id and sends them back with the calls, and a call whose
  signature it does not have (another router, another provider) gets Google's documented
  placeholder, which Gemini 3 requires on the first call of each model turn.
- Usage (``usageMetadata``, as genai-prices reads it): input = ``promptTokenCount`` (cached
  tokens included) + ``toolUsePromptTokenCount``; cache reads = ``cachedContentTokenCount``;
  output = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (thoughts are billed as output). A
  count left out of a reported block is 0 (proto JSON omits zeros); no block at all is unknown.
  Every stream frame reports the prompt, so a stream cancelled early has billed its input.
- Errors: ``{"error": {code, message, status, details}}``. 429 RESOURCE_EXHAUSTED is a rate limit,
  or spent quota when its violation is a per-day quota, a limit of 0 or depleted prepaid credits;
  its ``RetryInfo.retryDelay`` (else "Please retry in Ns", else retry-after) is the retry hint.
  400 ``API_KEY_INVALID`` is an authentication failure, 400 "input token count ... exceeds the
  maximum" a context-length one, FAILED_PRECONDITION (billing, unsupported location) drops the
  provider, 503 "overloaded" is overloaded; a ``data:`` frame holding an error fails the stream.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._errors import ProviderError
from .._types import ToolCall
from ._base import ChatRequest, ProviderResult
from ._failures import AttemptContext, classify_status, error_from_status, malformed, parse_retry_after
from ._json_http import JSONOverHTTPAdapter, StreamParser
from ._parts import calls_of, parts_of, tool_call
from ._sse import ServerSentEvent
from ._wire_json import loads

if TYPE_CHECKING:
    import httpx

    from .._types import ProviderSpec

API_VERSION = "v1"  # google-genai's default (GOOGLE_AI_API_DEFAULT_VERSION)
MADE_ID_PREFIX = "gcall_"  # ids the adapter made for calls the API gave none: never sent to the API
SKIP_SIGNATURE = "skip_thought_signature_validator"  # Google's placeholder for a call signed elsewhere
_VERSIONS = ("v1", "v1beta", "v1alpha")
_MAX_SIGNATURES = 4096
# GenerateContentRequest's own fields: such params go at the top of the body, the rest in generationConfig.
_TOP_LEVEL = frozenset(
    {
        "contents",
        "systemInstruction",
        "system_instruction",
        "tools",
        "toolConfig",
        "tool_config",
        "safetySettings",
        "safety_settings",
        "cachedContent",
        "cached_content",
        "serviceTier",
        "service_tier",
        "store",
    }
)
_CONFIG = ("generationConfig", "generation_config")
_RETRY_IN = re.compile(r"retry in ([0-9]+(?:\.[0-9]+)?)\s*(ms|s)\b", re.IGNORECASE)
_TOO_LONG = ("input token count", "exceeds the maximum number of tokens")


class GeminiAdapter(JSONOverHTTPAdapter):
    api = "gemini"
    key_header = "x-goog-api-key"
    key_scheme = ""

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        super().__init__(spec, client)
        base, version = spec.base_url or "", spec.api_version
        last = base.rsplit("/", 1)[-1]
        if last in _VERSIONS:  # a base URL given with its version: https://generativelanguage.googleapis.com/v1beta
            base, version = base[: -len(last) - 1], version or last
        self._base = base
        self._version = version or API_VERSION
        self._urls: dict[str, tuple[str, str]] = {}  # model -> (plain URL, stream URL)
        self._signatures: dict[str, str] = {}  # call id -> the thoughtSignature it came with
        self._lock = threading.Lock()

    def url_for(self, request: ChatRequest, stream: bool) -> str:
        model = request.model_for(self.spec)
        urls = self._urls.get(model)
        if urls is None:
            # google-genai's rule: a bare name is a model under models/; tunedModels/... stay as given
            path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
            stem = f"{self._base}/{self._version}/{path}"
            urls = (f"{stem}:generateContent", f"{stem}:streamGenerateContent?alt=sse")
            if len(self._urls) < 64:
                self._urls[model] = urls
        return urls[1] if stream else urls[0]

    # -- the request --------------------------------------------------------------------------
    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        system, contents = self.contents(request.messages, request.system)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.response_format is not None:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = dict(request.response_format.schema)
        _add_tools(body, request)
        for key, value in request.params.items():
            if key in _CONFIG and isinstance(value, dict):
                config.update(value)
            elif key in _TOP_LEVEL:
                body[key] = value
            elif key != "stream":  # streaming is the URL's business
                config[key] = value
        if config:
            body["generationConfig"] = config
        return body

    def contents(self, messages: list[dict[str, Any]], system: str | None) -> tuple[str, list[dict[str, Any]]]:
        """The system text (the system prompt and any system turns) and the turns as Gemini contents."""
        system_texts = [system] if system else []
        names: dict[str, str] = {}  # call id -> function name, for the results that answer them
        contents: list[dict[str, Any]] = []
        for m in messages:
            role = m["role"]
            if role in ("system", "developer"):
                system_texts.append(_text(m.get("content")))
            elif role == "tool":
                part = _response_part(m, names)
                last = contents[-1] if contents else None
                if last is not None and last["role"] == "user" and all("functionResponse" in p for p in last["parts"]):
                    last["parts"].append(part)  # the results of one turn's calls go back together
                else:
                    contents.append({"role": "user", "parts": [part]})
            else:
                parts = [_part(p) for p in parts_of(m.get("content"))]
                if role == "assistant":
                    calls = calls_of(m)
                    names.update((c.id, c.name) for c in calls)
                    parts += self._call_parts(calls)
                if parts:
                    contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
        return "\n\n".join(t for t in system_texts if t), contents

    def _call_parts(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        out = []
        for i, c in enumerate(calls):
            call: dict[str, Any] = {"name": c.name, "args": c.arguments}
            if c.id and not c.id.startswith(MADE_ID_PREFIX):
                call["id"] = c.id
            part: dict[str, Any] = {"functionCall": call}
            signature = self._signatures.get(c.id) or (SKIP_SIGNATURE if i == 0 else None)
            if signature:
                part["thoughtSignature"] = signature
            out.append(part)
        return out

    # -- the answer ---------------------------------------------------------------------------
    def parse_response(self, payload: Any, http_status: int, request: ChatRequest) -> ProviderResult:
        # A list: a stream asked for without alt=sse (or by a proxy that dropped it) is one JSON array.
        chunks = payload if isinstance(payload, list) else [payload]
        texts: list[str] = []
        calls: list[ToolCall] = []
        usage, finish, model = None, None, None
        for chunk in chunks:
            if "error" in chunk:
                raise ValueError(f"the answer carries an error: {str(chunk['error'])[:200]}")
            usage = chunk.get("usageMetadata", usage)
            model = chunk.get("modelVersion") or model
            finish = _finish(chunk) or finish
            for part in _parts_of(chunk):
                text = self.take_part(part, calls)
                if text:
                    texts.append(text)
        tokens = usage_of(usage)
        return ProviderResult(
            text="".join(texts),
            model=model or request.model_for(self.spec),
            input_tokens=tokens[0] if tokens else None,
            output_tokens=tokens[1] if tokens else None,
            cache_read_tokens=tokens[2] if tokens else 0,
            finish_reason=finish,
            http_status=http_status,
            tool_calls=tuple(calls),
        )

    def take_part(self, part: dict[str, Any], calls: list[ToolCall]) -> str | None:
        """A part's answer text, or None; a function call is added to ``calls`` (its signature kept)."""
        fn = part.get("functionCall")
        if fn is not None:
            call = tool_call(
                fn.get("id") or made_id(len(calls), fn.get("name"), fn.get("args")),
                fn.get("name"),
                fn.get("args") or {},
            )
            calls.append(call)
            signature = part.get("thoughtSignature")
            if signature:
                self._remember(call.id, signature)
            return None
        text = part.get("text")
        if text is None or part.get("thought"):  # a thought summary is not the answer
            return None
        if not isinstance(text, str):
            raise TypeError(f"a text part holds {type(text).__name__}")
        return text

    def _remember(self, call_id: str, signature: str) -> None:
        with self._lock:
            if len(self._signatures) >= _MAX_SIGNATURES:
                del self._signatures[next(iter(self._signatures))]
            self._signatures[call_id] = signature

    def stream_parser(self, ctx: AttemptContext, request: ChatRequest) -> StreamParser:
        return _GeminiStream(ctx, request.model_for(self.spec), self)

    # -- errors -------------------------------------------------------------------------------
    def error_for_status(self, ctx: AttemptContext, status: int, body: bytes, headers: Any) -> ProviderError:
        err = google_error(body)
        if err is None:  # not Google's shape (a proxy, a gateway's HTML page): the shared rules
            return error_from_status(ctx, status, body, headers)
        name, message = str(err.get("status") or ""), str(err.get("message") or "")
        kind = classify(status, name, message, err.get("details"))
        retry_after = retry_delay(err.get("details"), message)
        if retry_after is None:
            retry_after = parse_retry_after(headers)
        text = f"{name}: {message}" if name and message else (message or name or f"HTTP {status}")
        return ctx.error(kind, text, status_code=status, retry_after=retry_after)


class _GeminiStream(StreamParser):
    """``data:`` frames, each a partial GenerateContentResponse: text (or whole function calls), the
    usage so far (the prompt's tokens from the first frame on), and in the last a ``finishReason``
    and the whole usage. There is no end marker: a frame with a finishReason ends the answer. A
    frame holding ``{"error": ...}`` fails the stream."""

    __slots__ = ("_adapter",)
    end_marker = "a response with a finishReason"

    def __init__(self, ctx: AttemptContext, model: str, adapter: GeminiAdapter) -> None:
        super().__init__(ctx, model)
        self._adapter = adapter

    def feed(self, event: ServerSentEvent) -> str | None:
        try:
            chunk = loads(event.data)
        except ValueError:
            raise malformed(self.ctx, f"stream frame is not JSON: {event.data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise malformed(self.ctx, f"stream frame is not an object: {event.data[:80]!r}")
        if "error" in chunk:
            raise stream_error(self.ctx, chunk["error"])
        tokens = usage_of(chunk.get("usageMetadata"))
        if tokens is not None:
            self.ctx.input_tokens, self.ctx.output_tokens, self.cache_read_tokens = tokens
        self.model = chunk.get("modelVersion") or self.model
        texts = [t for t in (self._adapter.take_part(p, self.tool_calls) for p in _parts_of(chunk)) if t]
        reason = _finish(chunk)
        if reason:
            self.finish_reason = reason
            self.done = True
        return "".join(texts) or None


# -- pieces ---------------------------------------------------------------------------------------------


def made_id(index: int, name: Any, args: Any) -> str:
    """A stable id for a call the API gave none: the same call in the same place gets the same id."""
    key = json.dumps([index, name, args], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return MADE_ID_PREFIX + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def usage_of(meta: Any) -> tuple[int, int, int] | None:
    """(input, output, cache-read) tokens from a usageMetadata block, or None when there is none."""
    if not isinstance(meta, dict):
        return None

    def n(key: str) -> int:
        return int(meta.get(key) or 0)  # proto JSON leaves zero counts out

    return (
        n("promptTokenCount") + n("toolUsePromptTokenCount"),
        n("candidatesTokenCount") + n("thoughtsTokenCount"),
        n("cachedContentTokenCount"),
    )


def _parts_of(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    candidates = chunk.get("candidates")
    if not candidates:
        return []
    return (candidates[0].get("content") or {}).get("parts") or []


def _finish(chunk: dict[str, Any]) -> str | None:
    """The candidate's finishReason, or the reason a prompt was blocked (then there is no candidate)."""
    candidates = chunk.get("candidates")
    reason: str | None = (
        candidates[0].get("finishReason") if candidates else (chunk.get("promptFeedback") or {}).get("blockReason")
    )
    return reason


def _part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return {"text": part["text"]}
    if "url" in part:
        url = str(part["url"])
        guessed = mimetypes.guess_type(urlsplit(url).path)[0]
        mime = guessed if guessed and guessed.startswith("image/") else "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    return {"inlineData": {"mimeType": part["media_type"], "data": part["data"]}}


def _response_part(m: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    call_id = str(m.get("tool_call_id") or "")
    text = _text(m.get("content"))
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    response: dict[str, Any] = {
        "name": names.get(call_id) or m.get("name") or call_id,
        "response": value if isinstance(value, dict) else {"output": text},
    }
    if call_id and not call_id.startswith(MADE_ID_PREFIX):
        response["id"] = call_id
    return {"functionResponse": response}


def _add_tools(body: dict[str, Any], request: ChatRequest) -> None:
    if not request.tools:
        return
    declarations = []
    for t in request.tools:
        d: dict[str, Any] = {"name": t.name}
        if t.description:
            d["description"] = t.description
        d["parametersJsonSchema"] = dict(t.parameters)
        declarations.append(d)
    body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is not None:
        config: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")}
        if choice.mode == "tool":
            config["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": config}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in parts_of(content) if isinstance(p, dict))


# -- errors ---------------------------------------------------------------------------------------------


def google_error(body: bytes) -> dict[str, Any] | None:
    """The ``error`` object of Google's error body (also inside a one-element list), or None."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    err = payload.get("error") if isinstance(payload, dict) else None
    return err if isinstance(err, dict) and ("status" in err or "code" in err) else None


def classify(status: int, name: str, message: str, details: Any) -> str:
    """The error type of one of Google's error answers (``name`` is its canonical status)."""
    lowered = message.lower()
    details = details if isinstance(details, list) else []
    if status == 429 or name == "RESOURCE_EXHAUSTED":
        return "insufficient_quota" if _quota_spent(lowered, details) else "rate_limit"
    if (
        any(d.get("reason") == "API_KEY_INVALID" for d in details if isinstance(d, dict))
        or "api key not valid" in lowered
        or "api key expired" in lowered
    ):
        return "authentication"
    if all(p in lowered for p in _TOO_LONG):
        return "context_length"
    if name == "FAILED_PRECONDITION":  # billing not enabled, or the API not offered where the caller is
        return "insufficient_quota" if "billing" in lowered else "permission"
    if name == "UNAVAILABLE" and "overloaded" in lowered:
        return "overloaded"
    return classify_status(status, "", "", message)


def _quota_spent(lowered: str, details: list[Any]) -> bool:
    """A 429 no retry soon will cure: a per-day quota, a quota of 0 (the model is not in the plan),
    prepaid credits used up."""
    if "limit: 0," in lowered or "credits are depleted" in lowered or "prepayment" in lowered:
        return True
    for d in details:
        for v in (d.get("violations") or []) if isinstance(d, dict) else []:
            if isinstance(v, dict) and ("PerDay" in str(v.get("quotaId")) or str(v.get("quotaValue")) == "0"):
                return True
    return False


def retry_delay(details: Any, message: str = "") -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"13s"``, ``"0.700s"``), else from the message's
    "Please retry in 20.04s", else None."""
    for d in details if isinstance(details, list) else []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            raw = str(d.get("retryDelay") or "")
            try:
                return max(float(raw[:-1]), 0.0) if raw.endswith("s") else None
            except ValueError:
                return None
    m = _RETRY_IN.search(message)
    if m is None:
        return None
    value = float(m.group(1))
    return value / 1000.0 if m.group(2).lower() == "ms" else value


def stream_error(ctx: AttemptContext, err: Any) -> ProviderError:
    """An error frame inside a 200 stream: overloaded stays overloaded, anything else is a stream error."""
    err = err if isinstance(err, dict) else {"message": str(err)}
    name, message = str(err.get("status") or err.get("code") or ""), str(err.get("message") or "error frame")
    kind = "overloaded" if "overloaded" in message.lower() else "stream_error"
    return ctx.error(
        kind,
        f"mid-stream {name}: {message}" if name else f"mid-stream {message}",
        status_code=200,
        retry_after=retry_delay(err.get("details"), message),
    )
