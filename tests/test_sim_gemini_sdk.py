"""The official google-genai SDK, pointed at the simulator, parses every kind of answer it gives (text,
streams, function calls, structured output, images) and raises its own error for every status.

Both API versions the SDK may pick (v1, its default, and v1beta) are exercised; the simulator's
counters must equal what the SDK was told.
"""

from __future__ import annotations

import base64
import json
from typing import Literal

import pydantic
import pytest
from google import genai
from google.genai import errors, types
from helpers import simulator_fixtures

from llmroute_magic.sim import ProviderProfile

MODEL = "gemini-2.5-flash"
PROMPT = "Name three prime numbers."
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PRICES = {"input_price": 0.3, "output_price": 2.5}


sim, s = simulator_fixtures(
    [
        ProviderProfile("sdk-gemini", api="gemini", model=MODEL, retry_after_s=2.5, seed=7, **PRICES),
        ProviderProfile("sdk-gemini-keyed", api="gemini", model=MODEL, require_api_key="AIza-right", **PRICES),
    ]
)


def client_for(sim, version: str | None = None, name: str = "sdk-gemini", key: str = "test") -> genai.Client:
    options = (
        types.HttpOptions(base_url=sim.base_url(name), api_version=version)
        if version
        else types.HttpOptions(base_url=sim.base_url(name))
    )
    return genai.Client(api_key=key, http_options=options)


# One client per API version for the module: v1 is the SDK's default, v1beta the other one it uses.
@pytest.fixture(scope="module", params=["v1", "v1beta"])
def gc(request, sim):
    with client_for(sim, None if request.param == "v1" else request.param) as client:
        yield client


def stats(sim, name="sdk-gemini"):
    return sim.stats()["providers"][name]


def cost(i, o):
    return i * 0.3 / 1e6 + o * 2.5 / 1e6


def assert_billed(sim, usages, statuses, name="sdk-gemini"):
    st = stats(sim, name)
    i, o = sum(u[0] for u in usages), sum(u[1] for u in usages)
    assert st["statuses"] == statuses
    assert (st["input_tokens"], st["output_tokens"]) == (i, o)
    assert st["cost"] == pytest.approx(cost(i, o), rel=1e-12)


def usage(response) -> tuple[int, int]:
    u = response.usage_metadata
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count
    return u.prompt_token_count, u.candidates_token_count


# -- text ------------------------------------------------------------------------------------------


def test_plain_and_streamed_text_agree_with_the_stats(s, gc):
    config = types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.2)
    plain = gc.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    assert plain.text and plain.candidates[0].finish_reason == types.FinishReason.STOP
    assert plain.model_version == MODEL and plain.response_id
    assert plain.usage_metadata.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    chunks = list(gc.models.generate_content_stream(model=MODEL, contents=PROMPT, config=config))
    assert len(chunks) > 3 and "".join(c.text for c in chunks) == plain.text
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[0].usage_metadata.prompt_token_count == plain.usage_metadata.prompt_token_count  # every frame
    assert usage(chunks[-1]) == usage(plain)
    assert_billed(s, [usage(plain), usage(chunks[-1])], {"200": 2})


def test_max_output_tokens_cuts_the_answer(s, gc):
    cut = gc.models.generate_content(
        model=MODEL, contents=PROMPT, config=types.GenerateContentConfig(max_output_tokens=4)
    )
    assert cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert cut.usage_metadata.candidates_token_count == 4


async def test_the_async_client_streams_too(s, gc):
    chunks = [c async for c in await gc.aio.models.generate_content_stream(model=MODEL, contents=PROMPT)]
    plain = await gc.aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert "".join(c.text for c in chunks) == plain.text
    assert_billed(s, [usage(chunks[-1]), usage(plain)], {"200": 2})


# -- function calling ------------------------------------------------------------------------------


