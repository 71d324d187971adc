"""What a provider can do, and what a request needs.

    tools        function calling (``tools=``, ``tool_choice=``)
    vision       images in the prompt
    json_schema  structured output (``response_format=`` a JSON schema or a pydantic model)
    streaming    streamed answers

``ProviderSpec(capabilities=...)`` says it outright. Left out, the default comes from this table,
by wire format and model name (the first matching row wins):

    | api               | model matches                                   | capabilities                   |
    |-------------------|-------------------------------------------------|--------------------------------|
    | anthropic         | any                                             | all four                       |
    | gemini            | any                                             | all four                       |
    | openai, azure,    | gpt-4o, gpt-4.1, gpt-5, o1, o3, o4, chatgpt-4o,  | all four                       |
    | openai-responses  | gpt-4-turbo, *vision*, *-vl*, llava, pixtral,   |                                |
    | ollama            | gemma3, llama3.2-vision, llama4, qwen2.5vl,     |                                |
    |                   | minicpm-v, moondream, mistral-small3            |                                |
    | any other         | any other model                                 | tools, json_schema, streaming  |

A request that needs a capability goes only to providers that have it (filtered before the
strategy orders them); when none has it, a ``ConfigError`` names the capability and the providers
that lack it.

Some needs no spec declares: whether a provider meets them is up to its wire format's limits
(``WIRE_NEEDS``), whatever the model can do. They route the same way, so such a request is
served as asked by a provider whose API takes it, never changed behind the caller's back:

    image_url            an image given by URL: Ollama's API takes only the image's bytes
    temperature_above_1  a temperature above 1: Anthropic's range is 0 to 1 (the others' 0 to 2)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CAPABILITIES = ("tools", "vision", "json_schema", "streaming")

# need -> the apis whose wire format cannot carry it
WIRE_NEEDS: dict[str, frozenset[str]] = {
    "image_url": frozenset({"ollama"}),
    "temperature_above_1": frozenset({"anthropic"}),
}
_WIRE_REMEDIES = {
    "image_url": "pass the image itself ({'type': 'image', 'data': <bytes or base64>}) instead of its URL",
    "temperature_above_1": "give a temperature from 0 to 1",
}

_DECLARE = "declare it with ProviderSpec(capabilities={...}) if the model does support it"

_ALL = frozenset(CAPABILITIES)
_TEXT = frozenset({"tools", "json_schema", "streaming"})
_ALWAYS_ALL = frozenset({"anthropic", "gemini"})

# Model families known to take images, as their names appear across vendors, gateways and local servers.
_VISION_MODELS = re.compile(
    r"(^|[/:_-])(gpt-4o|gpt-4\.1|gpt-5|o1|o3|o4|chatgpt-4o|gpt-4-turbo|llava|bakllava|pixtral|gemma-?3|llama-?4"
    r"|llama-?3\.2-vision|qwen2(\.5)?-?vl|minicpm-v|moondream|mistral-small-?3|claude|gemini)"
    r"|vision|-vl\b",
    re.IGNORECASE,
)


def default_capabilities(api: str, model: str) -> frozenset[str]:
    if api in _ALWAYS_ALL:
        return _ALL
    return _ALL if _VISION_MODELS.search(model) else _TEXT


def check_capabilities(name: str, values: Iterable[str]) -> frozenset[str]:
    from ._errors import ConfigError

    if isinstance(values, str):
        values = [values]
    try:
        chosen = frozenset(values)
    except TypeError:
        raise ConfigError(
            f"providers.capabilities ({name}): expected a set of names from {', '.join(CAPABILITIES)}, got {values!r}",
            field="capabilities",
        ) from None
    unknown = sorted(str(v) for v in chosen - _ALL)
    if unknown:
        raise ConfigError(
            f"providers.capabilities ({name}): unknown capability {unknown[0]!r}; allowed: {', '.join(CAPABILITIES)}",
            field="capabilities",
        )
    return chosen


def unmet(needs: frozenset[str], api: str, capabilities: frozenset[str]) -> frozenset[str]:
    """What of ``needs`` a provider of ``api`` with ``capabilities`` cannot serve (empty: it can)."""
    missing = needs - capabilities  # a wire need is never a capability: it stays when the api cannot meet it
    if missing:
        missing = frozenset(n for n in missing if api in WIRE_NEEDS.get(n, (api,)))
    return missing


def describe_need(capability: str) -> str:
    return {
        "tools": "tools (tools= was given)",
        "vision": "vision (the prompt has an image)",
        "json_schema": "json_schema (response_format= was given)",
        "streaming": "streaming (a streamed answer was asked for)",
        "image_url": "image_url (an image is given by URL, which Ollama's API cannot fetch)",
        "temperature_above_1": "temperature_above_1 (temperature is above 1, Anthropic's highest)",
    }[capability]


def remedy(unserved: frozenset[str], *, pinned: bool = False) -> str:
    """What the user can do when no provider serves these needs (``pinned``: the request named
    its provider, so enabling another would change nothing)."""
    tips = [_WIRE_REMEDIES[n] for n in sorted(unserved) if n in WIRE_NEEDS]
    elsewhere = "name a provider that has it" if pinned else "enable a provider that has it"
    if tips and unserved <= WIRE_NEEDS.keys():
        text = "; ".join(tips) + (
            ", or name a provider whose API takes it" if pinned else ", or enable a provider whose API takes it"
        )
    else:
        text = "; ".join([*tips, f"{elsewhere}, or {_DECLARE}"])
    return text[:1].upper() + text[1:]
