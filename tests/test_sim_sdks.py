"""The official openai and anthropic SDKs, pointed at the simulator, parse every kind of answer it gives:
text, tool calls, structured output (pydantic models), images, and every error."""

from __future__ import annotations

import json
from typing import Literal

import anthropic
import openai
import pydantic
import pytest

PROMPT = "Name three prime numbers."
FAST = {"latency_s": 0.0, "jitter_s": 0.0, "ttft_s": 0.0}


@pytest.fixture
def s(fresh_sim):
    for name in ("sim-openai", "sim-anthropic"):
        fresh_sim.update(name, **FAST)
    return fresh_sim


# One client each for the module: building an SDK client (TLS context, pool) costs more than a call.
@pytest.fixture(scope="module")
def oai(sim):
    with openai.OpenAI(base_url=sim.base_url("sim-openai"), api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude(sim):
    with anthropic.Anthropic(base_url=sim.base_url("sim-anthropic"), api_key="test", max_retries=0) as client:
        yield client


def counters(sim, name):
    return sim.stats()["providers"][name]


def openai_cost(i, o):
    return i * 0.15 / 1e6 + o * 0.60 / 1e6


def anthropic_cost(i, o):
    return i * 0.80 / 1e6 + o * 4.00 / 1e6


def ask_openai(client, **extra):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], **extra)


def ask_claude(client, **extra):
    return client.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=extra.pop("max_tokens", 200),
        messages=[{"role": "user", "content": PROMPT}],
        **extra,
    )


# -- answers ---------------------------------------------------------------------------------------


def test_openai_plain_and_streamed_answers_agree_with_the_stats(s, oai):
    plain = ask_openai(oai)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason == "stop" and plain.model == "gpt-4o-mini"
    chunks = list(ask_openai(oai, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    st = counters(s, "sim-openai")
    assert st["statuses"] == {"200": 2}
    assert st["input_tokens"] == plain.usage.prompt_tokens + usage.prompt_tokens
    assert st["output_tokens"] == plain.usage.completion_tokens + usage.completion_tokens
    assert st["cost"] == pytest.approx(
        openai_cost(plain.usage.prompt_tokens, plain.usage.completion_tokens)
        + openai_cost(usage.prompt_tokens, usage.completion_tokens),
        rel=1e-12,
    )


def test_openai_max_tokens_cuts_the_answer(s, oai):
    cut = ask_openai(oai, max_tokens=4)
    assert cut.usage.completion_tokens == 4 and cut.choices[0].finish_reason == "length"


def test_anthropic_plain_and_streamed_answers_agree_with_the_stats(s, claude):
    plain = ask_claude(claude)
    assert plain.content[0].text and plain.stop_reason == "end_turn"
    with claude.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == plain.content[0].text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        plain.usage.input_tokens,
        plain.usage.output_tokens,
    )
    raw_events = [e.type for e in ask_claude(claude, stream=True)]
    assert raw_events[:3] == ["message_start", "content_block_start", "ping"] or raw_events[:2] == [
        "message_start",
        "content_block_start",
    ]  # older SDKs drop pings
    assert raw_events[-2:] == ["message_delta", "message_stop"]
    st = counters(s, "sim-anthropic")
    assert st["statuses"] == {"200": 3}
    assert st["input_tokens"] == 3 * plain.usage.input_tokens
    assert st["output_tokens"] == 3 * plain.usage.output_tokens
    assert st["cost"] == pytest.approx(
        3 * anthropic_cost(plain.usage.input_tokens, plain.usage.output_tokens), rel=1e-12
    )


def test_anthropic_max_tokens_cuts_the_answer(s, claude):
    cut = ask_claude(claude, max_tokens=3)
    assert cut.usage.output_tokens == 3 and cut.stop_reason == "max_tokens"


def test_anthropic_refuses_what_the_api_refuses(s, claude):
    """A temperature above 1 (Anthropic's range is 0..1) and empty content are the API's 400s; an
    empty final assistant message (a prefill) is not."""
    with pytest.raises(anthropic.BadRequestError) as info:
        ask_claude(claude, extra_body={"temperature": 1.5})  # create() here has no temperature=
    assert info.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "temperature: range: 0..1"},
    }
    assert ask_claude(claude, extra_body={"temperature": 1.0}).content[0].text
    empty = [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "2?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="messages.0: all messages must have non-empty content except"):
        claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=empty)
    blank_block = [{"role": "user", "content": [{"type": "text", "text": ""}]}]
    with pytest.raises(anthropic.BadRequestError, match="text content blocks must be non-empty"):
        claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=blank_block)
    prefill = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": ""}]
    assert claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=prefill).content
    assert counters(s, "sim-anthropic")["statuses"] == {"400": 3, "200": 2}


