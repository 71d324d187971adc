"""What ``%%llm`` takes from the notebook besides text: a schema for the answer, tools, images.

    %%llm --schema City -o city      City: a pydantic model (or a JSON schema dict); city = the object
    %%llm --tools get_weather        a Python function (its signature is the tool's schema), a tool
                                     dict, or a list of them; the calls the model asks for are shown
    Describe {photo} in one line.    photo: PNG/JPEG/GIF/WebP bytes or a PIL image: sent as an image

Nothing here runs a tool or evaluates anything: names are looked up in the namespace, functions
are only inspected. Mistakes are UsageErrors that say what to pass.
"""

from __future__ import annotations

import inspect
import io
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any

from IPython.core.error import UsageError

from .._content import sniff_media_type

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


def schema_option(name: str, namespace: Mapping[str, Any]) -> Any:
    """``--schema VAR``: a pydantic model class or a JSON schema dict from the namespace."""
    value = namespace.get(name, None)
    if value is None:
        raise UsageError(
            f"--schema: no variable {name!r}; define a pydantic model (class City(BaseModel): ...) "
            "or a JSON schema dict with that name"
        )
    is_model = isinstance(value, type) and hasattr(value, "model_json_schema")
    if not is_model and not isinstance(value, Mapping):
        raise UsageError(
            f"--schema: {name!r} is a {type(value).__name__}; give a pydantic model class or a JSON schema dict"
        )
    return value


def tools_option(names: str, namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``--tools A,B``: each a Python function, a tool dict, or a list of tool dicts."""
    tools: list[dict[str, Any]] = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name not in namespace:
            raise UsageError(
                f"--tools: no variable {name!r}; give Python functions or tool dicts "
                "({'name', 'description', 'parameters'}) by name, separated by commas"
            )
        value = namespace[name]
        if callable(value) and not isinstance(value, type):
            tools.append(tool_from_function(value))
        elif isinstance(value, Mapping):
            tools.append(dict(value))
        elif isinstance(value, (list, tuple)) and all(isinstance(t, Mapping) for t in value):
            tools.extend(dict(t) for t in value)
        else:
            raise UsageError(f"--tools: {name!r} is a {type(value).__name__}; give a function or tool dicts")
    if not tools:
        raise UsageError("--tools: name at least one function or tool dict")
    return tools


def tool_from_function(fn: Callable[..., Any]) -> dict[str, Any]:
    """A tool description from a function: its name, the first paragraph of its docstring, and a
    JSON schema of its parameters from their annotations (unannotated ones take any value)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - forward references that do not resolve: fall back to raw annotations
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        properties[p.name] = _json_schema_of(hints.get(p.name, p.annotation))
        if p.default is p.empty:
            required.append(p.name)
    doc = inspect.getdoc(fn) or ""
    return {
        "name": fn.__name__,
        "description": doc.split("\n\n")[0].strip(),
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


def _json_schema_of(annotation: Any) -> dict[str, Any]:
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": _json_schema_of(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = [_json_schema_of(a) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    return {}


def image_part(value: Any) -> dict[str, Any] | None:
    """An image content part when ``value`` is an image (bytes in a known image format, a PIL
    image, or IPython's ``Image`` with data); None for anything else (it is then text)."""
    data = None
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif type(value).__module__.startswith("PIL.") and hasattr(value, "save"):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data = buf.getvalue()
    elif type(value).__name__ == "Image" and isinstance(getattr(value, "data", None), bytes):
        data = value.data  # IPython.display.Image
    if data is None or sniff_media_type(data) is None:
        return None
    return {"type": "image", "data": data}


def image_content(marked: str, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text and image parts in the order the prompt names them (``marked`` holds a mark per image)."""
    from .interpolate import IMAGE_MARK

    parts: list[dict[str, Any]] = []
    for i, text in enumerate(marked.split(IMAGE_MARK)):
        if text.strip():
            parts.append({"type": "text", "text": text})
        if i < len(images):
            parts.append(images[i])
    return parts


def tool_calls_markdown(calls: Any) -> str:
    """The calls a model asked for, one per line, as Python-looking calls (not run)."""
    lines = []
    for c in calls:
        args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in c.arguments.items())
        lines.append(f"- `{c.name}({args})`")
    return "**The model asks to call** (not run; `-o VAR` keeps them in `VAR.tool_calls`):\n" + "\n".join(lines)
