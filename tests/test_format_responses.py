"""The OpenAI Responses API (``api="openai-responses"``) end to end, over real loopback HTTP.

Four layers, each against the simulator's ``openai-responses`` format (no mocks of our own code):

1. the adapter's request bodies and its reading of the stream events the simulator never sends
   (an ``error`` event, a gateway that leaves out ``output_item.done``);
2. the official ``openai`` SDK (``client.responses.create / .stream / .parse``) parses every answer
   the simulator gives and raises its own exception, with the right status, for every error;
3. the router: (plain, streamed) x (text, tools, schema, image) with the ledger equal to what the
   simulator served and billed, failover from prose to valid JSON, images kept away from a
   provider without vision, every fault kind mapped into the error tree, a cancelled stream, a
   missing key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Literal

import jsonschema
import openai
import pydantic
import pytest
from helpers import (
    assert_ledger_matches_sim,
    cancel_after_first_item,
    injected_fault_outcomes,
    make_router,
    rows,
    simulator_fixtures,
    streamed_or_plain_outcome,
    wait_until,
)

from llmroute_magic import (
    AllProvidersFailed,
    ConfigError,
    ModelClientRouter,
    ProviderError,
    ProviderRoutingConfig,
    ProviderSpec,
)
from llmroute_magic._providers import adapter_for
from llmroute_magic._providers._failures import AttemptContext
from llmroute_magic._providers._sse import ServerSentEvent
from llmroute_magic._providers.openai_responses import OpenAIResponsesAdapter
from llmroute_magic._request import build_request
from llmroute_magic._types import ToolCall
from llmroute_magic.sim import FAULT_KINDS, ProviderProfile
from llmroute_magic.sim._neutral import IMAGE_TOKENS

API = "openai-responses"
PRICES = {"input_price": 0.15, "output_price": 0.60}
RETRY_AFTER_S = 2.5
PROFILES = [
    ProviderProfile("resp-a", api=API, model="gpt-4o-mini", retry_after_s=RETRY_AFTER_S, seed=1, **PRICES),
    ProviderProfile("resp-b", api=API, model="gpt-4.1-mini", input_price=0.4, output_price=1.6, seed=2),
    ProviderProfile("resp-blind", api=API, model="gpt-4o-mini", vision=False, seed=3, **PRICES),
    ProviderProfile("resp-drip", api=API, model="gpt-4o-mini", tokens_per_s=20.0, seed=4, **PRICES),
]

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_B64 = base64.b64encode(PNG).decode()
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_SCHEMA}


class City(pydantic.BaseModel):
    name: str
    population: int = pydantic.Field(ge=0)


class GetWeather(pydantic.BaseModel):
    """Current weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    tags: list[str]
    address: City


sim, fresh = simulator_fixtures(PROFILES)


def counters(sim, name: str = "resp-a") -> dict:
    return sim.stats()["providers"][name]


# == 1. the adapter ======================================================================================


def chat(prompt, **options):
    spec = ProviderSpec("p", "m", base_url="http://127.0.0.1:9/v1")
    return build_request(prompt, options, config=ProviderRoutingConfig([spec]), request_id="r", streamed=False).chat


def adapter(url: str = "http://127.0.0.1:9/v1", **spec) -> OpenAIResponsesAdapter:
    return OpenAIResponsesAdapter(ProviderSpec("p-resp", "gpt-test", api=API, base_url=url, **spec), None)


TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            ToolCall("call_1", "get_weather", {"city": "Paris"}),
            {"id": "call_2", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "9 C"},
]


def test_the_registry_gives_this_adapter_for_its_api():
    assert adapter_for(API) is OpenAIResponsesAdapter
    assert ProviderSpec("openai", "gpt-4o", api=API).base_url == "https://api.openai.com/v1"


