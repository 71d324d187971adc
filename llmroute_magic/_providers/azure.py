"""Azure OpenAI chat completions, both URL forms, with the ``api-key`` header:

- the v1 API (default): ``POST {endpoint}/openai/v1/chat/completions``, the deployment named by
  ``model`` in the body;
- the legacy deployments API, when ``ProviderSpec(api_version=...)`` is given:
  ``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={api_version}``,
  the deployment being the request's (or the spec's) model.

``base_url`` is the resource endpoint (``https://RESOURCE.openai.azure.com``, what
``AZURE_OPENAI_ENDPOINT`` holds); one copied with ``/openai`` or ``/openai/v1`` at the end works too.

Bodies, answers, streams and tool calls are chat completions: ``OpenAIAdapter``'s translation,
unchanged. What is Azure's own:

- the output limit is ``max_completion_tokens`` on the v1 API and on api-versions from
  2024-09-01-preview on (reasoning models reject ``max_tokens`` there), ``max_tokens`` on older
  ones (2024-10-21 GA included: its contract has no other); a caller's own spelling in params wins;
- a prompt refused by the content filter (400, ``code: content_filter``, ``innererror``) is an
  ``invalid_request`` that names the filtered categories: it fails fast, no provider is asked to
  get round the filter; an answer stopped by it comes back as it is (``finish_reason:
  "content_filter"``, billed for what usage reports);
- a 429 whose retry-after is an hour or more is a spent daily quota, not a per-minute rate limit:
  ``insufficient_quota`` (the provider is dropped and cooled down instead of retried);
- ``DeploymentNotFound`` (404) says which deployment and where.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._errors import ProviderError
from ._base import ChatRequest
from ._failures import AttemptContext, error_from_status, parse_retry_after
from .openai import OpenAIAdapter

if TYPE_CHECKING:
    import httpx

    from .._types import ProviderSpec

# api-versions whose chat completions take max_completion_tokens: previews from this date on, and
# any version dated after the last GA one that knows only max_tokens.
_NEW_LIMIT_PREVIEWS_FROM = "2024-09-01"
_LAST_GA_WITH_MAX_TOKENS = "2024-10-21"
QUOTA_RETRY_AFTER_S = 3600.0  # Azure's rate limits are per minute: a wait of an hour or more is a spent quota
_ENDPOINT_SUFFIX = re.compile(r"/openai(/v1)?/*$")
_MAX_CACHED_URLS = 64


def endpoint_of(base_url: str) -> str:
    """The resource endpoint: ``base_url`` without a trailing ``/openai`` or ``/openai/v1``."""
    return _ENDPOINT_SUFFIX.sub("", base_url.rstrip("/"))


def max_tokens_field(api_version: str | None) -> str:
    """The name of the output limit the API version takes (None: the v1 API)."""
    if api_version is None:
        return "max_completion_tokens"
    date = api_version[:10]
    if date > _LAST_GA_WITH_MAX_TOKENS or (date >= _NEW_LIMIT_PREVIEWS_FROM and "preview" in api_version):
        return "max_completion_tokens"
    return "max_tokens"


class AzureAdapter(OpenAIAdapter):
    api = "azure"
    path = "/openai/v1/chat/completions"
    key_header = "api-key"
    key_scheme = ""

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        super().__init__(spec, client)
        import httpx

        self._endpoint = endpoint_of(spec.base_url or "")
        self._url = httpx.URL(self._endpoint + self.path)
        self._api_version = spec.api_version
        self._max_tokens_field = max_tokens_field(spec.api_version)
        self._deployment_urls: dict[str, Any] = {}  # deployment -> its legacy URL

    def url_for(self, request: ChatRequest, stream: bool) -> Any:
        if self._api_version is None:
            return self._url
        deployment = request.model_for(self.spec)
        url = self._deployment_urls.get(deployment)
        if url is None:
            import httpx

            url = httpx.URL(
                f"{self._endpoint}/openai/deployments/{quote(deployment, safe='')}/chat/completions",
                params={"api-version": self._api_version},
            )
            if len(self._deployment_urls) >= _MAX_CACHED_URLS:
                self._deployment_urls.clear()
            self._deployment_urls[deployment] = url
        return url

    def error_for_status(self, ctx: AttemptContext, status: int, body: bytes, headers: Any) -> ProviderError:
        err = _error_object(body)
        code = str(err.get("code") or "")
        message = err.get("message")
        if not isinstance(message, str):
            message = ""
        inner = err.get("innererror") or err.get("inner_error")
        inner = inner if isinstance(inner, dict) else {}
        if status == 400 and (code == "content_filter" or inner.get("code") == "ResponsibleAIPolicyViolation"):
            return ctx.error("invalid_request", _filtered_prompt(inner, message), status_code=status)
        if status == 429:
            wait = parse_retry_after(headers)
            if wait is not None and wait >= QUOTA_RETRY_AFTER_S:
                return ctx.error(
                    "insufficient_quota",
                    f"quota spent: Azure asks to retry after {wait:g} s ({message or code})",
                    status_code=status,
                    retry_after=wait,
                )
        if status == 404 and code == "DeploymentNotFound":
            return ctx.error(
                "not_found",
                f"DeploymentNotFound: no deployment {ctx.model!r} at {self._endpoint} "
                f"(the model name is the deployment's name on Azure): {message}",
                status_code=status,
                retry_after=parse_retry_after(headers),
            )
        return error_from_status(ctx, status, body, headers)


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    err = payload.get("error") if isinstance(payload, dict) else None
    return err if isinstance(err, dict) else {}


def _filtered_prompt(inner: dict[str, Any], message: str) -> str:
    results = inner.get("content_filter_result") or inner.get("content_filter_results") or {}
    flagged = (
        [
            f"{name}: {r.get('severity') or 'detected'}"
            for name, r in results.items()
            if isinstance(r, dict) and r.get("filtered")
        ]
        if isinstance(results, dict)
        else []
    )
    why = f" ({', '.join(flagged)})" if flagged else ""
    return (
        f"content_filter: Azure's content filter refused the prompt{why}; rephrase it, or change the "
        f"deployment's content filter policy. {message}"
    ).strip()
