"""The simulator's neutral answers: JSON that satisfies a schema, tool-choice rules, token counts, cuts."""

from __future__ import annotations

import datetime
import enum
import json
import random
from typing import Literal

import jsonschema
import pydantic
import pytest

from llmroute_magic.sim._answers import JSON_CHARS_PER_TOKEN, chosen_tools, instance, make_answer
from llmroute_magic.sim._neutral import IMAGE_TOKENS, SimRequest, Tool, count_input_tokens


class Colour(str, enum.Enum):
    red = "red"
    green = "green"


class Address(pydantic.BaseModel):
    street: str
    zip_code: str = pydantic.Field(min_length=5, max_length=5)


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    height_m: float = pydantic.Field(gt=0.5, lt=2.5)
    colour: Colour
    kind: Literal["a", "b"]
    nickname: str | None = None
    born: datetime.date
    seen: datetime.datetime
    addresses: list[Address] = pydantic.Field(min_length=1, max_length=3)
    scores: dict[str, int]
    pair: tuple[int, str]


class Node(pydantic.BaseModel):  # recursive: generation must stop
    label: str
    children: list[Node] = []


SCHEMAS = {
    "pydantic person": Person.model_json_schema(),
    "pydantic recursive": Node.model_json_schema(),
    "scalars": {
        "type": "object",
        "properties": {
            "s": {"type": "string", "minLength": 3, "maxLength": 6},
            "i": {"type": "integer", "multipleOf": 5, "minimum": 7, "maximum": 40},
            "n": {"type": "number", "exclusiveMinimum": 1.5, "exclusiveMaximum": 1.6},
            "m": {"type": "number", "multipleOf": 0.25, "minimum": 1, "maximum": 2},
            "b": {"type": "boolean"},
            "z": {"type": "null"},
            "c": {"const": 42},
            "e": {"enum": ["x", 1, None]},
        },
        "required": ["s", "i", "n", "m", "b", "z", "c", "e"],
    },
    "formats": {
        "type": "object",
        "properties": {
            f: {"type": "string", "format": f} for f in ("date", "date-time", "time", "email", "uri", "uuid", "ipv4")
        },
        "required": ["date", "uuid"],
    },
    "nullable and type lists": {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]},
            "c": {"oneOf": [{"type": "string", "enum": ["only"]}, {"type": "integer"}]},
        },
        "required": ["a", "b", "c"],
    },
    "allOf": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    },
    "arrays": {
        "type": "object",
        "properties": {
            "unique": {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 3, "uniqueItems": True},
            "empty": {"type": "array", "maxItems": 0},
            "tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "minItems": 2},
            "nested": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2}},
        },
        "required": ["unique", "empty", "tuple", "nested"],
    },
    "additional and min properties": {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "minProperties": 2,
    },
    "top-level array": {
        "type": "array",
        "items": {"$ref": "#/definitions/Item"},
        "minItems": 2,
        "definitions": {"Item": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
    },
    "empty schema": {},
    "no type, properties only": {"properties": {"x": {"type": "integer"}}, "required": ["x"]},
    "required but not described": {"type": "object", "required": ["mystery"]},
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_values_satisfy_their_schema_for_many_seeds(name):
    schema = SCHEMAS[name]
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    for seed in range(40):
        validator.validate(instance(schema, random.Random(seed)))


def test_pydantic_models_validate_what_is_generated():
    for seed in range(40):
        Person.model_validate_json(json.dumps(instance(Person.model_json_schema(), random.Random(seed))))
        Node.model_validate(instance(Node.model_json_schema(), random.Random(seed)))


def test_values_are_deterministic_and_vary_with_the_seed():
    schema = Person.model_json_schema()
    assert instance(schema, random.Random(1)) == instance(schema, random.Random(1))
    assert len({json.dumps(instance(schema, random.Random(s)), sort_keys=True) for s in range(10)}) == 10


def req(prompt="hello", *, turns=None, **optional) -> SimRequest:
    return SimRequest("m", "", turns or [("user", prompt)], **optional)


WEATHER = Tool("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = Tool("get_time", "", {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]})


def names(tools):
    return [t.name for t in tools]


def test_tool_choice_rules_on_the_neutral_request():
    tools = (WEATHER, TIME)
    assert names(chosen_tools(req("use get_time then get_weather", tools=tools))) == ["get_weather", "get_time"]
    assert names(chosen_tools(req("use get_time then get_weather", tools=tools, parallel_tool_calls=False))) == [
        "get_weather"
    ]
    assert names(chosen_tools(req("nothing named", tools=tools, tool_choice="required"))) == ["get_weather"]
    assert names(chosen_tools(req("x", tools=tools, tool_choice="tool", tool_name="get_time"))) == ["get_time"]
    assert chosen_tools(req("use get_time", tools=tools, tool_choice="none")) == []
    after_result = [("user", "use get_time"), ("assistant", "get_time({})"), ("tool", "12:00")]
    assert chosen_tools(req(turns=after_result, tools=tools)) == []  # auto never loops on its own result
    assert names(chosen_tools(req(turns=after_result, tools=tools, tool_choice="required"))) == ["get_time"]


def test_tool_answers_count_json_tokens_and_max_tokens_cuts_across_calls():
    r = req("use get_weather and get_time", tools=(WEATHER, TIME))
    whole = make_answer(r, 3)
    assert whole.kind == "tool_calls" and [c.name for c in whole.tool_calls] == ["get_weather", "get_time"]
    for c in whole.tool_calls:
        assert c.sent == c.arguments and json.loads(c.arguments) == c.value and c.whole
        assert len(c.pieces) == -(-len(c.arguments) // JSON_CHARS_PER_TOKEN)
    first = len(whole.tool_calls[0].pieces)
    cut = make_answer(req("use get_weather and get_time", tools=(WEATHER, TIME), max_tokens=first + 1), 3)
    assert cut.cut and cut.output_tokens == first + 1
    assert cut.tool_calls[0].whole and not cut.tool_calls[1].whole and len(cut.tool_calls[1].pieces) == 1
    only_first = make_answer(req("use get_weather and get_time", tools=(WEATHER, TIME), max_tokens=first), 3)
    assert only_first.cut and [c.name for c in only_first.tool_calls] == ["get_weather"]
    half = whole.prefix(first + 2)
    assert half.output_tokens == first + 2 and half.tool_calls[1].pieces == whole.tool_calls[1].pieces[:2]


def test_ignore_schema_only_changes_structured_requests():
    structured = [
        req(json_schema={"type": "object"}, json_mode=True),
        req(json_mode=True),
        req(tools=(WEATHER,), tool_choice="tool", tool_name="get_weather"),
    ]
    for r in structured:
        a = make_answer(r, 1, ignore_schema=True)
        assert a.ignored_schema and a.kind == "text" and a.text == make_answer(req(), 1).text
        assert not make_answer(r, 1).ignored_schema
    for r in (req(), req("use get_weather", tools=(WEATHER,)), req(tools=(WEATHER,), tool_choice="required")):
        assert not make_answer(r, 1, ignore_schema=True).ignored_schema


def test_text_answers_are_cached_and_unchanged_by_tools_that_are_not_called():
    assert make_answer(req("same"), 5) is make_answer(req("same"), 5)
    assert make_answer(req("same", tools=(WEATHER,)), 5).text == make_answer(req("same"), 5).text


def test_input_tokens_rule():
    assert count_input_tokens("", ["abcd"]) == 1 + 3
    assert count_input_tokens("sys", ["abcd"], images=2) == 2 + 6 + 2 * IMAGE_TOKENS
    r = SimRequest("m", "sys", [("user", "abcd")], images=2)
    assert r.input_tokens == count_input_tokens("sys", ["abcd"], 2)
    with pytest.raises(TypeError, match="colour"):
        SimRequest("m", "", [], colour="red")


def test_gemini_style_schemas_with_upper_case_types():
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "n": {"type": "INTEGER", "nullable": True},
            "xs": {"type": "ARRAY", "items": {"type": "NUMBER"}},
        },
        "required": ["name", "n", "xs"],
        "propertyOrdering": ["name", "n", "xs"],
    }
    value = instance(schema, random.Random(0))
    assert isinstance(value["name"], str) and isinstance(value["n"], int) and isinstance(value["xs"], list)