# -- errors ----------------------------------------------------------------------------------------

# fault -> (openai exception, anthropic exception, status)
ERRORS = [
    ("rate_limit", openai.RateLimitError, anthropic.RateLimitError, 429),
    ("server_error", openai.InternalServerError, anthropic.InternalServerError, 500),
    ("bad_gateway", openai.InternalServerError, anthropic.InternalServerError, 502),
    ("unavailable", openai.InternalServerError, anthropic.InternalServerError, 503),
    ("gateway_timeout", openai.InternalServerError, anthropic.InternalServerError, 504),
    ("overloaded", openai.APIStatusError, anthropic.APIStatusError, 529),
    ("invalid_request", openai.BadRequestError, anthropic.BadRequestError, 400),
    ("context_length", openai.BadRequestError, anthropic.BadRequestError, 400),
    ("unauthorized", openai.AuthenticationError, anthropic.AuthenticationError, 401),
    ("forbidden", openai.PermissionDeniedError, anthropic.PermissionDeniedError, 403),
    ("model_not_found", openai.NotFoundError, anthropic.NotFoundError, 404),
]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("fault, o_exc, a_exc, status", ERRORS)
def test_each_error_status_maps_to_the_sdks_own_exception(s, oai, claude, fault, o_exc, a_exc, status, streamed):
    s.update("sim-openai", retry_after_s=2.5)
    s.update("sim-anthropic", retry_after_s=2.5)
    s.inject("sim-openai", [fault])
    s.inject("sim-anthropic", [fault])
    extra = {"stream": True} if streamed else {}
    with pytest.raises(o_exc) as o_info:
        ask_openai(oai, **extra)
    with pytest.raises(a_exc) as a_info:
        ask_claude(claude, **extra)
    assert o_info.value.status_code == a_info.value.status_code == status
    if fault == "overloaded":
        assert a_info.value.body["error"]["type"] == "overloaded_error"
    if fault == "rate_limit":
        for info in (o_info, a_info):
            assert info.value.response.headers["retry-after"] == "3"
            assert info.value.response.headers["retry-after-ms"] == "2500"
    if fault == "context_length":
        assert o_info.value.code == "context_length_exceeded"
        assert a_info.value.body["error"]["message"].startswith("prompt is too long: ")
    if fault == "model_not_found":
        assert o_info.value.code == "model_not_found"
    for name in ("sim-openai", "sim-anthropic"):
        st = counters(s, name)
        assert st["statuses"] == {str(status): 1} and st["input_tokens"] == st["output_tokens"] == 0


def test_insufficient_quota_looks_like_each_real_api(s, oai, claude):
    s.inject("sim-openai", ["insufficient_quota"])
    s.inject("sim-anthropic", ["insufficient_quota"])
    with pytest.raises(openai.RateLimitError) as o_info:
        ask_openai(oai)
    assert o_info.value.code == "insufficient_quota"
    with pytest.raises(anthropic.BadRequestError, match="credit balance is too low"):
        ask_claude(claude)


def test_unknown_provider_is_not_found_for_both_sdks(s):
    with openai.OpenAI(base_url=f"{s.url}/no-such/v1", api_key="test", max_retries=0) as o:
        with pytest.raises(openai.NotFoundError, match="known providers: sim-openai"):
            ask_openai(o)
    with anthropic.Anthropic(base_url=f"{s.url}/no-such", api_key="test", max_retries=0) as a:
        with pytest.raises(anthropic.NotFoundError, match="known providers: sim-openai"):
            ask_claude(a)


