"""``{name}`` interpolation of a cell's prompt from the user namespace.

Rules, chosen so that prompts full of braces (JSON, code, templates) survive untouched:
- ``{name}`` and ``{name.attr.attr}`` are replaced by ``str()`` of the value; a literal
  subscript is allowed too: ``{rows[0]}``, ``{cfg['model']}``.
- ``{{`` and ``}}`` are literal ``{`` and ``}``.
- Anything else between braces (unknown names, expressions, JSON) is left exactly as written.
Nothing is evaluated: names are looked up, attributes fetched with ``getattr`` (never private
ones, so ``{obj.__class__}`` or ``{spec._secret}`` cannot reach internals), subscripts indexed
with the literal key.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}\n]*)\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PART = re.compile(
    r"\.(?P<attr>[A-Za-z][A-Za-z0-9_]*)"  # .attr (no leading underscore)
    r"|\[(?P<key>-?\d+|'[^'\\]*'|\"[^\"\\]*\")\]"  # [0], ['key'], ["key"]
)
_HEAD = re.compile(_NAME)
_MISSING = object()


_REFERENCE = re.compile(rf"{_NAME}(?:{_PART.pattern})*\Z")


def is_reference(inner: str) -> bool:
    """Whether the text between braces has the shape of a reference (``name``, ``a.b``, ``rows[0]``).

    JSON, code and expressions between braces do not: they are meant literally, not mistyped.
    """
    return _REFERENCE.match(inner) is not None


IMAGE_MARK = "\ufffc"  # object replacement character: where an image goes between text parts


def interpolate(
    text: str,
    namespace: Mapping[str, Any],
    *,
    unresolved: list[str] | None = None,
    images: list[Any] | None = None,
    image_of: Callable[[Any], Any] | None = None,
) -> str:
    """Return ``text`` with ``{name}`` references filled from ``namespace``.

    References that cannot be resolved are kept verbatim and, if ``unresolved`` is given, the
    ones shaped like a reference (``{typo}``, ``{doc.titel}``; not JSON or code) are appended to
    it, so a caller can tell the user which names were left alone. With ``images`` and
    ``image_of``, a value ``image_of`` turns into an image part is appended to ``images`` and
    stands in the text as ``IMAGE_MARK`` (the caller splits the text there).
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = resolve(match.group(1), namespace)
        if value is _MISSING:
            if unresolved is not None and is_reference(match.group(1)):
                unresolved.append(match.group(1))
            return token
        if images is not None and image_of is not None:
            part = image_of(value)
            if part is not None:
                images.append(part)
                return IMAGE_MARK
        return str(value)

    return _TOKEN.sub(replace, text)


def resolve(reference: str, namespace: Mapping[str, Any]) -> Any:
    """The value ``reference`` names in ``namespace``, or the private ``_MISSING`` sentinel."""
    head = _HEAD.match(reference)
    if head is None:
        return _MISSING
    try:
        value = namespace[head.group(0)]
    except KeyError:
        return _MISSING
    pos = head.end()
    while pos < len(reference):
        part = _PART.match(reference, pos)
        if part is None:
            return _MISSING
        try:
            if part.group("attr") is not None:
                value = getattr(value, part.group("attr"))
            else:
                value = value[ast.literal_eval(part.group("key"))]
        except Exception:  # noqa: BLE001 - any failure means "leave the reference as written"
            return _MISSING
        pos = part.end()
    return value
