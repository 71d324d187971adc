"""One request as every layer sees it, and the checks that make it.

The four request methods (``complete``, ``stream`` and their async forms) and the batch methods
take the same options, declared once in ``RequestOptions``. ``build_request`` validates them
and freezes the routing settings of the moment (strategy, fallback, retries), so a panel
switching strategy mid-request changes the next request, not this one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, NamedTuple, TypedDict, cast

from ._config import ProviderRoutingConfig
from ._content import (
    has_image,
    normalise_content,
    normalise_response_format,
    normalise_tool_choice,
    normalise_tools,
    text_of,
)
from ._errors import ConfigError
from ._providers._base import ChatRequest
from ._strategies import RequestInfo
from ._types import RoutingStrategy

Prompt = str | Sequence[Mapping[str, Any]]

_ROLES = ("system", "user", "assistant", "tool", "developer")


class RequestOptions(TypedDict, total=False):
    """Options every request method takes. Any other keyword goes into the provider's request
    body as given (``top_p=0.9``, ``stop=["\\n"]``, ``seed=1``)."""

    system: str | None  # the system prompt
    provider: str | None  # pin one provider: no routing, still retried
    strategy: RoutingStrategy | str | None  # this request only
    max_tokens: int | None
    temperature: float | None
    model: str | None  # instead of the provider's configured model, for this request (priced as such)
    tools: Sequence[Mapping[str, Any]] | None  # [{"name", "description", "parameters"}]
    tool_choice: str | Mapping[str, Any] | None  # "auto" | "none" | "required" | a tool's name
    response_format: Any  # a JSON schema (dict) or a pydantic model class; Completion.parsed holds the object
    conversation: str | None  # a label for the ledger's conversation column (never sent to the provider)


_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


class RoutingSettings(NamedTuple):
    """The config's routing knobs when the request was made."""

    strategy: RoutingStrategy
    fallback_enabled: bool
    max_retries: int


@dataclass(slots=True)
class Request:
    request_id: str
    chat: ChatRequest
    info: RequestInfo  # what strategies may know: prompt size, max_tokens
    provider: str | None  # pinned provider, or None to route
    settings: RoutingSettings
    streamed: bool
    started: float  # perf_counter() when the request began (a stream: when the caller began reading)
    needs: frozenset[str] = frozenset()  # capabilities a provider must have to serve it
    conversation: str | None = None  # the ledger's conversation label for every attempt of it


class RequestIds:
    """``<6 hex digits of this router>-<n>``: unique across routers and kernels writing one ledger."""

    def __init__(self) -> None:
        self._prefix = os.urandom(3).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


