"""Images, tools and answer schemas in neutral form, and routing by capability (no server needed)."""

from __future__ import annotations

import base64

import pytest
from helpers import City

from llmroute_magic import ConfigError, ProviderRoutingConfig, ProviderSpec
from llmroute_magic._capabilities import default_capabilities
from llmroute_magic._content import normalise_response_format, sniff_media_type
from llmroute_magic._request import build_request

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
CONFIG = ProviderRoutingConfig([ProviderSpec("local", "llama3", base_url="http://127.0.0.1:8000/v1")])


def request(prompt, **options):
    return build_request(prompt, options, config=CONFIG, request_id="r", streamed=False)


def test_images_are_normalised_from_every_common_spelling():
    b64 = base64.b64encode(PNG).decode()
    msgs = [
        {
            "role": "user",
            "content": [
                "What is in these?",
                {"type": "image", "data": PNG},  # bytes: encoded, type sniffed
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},  # OpenAI's spelling
                {"type": "image", "url": "https://example.com/cat.jpg"},
            ],
        }
    ]
    parts = request(msgs).chat.messages[0]["content"]
    assert parts[0] == {"type": "text", "text": "What is in these?"}
    assert parts[1] == parts[2] == {"type": "image", "data": b64, "media_type": "image/png"}
    assert parts[3] == {"type": "image", "url": "https://example.com/cat.jpg"}
    assert request(msgs).needs == {"vision", "image_url"}  # by URL: not for a format that takes only bytes
    inline = [{"role": "user", "content": msgs[0]["content"][:3]}]
    assert request(inline).needs == {"vision"}


@pytest.mark.parametrize(
    "part, message",
    [
        ({"type": "image", "data": "not base64!"}, "not valid base64"),
        ({"type": "image", "data": b"plain text"}, "not an image type"),
        ({"type": "image"}, "an image needs url="),
        ({"type": "audio", "data": "x"}, "unknown part 'audio'"),
        ({"type": "image", "url": "data:nonsense"}, "data:<type>;base64"),
    ],
)
def test_a_bad_part_is_a_config_error_saying_what_to_give(part, message):
    with pytest.raises(ConfigError, match=message):
        request([{"role": "user", "content": [part]}])


def test_media_types_are_sniffed_from_the_bytes():
    assert sniff_media_type(PNG) == "image/png"
    assert sniff_media_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_media_type(b"hello") is None


def test_tools_and_tool_choice():
    tools = [
        {
            "name": "get_weather",
            "description": "weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
        {"type": "function", "function": {"name": "get_time", "description": "now"}},
    ]  # OpenAI's spelling
    r = request("weather in Paris?", tools=tools, tool_choice="get_weather")
    assert [t.name for t in r.chat.tools] == ["get_weather", "get_time"]
    assert r.chat.tools[1].parameters == {"type": "object", "properties": {}}
    assert (r.chat.tool_choice.mode, r.chat.tool_choice.name) == ("tool", "get_weather")
    assert r.needs == {"tools"}
    assert request("hi", tools=tools, tool_choice="none").needs == frozenset()
    with pytest.raises(ConfigError, match="tool_choice: expected auto, none, required or a tool's name"):
        request("hi", tools=tools, tool_choice="get_stock")
    with pytest.raises(ConfigError, match="tools\\[0\\]"):
        request("hi", tools=[{"name": "has space"}])


def test_a_schema_answer_is_parsed_or_rejected_with_the_reason():
    fmt = normalise_response_format(City)
    assert fmt.parse('{"name": "Paris", "population": 2100000}') == City(name="Paris", population=2100000)
    assert fmt.parse('```json\n{"name": "Oslo", "population": 700000}\n```').name == "Oslo"  # fenced
    with pytest.raises(ValueError, match="does not fit City"):
        fmt.parse("Paris is a city of about two million people.")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    raw = normalise_response_format(schema)
    assert raw.parse('{"n": 3}') == {"n": 3}
    with pytest.raises(ValueError, match="not JSON"):
        raw.parse("three")
    with pytest.raises(ValueError, match="does not meet the schema"):
        raw.parse('{"n": "three"}')


def test_an_invalid_schema_or_format_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        request("hi", response_format={"type": "no-such-type"})
    with pytest.raises(ConfigError, match="response_format: expected a JSON schema"):
        request("hi", response_format="json")
    assert request(
        "hi", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    ).needs == {"json_schema"}


def test_capability_defaults_by_api_and_model():
    assert default_capabilities("anthropic", "claude-3-5-haiku-latest") == {
        "tools",
        "vision",
        "json_schema",
        "streaming",
    }
    assert "vision" in default_capabilities("openai", "gpt-4o-mini")
    assert "vision" in default_capabilities("ollama", "llava:13b")
    assert "vision" not in default_capabilities("openai", "llama-3.1-8b-instant")
    assert "vision" not in default_capabilities("ollama", "qwen2.5:7b")
    spec = ProviderSpec("local", "llama3", base_url="http://127.0.0.1:8000/v1", capabilities={"streaming"})
    assert spec.effective_capabilities == {"streaming"} and spec.to_dict()["capabilities"] == ["streaming"]
    with pytest.raises(ConfigError, match="unknown capability 'telepathy'"):
        ProviderSpec("local", "m", base_url="http://127.0.0.1:8000/v1", capabilities={"telepathy"})


def test_a_request_no_provider_can_serve_says_which_capability_and_who_lacks_it():
    from llmroute_magic import ModelClientRouter

    specs = [
        ProviderSpec("text-a", "llama3", base_url="http://127.0.0.1:9/v1"),
        ProviderSpec("text-b", "mistral", base_url="http://127.0.0.1:9/v1"),
    ]
    with ModelClientRouter(ProviderRoutingConfig(specs)) as r:
        with pytest.raises(ConfigError) as info:
            r.complete([{"role": "user", "content": ["what is this?", {"type": "image", "data": PNG}]}])
    msg = str(info.value)
    assert "needs vision" in msg and "text-a lacks vision" in msg and "text-b lacks vision" in msg
    assert "capabilities=" in msg  # and what to do about it


def test_the_model_option_is_checked_and_kept():
    assert request("hi", model="llama3:70b").chat.model == "llama3:70b"
    with pytest.raises(ConfigError, match="model: expected a model name"):
        request("hi", model="")
