"""Azure OpenAI chat completions, both URL forms (SDK base URL ``.../<provider>``, the resource endpoint):

- the v1 API: ``POST /<provider>/openai/v1/chat/completions`` (``OpenAI(base_url=".../openai/v1/")``);
  the model in the body names the deployment;
- the legacy deployments API: ``POST /<provider>/openai/deployments/<deployment>/chat/completions
  ?api-version=V`` (``AzureOpenAI(azure_endpoint=..., api_version=V)``); the deployment in the path
  decides (the body's ``model`` may be left out and is ignored), ``api-version`` is required.

The key comes in the ``api-key`` header (or, as the v1 API also takes, ``Authorization: Bearer``).

Requests and answers are OpenAI's chat completions (``openai.py``; this format subclasses it), with
what Azure adds: ``prompt_filter_results`` on every answer and a ``content_filter_results`` per
choice; usage with ``prompt_tokens_details`` (``cached_tokens``) and ``completion_tokens_details``;
streams that open with Azure's annotation chunk (``choices: []``, empty ``id`` and ``model``, the
prompt's filter results) before the completion's chunks.

Azure's content filter, simulated deterministically: a last user turn containing
``PROMPT_FILTER_TRIGGER`` is refused with Azure's 400 (``code: content_filter``, ``innererror:
{code: ResponsibleAIPolicyViolation, content_filter_result}``), counted and not billed; one
containing ``COMPLETION_FILTER_TRIGGER`` gets an answer stopped by the filter: ``finish_reason:
content_filter``, no content in a plain answer, half the text in a stream, billed for every token
the usage reports (a text or JSON answer; tool calls are not filtered).

Errors are Azure's: ``{"error": {"code", "message", ...}}`` — ``code: "429"`` with retry-after,
retry-after-ms and x-ratelimit-remaining-* headers; ``insufficient_quota`` as Azure says it, a 429
whose retry-after is a day (a daily token quota, not a per-minute rate); ``"401"`` for a wrong
key; ``PermissionDenied`` (403); ``DeploymentNotFound`` (404); the model's own
``context_length_exceeded`` and body validation errors in OpenAI's shape, as Azure passes them on.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .._answers import Answer
from .._neutral import USER, BadRequest, SimRequest
from ._base import ERROR_STATUS, FAULT_STATUS, Call, Reply, Route, Step, Usage, dumps, json_object
from .openai import OpenAIChat

if TYPE_CHECKING:
    from .._profiles import ProviderProfile

PROMPT_FILTER_TRIGGER = "[[azure-content-filter:prompt]]"
COMPLETION_FILTER_TRIGGER = "[[azure-content-filter:completion]]"
PROMPT_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
QUOTA_RETRY_AFTER_S = 86_400  # a daily token quota: Azure's 429 asks to come back tomorrow

_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_SAFE = {c: {"filtered": False, "severity": "safe"} for c in _CATEGORIES}
_FLAGGED = {**_SAFE, "violence": {"filtered": True, "severity": "medium"}}  # what the simulated filter "found"
_ANNOTATION = (
    b"data: "
    + dumps(
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE}],
        }
    )
    + b"\n\n"
)

# fault kind -> (error code, message) in Azure's gateway shape
_FAULTS: dict[str, tuple[str, str]] = {
    "server_error": ("InternalServerError", FAULT_STATUS["server_error"][1]),
    "stream_error": ("InternalServerError", FAULT_STATUS["stream_error"][1]),
    "bad_gateway": ("BadGateway", FAULT_STATUS["bad_gateway"][1]),
    "unavailable": (
        "ServiceUnavailable",
        "The service is temporarily unable to process your request. Please try again later (simulated).",
    ),
    "gateway_timeout": ("Timeout", "The operation was timeout (simulated)."),
    "overloaded": ("Overloaded", "The service is overloaded (simulated)."),
    "unauthorized": (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource (simulated).",
    ),
    "forbidden": ("PermissionDenied", "The principal does not have permission to use this deployment (simulated)."),
    "model_not_found": (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created "
        "the deployment within the last 5 minutes, please wait a moment and "
        "try again (simulated).",
    ),
}


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """Azure's error shape: ``{"error": {"code", "message", ...}}``."""
    return dumps({"error": {"code": code, "message": message, **extra}})


def _rate_limit(version: str, retry_after_s: float | None) -> Reply:
    when = (
        f"Please retry after {math.ceil(retry_after_s)} seconds."
        if retry_after_s is not None
        else "Please retry later."
    )
    message = (
        f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version {version} have "
        f"exceeded token rate limit of your current OpenAI S0 pricing tier. {when} Please go here: "
        "https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit "
        "(simulated)."
    )
    headers = None
    if retry_after_s is not None:
        headers = {
            "retry-after": str(math.ceil(retry_after_s)),
            "retry-after-ms": str(math.ceil(retry_after_s * 1000)),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "0",
        }
    return Reply(429, error_body("429", message), headers)