def build_request(
    prompt: Prompt,
    options: Mapping[str, Any],
    *,
    config: ProviderRoutingConfig,
    request_id: str,
    streamed: bool,
    settings: RoutingSettings | None = None,
) -> Request:
    """Validate ``prompt`` and ``options``; a mistake is a ConfigError naming the field.
    ``settings``: the config's routing settings, when the caller keeps them (saves building them)."""
    started = perf_counter()
    messages = normalise_messages(prompt)
    if settings is None or options.get("strategy") is not None:
        strategy = options.get("strategy")
        settings = RoutingSettings(
            config.strategy if strategy is None else RoutingStrategy.parse(strategy),
            config.fallback_enabled,
            config.max_retries,
        )
    if not options:  # the common call: a prompt and nothing else
        chat = ChatRequest(messages)
        return Request(
            request_id,
            chat,
            RequestInfo(max(1, chat.prompt_chars() // 4), None),
            None,
            settings,
            streamed,
            started,
            _NO_NEEDS if isinstance(prompt, str) else _needs(chat),  # plain text and no options: none
        )  # the size: estimate_tokens(chat), inlined on the hot path
    chat = _chat(messages, options, config)
    conversation = options.get("conversation")
    if conversation is not None:
        if not isinstance(conversation, str) or not conversation.strip():
            raise ConfigError(f"conversation: expected a non-empty label, got {conversation!r}", field="conversation")
        check_sendable(conversation, "conversation")
    info = RequestInfo(estimate_tokens(chat), chat.max_tokens)
    provider = options.get("provider")
    return Request(request_id, chat, info, provider, settings, streamed, started, _needs(chat), conversation)


def _chat(messages: list[dict[str, Any]], options: Mapping[str, Any], config: ProviderRoutingConfig) -> ChatRequest:
    """The neutral request, each option checked; options not named in RequestOptions are params."""
    params = {k: v for k, v in options.items() if k not in _OPTION_NAMES}
    system = options.get("system")
    max_tokens = options.get("max_tokens")
    temperature = options.get("temperature")
    if system is not None:
        if not isinstance(system, str):
            raise ConfigError(f"system: expected a string, got {type(system).__name__}", field="system")
        check_sendable(system, "system")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ConfigError(f"max_tokens: expected a whole number >= 1, got {max_tokens!r}", field="max_tokens")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2
    ):
        raise ConfigError(f"temperature: expected a number from 0 to 2, got {temperature!r}", field="temperature")
    if options.get("provider") is not None:
        config.provider(options["provider"])  # raises ConfigError naming the configured providers
    model = options.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigError(f"model: expected a model name, got {model!r}", field="model")
    tools = normalise_tools(options.get("tools"))
    return ChatRequest(
        messages,
        system,
        max_tokens,
        temperature,
        params,
        model,
        tools,
        normalise_tool_choice(options.get("tool_choice"), tools),
        normalise_response_format(options.get("response_format")),
    )


def estimate_tokens(chat: ChatRequest) -> int:
    """The prompt's size in tokens as routing estimates it (about 4 characters a token, at least 1).
    Whoever trims a prompt to fit a context window (a notebook conversation) uses this same figure."""
    return max(1, chat.prompt_chars() // 4)


def estimate_prompt_tokens(prompt: Prompt, system: str | None = None) -> int:
    """``estimate_tokens`` of a prompt (a string or messages) and a system prompt, before a request is built."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return estimate_tokens(ChatRequest(cast("list[dict[str, Any]]", messages), system))


_NO_NEEDS: frozenset[str] = frozenset()


def _needs(chat: ChatRequest) -> frozenset[str]:
    """The capabilities, and the wire formats' limits (``_capabilities.WIRE_NEEDS``), a provider must meet."""
    hot = chat.temperature is not None and chat.temperature > 1
    if (
        not chat.tools
        and chat.response_format is None
        and not hot
        and all(isinstance(m["content"], str) for m in chat.messages)
    ):
        return _NO_NEEDS
    needs = set()
    if chat.tools and (chat.tool_choice is None or chat.tool_choice.mode != "none"):
        needs.add("tools")
    if chat.response_format is not None:
        needs.add("json_schema")
    if has_image(chat.messages):
        needs.add("vision")
        if any(isinstance(m["content"], list) and any("url" in p for p in m["content"]) for m in chat.messages):
            needs.add("image_url")
    if hot:
        needs.add("temperature_above_1")
    return frozenset(needs)


def check_sendable(text: str, field: str) -> None:
    """Text must encode as UTF-8 to go on the wire. A lone surrogate (from a bad decode or a
    sliced emoji) otherwise fails every attempt deep in the JSON encoder, retried as if the
    provider had misbehaved."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(
            f"{field}: not valid Unicode text: lone surrogate {text[e.start]!r} at position {e.start} "
            "(often a badly decoded file or a cut emoji); fix the text, e.g. "
            "text.encode('utf-8', 'replace').decode()",
            field=field.split("[")[0].split(".")[0],
        ) from None


def normalise_messages(prompt: Any) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError(
                "prompt: empty; give the text to send (a string or a list of {'role', 'content'} messages)",
                field="prompt",
            )
        check_sendable(prompt, "prompt")
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise ConfigError(
                "prompt: empty message list; give at least one {'role': 'user', 'content': ...}", field="prompt"
            )
        out = []
        for i, m in enumerate(prompt):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise ConfigError(
                    f"prompt[{i}]: expected a dict with 'role' and 'content', got {m!r:.80}", field="prompt"
                )
            if m["role"] not in _ROLES:
                raise ConfigError(
                    f"prompt[{i}].role: unknown role {m['role']!r}; allowed: {', '.join(_ROLES)}", field="prompt"
                )
            content = "" if m["content"] is None and m.get("tool_calls") else m["content"]
            content = normalise_content(content, f"prompt[{i}].content")
            check_sendable(text_of(content), f"prompt[{i}].content")
            out.append({**m, "content": content})
        return out
    raise ConfigError(f"prompt: expected a string or a list of messages, got {type(prompt).__name__}", field="prompt")