def test_mid_stream_error_events_raise_in_both_sdks(s, oai, claude):
    s.inject("sim-openai", ["stream_error"])
    s.inject("sim-anthropic", ["stream_error"])
    seen = []
    with pytest.raises(openai.APIError, match="simulated"):
        for chunk in ask_openai(oai, stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)
    assert seen  # some text arrived before the error
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with claude.messages.stream(model="m", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]) as st:
            for _ in st.text_stream:
                pass
    assert counters(s, "sim-openai")["statuses"] == {"stream_error": 1}
    assert counters(s, "sim-openai")["input_tokens"] == 0  # no usage chunk was sent
    assert counters(s, "sim-anthropic")["output_tokens"] == 0  # message_delta was never sent


def test_reset_and_hang_are_connection_errors_to_the_sdks(s):
    s.inject("sim-openai", ["reset", "hang"])
    with openai.OpenAI(base_url=s.base_url("sim-openai"), api_key="test", max_retries=0, timeout=0.3) as o:
        with pytest.raises(openai.APIConnectionError) as info:
            ask_openai(o)
        assert not isinstance(info.value, openai.APITimeoutError)
        with pytest.raises(openai.APITimeoutError):
            ask_openai(o)
    assert counters(s, "sim-openai")["statuses"] == {"reset": 1, "hang": 1}


# -- tools, structured output, images ------------------------------------------------------------

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]