class GetWeather(pydantic.BaseModel):
    """Current weather for a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]
    days: int = pydantic.Field(ge=1, le=7)


WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Current weather for a city", parameters_json_schema=GetWeather.model_json_schema()
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


def test_function_calls_plain_and_streamed(s, gc):
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=NO_AFC,
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_weather"]
            )
        ),
    )
    plain = gc.models.generate_content(model=MODEL, contents="What is the weather in Paris?", config=config)
    call = plain.function_calls[0]
    assert call.name == "get_weather" and plain.candidates[0].finish_reason == types.FinishReason.STOP
    args = GetWeather.model_validate(call.args)
    signature = plain.candidates[0].content.parts[0].thought_signature
    assert isinstance(signature, bytes) and signature  # decoded from base64 by the SDK, as from Gemini
    chunks = list(
        gc.models.generate_content_stream(model=MODEL, contents="What is the weather in Paris?", config=config)
    )
    streamed = [c for chunk in chunks for c in chunk.function_calls or ()]
    assert [GetWeather.model_validate(c.args) for c in streamed] == [args]  # a call comes whole
    auto = gc.models.generate_content(
        model=MODEL,
        contents="Just say hello.",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER])], automatic_function_calling=NO_AFC
        ),
    )
    assert auto.function_calls is None and auto.text  # AUTO, no tool named: text
    assert_billed(s, [usage(plain), usage(chunks[-1]), usage(auto)], {"200": 3})


def test_automatic_function_calling_sends_the_result_back(s, gc):
    seen = []

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        seen.append(city)
        return "18 C and sunny"

    answer = gc.models.generate_content(
        model=MODEL,
        contents="Weather in Oslo? Use get_weather.",
        config=types.GenerateContentConfig(tools=[get_weather]),
    )
    assert len(seen) == 1 and answer.text  # the SDK ran the function, sent its result, got text back
    history = answer.automatic_function_calling_history
    assert [p.function_call.name for c in history for p in c.parts if p.function_call] == ["get_weather"]
    assert [p.function_response.response for c in history for p in c.parts if p.function_response] == [
        {"result": "18 C and sunny"}
    ]
    assert stats(s)["statuses"] == {"200": 2}


# -- structured output -----------------------------------------------------------------------------


class Address(pydantic.BaseModel):
    street: str
    city: str


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    tags: list[str]
    address: Address


@pytest.mark.parametrize("how", ["response_schema", "response_json_schema"])
def test_structured_output_with_a_pydantic_model(s, gc, how):
    # response_schema: the SDK turns the model into Google's OpenAPI subset ("OBJECT", no $ref);
    # response_json_schema: the model's own JSON schema, $defs and all.
    schema = Person if how == "response_schema" else Person.model_json_schema()
    config = types.GenerateContentConfig(response_mime_type="application/json", **{how: schema})
    plain = gc.models.generate_content(model=MODEL, contents="Describe a person.", config=config)
    person = plain.parsed if how == "response_schema" else Person.model_validate(plain.parsed)
    assert isinstance(person, Person)
    chunks = list(gc.models.generate_content_stream(model=MODEL, contents="Describe a person.", config=config))
    assert Person.model_validate_json("".join(c.text for c in chunks)) == person
    json_mode = gc.models.generate_content(
        model=MODEL,
        contents="Describe a person.",
        config=types.GenerateContentConfig(response_mime_type="application/json"),
    )
    assert isinstance(json.loads(json_mode.text), dict)  # schema-less JSON mode
    assert_billed(s, [usage(plain), usage(chunks[-1]), usage(json_mode)], {"200": 3})


def test_ignore_schema_gives_prose_the_sdk_cannot_parse(s, gc):
    s.inject("sdk-gemini", ["ignore_schema"])
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Person)
    prose = gc.models.generate_content(model=MODEL, contents="Describe a person.", config=config)
    assert prose.parsed is None and prose.text and not prose.text.startswith("{")
    assert stats(s)["statuses"] == {"ignore_schema": 1}


# -- images ----------------------------------------------------------------------------------------


def test_images_inline_and_by_uri(s, gc):
    text = "What is in these pictures?"
    with_images = gc.models.generate_content(
        model=MODEL,
        contents=[
            text,
            types.Part.from_bytes(data=PNG, mime_type="image/png"),
            types.Part.from_uri(file_uri="https://example.com/cat.jpg", mime_type="image/jpeg"),
        ],
    )
    text_only = gc.models.generate_content(model=MODEL, contents=text)
    assert with_images.usage_metadata.prompt_token_count == text_only.usage_metadata.prompt_token_count + 2 * 85
    assert [d.modality for d in with_images.usage_metadata.prompt_tokens_details] == [
        types.MediaModality.TEXT,
        types.MediaModality.IMAGE,
    ]
    assert with_images.text == text_only.text
    assert_billed(s, [usage(with_images), usage(text_only)], {"200": 2})
    s.update("sdk-gemini", vision=False)
    with pytest.raises(errors.ClientError, match="does not accept images") as info:
        gc.models.generate_content(model=MODEL, contents=[text, types.Part.from_bytes(data=PNG, mime_type="image/png")])
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")


# -- errors ----------------------------------------------------------------------------------------

# fault -> (SDK exception, HTTP status, Google status)
ERRORS = [
    ("rate_limit", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    ("rate_limit_no_retry_after", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    ("insufficient_quota", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    ("server_error", errors.ServerError, 500, "INTERNAL"),
    ("stream_error", errors.ServerError, 500, "INTERNAL"),  # on a plain request: a 500
    ("bad_gateway", errors.ServerError, 502, "UNAVAILABLE"),
    ("unavailable", errors.ServerError, 503, "UNAVAILABLE"),
    ("overloaded", errors.ServerError, 503, "UNAVAILABLE"),
    ("gateway_timeout", errors.ServerError, 504, "DEADLINE_EXCEEDED"),
    ("invalid_request", errors.ClientError, 400, "INVALID_ARGUMENT"),
    ("context_length", errors.ClientError, 400, "INVALID_ARGUMENT"),
    ("unauthorized", errors.ClientError, 400, "INVALID_ARGUMENT"),  # Google answers a bad key with 400
    ("forbidden", errors.ClientError, 403, "PERMISSION_DENIED"),
    ("model_not_found", errors.ClientError, 404, "NOT_FOUND"),
]


CASES = [
    pytest.param(*e, streamed, id=f"{e[0]}-{'stream' if streamed else 'plain'}")
    for e in ERRORS
    for streamed in (False, True)
    if not (streamed and e[0] == "stream_error")
]  # that one: a frame, below


@pytest.mark.parametrize("fault, exc, code, status, streamed", CASES)
def test_each_error_status_is_the_sdks_own_exception(s, gc, fault, exc, code, status, streamed):
    s.inject("sdk-gemini", [fault])
    with pytest.raises(exc) as info:
        if streamed:
            list(gc.models.generate_content_stream(model=MODEL, contents=PROMPT))
        else:
            gc.models.generate_content(model=MODEL, contents=PROMPT)
    err = info.value
    assert (err.code, err.status) == (code, status) and err.message
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in err.details["error"].get("details", [])}
    if fault == "rate_limit":
        assert details["RetryInfo"]["retryDelay"] == "2.500s"
        assert "PerMinute" in details["QuotaFailure"]["violations"][0]["quotaId"]
    elif fault == "insufficient_quota":
        assert "PerDay" in details["QuotaFailure"]["violations"][0]["quotaId"] and "RetryInfo" not in details
    elif fault == "unauthorized":
        assert details["ErrorInfo"]["reason"] == "API_KEY_INVALID"
    elif fault == "context_length":
        assert err.message.startswith("The input token count (")
    elif fault == "model_not_found":
        assert err.message.startswith(f"models/{MODEL} is not found for API version v1")
    assert stats(s)["statuses"] == {str(code): 1} and stats(s)["input_tokens"] == 0


def test_a_wrong_or_missing_key_is_refused_and_the_right_one_accepted(s):
    with client_for(s, name="sdk-gemini-keyed", key="AIza-wrong") as wrong:
        with pytest.raises(errors.ClientError, match="API key not valid") as info:
            wrong.models.generate_content(model=MODEL, contents=PROMPT)
    assert info.value.code == 400
    with client_for(s, name="sdk-gemini-keyed", key="AIza-right") as right:
        assert right.models.generate_content(model=MODEL, contents=PROMPT).text
    assert stats(s, "sdk-gemini-keyed")["statuses"] == {"400": 1, "200": 1}


def test_a_mid_stream_error_frame_raises_after_the_first_text(s, gc):
    s.inject("sdk-gemini", ["stream_error"])
    seen = []
    with pytest.raises(errors.ServerError, match="internal error") as info:
        for chunk in gc.models.generate_content_stream(model=MODEL, contents=PROMPT):
            seen.append(chunk)
    assert seen and seen[0].text and (info.value.code, info.value.status) == (500, "INTERNAL")
    assert all(c.candidates[0].finish_reason is None for c in seen)
    # Every frame told the prompt's tokens, so they are billed; the output count never came.
    assert_billed(s, [(seen[0].usage_metadata.prompt_token_count, 0)], {"stream_error": 1})


def test_unknown_provider_is_not_found(s):
    with genai.Client(api_key="test", http_options=types.HttpOptions(base_url=f"{s.url}/no-such")) as c:
        with pytest.raises(errors.ClientError, match="known providers: sdk-gemini") as info:
            c.models.generate_content(model=MODEL, contents=PROMPT)
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
