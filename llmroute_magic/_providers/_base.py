"""The one small interface every wire format implements.

An adapter turns a ``ChatRequest`` into one HTTP call at one provider and returns a
``ProviderResult``, or raises ``ProviderError`` with an ``error_type`` from ``_errors.ERROR_POLICY``.
It never retries, never falls back and never records usage: the router does that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._content import text_of

if TYPE_CHECKING:  # httpx is imported lazily by the router, not at package import
    import httpx

    from .._content import ResponseFormat, Tool, ToolChoice
    from .._types import ProviderSpec, ToolCall
    from ._failures import AttemptContext


@dataclass(slots=True)
class ChatRequest:
    """A request in neutral form (``_content.py`` describes the parts).

    ``messages`` are ``{"role", "content"}`` dicts without the system prompt; content is text or a
    list of text and image parts. ``model`` overrides the spec's model for this request.
    """

    messages: list[dict[str, Any]]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None

    def prompt_chars(self) -> int:
        n = len(self.system or "")
        for m in self.messages:
            c = m.get("content")
            n += len(c) if isinstance(c, str) else len(text_of(c)) + 1000 * _images(c)
        return n

    def model_for(self, spec: ProviderSpec) -> str:
        return self.model or spec.model


@dataclass(slots=True)
class ProviderResult:
    """What one successful attempt returned, as the provider reported it.

    ``input_tokens`` counts every prompt token, cached ones included (OpenAI's meaning);
    ``cache_read_tokens`` and ``cache_write_tokens`` are the shares of it read from and written
    to the provider's prompt cache, each priced at its own rate. Tokens are None when the
    provider reported no usage: unknown, never 0.
    """

    text: str
    model: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    finish_reason: str | None = None
    http_status: int = 200
    tool_calls: tuple[ToolCall, ...] = ()
    ttft_s: float | None = None  # set by streaming calls: seconds from send to first text


def _images(content: Any) -> int:
    return (
        sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image") if isinstance(content, list) else 0
    )


# A stream yields text deltas (str) and ends with exactly one ProviderResult.
StreamItem = str | ProviderResult


class RefusedFields:
    """Fields of a format's own (not the caller's) that a provider refused, so they are left out.

    A refusal read from an error body is on trial until a request without the field is answered:
    if that request is refused as well, the error only quoted the field (a server echoing the whole
    request in its message), the field was never the cause, and it is sent again."""

    __slots__ = ("_refused", "_on_trial")

    def __init__(self) -> None:
        self._refused: set[str] = set()
        self._on_trial: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return name in self._refused

    def __repr__(self) -> str:
        return f"RefusedFields({sorted(self._refused)}, on trial: {sorted(self._on_trial)})"

    @property
    def on_trial(self) -> bool:
        return bool(self._on_trial)

    def add(self, name: str, *, on_trial: bool = False) -> None:
        self._refused.add(name)
        if on_trial:
            self._on_trial.add(name)

    def answered(self) -> None:
        """A request without the fields on trial was answered: their refusals stand."""
        self._on_trial.clear()

    def refused_anyway(self) -> None:
        """A request without the fields on trial was refused too: they were not the cause."""
        self._refused -= self._on_trial
        self._on_trial.clear()


class ProviderAdapter:
    """Base of the per-wire-format adapters. One instance per provider per router."""

    api: str = ""

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self.client = client
        # Fields of the format's own that this provider refused: not sent to it again. The router
        # gives a provider's adapters on every event loop one shared record.
        self.refused_fields = RefusedFields()

    async def complete(self, request: ChatRequest, ctx: AttemptContext | None = None) -> ProviderResult:
        """The whole answer. ``ctx`` (made by the caller, who keeps it) collects what was received."""
        raise NotImplementedError

    def stream(self, request: ChatRequest, ctx: AttemptContext | None = None) -> AsyncIterator[StreamItem]:
        """Text deltas, then exactly one ProviderResult. ``ctx`` as for ``complete``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        spec = self.spec
        return f"{type(self).__name__}(name={spec.name!r}, model={spec.model!r}, base_url={spec.base_url!r})"