class GetWeather(pydantic.BaseModel):
    """Current weather for a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]
    days: int = pydantic.Field(ge=1, le=7)


class Address(pydantic.BaseModel):
    street: str
    city: str


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    tags: list[str]
    address: Address


def reported(*usages) -> tuple[int, int]:
    return sum(u[0] for u in usages), sum(u[1] for u in usages)


def assert_billed(sim, name, usages, statuses, cost):
    st = counters(sim, name)
    i, o = reported(*usages)
    assert st["statuses"] == statuses
    assert (st["input_tokens"], st["output_tokens"]) == (i, o)
    assert st["cost"] == pytest.approx(cost(i, o), rel=1e-12)


def test_openai_tool_calls_plain_parsed_and_streamed(s, oai):
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    plain = oai.chat.completions.create(model="gpt-4o-mini", messages=WEATHER_Q, tools=[tool])
    call = plain.choices[0].message.tool_calls[0]
    assert plain.choices[0].finish_reason == "tool_calls" and plain.choices[0].message.content is None
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    args = GetWeather.model_validate_json(call.function.arguments)
    parsed = oai.chat.completions.parse(model="gpt-4o-mini", messages=WEATHER_Q, tools=[tool])
    assert parsed.choices[0].message.tool_calls[0].function.parsed_arguments == args
    with oai.chat.completions.stream(
        model="gpt-4o-mini", messages=WEATHER_Q, tools=[tool], stream_options={"include_usage": True}
    ) as stream:
        deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1  # the arguments string arrives over several chunks, as from OpenAI
    streamed = final.choices[0].message.tool_calls[0]
    assert streamed.function.parsed_arguments == args and streamed.id == call.id
    assert final.choices[0].finish_reason == "tool_calls"
    usages = [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in (plain, parsed, final)]
    assert usages[0] == usages[1] == usages[2]
    assert_billed(s, "sim-openai", usages, {"200": 3}, openai_cost)


def test_openai_structured_output_with_a_pydantic_model(s, oai):
    messages = [{"role": "user", "content": "Describe a person."}]
    plain = oai.chat.completions.parse(model="gpt-4o-mini", messages=messages, response_format=Person)
    person = plain.choices[0].message.parsed
    assert isinstance(person, Person) and plain.choices[0].finish_reason == "stop"
    with oai.chat.completions.stream(
        model="gpt-4o-mini", messages=messages, response_format=Person, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == person
    raw = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": Person.model_json_schema()},
        },
    )
    Person.model_validate_json(raw.choices[0].message.content)
    json_mode = oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(json_mode.choices[0].message.content), dict)
    usages = [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in (plain, final, raw, json_mode)]
    assert_billed(s, "sim-openai", usages, {"200": 4}, openai_cost)


def test_openai_ignore_schema_gives_prose_the_sdk_cannot_parse(s, oai):
    messages = [{"role": "user", "content": "Describe a person."}]
    s.inject("sim-openai", ["ignore_schema"])
    with pytest.raises(pydantic.ValidationError):
        oai.chat.completions.parse(model="gpt-4o-mini", messages=messages, response_format=Person)
    prose = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)  # the same prose, as a normal answer
    usage = (prose.usage.prompt_tokens, prose.usage.completion_tokens)
    assert_billed(s, "sim-openai", [usage, usage], {"ignore_schema": 1, "200": 1}, openai_cost)


def test_openai_images_by_data_url_and_https_url(s, oai):
    text = "What is in these pictures?"
    content = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]
    with_images = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    text_only = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    assert with_images.usage.prompt_tokens == text_only.usage.prompt_tokens + 2 * 85
    assert with_images.choices[0].message.content == text_only.choices[0].message.content
    usages = [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in (with_images, text_only)]
    assert_billed(s, "sim-openai", usages, {"200": 2}, openai_cost)
    s.update("sim-openai", vision=False)
    with pytest.raises(openai.BadRequestError, match="does not accept images"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    assert counters(s, "sim-openai")["statuses"] == {"200": 2, "400": 1}


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": GetWeather.model_json_schema(),
}


def test_anthropic_tool_use_plain_and_streamed(s, claude):
    kwargs = dict(
        model="claude-3-5-haiku-latest",
        max_tokens=300,
        messages=WEATHER_Q,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    plain = claude.messages.create(**kwargs)
    block = plain.content[0]
    assert plain.stop_reason == "tool_use" and block.type == "tool_use" and block.id.startswith("toolu_")
    args = GetWeather.model_validate(block.input)
    with claude.messages.stream(**kwargs) as stream:
        partials = [e for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert len(partials) > 1  # input_json_delta events, several
    assert final.stop_reason == "tool_use" and GetWeather.model_validate(final.content[0].input) == args
    assert (final.content[0].id, final.content[0].name) == (block.id, "get_weather")
    auto = claude.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=300,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Just say hello."}],
    )
    assert auto.stop_reason == "end_turn" and auto.content[0].type == "text"  # auto, no tool named: text
    usages = [(m.usage.input_tokens, m.usage.output_tokens) for m in (plain, final, auto)]
    assert usages[0] == usages[1]
    assert_billed(s, "sim-anthropic", usages, {"200": 3}, anthropic_cost)


def test_anthropic_structured_output_with_a_pydantic_model(s, claude):
    kwargs = dict(
        model="claude-3-5-haiku-latest", max_tokens=500, messages=[{"role": "user", "content": "Describe a person."}]
    )
    parsed = claude.messages.parse(output_format=Person, **kwargs)
    person = parsed.parsed_output
    assert isinstance(person, Person) and parsed.stop_reason == "end_turn"
    with claude.messages.stream(output_format=Person, **kwargs) as stream:
        final = stream.get_final_message()
    assert final.parsed_output == person
    usages = [(m.usage.input_tokens, m.usage.output_tokens) for m in (parsed, final)]
    assert_billed(s, "sim-anthropic", usages, {"200": 2}, anthropic_cost)
    s.inject("sim-anthropic", ["ignore_schema"])
    with pytest.raises(pydantic.ValidationError):
        claude.messages.parse(output_format=Person, **kwargs)
    assert counters(s, "sim-anthropic")["statuses"] == {"200": 2, "ignore_schema": 1}


def test_anthropic_images_base64_and_url(s, claude):
    text = "What is in these pictures?"
    content = [
        {"type": "text", "text": text},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    with_images = claude.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=200, messages=[{"role": "user", "content": content}]
    )
    text_only = claude.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=200, messages=[{"role": "user", "content": text}]
    )
    assert with_images.usage.input_tokens == text_only.usage.input_tokens + 2 * 85
    usages = [(m.usage.input_tokens, m.usage.output_tokens) for m in (with_images, text_only)]
    assert_billed(s, "sim-anthropic", usages, {"200": 2}, anthropic_cost)
    s.update("sim-anthropic", vision=False)
    with pytest.raises(anthropic.BadRequestError, match="does not accept images"):
        claude.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=200, messages=[{"role": "user", "content": content}]
        )
