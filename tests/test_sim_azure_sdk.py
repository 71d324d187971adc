"""The official openai SDK's Azure clients, pointed at the simulator's Azure format, parse every answer it
gives (text, streams, tool calls, structured output, images, content-filtered answers) and raise their own
exception for every error, through both URL forms:

- ``AzureOpenAI(azure_endpoint=..., api_version=...)``: the legacy deployments URL;
- ``OpenAI(base_url=".../openai/v1/", default_headers={"api-key": ...})``: the v1 API.
"""

from __future__ import annotations

from typing import Literal

import openai
import pydantic
import pytest
from helpers import simulator_fixtures

from llmroute_magic.sim import ProviderProfile
from llmroute_magic.sim._wire.azure import COMPLETION_FILTER_TRIGGER, PROMPT_FILTER_TRIGGER

KEY = "azure-test-key"
VERSION = "2024-10-21"
DEPLOYMENT = "gpt-4o-mini"
PROMPT = "Name three prime numbers."
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
FORMS = ["legacy", "v1"]


sim, s = simulator_fixtures(
    [
        ProviderProfile(
            "az",
            api="azure",
            model=DEPLOYMENT,
            input_price=0.15,
            output_price=0.6,
            retry_after_s=2.5,
            require_api_key=KEY,
            seed=5,
        )
    ]
)


@pytest.fixture(scope="module")
def clients(sim):
    legacy = openai.AzureOpenAI(azure_endpoint=sim.base_url("az"), api_key=KEY, api_version=VERSION, max_retries=0)
    v1 = openai.OpenAI(
        base_url=sim.base_url("az") + "/openai/v1/", api_key=KEY, default_headers={"api-key": KEY}, max_retries=0
    )
    with legacy, v1:
        yield {"legacy": legacy, "v1": v1}


def ask(client, **extra):
    messages = extra.pop("messages", [{"role": "user", "content": PROMPT}])
    return client.chat.completions.create(model=DEPLOYMENT, messages=messages, **extra)


def cost(i, o):
    return i * 0.15 / 1e6 + o * 0.6 / 1e6


def assert_billed(sim, usages, statuses):
    st = sim.stats()["providers"]["az"]
    i, o = sum(u[0] for u in usages), sum(u[1] for u in usages)
    assert st["statuses"] == statuses
    assert (st["input_tokens"], st["output_tokens"]) == (i, o)
    assert st["cost"] == pytest.approx(cost(i, o), rel=1e-12)