def test_body_carries_system_images_model_limits_and_never_asks_to_store():
    prompt = [
        {
            "role": "user",
            "content": [
                "What is this?",
                {"type": "image", "data": PNG},
                {"type": "image", "url": "https://example.com/cat.png"},
            ],
        }
    ]
    body = adapter().build_body(
        chat(prompt, model="gpt-other", max_tokens=50, temperature=0.2, system="Be brief."), stream=False
    )
    assert body == {
        "model": "gpt-other",
        "store": False,
        "instructions": "Be brief.",
        "max_output_tokens": 50,
        "temperature": 0.2,
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"},
                ],
            }
        ],
    }
    streamed = adapter().build_body(chat("hi", top_p=0.5, store=True, max_output_tokens=7, max_tokens=3), stream=True)
    assert streamed["stream"] is True and streamed["input"] == [{"role": "user", "content": "hi"}]
    assert (streamed["top_p"], streamed["store"], streamed["max_output_tokens"]) == (0.5, True, 7)  # params win
    assert "stream" not in adapter().build_body(chat("hi", stream=True), stream=False)


def test_body_carries_tools_earlier_calls_their_results_and_a_schema():
    body = adapter().build_body(chat(TOOL_TURNS, tools=[WEATHER_TOOL], tool_choice="get_weather"), stream=False)
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER_SCHEMA,
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["input"] == [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
        {"type": "function_call_output", "call_id": "call_2", "output": "9 C"},
    ]
    assert (
        adapter().build_body(chat("hi", tools=[WEATHER_TOOL], tool_choice="required"), False)["tool_choice"]
        == "required"
    )
    body = adapter().build_body(chat("Biggest city?", response_format=City), stream=False)
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "City", "schema": City.model_json_schema(), "strict": False}
    }


