"""Small pieces every wire format's translation uses: images as URLs, tool calls from JSON.

The neutral forms are ``_content.py``'s; each adapter module maps them onto its own API and back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from .._types import ToolCall


def data_url(part: Mapping[str, Any]) -> str:
    """An image part as one URL: its own https URL, or a data: URL of its bytes."""
    if "url" in part:
        return str(part["url"])
    return f"data:{part['media_type']};base64,{part['data']}"


def parts_of(content: Any) -> Iterator[Mapping[str, Any]]:
    """A message content as neutral parts (a plain string is one text part)."""
    if isinstance(content, str):
        if content:
            yield {"type": "text", "text": content}
        return
    yield from content or ()


def tool_call(call_id: Any, name: Any, arguments: Any) -> ToolCall:
    """A ToolCall from what a provider sent; arguments may be a JSON string or an object already.
    ValueError when they are not a JSON object (the adapter reports a malformed, retryable answer)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise ValueError(f"tool call {name!r} has arguments that are not JSON: {arguments[:60]!r}") from None
    if not isinstance(arguments, dict) or not isinstance(name, str) or not name:
        raise ValueError(f"tool call {name!r} has no name, or arguments that are not an object")
    return ToolCall(str(call_id or f"call_{name}"), name, arguments)


def arguments_json(call: Any) -> str:
    """A tool call's arguments as the JSON text formats that resend them expect."""
    args = call.arguments if isinstance(call, ToolCall) else (call.get("arguments") or {})
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def calls_of(message: Mapping[str, Any]) -> list[ToolCall]:
    """The tool calls an assistant message of the conversation made (ToolCalls or plain dicts)."""
    out = []
    for c in message.get("tool_calls") or ():
        if isinstance(c, ToolCall):
            out.append(c)
        else:
            fn = c.get("function") if isinstance(c.get("function"), Mapping) else c
            args = fn.get("arguments") or {}
            out.append(
                ToolCall(
                    str(c.get("id") or ""),
                    str(fn.get("name") or ""),
                    json.loads(args) if isinstance(args, str) else dict(args),
                )
            )
    return out
