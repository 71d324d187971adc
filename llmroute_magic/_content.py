"""What a request may carry besides text, in neutral form: images, tools, and a schema for the answer.

Every wire format translates these (``_providers/``); the router routes on what they need
(``_capabilities``) and checks the answer against the schema, so a provider that answers a
schema request with prose is a retryable failure, not a silent one.

    message content  "text"  or  [{"type": "text", "text": ...},
                                  {"type": "image", "url": "https://..."},
                                  {"type": "image", "data": <base64 str or bytes>, "media_type": "image/png"}]
                     (OpenAI's {"type": "image_url", "image_url": {"url": ...}} and data: URLs are accepted)
    tools            [{"name", "description", "parameters": <JSON schema>}]
    tool_choice      "auto" | "none" | "required" | a tool's name
    response_format  a JSON schema (dict) or a pydantic model class
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.S)
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]  # a JSON schema of an object


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: str  # "auto" | "none" | "required" | "tool"
    name: str | None = None  # the tool, when mode == "tool"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The schema an answer must meet, and the pydantic model that reads it (if one was given)."""

    name: str
    schema: Mapping[str, Any]
    model: Any = None

    def parse(self, text: str) -> Any:
        """The answer as an object; ValueError saying why when it does not meet the schema."""
        body = _strip_fence(text)
        if self.model is not None:
            try:
                return self.model.model_validate_json(body)
            except Exception as e:  # pydantic's ValidationError and JSON errors alike
                raise ValueError(f"the answer does not fit {self.name}: {_first_line(e)}") from None
        try:
            data = json.loads(body)
        except ValueError as e:
            raise ValueError(f"the answer is not JSON ({e}): {body[:60]!r}") from None
        import jsonschema

        try:
            jsonschema.validate(data, dict(self.schema))
        except jsonschema.ValidationError as e:
            raise ValueError(f"the answer does not meet the schema: {e.message}") from None
        return data


def normalise_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content as a string or a list of neutral text/image parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, Sequence) or isinstance(content, (bytes, bytearray)):
        raise ConfigError(f"{where}: expected text or a list of parts, got {type(content).__name__}", field="prompt")
    parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
    if not parts:
        raise ConfigError(f"{where}: an empty list of parts; give text or an image", field="prompt")
    return parts


def _part(part: Any, where: str) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, Mapping):
        raise ConfigError(
            f"{where}: expected a part like {{'type': 'text', 'text': ...}}, got {part!r:.60}", field="prompt"
        )
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":  # OpenAI's spelling
        url = part.get("image_url")
        part = {"type": "image", "url": url.get("url") if isinstance(url, Mapping) else url}
        kind = "image"
    if kind == "image":
        return _image(part, where)
    raise ConfigError(f"{where}.type: unknown part {kind!r}; allowed: text, image", field="prompt")


def _image(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url, data = part.get("url"), part.get("data")
    if isinstance(url, str) and url.startswith("data:"):
        m = _DATA_URL.match(url)
        if m is None:
            raise ConfigError(f"{where}.url: a data: URL must be data:<type>;base64,<data>", field="prompt")
        url, data, part = None, m["data"], {**part, "media_type": m["type"]}
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"type": "image", "url": url}
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
        encoded = base64.b64encode(raw).decode("ascii")
    elif isinstance(data, str):
        encoded = "".join(data.split())
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}.data: not valid base64", field="prompt") from None
    else:
        raise ConfigError(
            f"{where}: an image needs url= (http, https or data:) or data= (bytes or base64)", field="prompt"
        )
    media_type = part.get("media_type") or sniff_media_type(raw)
    if media_type not in IMAGE_TYPES:
        raise ConfigError(
            f"{where}.media_type: {media_type!r} is not an image type providers take; allowed: "
            f"{', '.join(IMAGE_TYPES)}",
            field="prompt",
        )
    return {"type": "image", "data": encoded, "media_type": media_type}


def sniff_media_type(raw: bytes) -> str | None:
    for magic, media_type in _MAGIC:
        if raw.startswith(magic) and (media_type != "image/webp" or raw[8:12] == b"WEBP"):
            return media_type
    return None


def has_image(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        isinstance(m.get("content"), list) and any(p.get("type") == "image" for p in m["content"]) for m in messages
    )


def text_of(content: Any) -> str:
    """The text parts of a content, joined (what a text-only path sees)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return "" if content is None else str(content)


def normalise_tools(tools: Any) -> tuple[Tool, ...]:
    if tools is None:
        return ()
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ConfigError("tools: expected a list of {'name', 'description', 'parameters'}", field="tools")
    out: list[Tool] = []
    for i, t in enumerate(tools):
        if isinstance(t, Mapping) and t.get("type") == "function" and isinstance(t.get("function"), Mapping):
            t = t["function"]  # OpenAI's spelling
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str) or not _TOOL_NAME.match(t["name"]):
            raise ConfigError(
                f"tools[{i}]: expected a dict with a name of letters, digits, '_' or '-' "
                "(at most 64), a description and parameters (a JSON schema)",
                field="tools",
            )
        params = t.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping):
            raise ConfigError(f"tools[{i}].parameters: expected a JSON schema (a dict)", field="tools")
        out.append(Tool(t["name"], str(t.get("description") or ""), dict(params)))
    if len({t.name for t in out}) != len(out):
        raise ConfigError("tools: two tools share a name; names must be unique", field="tools")
    return tuple(out)


def normalise_tool_choice(choice: Any, tools: tuple[Tool, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, Mapping):  # {"name": x} or OpenAI's {"type": "function", "function": {"name": x}}
        choice = (choice.get("function") or {}).get("name") if "function" in choice else choice.get("name")
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    names = [t.name for t in tools]
    if isinstance(choice, str) and choice in names:
        return ToolChoice("tool", choice)
    raise ConfigError(
        f"tool_choice: expected auto, none, required or a tool's name ({', '.join(names) or 'no tools'}),"
        f" got {choice!r}",
        field="tool_choice",
    )


def normalise_response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    if isinstance(value, type) and hasattr(value, "model_json_schema") and hasattr(value, "model_validate_json"):
        return ResponseFormat(value.__name__, value.model_json_schema(), value)
    if isinstance(value, Mapping):
        if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), Mapping):
            inner = value["json_schema"]  # OpenAI's spelling
            return ResponseFormat(str(inner.get("name") or "answer"), dict(inner.get("schema") or {}))
        _check_schema(value)
        return ResponseFormat(str(value.get("title") or "answer"), dict(value))
    raise ConfigError(
        f"response_format: expected a JSON schema (a dict) or a pydantic model class, got {type(value).__name__}",
        field="response_format",
    )


def _check_schema(schema: Mapping[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ConfigError(f"response_format: not a valid JSON schema: {e.message}", field="response_format") from None


def _strip_fence(text: str) -> str:
    m = re.match(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", text, re.S)
    return m.group(1) if m else text.strip()


def _first_line(e: BaseException) -> str:
    """pydantic's message without its "For further information visit ..." line."""
    lines = [x for x in str(e).strip().splitlines() if not x.strip().startswith("For further information")]
    return " ".join(x.strip() for x in lines[:3]) if lines else type(e).__name__