def test_a_tool_result_with_an_image_goes_as_parts():
    turns = [
        *TOOL_TURNS[:2],
        {"role": "tool", "tool_call_id": "call_1", "content": ["A chart:", {"type": "image", "data": PNG}]},
    ]
    body = adapter().build_body(chat(turns, tools=[WEATHER_TOOL]), stream=False)
    assert body["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": [
            {"type": "input_text", "text": "A chart:"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
        ],
    }


def feed(events: list[tuple[str, dict]], ctx: AttemptContext | None = None):
    ctx = ctx or AttemptContext("p-resp", "gpt-test")
    parser = adapter().stream_parser(ctx, chat("hi"))
    texts = [parser.feed(ServerSentEvent(name, json.dumps({"type": name, **payload}))) for name, payload in events]
    return parser, "".join(t for t in texts if t)


DONE = (
    "response.completed",
    {
        "response": {
            "model": "gpt-test-2025",
            "status": "completed",
            "usage": {
                "input_tokens": 30,
                "input_tokens_details": {"cached_tokens": 12, "cache_write_tokens": 5},
                "output_tokens": 9,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 39,
            },
        }
    },
)


def test_stream_events_the_simulator_never_sends_are_read_too():
    # A gateway that sends no output_item.done: the call is made of its deltas at the end.
    parser, text = feed(
        [
            (
                "response.output_item.added",
                {
                    "output_index": 0,
                    "item": {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": ""},
                },
            ),
            ("response.function_call_arguments.delta", {"output_index": 0, "delta": '{"city":'}),
            ("response.function_call_arguments.delta", {"output_index": 0, "delta": '"Oslo"}'}),
            DONE,
        ]
    )
    result = parser.result(200, None)
    assert result.tool_calls == (ToolCall("call_9", "get_weather", {"city": "Oslo"}),) and text == ""
    assert (result.finish_reason, result.model, result.input_tokens, result.output_tokens) == (
        "tool_calls",
        "gpt-test-2025",
        30,
        9,
    )
    assert (result.cache_read_tokens, result.cache_write_tokens) == (12, 5)


def test_commentary_is_not_part_of_the_answer_plain_or_streamed():
    """Newer models label a remark on the way to the answer ``phase: commentary`` (a schema answer
    must not start with it)."""

    def message(mid, phase, text):
        return {"id": mid, "type": "message", "phase": phase, "content": [{"type": "output_text", "text": text}]}

    payload = {
        "status": "completed",
        "output": [message("m1", "commentary", "Let me think. "), message("m2", "final_answer", '{"n": 1}')],
    }
    assert adapter().parse_response(payload, 200, chat("hi")).text == '{"n": 1}'
    parser, text = feed(
        [
            ("response.output_item.added", {"output_index": 0, "item": message("m1", "commentary", "")}),
            ("response.output_text.delta", {"item_id": "m1", "output_index": 0, "delta": "Let me think. "}),
            ("response.output_item.added", {"output_index": 1, "item": message("m2", "final_answer", "")}),
            ("response.output_text.delta", {"item_id": "m2", "output_index": 1, "delta": '{"n": 1}'}),
            DONE,
        ]
    )
    assert text == '{"n": 1}' and parser.done


@pytest.mark.parametrize(
    "event",
    [
        ("error", {"code": "rate_limit_exceeded", "message": "slow down", "param": None}),
        (
            "error",
            {"error": {"type": "server_error", "code": "server_error", "message": "boom"}},
        ),  # nested, as some send
        (
            "response.failed",
            {
                "response": {
                    "status": "failed",
                    "error": {"code": "server_error", "message": "boom"},
                    "usage": {"input_tokens": 30, "output_tokens": 2},
                }
            },
        ),
    ],
)
def test_error_events_fail_the_stream_with_what_was_shown_and_reported(event):
    ctx = AttemptContext("p-resp", "gpt-test")
    with pytest.raises(ProviderError) as info:
        feed([("response.output_text.delta", {"delta": "Hel"}), event], ctx)
    err = info.value
    assert err.error_type == "stream_error" and err.status_code == 200 and "mid-stream" in err.message
    reported = event[1].get("response", {}).get("usage")
    assert (err.input_tokens, err.output_tokens) == ((30, 2) if reported else (0, 0))


def test_an_incomplete_answer_says_why_in_chat_completions_words():
    a = adapter()
    for details, reason in (
        ({"reason": "max_output_tokens"}, "length"),
        ({"reason": "content_filter"}, "content_filter"),
    ):
        payload = {"status": "incomplete", "incomplete_details": details, "output": [], "usage": None}
        assert a.parse_response(payload, 200, chat("hi")).finish_reason == reason
    result = a.parse_response(
        {"status": "completed", "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]},
        200,
        chat("hi"),
    )
    assert (result.text, result.input_tokens, result.output_tokens) == ("Hi", None, None)  # no usage: unknown
    with pytest.raises(ValueError, match="the response failed: server_error"):  # read as malformed, retryable
        a.parse_response(
            {"status": "failed", "error": {"code": "server_error", "message": "x"}, "output": []}, 200, chat("hi")
        )


# == 2. the official SDK against the simulator ============================================================


@pytest.fixture(scope="module")
def oai(sim):
    with openai.OpenAI(base_url=sim.base_url("resp-a"), api_key="test", max_retries=0) as client:
        yield client


PROMPT = "Name three prime numbers."
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]


def cost(usages) -> float:
    return sum(i * PRICES["input_price"] / 1e6 + o * PRICES["output_price"] / 1e6 for i, o in usages)


def assert_billed(sim, responses, statuses: dict, name: str = "resp-a") -> None:
    usages = [(r.usage.input_tokens, r.usage.output_tokens) for r in responses]
    st = counters(sim, name)
    assert st["statuses"] == statuses
    assert (st["input_tokens"], st["output_tokens"]) == tuple(map(sum, zip(*usages)))
    assert st["cost"] == pytest.approx(cost(usages), rel=1e-12)


def test_sdk_plain_raw_stream_and_stream_helper_agree_with_the_stats(fresh, oai):
    plain = oai.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="Be brief.", store=False)
    assert plain.object == "response" and plain.status == "completed" and plain.model == "gpt-4o-mini"
    assert plain.output_text and plain.output[0].type == "message" and plain.output[0].role == "assistant"
    usage = plain.usage
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    assert plain.usage.total_tokens == plain.usage.input_tokens + plain.usage.output_tokens and not plain.store
    events = list(oai.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="Be brief.", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:4]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert [e.type for e in events[-4:]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == plain.output_text
    assert events[0].response.usage is None and events[-1].response.usage == plain.usage
    with oai.responses.stream(model="gpt-4o-mini", input=PROMPT, instructions="Be brief.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == plain.output_text and len(deltas) == plain.usage.output_tokens
    assert_billed(fresh, [plain, events[-1].response, final], {"200": 3})


def test_sdk_max_output_tokens_gives_an_incomplete_response(fresh, oai):
    cut = oai.responses.create(model="gpt-4o-mini", input=PROMPT, max_output_tokens=16)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens == 16 and cut.output[0].status == "incomplete"
    events = list(oai.responses.create(model="gpt-4o-mini", input=PROMPT, max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.usage == cut.usage
    assert_billed(fresh, [cut, events[-1].response], {"200": 2})


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_sdk_max_output_tokens_below_16_is_the_apis_400(fresh, oai, stream):
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model="gpt-4o-mini", input=PROMPT, max_output_tokens=8, stream=stream)
    err = info.value
    assert (err.status_code, err.code, err.param) == (400, "integer_below_min_value", "max_output_tokens")
    assert err.body["message"] == (
        "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 8 instead."
    )
    st = counters(fresh, "resp-a")
    assert (st["statuses"], st["input_tokens"], st["output_tokens"], st["cost"]) == ({"400": 1}, 0, 0, 0.0)


def test_sdk_tool_calls_plain_parsed_streamed_and_answered(fresh, oai):
    tool = openai.pydantic_responses_function_tool(GetWeather, name="get_weather")
    plain = oai.responses.create(model="gpt-4o-mini", input=WEATHER_Q, tools=[tool])
    call = plain.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    args = GetWeather.model_validate_json(call.arguments)
    parsed = oai.responses.parse(model="gpt-4o-mini", input=WEATHER_Q, tools=[tool])
    assert parsed.output[0].parsed_arguments == args
    with oai.responses.stream(model="gpt-4o-mini", input=WEATHER_Q, tools=[tool]) as stream:
        deltas = [e for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1 and deltas[-1].snapshot == call.arguments  # the arguments arrive in pieces
    assert final.output[0].parsed_arguments == args and final.output[0].call_id == call.call_id
    answered = oai.responses.create(
        model="gpt-4o-mini",
        tools=[tool],
        input=[
            *WEATHER_Q,
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"},
        ],
    )
    assert answered.output[0].type == "message" and answered.output_text  # a tool result gets text back
    assert_billed(fresh, [plain, parsed, final, answered], {"200": 4})


def test_sdk_structured_output_with_a_pydantic_model(fresh, oai):
    question = [{"role": "user", "content": "Describe a person."}]
    parsed = oai.responses.parse(model="gpt-4o-mini", input=question, text_format=Person)
    person = parsed.output_parsed
    assert isinstance(person, Person) and parsed.status == "completed"
    with oai.responses.stream(model="gpt-4o-mini", input=question, text_format=Person) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == person
    raw = oai.responses.create(
        model="gpt-4o-mini",
        input=question,
        text={"format": {"type": "json_schema", "name": "person", "schema": Person.model_json_schema()}},
    )
    assert Person.model_validate_json(raw.output_text) == person
    json_mode = oai.responses.create(model="gpt-4o-mini", input=question, text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(json_mode.output_text), dict)
    assert_billed(fresh, [parsed, final, raw, json_mode], {"200": 4})
    fresh.inject("resp-a", ["ignore_schema"])
    with pytest.raises(pydantic.ValidationError):
        oai.responses.parse(model="gpt-4o-mini", input=question, text_format=Person)
    assert counters(fresh)["statuses"] == {"200": 4, "ignore_schema": 1}


def test_sdk_images_by_data_url_https_url_and_a_provider_without_vision(fresh, oai):
    text = "What is in these pictures?"
    content = [
        {"type": "input_text", "text": text},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "low"},
    ]
    with_images = oai.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": content}])
    text_only = oai.responses.create(model="gpt-4o-mini", input=text)
    assert with_images.usage.input_tokens == text_only.usage.input_tokens + 2 * IMAGE_TOKENS
    assert with_images.output_text == text_only.output_text
    assert_billed(fresh, [with_images, text_only], {"200": 2})
    with openai.OpenAI(base_url=fresh.base_url("resp-blind"), api_key="test", max_retries=0) as blind:
        with pytest.raises(openai.BadRequestError, match="does not accept images") as info:
            blind.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": content}])
    assert info.value.param == "input"


# fault -> (SDK exception, status)
SDK_ERRORS = [
    ("rate_limit", openai.RateLimitError, 429),
    ("rate_limit_no_retry_after", openai.RateLimitError, 429),
    ("insufficient_quota", openai.RateLimitError, 429),
    ("server_error", openai.InternalServerError, 500),
    ("bad_gateway", openai.InternalServerError, 502),
    ("unavailable", openai.InternalServerError, 503),
    ("gateway_timeout", openai.InternalServerError, 504),
    ("overloaded", openai.APIStatusError, 529),
    ("invalid_request", openai.BadRequestError, 400),
    ("context_length", openai.BadRequestError, 400),
    ("unauthorized", openai.AuthenticationError, 401),
    ("forbidden", openai.PermissionDeniedError, 403),
    ("model_not_found", openai.NotFoundError, 404),
    ("stream_error", openai.InternalServerError, 500),  # on a plain request
]


# A streamed request gets stream_error inside its stream: test_sdk_sees_a_mid_stream_failure.
SDK_CASES = [
    pytest.param(fault, exc, status, streamed, id=f"{fault}-{'stream' if streamed else 'plain'}")
    for fault, exc, status in SDK_ERRORS
    for streamed in (False, True)
    if not (streamed and fault == "stream_error")
]


@pytest.mark.parametrize("fault, exc, status, streamed", SDK_CASES)
def test_sdk_raises_its_own_exception_for_each_error_status(fresh, oai, fault, exc, status, streamed):
    fresh.inject("resp-a", [fault])
    with pytest.raises(exc) as info:
        oai.responses.create(model="gpt-4o-mini", input=PROMPT, stream=streamed)
    err = info.value
    assert err.status_code == status and err.message
    headers = err.response.headers
    assert ("retry-after" in headers) == (fault == "rate_limit")
    if fault == "rate_limit":
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")
    expected_code = {
        "insufficient_quota": "insufficient_quota",
        "context_length": "context_length_exceeded",
        "model_not_found": "model_not_found",
        "rate_limit": "rate_limit_exceeded",
        "unauthorized": "invalid_api_key",
    }.get(fault)
    if expected_code:
        assert err.code == expected_code
    st = counters(fresh)
    assert st["statuses"] == {str(status): 1} and st["input_tokens"] == st["output_tokens"] == 0


def test_sdk_sees_a_mid_stream_failure_and_nothing_is_billed(fresh, oai):
    fresh.inject("resp-a", ["stream_error", "stream_error"])
    events = list(oai.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True))
    assert any(e.type == "response.output_text.delta" for e in events)  # some text came first
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"
    assert events[-1].response.error.code == "server_error" and events[-1].response.usage is None
    with pytest.raises(RuntimeError, match="response.completed"):
        with oai.responses.stream(model="gpt-4o-mini", input=PROMPT) as stream:
            stream.get_final_response()
    st = counters(fresh)
    assert st["statuses"] == {"stream_error": 2} and st["input_tokens"] == st["output_tokens"] == 0


def test_sdk_unknown_provider_and_unusable_bodies(fresh):
    with openai.OpenAI(base_url=f"{fresh.url}/no-such/v1", api_key="test", max_retries=0) as o:
        with pytest.raises(openai.NotFoundError, match="known providers: resp-a"):
            o.responses.create(model="gpt-4o-mini", input=PROMPT)
    with openai.OpenAI(base_url=fresh.base_url("resp-a"), api_key="test", max_retries=0) as o:
        with pytest.raises(openai.BadRequestError, match="stores no responses") as info:
            o.responses.create(model="gpt-4o-mini", input=PROMPT, previous_response_id="resp_123")
        assert info.value.param == "previous_response_id"
        with pytest.raises(openai.BadRequestError, match="'tool_choice'|tool_choice") as info:
            o.responses.create(model="gpt-4o-mini", input=PROMPT, tool_choice="required")
    assert counters(fresh)["statuses"] == {"400": 2} and counters(fresh)["input_tokens"] == 0


# == 3. through the router ==============================================================================


def image_prompt(text: str = "What is in this picture?") -> list[dict]:
    return [{"role": "user", "content": [text, {"type": "image", "data": PNG}]}]


KINDS = {
    "text": ("Explain the CAP theorem in one line.", {}),
    "tools": ("What is the weather in Oslo? Use get_weather.", {"tools": [WEATHER_TOOL]}),
    "schema": ("Describe a city.", {"response_format": City}),
    "image": (image_prompt(), {}),
}


def ask(router: ModelClientRouter, streamed: bool, prompt, **options):
    if not streamed:
        return router.complete(prompt, **options), []
    s = router.stream(prompt, **options)
    chunks = list(s)
    return s.completion, chunks


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_matrix_plain_and_streamed_with_the_ledger_equal_to_the_simulator(fresh, kind):
    prompt, options = KINDS[kind]
    with make_router(fresh, ["resp-a"]) as r:
        plain, _ = ask(r, False, prompt, **options)
        assert_ledger_matches_sim(r, fresh)
        streamed, chunks = ask(r, True, prompt, **options)
        assert_ledger_matches_sim(r, fresh)
        ledger = rows(r)
    assert "".join(chunks) == streamed.text == plain.text
    for c in (plain, streamed):
        assert c.provider == "resp-a" and c.model == "gpt-4o-mini" and c.attempts == 1
        assert c.input_tokens > 0 and c.output_tokens > 0
        assert c.cost == pytest.approx(c.input_tokens * 0.15 / 1e6 + c.output_tokens * 0.60 / 1e6, rel=1e-12)
    assert (streamed.input_tokens, streamed.output_tokens, streamed.tool_calls, streamed.parsed) == (
        plain.input_tokens,
        plain.output_tokens,
        plain.tool_calls,
        plain.parsed,
    )
    assert [(x["status"], x["streamed"]) for x in ledger] == [("ok", False), ("ok", True)]
    if kind == "tools":
        (call,) = plain.tool_calls
        assert call.name == "get_weather" and call.id.startswith("call_") and plain.text == ""
        jsonschema.validate(call.arguments, WEATHER_SCHEMA)
        assert plain.finish_reason == streamed.finish_reason == "tool_calls"
    else:
        assert plain.text and plain.tool_calls == () and plain.finish_reason == "stop"
    if kind == "schema":
        assert isinstance(plain.parsed, City) and City.model_validate_json(plain.text) == plain.parsed
    else:
        assert plain.parsed is None
    if kind == "image":
        assert counters(fresh)["input_tokens"] == 2 * plain.input_tokens
        assert plain.input_tokens > IMAGE_TOKENS


def test_a_tool_result_goes_back_and_the_answer_is_text(fresh):
    with make_router(fresh, ["resp-a"]) as r:
        first = r.complete("What is the weather in Oslo? Use get_weather.", tools=[WEATHER_TOOL])
        (call,) = first.tool_calls
        turns = [
            {"role": "user", "content": "What is the weather in Oslo? Use get_weather."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call.id, "content": "9 C, cloudy"},
        ]
        second = r.complete(turns, tools=[WEATHER_TOOL])
        assert second.text and second.tool_calls == () and second.finish_reason == "stop"
        assert second.input_tokens > first.input_tokens  # the call and its result were sent
        forced = r.complete("Hello.", tools=[WEATHER_TOOL], tool_choice="get_weather", max_tokens=500)
        assert [c.name for c in forced.tool_calls] == ["get_weather"]
        assert r.complete("Hello.", model="gpt-4.1-nano").model == "gpt-4.1-nano"  # the request's model is sent
    assert_ledger_matches_sim(r, fresh)


def test_max_tokens_cuts_the_answer_with_finish_reason_length(fresh):
    with make_router(fresh, ["resp-a"]) as r:
        plain = r.complete("Tell me a story.", max_tokens=20)
        s = r.stream("Tell me a story.", max_tokens=20)
        assert "".join(s) == plain.text
    assert (plain.output_tokens, plain.finish_reason) == (20, "length")
    assert (s.completion.output_tokens, s.completion.finish_reason) == (20, "length")
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_max_tokens_below_the_apis_minimum_is_sent_as_16_and_billed_as_answered(fresh, streamed):
    """The API refuses max_output_tokens < 16: the router asks for 16, and the answer, up to 16
    tokens, is shown and billed whole (not cut to what was asked: the billed tokens would not match)."""
    with make_router(fresh, ["resp-a"]) as r:
        c, _ = ask(r, streamed, "Tell me a story.", max_tokens=3)
        assert [(x["status"], x["output_tokens"]) for x in rows(r)] == [("ok", 16)]
    assert (c.output_tokens, c.finish_reason, len(c.text.split())) == (16, "length", 16)
    assert fresh.stats()["providers"]["resp-a"]["statuses"] == {"200": 1}
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_an_answer_without_usage_has_unknown_tokens_and_cost_never_zero(fresh, streamed):
    fresh.update("resp-a", no_usage=True)  # a gateway that sends "usage": null
    with make_router(fresh, ["resp-a"]) as r:
        c, _ = ask(r, streamed, "Explain the CAP theorem in one line.")
        (row,) = rows(r)
    assert c.text and (c.input_tokens, c.output_tokens) == (None, None) and math.isnan(c.cost)
    assert row["status"] == "ok" and row["input_tokens"] is None and math.isnan(row["cost"])
    assert counters(fresh)["statuses"] == {"200": 1} and counters(fresh)["cost"] == 0.0  # nothing was reported


def test_failover_from_prose_to_valid_json(fresh):
    fresh.inject("resp-a", ["ignore_schema"])
    with make_router(fresh, ["resp-a", "resp-b"], strategy="priority") as r:
        c = r.complete("Describe a city.", response_format=City)
        ledger = rows(r)
    assert c.provider == "resp-b" and c.attempts == 2 and isinstance(c.parsed, City)
    failed = ledger[0]
    assert (failed["provider"], failed["status"], failed["error_type"], failed["http_status"]) == (
        "resp-a",
        "error",
        "malformed_response",
        200,
    )
    assert failed["input_tokens"] > 0 and failed["output_tokens"] > 0 and failed["cost"] > 0  # prose is billed
    assert counters(fresh)["statuses"] == {"ignore_schema": 1} and counters(fresh, "resp-b")["statuses"] == {"200": 1}
    assert_ledger_matches_sim(r, fresh)


def test_streamed_prose_for_a_schema_fails_over_before_anything_is_shown(fresh):
    """A schema answer is read whole before the caller sees it, so prose moves on to the next
    provider instead of surfacing half shown."""
    fresh.inject("resp-a", ["ignore_schema"])
    with make_router(fresh, ["resp-a", "resp-b"], strategy="priority") as r:
        s = r.stream("Describe a city.", response_format=City)
        shown = list(s)
    assert s.completion.provider == "resp-b" and isinstance(s.completion.parsed, City)
    assert "".join(shown) == s.completion.text  # only the valid answer was shown
    assert [(x["provider"], x["status"]) for x in rows(r)] == [("resp-a", "error"), ("resp-b", "ok")]
    assert_ledger_matches_sim(r, fresh)


def test_an_image_request_skips_a_provider_without_vision(fresh):
    specs = fresh.provider_specs(["resp-blind", "resp-a"])
    assert "vision" not in specs[0].effective_capabilities and "vision" in specs[1].effective_capabilities
    with make_router(fresh, [], specs=specs, strategy="priority") as r:
        seen = r.complete(image_prompt())
        s = r.stream(image_prompt())
        list(s)
        text = r.complete("No picture this time.")
    assert seen.provider == s.completion.provider == "resp-a" and text.provider == "resp-blind"
    assert counters(fresh, "resp-blind")["requests"] == 1  # only the text request: no image ever reached it
    assert_ledger_matches_sim(r, fresh)
    with make_router(fresh, [], specs=specs[:1]) as r:
        with pytest.raises(ConfigError, match="needs vision.*resp-blind lacks vision"):
            r.complete(image_prompt())
    assert counters(fresh, "resp-blind")["requests"] == 1


# The Responses API fails as chat completions does; a streamed stream_error is a response.failed event.
RESPONSES_FAULTS = injected_fault_outcomes()


def test_the_fault_table_covers_every_fault_the_simulator_can_inject():
    assert set(RESPONSES_FAULTS) == set(FAULT_KINDS)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", list(RESPONSES_FAULTS))
def test_each_fault_maps_into_the_error_tree(fresh, fault, streamed):
    error_type, status = streamed_or_plain_outcome(RESPONSES_FAULTS, fault, streamed)
    spec = fresh.provider_specs(["resp-a"])[0]
    if fault == "hang":
        spec = spec.with_timeout(0.3)
    fresh.inject("resp-a", [fault])
    with make_router(fresh, [], specs=[spec], max_retries=0) as r:
        with pytest.raises((ProviderError, AllProvidersFailed)) as info:
            ask(r, streamed, "What is the CAP theorem?", max_tokens=24)
        ledger = rows(r)
    err = info.value.attempts[-1] if isinstance(info.value, AllProvidersFailed) else info.value
    assert (err.error_type, err.status_code, err.provider) == (error_type, status, "resp-a")
    assert err.retry_after == (RETRY_AFTER_S if fault == "rate_limit" else None)  # retry-after-ms wins
    assert [(x["status"], x["error_type"], x["http_status"], x["streamed"]) for x in ledger] == [
        ("error", error_type, status, streamed)
    ]
    if streamed and fault in ("stream_error", "truncated_stream"):
        assert err.partial_text  # the words shown before the failure travel with the error
    assert_ledger_matches_sim(r, fresh)


async def test_a_cancelled_stream_records_cancelled_with_what_was_reported(fresh):
    """The Responses API reports usage only at the end: a stream cancelled mid-way was told no
    tokens, so its row has none and costs nothing, exactly as the simulator billed it."""
    with make_router(fresh, ["resp-drip"]) as r:
        await cancel_after_first_item(r.astream("a long story", max_tokens=200))
        ledger = rows(r)
        await asyncio.to_thread(wait_until, lambda: counters(fresh, "resp-drip")["statuses"].get("disconnected"))
    assert [
        (x["status"], x["error_type"], x["streamed"], x["input_tokens"], x["output_tokens"], x["cost"]) for x in ledger
    ] == [("cancelled", "cancelled", True, 0, 0, 0.0)]
    assert counters(fresh, "resp-drip")["statuses"] == {"disconnected": 1}
    assert_ledger_matches_sim(r, fresh)


def test_a_missing_key_says_which_variable_to_set(fresh, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_GATEWAY_API_KEY", raising=False)
    specs = [
        ProviderSpec("openai", "gpt-4o-mini", api=API),
        ProviderSpec("my-gateway", "gpt-4o-mini", api=API, base_url="https://gateway.example.invalid/v1"),
    ]
    with ModelClientRouter(ProviderRoutingConfig(specs)) as r:
        for streamed in (False, True):
            with pytest.raises(AllProvidersFailed) as info:
                ask(r, streamed, "hi")
            msg = str(info.value)
            assert "set OPENAI_API_KEY" in msg and "set MY_GATEWAY_API_KEY" in msg
            assert [a.error_type for a in info.value.attempts] == ["missing_api_key"] * 2
        assert [x["error_type"] for x in rows(r)] == ["missing_api_key"] * 4  # every attempt has its row
