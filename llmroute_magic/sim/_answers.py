"""Neutral answers, deterministic from the request and the profile's seed; formats only render them.

What a request gets, in this order:

1. ``ignore_schema`` fault and a structured request (``SimRequest.structured``): prose, as if the
   provider had dropped the schema or the forced tool (``Answer.ignored_schema``).
2. Tool calls, when tools are given and tool_choice is
   - ``tool``: one call of the named tool;
   - ``required``: a call of each tool named in the last user turn, else of the first tool;
   - ``auto``: a call of each tool named in the last turn, when that turn is the user's (not a
     tool result): a name counts when it appears as a whole word, case-insensitively;
   - ``none``: never.
   ``parallel_tool_calls=False`` keeps only the first call. Arguments satisfy the tool's parameter
   schema (see ``instance``).
3. JSON: with a response schema, a value satisfying it; in plain JSON mode, ``{"answer": <text>}``.
4. Text: 16..64 word tokens chosen by the prompt's hash (``answer_pieces``).

Output tokens: one per word of text; JSON text (answers and tool arguments, compact separators)
counts one per 4 characters and streams in those pieces. ``max_tokens`` keeps a prefix of the
tokens (cut JSON is invalid JSON, as from a real provider).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ._neutral import USER, SimRequest, Tool

_WORDS = (
    "the a routing provider answer model token latency cost stream request fallback budget cache "
    "quickly steady cheaper faster reliable simulated local remote prompt result window context "
    "limit retry server client notebook cell output value signal measure compare choose send "
    "receive balance traffic between several providers when one fails another takes over and "
    "every attempt is counted so the ledger matches what was billed this keeps experiments honest "
    "with clear numbers about time money errors throughput percentiles median tail spikes drift "
    "strategy priority weight random least busy lowest round robin health cooldown backoff jitter "
    "seed sample batch queue worker thread loop event socket loopback port path header body usage"
).split()

JSON_CHARS_PER_TOKEN = 4
_json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call: ``id`` is a neutral suffix (formats add their prefix: ``call_``, ``toolu_``)."""

    id: str
    name: str
    arguments: str  # the arguments object as JSON text, whole
    pieces: tuple[str, ...]  # the tokens sent; their concatenation is ``arguments`` unless cut
    value: Any  # the arguments object

    @property
    def sent(self) -> str:
        return "".join(self.pieces)

    @property
    def whole(self) -> bool:
        return len(self.pieces) == -(-len(self.arguments) // JSON_CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class Answer:
    kind: str  # "text", "json" or "tool_calls"
    pieces: tuple[str, ...]  # text or JSON text as tokens (empty for tool calls)
    tool_calls: tuple[ToolCall, ...] = ()
    cut: bool = False  # max_tokens stopped it
    ignored_schema: bool = False  # an ignore_schema fault answered a structured request with prose

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        if not self.tool_calls:
            return len(self.pieces)
        return len(self.pieces) + sum(len(c.pieces) for c in self.tool_calls)

    def prefix(self, tokens: int) -> Answer:
        """The first ``tokens`` tokens (what a stream had sent when it broke off)."""
        if self.kind != "tool_calls":
            return replace(self, pieces=self.pieces[:tokens])
        calls, left = [], tokens
        for c in self.tool_calls:
            if left <= 0:
                break
            calls.append(replace(c, pieces=c.pieces[:left]))
            left -= len(c.pieces)
        return replace(self, tool_calls=tuple(calls))


def _hash(*parts: Any) -> int:
    text = "\x00".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


@lru_cache(maxsize=4096)
def answer_pieces(key: str, seed: int, max_tokens: int | None = None) -> tuple[tuple[str, ...], bool]:
    """The answer as tokens (word-ish pieces whose concatenation is the text) and whether max_tokens cut it.

    The full length is 16..64 tokens depending on the prompt hash; a cut answer is a prefix of the full one.
    """
    h = _hash(seed, key)
    length = 16 + h % 49
    rng = random.Random(h)
    pieces: list[str] = []
    while len(pieces) < length:
        sentence = rng.randint(5, 13)
        words = [rng.choice(_WORDS) for _ in range(min(sentence, length - len(pieces)))]
        words[0] = words[0].capitalize()
        words[-1] += "."
        for w in words:
            pieces.append(w if not pieces else " " + w)
    truncated = max_tokens is not None and max_tokens < length
    return (tuple(pieces[:max_tokens]) if truncated else tuple(pieces)), truncated


@lru_cache(maxsize=4096)
def _text_answer(key: str, seed: int, max_tokens: int | None, ignored_schema: bool = False) -> Answer:
    pieces, cut = answer_pieces(key, seed, max_tokens)
    return Answer("text", pieces, cut=cut, ignored_schema=ignored_schema)


def make_answer(req: SimRequest, seed: int, *, ignore_schema: bool = False) -> Answer:
    """The answer to ``req`` from a provider seeded ``seed`` (see the module docstring for the rules)."""
    if not req.tools and not req.json_mode and req.json_schema is None:  # the common case, cached
        return _text_answer(req.key, seed, req.max_tokens)
    if ignore_schema and req.structured:
        return _text_answer(req.key, seed, req.max_tokens, True)
    chosen = chosen_tools(req)
    if chosen:
        return _tool_answer(req, seed, chosen)
    if req.json_schema is not None or req.json_mode:
        return _json_answer(req, seed)
    return _text_answer(req.key, seed, req.max_tokens)


# -- tool calls --------------------------------------------------------------------------------


def _mentions(text: str, name: str) -> bool:
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", text, re.IGNORECASE) is not None


def chosen_tools(req: SimRequest) -> list[Tool]:
    """The tools the answer calls, in the order the request lists them (empty: no tool call)."""
    if not req.tools or req.tool_choice == "none":
        return []
    if req.tool_choice == "tool":
        tool = req.tool(req.tool_name or "")
        return [tool] if tool is not None else []
    last_user = next((text for role, text in reversed(req.turns) if role == USER), "")
    if req.tool_choice == "required":
        chosen = [t for t in req.tools if _mentions(last_user, t.name)] or [req.tools[0]]
    else:  # auto: only when the user has just asked, never in answer to a tool result
        if not req.turns or req.turns[-1][0] != USER:
            return []
        chosen = [t for t in req.tools if _mentions(last_user, t.name)]
    return chosen[:1] if not req.parallel_tool_calls else chosen


def _json_pieces(text: str) -> tuple[str, ...]:
    n = JSON_CHARS_PER_TOKEN
    return tuple(text[i : i + n] for i in range(0, len(text), n))


def _tool_answer(req: SimRequest, seed: int, tools: list[Tool]) -> Answer:
    budget = req.max_tokens
    calls: list[ToolCall] = []
    cut = False
    for i, tool in enumerate(tools):
        h = _hash(seed, req.key, "tool", i, tool.name)
        value = instance(tool.parameters, random.Random(h))
        arguments = _json_text(value)
        pieces = _json_pieces(arguments)
        if budget is not None:
            if budget <= 0:
                cut = True
                break
            if len(pieces) > budget:
                pieces, cut = pieces[:budget], True
            budget -= len(pieces)
        call_id = hashlib.blake2b(f"{h}:{i}".encode(), digest_size=12).hexdigest()
        calls.append(ToolCall(call_id, tool.name, arguments, pieces, value))
    return Answer("tool_calls", (), tuple(calls), cut=cut)


def _json_answer(req: SimRequest, seed: int) -> Answer:
    if req.json_schema is not None:
        value = instance(req.json_schema, random.Random(_hash(seed, req.key, "schema")))
    else:
        value = {"answer": "".join(answer_pieces(req.key, seed)[0])}
    pieces = _json_pieces(_json_text(value))
    cut = req.max_tokens is not None and len(pieces) > req.max_tokens
    return Answer("json", pieces[: req.max_tokens] if cut else pieces, cut=cut)


# -- values for a JSON schema ------------------------------------------------------------------

_MAX_DEPTH = 6  # below it, optional parts are left out and arrays take their minimum length
_HARD_DEPTH = 24  # below it, give up (a schema whose required parts nest forever has no finite value)


def instance(schema: Any, rng: random.Random) -> Any:
    """A value satisfying ``schema``, drawn from ``rng``.

    Covers what structured-output and tool schemas use: type (or a list of types), properties and
    required (every property is filled in near the top, only the required ones deeper down),
    additionalProperties, items and prefixItems with minItems/maxItems/uniqueItems, enum, const,
    string formats (date, date-time, time, email, uri, uuid, ipv4), minLength/maxLength,
    minimum/maximum (also exclusive) and multipleOf, anyOf/oneOf (the first branch that is not
    null), allOf (merged), and local $ref to $defs/definitions (pydantic's nested models). Type
    names are case-insensitive (Gemini's OpenAPI-style ``"OBJECT"``); ``nullable`` is allowed
    and never used. ``pattern`` and ``not`` are not honoured.
    """
    return _Gen(schema, rng).value(schema, 0)


def _number(value: Any) -> float | None:
    """``value`` when it is a JSON number (``True`` is not one), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Gen:
    def __init__(self, root: Any, rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, schema: Mapping) -> Mapping:
        seen = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 32:
            ref = schema["$ref"]
            target: Any = self.root
            if not ref.startswith("#"):
                return {}
            for part in ref[1:].split("/")[1:] if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, Mapping) else rest
            seen += 1
        return schema if isinstance(schema, Mapping) else {}

    def value(self, schema: Any, depth: int) -> Any:
        if depth > _HARD_DEPTH:
            return None
        if schema is True or not isinstance(schema, Mapping):
            return self.text({}, depth)
        schema = self.resolve(schema)
        rng = self.rng
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                resolved = [self.resolve(b) if isinstance(b, Mapping) else {} for b in branches]
                usable = [b for b in resolved if b.get("type") != "null"] or resolved
                base = {k: v for k, v in schema.items() if k != key}
                return self.value({**base, **usable[0]}, depth)
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part) if isinstance(part, Mapping) else {}
                for k, v in part.items():
                    if k == "properties" and isinstance(v, Mapping):
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required" and isinstance(v, list):
                        merged["required"] = list(dict.fromkeys([*merged.get("required", []), *v]))
                    else:
                        merged.setdefault(k, v)
            return self.value(merged, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if str(k).lower() != "null"), "null")
        if isinstance(kind, str):
            kind = kind.lower()  # Gemini's OpenAPI-style schemas say "OBJECT", "STRING", ...
        if kind is None:
            if "properties" in schema or "required" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.obj(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        return self.text(schema, depth)

    def obj(self, schema: Mapping, depth: int) -> dict:
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            props = {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        names = list(props) if depth < _MAX_DEPTH else [p for p in props if p in required]
        out = {name: self.value(props[name], depth + 1) for name in names}
        for name in required:
            if name not in out:
                extra = schema.get("additionalProperties")
                out[name] = self.value(extra if isinstance(extra, Mapping) else {}, depth + 1)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, Mapping) and depth < _MAX_DEPTH:
            out[self.rng.choice(_WORDS)] = self.value(extra, depth + 1)
        low = schema.get("minProperties")
        if isinstance(low, int) and len(out) < low and extra is not False:
            for i in range(low - len(out)):
                out[f"field_{i}"] = self.value(extra if isinstance(extra, Mapping) else {"type": "string"}, depth + 1)
        return out

    def array(self, schema: Mapping, depth: int) -> list:
        prefix = schema.get("prefixItems")
        if not isinstance(prefix, list):
            prefix = []
        low = schema.get("minItems")
        if not isinstance(low, int):
            low = 0
        high = schema.get("maxItems")
        if not isinstance(high, int):
            high = None
        if depth >= _MAX_DEPTH:
            n = max(low, 0)
        else:
            n = self.rng.randint(max(low, 1), max(low, 1) + 2)
        if high is not None:
            n = min(n, high)
        n = max(n, min(len(prefix), high if high is not None else len(prefix)), low)
        items = schema.get("items")
        out: list = []
        unique = schema.get("uniqueItems") is True
        for i in range(n):
            sub = prefix[i] if i < len(prefix) else (items if isinstance(items, Mapping) else {})
            item = self.value(sub, depth + 1)
            tries = 0
            while unique and item in out and tries < 20:
                item = self.value(sub, depth + 1)
                tries += 1
            if unique and item in out and i >= low:
                break
            out.append(item)
        return out

    def _bounds(self, schema: Mapping, step: float) -> tuple[float, float]:
        lo, hi = _number(schema.get("minimum")), _number(schema.get("maximum"))
        ex_lo, ex_hi = _number(schema.get("exclusiveMinimum")), _number(schema.get("exclusiveMaximum"))
        if ex_lo is not None:
            lo = max(lo, ex_lo + step) if lo is not None else ex_lo + step
        if ex_hi is not None:
            hi = min(hi, ex_hi - step) if hi is not None else ex_hi - step
        if lo is None:  # 100 below the maximum, or 0..100 when neither bound is given
            lo = hi - 100 if hi is not None else 0
        if hi is None:
            hi = lo + 100
        return lo, max(lo, hi)

    def integer(self, schema: Mapping) -> int:
        lo, hi = self._bounds(schema, 1)
        lo_i, hi_i = math.ceil(lo), math.floor(hi)
        hi_i = max(lo_i, hi_i)
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first, last = -(-lo_i // step), hi_i // step
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(lo_i, hi_i)

    def number(self, schema: Mapping) -> float | int:
        step = schema.get("multipleOf")
        lo, hi = self._bounds(schema, 1e-6)
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                k = self.rng.randint(first, last)
                value = k * step
                return round(value, 10) if not isinstance(value, int) else value
        value = round(lo + (hi - lo) * self.rng.uniform(0.1, 0.9), 2)
        if not lo <= value <= hi:
            value = (lo + hi) / 2
        return value

    def text(self, schema: Mapping, depth: int) -> str:
        rng = self.rng
        fmt = schema.get("format")
        if fmt == "date-time":
            value = (
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:00Z"
            )
        elif fmt == "date":
            value = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif fmt == "time":
            value = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
        elif fmt == "email":
            value = f"{rng.choice(_WORDS)}@example.com"
        elif fmt in ("uri", "url", "iri"):
            value = f"https://example.com/{rng.choice(_WORDS)}"
        elif fmt == "uuid":
            h = f"{rng.getrandbits(128):032x}"
            value = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        elif fmt == "ipv4":
            value = f"192.0.2.{rng.randint(1, 254)}"
        else:
            value = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
        low = schema.get("minLength")
        if not isinstance(low, int):
            low = 0
        high = schema.get("maxLength")
        if not isinstance(high, int):
            high = None
        if len(value) < low:
            value += "x" * (low - len(value))
        if high is not None and len(value) > high:
            value = value[:high]
        return value