# -- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_plain_and_streamed_answers_agree_with_the_stats(s, clients, form):
    client = clients[form]
    plain = ask(client)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason == "stop" and plain.model == DEPLOYMENT
    assert plain.usage.prompt_tokens_details.cached_tokens == 0
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    assert plain.prompt_filter_results[0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices == [] and chunks[0].prompt_filter_results  # Azure's annotation chunk comes first
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and (usage.prompt_tokens, usage.completion_tokens) == (
        plain.usage.prompt_tokens,
        plain.usage.completion_tokens,
    )
    assert_billed(s, [(plain.usage.prompt_tokens, plain.usage.completion_tokens)] * 2, {"200": 2})


def test_the_legacy_client_sends_the_deployment_in_the_path(s):
    """``azure_deployment=`` puts the deployment in the base URL: the path decides, whatever the body says."""
    with openai.AzureOpenAI(
        azure_endpoint=s.base_url("az"),
        azure_deployment="team-deployment",
        api_key=KEY,
        api_version=VERSION,
        max_retries=0,
    ) as client:
        answer = client.chat.completions.create(model="ignored", messages=[{"role": "user", "content": PROMPT}])
    assert answer.model == "team-deployment"


def test_a_bearer_key_works_on_the_v1_api_too(s):
    with openai.OpenAI(base_url=s.base_url("az") + "/openai/v1/", api_key=KEY, max_retries=0) as client:
        assert ask(client).choices[0].message.content
    with openai.OpenAI(base_url=s.base_url("az") + "/openai/v1/", api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            ask(client)


@pytest.mark.parametrize("form", FORMS)
def test_max_tokens_and_max_completion_tokens_both_cut_the_answer(s, clients, form):
    for field in ("max_tokens", "max_completion_tokens"):
        cut = ask(clients[form], **{field: 4})
        assert cut.usage.completion_tokens == 4 and cut.choices[0].finish_reason == "length"


# -- tools, structured output, images ------------------------------------------------------------


class GetWeather(pydantic.BaseModel):
    """Current weather for a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=120)
    tags: list[str]


WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]


@pytest.mark.parametrize("form", FORMS)
def test_tool_calls_plain_parsed_and_streamed(s, clients, form):
    client = clients[form]
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    plain = ask(client, messages=WEATHER_Q, tools=[tool])
    call = plain.choices[0].message.tool_calls[0]
    assert plain.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    args = GetWeather.model_validate_json(call.function.arguments)
    parsed = client.chat.completions.parse(model=DEPLOYMENT, messages=WEATHER_Q, tools=[tool])
    assert parsed.choices[0].message.tool_calls[0].function.parsed_arguments == args
    with client.chat.completions.stream(
        model=DEPLOYMENT, messages=WEATHER_Q, tools=[tool], stream_options={"include_usage": True}
    ) as stream:
        deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1
    assert final.choices[0].message.tool_calls[0].function.parsed_arguments == args
    assert final.choices[0].message.tool_calls[0].id == call.id
    usages = [(r.usage.prompt_tokens, r.usage.completion_tokens) for r in (plain, parsed, final)]
    assert usages[0] == usages[1] == usages[2]
    assert_billed(s, usages, {"200": 3})


@pytest.mark.parametrize("form", FORMS)
def test_structured_output_with_a_pydantic_model(s, clients, form):
    client = clients[form]
    messages = [{"role": "user", "content": "Describe a person."}]
    plain = client.chat.completions.parse(model=DEPLOYMENT, messages=messages, response_format=Person)
    person = plain.choices[0].message.parsed
    assert isinstance(person, Person)
    with client.chat.completions.stream(
        model=DEPLOYMENT, messages=messages, response_format=Person, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == person
    s.inject("az", ["ignore_schema"])
    with pytest.raises(pydantic.ValidationError):
        client.chat.completions.parse(model=DEPLOYMENT, messages=messages, response_format=Person)
    assert plain.usage.prompt_tokens == final.usage.prompt_tokens
    st = s.stats()["providers"]["az"]
    assert st["statuses"] == {"200": 2, "ignore_schema": 1}
    assert st["input_tokens"] == 3 * plain.usage.prompt_tokens  # the prose answer was billed too


@pytest.mark.parametrize("form", FORMS)
def test_images_by_data_url_and_https_url(s, clients, form):
    client = clients[form]
    text = "What is in these pictures?"
    content = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]
    with_images = ask(client, messages=[{"role": "user", "content": content}])
    text_only = ask(client, messages=[{"role": "user", "content": text}])
    assert with_images.usage.prompt_tokens == text_only.usage.prompt_tokens + 2 * 85
    assert with_images.choices[0].message.content == text_only.choices[0].message.content
    s.update("az", vision=False)
    with pytest.raises(openai.BadRequestError, match="does not accept images"):
        ask(client, messages=[{"role": "user", "content": content}])
    assert s.stats()["providers"]["az"]["statuses"] == {"200": 2, "400": 1}


# -- the content filter ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_a_filtered_prompt_is_a_400_with_azures_innererror(s, clients, form):
    for streamed in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            ask(
                clients[form],
                messages=[{"role": "user", "content": f"Tell me {PROMPT_FILTER_TRIGGER}"}],
                stream=streamed,
            )
        assert info.value.status_code == 400 and info.value.code == "content_filter"
        inner = info.value.body["innererror"]
        assert (
            inner["code"] == "ResponsibleAIPolicyViolation" and inner["content_filter_result"]["violence"]["filtered"]
        )
    st = s.stats()["providers"]["az"]
    assert st["statuses"] == {"400": 2} and st["input_tokens"] == 0  # refused prompts are not billed


@pytest.mark.parametrize("form", FORMS)
def test_a_filtered_completion_says_content_filter_and_is_billed(s, clients, form):
    client = clients[form]
    messages = [{"role": "user", "content": f"Tell me {COMPLETION_FILTER_TRIGGER}"}]
    plain = ask(client, messages=messages)
    assert plain.choices[0].finish_reason == "content_filter" and plain.choices[0].message.content is None
    assert plain.choices[0].content_filter_results["violence"]["filtered"] is True
    chunks = list(ask(client, messages=messages, stream=True, stream_options={"include_usage": True}))
    shown = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert shown and finishes == ["content_filter"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        plain.usage.prompt_tokens,
        plain.usage.completion_tokens,
    )
    assert_billed(s, [(plain.usage.prompt_tokens, plain.usage.completion_tokens)] * 2, {"200": 2})


# -- errors ----------------------------------------------------------------------------------------

ERRORS = [
    ("rate_limit", openai.RateLimitError, 429, "429"),
    ("rate_limit_no_retry_after", openai.RateLimitError, 429, "429"),
    ("insufficient_quota", openai.RateLimitError, 429, "429"),
    ("server_error", openai.InternalServerError, 500, "InternalServerError"),
    ("bad_gateway", openai.InternalServerError, 502, "BadGateway"),
    ("unavailable", openai.InternalServerError, 503, "ServiceUnavailable"),
    ("gateway_timeout", openai.InternalServerError, 504, "Timeout"),
    ("overloaded", openai.APIStatusError, 529, "Overloaded"),
    ("invalid_request", openai.BadRequestError, 400, None),
    ("context_length", openai.BadRequestError, 400, "context_length_exceeded"),
    ("unauthorized", openai.AuthenticationError, 401, "401"),
    ("forbidden", openai.PermissionDeniedError, 403, "PermissionDenied"),
    ("model_not_found", openai.NotFoundError, 404, "DeploymentNotFound"),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault, exc, status, code", ERRORS)
@pytest.mark.parametrize("form", FORMS)
def test_each_error_status_maps_to_the_sdks_own_exception(s, clients, form, fault, exc, status, code, streamed):
    s.inject("az", [fault])
    with pytest.raises(exc) as info:
        ask(clients[form], **({"stream": True} if streamed else {}))
    err = info.value
    assert err.status_code == status and err.code == code
    headers = err.response.headers
    if fault == "rate_limit":
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")
        assert headers["x-ratelimit-remaining-requests"] == "0"
    elif fault == "insufficient_quota":
        assert headers["retry-after"] == "86400"  # a daily quota: come back tomorrow
    else:
        assert "retry-after" not in headers
    st = s.stats()["providers"]["az"]
    assert st["statuses"] == {str(status): 1} and st["input_tokens"] == st["output_tokens"] == 0


@pytest.mark.parametrize("form", FORMS)
def test_mid_stream_error_raises_after_some_text(s, clients, form):
    s.inject("az", ["stream_error"])
    seen = []
    with pytest.raises(openai.APIError, match="simulated"):
        for chunk in ask(clients[form], stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)
    assert seen
    st = s.stats()["providers"]["az"]
    assert st["statuses"] == {"stream_error": 1} and st["input_tokens"] == 0


@pytest.mark.parametrize("form", FORMS)
def test_malformed_and_truncated_answers_fail_to_parse(s, clients, form):
    s.inject("az", ["malformed_json", "truncated_stream"])
    with pytest.raises(ValueError):  # json.JSONDecodeError: the SDK reads the body as JSON
        ask(clients[form])
    with pytest.raises(ValueError):  # json.JSONDecodeError: the SDK reads the body as JSON
        ask(clients[form])
    assert s.stats()["providers"]["az"]["statuses"] == {"malformed_json": 1, "truncated_stream": 1}


def test_unknown_provider_is_not_found_for_both_clients(s):
    url = s.base_url("az").replace("/az", "/nobody")
    with (
        openai.AzureOpenAI(azure_endpoint=url, api_key=KEY, api_version=VERSION, max_retries=0) as legacy,
        openai.OpenAI(base_url=url + "/openai/v1/", api_key=KEY, max_retries=0) as v1,
    ):
        for client in (legacy, v1):
            with pytest.raises(openai.NotFoundError, match="known providers: az"):
                ask(client)