class AzureChat(OpenAIChat):
    api = "azure"
    routes = (
        Route("openai/v1/chat/completions"),
        Route("openai/deployments/{deployment}/chat/completions", "deployments"),
    )
    base_path = ""
    id_prefix = "chatcmpl-azsim"

    def api_key(self, call: Call) -> str | None:
        got = call.header(b"api-key")
        if got is not None:
            return got
        auth = call.header(b"authorization") or ""
        return auth[7:] if auth[:7].lower() == "bearer " else None

    def spec_fields(self, profile: ProviderProfile) -> dict[str, Any]:
        # A profile that asks for the legacy deployments URL (an ``api_version`` field) gets specs that use it.
        version = getattr(profile, "api_version", None)
        return {"api_version": version} if version else {}

    # -- requests -------------------------------------------------------------------------------
    def parse(self, body: bytes, call: Call) -> SimRequest:
        version = "v1"
        if call.endpoint == "deployments":
            version = call.query.get("api-version") or ""
            if not version:
                raise BadRequest(
                    "api-version: the query parameter api-version is required on "
                    "/openai/deployments/{deployment}/chat/completions (e.g. ?api-version=2024-10-21).",
                    "api-version",
                )
            data = json_object(body)
            data["model"] = call.params["deployment"]  # the deployment in the path decides
            body = dumps(data)
        req = super().parse(body, call)
        last_user = next((text for role, text in reversed(req.turns) if role == USER), "")
        if PROMPT_FILTER_TRIGGER in last_user:
            raise BadRequest(PROMPT_FILTERED, "prompt")
        req.extras = {"api_version": version, "filter_completion": COMPLETION_FILTER_TRIGGER in last_user}
        return req

    # -- answers --------------------------------------------------------------------------------
    @staticmethod
    def _usage(usage: Usage) -> dict:
        return {
            "completion_tokens": usage.output_tokens,
            "completion_tokens_details": {
                "accepted_prediction_tokens": 0,
                "audio_tokens": 0,
                "reasoning_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
            "prompt_tokens": usage.input_tokens,
            "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }

    @staticmethod
    def _filtered(req: SimRequest, answer: Answer) -> bool:
        return bool(req.extras and req.extras.get("filter_completion")) and not answer.tool_calls

    def render(self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None) -> bytes:
        body = json.loads(super().render(rid, req, answer, usage))
        choice = body["choices"][0]
        if self._filtered(req, answer):
            choice["finish_reason"] = "content_filter"
            choice["message"]["content"] = None
            choice["content_filter_results"] = _FLAGGED
        else:
            choice["content_filter_results"] = _SAFE
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _SAFE}]
        if usage is not None:
            body["usage"] = self._usage(usage)
        return dumps(body)

    def render_stream(
        self, rid: str, req: SimRequest, answer: Answer, usage: Usage | None, fault: str | None
    ) -> list[Step]:
        if fault == "malformed_json":
            return super().render_stream(rid, req, answer, usage, fault)
        filtered = fault is None and self._filtered(req, answer)
        shown = answer.prefix(max(1, answer.output_tokens // 2)) if filtered else answer
        steps = super().render_stream(rid, req, shown, usage, fault)
        return [(_ANNOTATION, False, None)] + [
            (_annotate(frame, filtered), paced, bill) for frame, paced, bill in steps
        ]

    # -- errors ---------------------------------------------------------------------------------
    def fault(self, kind: str, req: SimRequest, profile: ProviderProfile, retry_after_s: float) -> Reply:
        version = (req.extras or {}).get("api_version", "v1")
        if kind == "rate_limit":
            return _rate_limit(version, retry_after_s)
        if kind == "rate_limit_no_retry_after":
            return _rate_limit(version, None)
        if kind == "insufficient_quota":
            return _rate_limit(version, QUOTA_RETRY_AFTER_S)
        if kind in ("context_length", "invalid_request"):
            return super().fault(kind, req, profile, retry_after_s)  # the model's own 400s, in OpenAI's shape
        code, message = _FAULTS[kind]
        return Reply(FAULT_STATUS[kind][0], error_body(code, message))

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        if kind == "invalid_request" and message == PROMPT_FILTERED:
            return Reply(
                400,
                error_body(
                    "content_filter",
                    message,
                    param="prompt",
                    status=400,
                    innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": _FLAGGED},
                ),
            )
        if kind == "invalid_request":
            return super().error(kind, message, param)  # body validation, as the model's API words it
        return Reply(ERROR_STATUS[kind], error_body(str(ERROR_STATUS[kind]), message))


def _annotate(frame: bytes, filtered: bool) -> bytes:
    """A chat.completion.chunk frame with Azure's per-choice ``content_filter_results``; the finishing
    chunk of a filtered completion says ``content_filter``. Other frames ([DONE], errors) pass as they are."""
    if not frame.startswith(b"data: {"):
        return frame
    chunk = json.loads(frame[6:])
    choices = chunk.get("choices")
    if not choices:
        return frame
    choice = choices[0]
    if choice.get("finish_reason"):
        if filtered:
            choice["finish_reason"] = "content_filter"
        choice["content_filter_results"] = _FLAGGED if filtered else _SAFE
    elif choice["delta"].get("content") or choice["delta"].get("tool_calls"):
        choice["content_filter_results"] = _SAFE
    else:
        choice["content_filter_results"] = {}  # the role chunk: nothing to judge yet
    return b"data: " + dumps(chunk) + b"\n\n"
