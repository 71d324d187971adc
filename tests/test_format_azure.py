"""Azure OpenAI (``api="azure"``) end to end: what the adapter puts on the wire, both URL forms, and
the router over the simulator's Azure format (real loopback HTTP, nothing of ours mocked).

- the request: v1 URL or the legacy deployments URL with ``api-version``, the ``api-key`` header,
  the output-limit field per API version, the OpenAI translation of images, tools, tool results,
  schemas and the per-request model (seen by a hand-scripted server, byte for byte);
- the endpoint: no public base URL, ``AZURE_OPENAI_ENDPOINT`` (with its paired key variable);
- through ``ModelClientRouter``: (v1, legacy) x (plain, streamed) x (text, tools, schema, image) with
  the ledger equal to the simulator; failover from prose to JSON; images kept from a provider
  without vision; every fault kind as the error type Azure's answer means; the content filter on
  a prompt (fails fast, says why) and on an answer (returned as it is, billed); a cancelled stream;
  a missing key that names its variable.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import warnings

import httpx
import jsonschema
import pytest
from helpers import (
    WEATHER,
    City,
    Sleeps,
    ask,
    assert_ledger_matches_sim,
    cancel_after_first_item,
    injected_fault_outcomes,
    rows,
    simulator_fixtures,
    streamed_or_plain_outcome,
    wait_until,
)
from test_adapters import client, collect, json_reply, server, sse_reply  # noqa: F401 - the fixtures

from llmroute_magic import (
    AllProvidersFailed,
    ConfigError,
    ModelClientRouter,
    ProviderError,
    ProviderRoutingConfig,
    ProviderSpec,
    UnknownPriceWarning,
)
from llmroute_magic._errors import ERROR_POLICY, Policy
from llmroute_magic._providers import adapter_for
from llmroute_magic._providers.azure import AzureAdapter, endpoint_of, max_tokens_field
from llmroute_magic._providers.openai import OpenAIAdapter
from llmroute_magic._request import build_request
from llmroute_magic._types import ToolCall
from llmroute_magic.sim import FAULT_KINDS, ProviderProfile
from llmroute_magic.sim._wire.azure import COMPLETION_FILTER_TRIGGER, PROMPT_FILTER_TRIGGER

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()
VERSION = "2024-10-21"
KEY = "azure-key-XYZ"


def chat(prompt, **options):
    spec = ProviderSpec("p", "m", base_url="http://127.0.0.1:9/v1")
    return build_request(prompt, options, config=ProviderRoutingConfig([spec]), request_id="r", streamed=False).chat


def azure_spec(base_url: str = "https://acme.openai.azure.com", **kw) -> ProviderSpec:
    return ProviderSpec("work-azure", "gpt-4o-mini", api="azure", base_url=base_url, api_key=KEY, **kw)


# -- the request ---------------------------------------------------------------------------------------------


def test_adapter_for_azure_is_the_azure_adapter():
    assert adapter_for("azure") is AzureAdapter and issubclass(AzureAdapter, OpenAIAdapter)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://acme.openai.azure.com",
        "https://acme.openai.azure.com/",
        "https://acme.openai.azure.com/openai",
        "https://acme.openai.azure.com/openai/v1/",
    ],
)
def test_the_endpoint_is_the_resource_whatever_suffix_was_copied(base_url):
    assert endpoint_of(base_url) == "https://acme.openai.azure.com"
    adapter = AzureAdapter(azure_spec(base_url), client=None)
    assert str(adapter.url_for(chat("hi"), False)) == "https://acme.openai.azure.com/openai/v1/chat/completions"


def test_legacy_url_names_the_deployment_and_the_api_version():
    adapter = AzureAdapter(azure_spec(api_version=VERSION), client=None)
    assert str(adapter.url_for(chat("hi"), True)) == (
        "https://acme.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    )
    assert str(adapter.url_for(chat("hi", model="team/dep 1"), False)) == (  # the request's model: its deployment
        "https://acme.openai.azure.com/openai/deployments/team%2Fdep%201/chat/completions?api-version=2024-10-21"
    )


@pytest.mark.parametrize(
    "version, field",
    [
        (None, "max_completion_tokens"),  # the v1 API: OpenAI's current surface, reasoning models included
        ("2024-02-01", "max_tokens"),
        ("2024-06-01", "max_tokens"),
        ("2024-08-01-preview", "max_tokens"),
        ("2024-10-21", "max_tokens"),  # the GA contract knows only max_tokens
        ("2024-09-01-preview", "max_completion_tokens"),
        ("2024-12-01-preview", "max_completion_tokens"),
        ("2025-04-01-preview", "max_completion_tokens"),
    ],
)
def test_the_output_limit_field_follows_the_api_version(version, field):
    assert max_tokens_field(version) == field
    body = AzureAdapter(azure_spec(api_version=version), client=None).build_body(chat("hi", max_tokens=7), False)
    assert body[field] == 7 and len({"max_tokens", "max_completion_tokens"} & set(body)) == 1


@pytest.mark.parametrize("spelling", ["max_tokens", "max_completion_tokens"])
def test_a_callers_own_spelling_of_the_limit_wins(spelling):
    request = dataclasses.replace(chat("hi", max_tokens=7), params={spelling: 3})
    for version in (None, VERSION):
        body = AzureAdapter(azure_spec(api_version=version), client=None).build_body(request, False)
        assert body[spelling] == 3 and len({"max_tokens", "max_completion_tokens"} & set(body)) == 1


def test_headers_carry_the_key_as_api_key_and_nothing_else():
    headers = AzureAdapter(azure_spec(), client=None).headers_for(KEY)
    assert headers["api-key"] == KEY and "authorization" not in {h.lower() for h in headers}


def test_bodies_are_openais_translation_images_tools_results_schema_params_and_model():
    turns = [
        {
            "role": "user",
            "content": [
                "What is this?",
                {"type": "image", "data": PNG},
                {"type": "image", "url": "https://example.com/cat.png"},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [ToolCall("c1", "get_weather", {"city": "Paris"})]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
    ]
    request = chat(
        turns,
        system="Be brief",
        temperature=0.2,
        top_p=0.9,
        model="other-deployment",
        tools=[WEATHER],
        tool_choice="get_weather",
        response_format=City,
        max_tokens=50,
    )
    azure = AzureAdapter(azure_spec(), client=None).build_body(request, True)
    openai = OpenAIAdapter(
        ProviderSpec("o", "gpt-4o-mini", api="openai", base_url="http://127.0.0.1:9/v1"), client=None
    ).build_body(request, True)
    assert azure.pop("max_completion_tokens") == openai.pop("max_tokens") == 50
    assert azure == openai  # the rest is chat completions, translated once
    assert azure["model"] == "other-deployment" and azure["top_p"] == 0.9 and azure["temperature"] == 0.2
    assert azure["messages"][0] == {"role": "system", "content": "Be brief"}
    assert azure["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG_B64}"},
    }
    assert azure["messages"][2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert azure["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "18 C"}
    assert azure["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert azure["response_format"]["json_schema"]["schema"] == City.model_json_schema()
    assert azure["stream_options"] == {"include_usage": True}


# -- on the wire (a hand-scripted server sees exactly what is sent) ---------------------------------------------


AZURE_OK = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hi there"},
            "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
        }
    ],
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 2,
        "total_tokens": 1202,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


def azure_chunks(words: list[str], finish: str = "stop") -> list[str]:
    annotation = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    chunk = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    events = [annotation] + [
        dict(
            chunk, choices=[{"index": 0, "delta": {"content": w}, "finish_reason": None, "content_filter_results": {}}]
        )
        for w in words
    ]
    events.append(dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    events.append(
        dict(
            chunk,
            choices=[],
            usage={
                "prompt_tokens": 1200,
                "completion_tokens": len(words),
                "total_tokens": 1200 + len(words),
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        )
    )
    return [f"data: {json.dumps(e)}" for e in events] + ["data: [DONE]"]


@pytest.mark.parametrize("version", [None, VERSION])
async def test_what_goes_on_the_wire_for_each_url_form(server, client, version):
    adapter = AzureAdapter(azure_spec(f"{server.url}/openai/v1", api_version=version), client)
    server.replies += [json_reply(200, AZURE_OK), sse_reply(azure_chunks(["Hi", " there"]))]
    await adapter.complete(chat("Hello", max_tokens=5))
    await collect(adapter, chat("Hello", model="team-deployment"))
    plain, streamed = server.seen
    if version is None:
        assert plain.path == streamed.path == "/openai/v1/chat/completions"
    else:
        assert plain.path == f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={version}"
        assert streamed.path == f"/openai/deployments/team-deployment/chat/completions?api-version={version}"
    for seen in (plain, streamed):
        assert seen.headers["api-key"] == KEY and "authorization" not in seen.headers
    assert plain.body[max_tokens_field(version)] == 5 and "stream" not in plain.body
    assert streamed.body["stream"] is True and streamed.body["stream_options"] == {"include_usage": True}
    assert streamed.body["model"] == "team-deployment"


async def test_usage_keeps_the_cached_share_plain_and_streamed(server, client):
    adapter = AzureAdapter(azure_spec(server.url), client)
    server.replies += [json_reply(200, AZURE_OK), sse_reply(azure_chunks(["Hi", " there"]))]
    plain = await adapter.complete(chat("Hello"))
    deltas, streamed = await collect(adapter, chat("Hello"))
    assert deltas == ["Hi", " there"] and streamed.text == plain.text == "Hi there"
    for r in (plain, streamed):
        assert (r.input_tokens, r.output_tokens, r.cache_read_tokens) == (1200, 2, 1024)
        assert r.model == "gpt-4o-mini-2024-07-18" and r.finish_reason == "stop"


async def test_an_answer_without_usage_has_unknown_tokens(server, client):
    adapter = AzureAdapter(azure_spec(server.url), client)
    server.replies.append(json_reply(200, {k: v for k, v in AZURE_OK.items() if k != "usage"}))
    result = await adapter.complete(chat("Hello"))
    assert (result.input_tokens, result.output_tokens, result.cache_read_tokens) == (None, None, 0)


# Real Azure error bodies and headers -> (error_type, retry_after, words the message must carry)
AZURE_ERRORS = [
    (
        429,
        {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI "
                "API version 2024-10-21 have exceeded token rate limit. Please retry after 6 seconds.",
            }
        },
        {"retry-after": "6", "retry-after-ms": "5500"},
        "rate_limit",
        5.5,
        "exceeded token rate limit",
    ),
    (
        429,
        {"error": {"code": "429", "message": "... Please retry after 86400 seconds."}},
        {"retry-after": "86400"},
        "insufficient_quota",
        86400.0,
        "quota spent",
    ),
    (
        401,
        {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}},
        {},
        "authentication",
        None,
        "Access denied",
    ),
    (
        403,
        {"error": {"code": "PermissionDenied", "message": "Principal does not have access to API/Operation."}},
        {},
        "permission",
        None,
        "PermissionDenied",
    ),
    (
        404,
        {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}},
        {},
        "not_found",
        None,
        "no deployment 'gpt-4o-mini'",
    ),
    (404, {"error": {"code": "404", "message": "Resource not found"}}, {}, "not_found", None, "Resource not found"),
    (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        {},
        "context_length",
        None,
        "128000",
    ),
    (
        400,
        {
            "error": {
                "code": "content_filter",
                "message": "The response was filtered due to the prompt triggering "
                "Azure OpenAI's content management policy.",
                "param": "prompt",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {
                        "hate": {"filtered": True, "severity": "high"},
                        "sexual": {"filtered": False, "severity": "safe"},
                    },
                },
            }
        },
        {},
        "invalid_request",
        None,
        "content filter refused the prompt (hate: high)",
    ),
    (
        500,
        {"error": {"code": "InternalServerError", "message": "The service is temporarily unable to process."}},
        {},
        "server_error",
        None,
        "InternalServerError",
    ),
    (503, b"<html>Service Unavailable</html>", {}, "server_error", None, "Service Unavailable"),
]


@pytest.mark.parametrize("status, body, headers, error_type, retry_after, words", AZURE_ERRORS)
async def test_azures_error_bodies_map_into_the_error_tree(
    server, client, status, body, headers, error_type, retry_after, words
):
    adapter = AzureAdapter(azure_spec(server.url, api_version=VERSION), client)
    server.replies += [json_reply(status, body, headers), json_reply(status, body, headers)]
    for call in (adapter.complete(chat("Hello")), collect(adapter, chat("Hello"))):
        with pytest.raises(ProviderError) as info:
            await call
        err = info.value
        assert (err.error_type, err.status_code, err.retry_after) == (error_type, status, retry_after)
        assert words in err.message and KEY not in str(err)


async def test_a_content_filtered_answer_is_returned_as_it_is(server, client):
    adapter = AzureAdapter(azure_spec(server.url), client)
    filtered = json.loads(json.dumps(AZURE_OK))
    filtered["choices"][0].update(finish_reason="content_filter", message={"role": "assistant", "content": None})
    server.replies += [json_reply(200, filtered), sse_reply(azure_chunks(["Once", " upon"], "content_filter"))]
    plain = await adapter.complete(chat("Hello"))
    deltas, streamed = await collect(adapter, chat("Hello"))
    assert (plain.text, plain.finish_reason, plain.output_tokens) == ("", "content_filter", 2)
    assert (streamed.text, streamed.finish_reason, streamed.output_tokens) == ("Once upon", "content_filter", 2)


# -- the endpoint and the key ----------------------------------------------------------------------------------


@pytest.fixture
def no_azure_env(monkeypatch):
    for var in (
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
        "AZURE_API_KEY",
        "AZURE_BASE_URL",
        "TEAM_API_KEY",
        "TEAM_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_no_public_base_url_a_clear_config_error(no_azure_env):
    for spec in (dict(name="azure", model="gpt-4o"), dict(name="team", model="gpt-4o", api="azure")):
        with pytest.raises(ConfigError, match=r"Azure OpenAI has no public base URL.*AZURE_OPENAI_ENDPOINT") as info:
            ProviderSpec(**spec)
        assert info.value.field == "base_url" and "https://RESOURCE.openai.azure.com" in str(info.value)


def test_the_sdks_endpoint_variable_brings_its_key_variable(no_azure_env):
    no_azure_env.setenv("AZURE_OPENAI_ENDPOINT", "https://acme.openai.azure.com/")
    spec = ProviderSpec("azure", "gpt-4o")
    assert (spec.api, spec.base_url, spec.key_env_var) == (
        "azure",
        "https://acme.openai.azure.com",
        "AZURE_OPENAI_API_KEY",
    )
    assert spec.with_priority(1).key_env_var == "AZURE_OPENAI_API_KEY"  # copies keep it
    # A key of this provider's own wins: its variable, an api_key_env, a key.
    no_azure_env.setenv("TEAM_API_KEY", "k")
    assert ProviderSpec("team", "gpt-4o", api="azure").key_env_var == "TEAM_API_KEY"
    assert ProviderSpec("x", "gpt-4o", api="azure", api_key_env="MINE").key_env_var == "MINE"
    assert ProviderSpec("y", "gpt-4o", api="azure", api_key="k").key_env_var == "Y_API_KEY"
    # An explicit base URL is not the SDK's endpoint: no pairing.
    assert ProviderSpec("z", "gpt-4o", api="azure", base_url="https://z.openai.azure.com").key_env_var == "Z_API_KEY"
    no_azure_env.setenv("AZURE_BASE_URL", "https://gateway.example")  # <NAME>_BASE_URL still comes first
    assert ProviderSpec("azure", "gpt-4o").base_url == "https://gateway.example"


def test_a_missing_key_names_the_variable_to_set(no_azure_env):
    specs = [ProviderSpec("azure", "gpt-4o-mini", base_url="https://acme.openai.azure.com")]
    no_azure_env.setenv("AZURE_OPENAI_ENDPOINT", "https://other.openai.azure.com")
    specs.append(ProviderSpec("azure-two", "gpt-4o-mini", api="azure"))
    for spec, var in zip(specs, ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")):
        with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
            with pytest.raises(AllProvidersFailed) as info:
                r.complete("hello")
            rec = rows(r)
        assert f"no API key: set {var}" in str(info.value) and "What to do: set the API key" in str(info.value)
        assert [(x["status"], x["error_type"], x["http_status"]) for x in rec] == [("error", "missing_api_key", None)]


# -- through the router, over the simulator ----------------------------------------------------------------------

FORMS = ["v1", "legacy"]
PROFILES = [
    ProviderProfile(
        n,
        api="azure",
        model="gpt-4o-mini",
        input_price=1.0,
        output_price=2.0,
        context_window=4000,
        retry_after_s=0.7,
        seed=i,
        **kw,
    )
    for i, (n, kw) in enumerate(
        (("az-a", {}), ("az-b", {}), ("az-keyed", {"require_api_key": KEY}), ("az-drip", {"tokens_per_s": 20.0}))
    )
]
IMAGE_PROMPT = [{"role": "user", "content": ["What is in this picture?", {"type": "image", "data": PNG}]}]
KINDS = {
    "text": ("Explain the CAP theorem in one line.", {}),
    "tools": ("What is the weather in Paris? Use get_weather.", {"tools": [WEATHER]}),
    "schema": ("The biggest city in Japan?", {"response_format": City}),
    "image": (IMAGE_PROMPT, {}),
}


sim, fresh = simulator_fixtures(PROFILES, quiet_within_s=3)


def specs_for(sim, names: list[str], form: str) -> list[ProviderSpec]:
    specs = sim.provider_specs(names)
    return specs if form == "v1" else [dataclasses.replace(s, api_version=VERSION) for s in specs]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("form", FORMS)
def test_every_kind_of_request_plain_and_streamed_in_both_url_forms(fresh, form, streamed, kind):
    prompt, options = KINDS[kind]
    with ModelClientRouter(ProviderRoutingConfig(specs_for(fresh, ["az-a"], form))) as r:
        c = ask(r, streamed, prompt, max_tokens=64, **options)
        text_only = r.complete("What is in this picture?", max_tokens=64) if kind == "image" else None
        rec = rows(r)
    assert (c.provider, c.model, c.attempts) == ("az-a", "gpt-4o-mini", 1)
    assert rec[0]["status"] == "ok" and rec[0]["streamed"] == streamed
    assert c.cost == pytest.approx(c.input_tokens * 1.0 / 1e6 + c.output_tokens * 2.0 / 1e6, rel=1e-12)
    if kind == "tools":
        (call,) = c.tool_calls
        assert call.name == "get_weather" and call.id.startswith("call_") and c.text == ""
        jsonschema.validate(call.arguments, WEATHER["parameters"])
        assert c.finish_reason == "tool_calls" and c.parsed is None
    elif kind == "schema":
        assert isinstance(c.parsed, City) and json.loads(c.text) == c.parsed.model_dump()
    else:
        assert c.text and not c.tool_calls and c.parsed is None and c.finish_reason in ("stop", "length")
    if kind == "image":
        assert c.input_tokens == text_only.input_tokens + 85  # the simulator's flat price of an image
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("form", FORMS)
def test_the_requests_model_is_the_deployment(fresh, form):
    with ModelClientRouter(ProviderRoutingConfig(specs_for(fresh, ["az-a"], form))) as r:
        c = r.complete("hello", model="team-deployment", max_tokens=8)
        s = r.stream("hello", model="team-deployment", max_tokens=8)
        "".join(s)
    assert c.model == s.completion.model == "team-deployment"
    assert [x["model"] for x in rows(r)] == ["team-deployment"] * 2
    assert_ledger_matches_sim(r, fresh)


def test_a_deployment_whose_answers_name_no_priced_model_is_nan_with_one_warning(fresh):
    # Unknown before it answers (a deployment name), unknown after (the answer's model is no model
    # genai-prices lists): said once, when that is known, as every other unknown price is.
    (az,) = fresh.provider_specs(["az-a"])
    spec = dataclasses.replace(az, model="prod-chat", input_price=None, output_price=None)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c = r.complete("hello", max_tokens=8)
            s = r.stream("hello", max_tokens=8)
            "".join(s)
    unknown = [w for w in caught if issubclass(w.category, UnknownPriceWarning)]
    assert c.model == s.completion.model == "prod-chat" and c.input_tokens > 0
    assert math.isnan(c.cost) and math.isnan(s.completion.cost)
    assert len(unknown) == 1 and "'prod-chat'" in str(unknown[0].message)
    # the same deployment named per request, beside a configured model genai-prices knows
    priced = dataclasses.replace(az, input_price=None, output_price=None)
    with ModelClientRouter(ProviderRoutingConfig([priced])) as r:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c = r.complete("hello", model="prod-chat", max_tokens=8)
            df = r.compare("hello", providers=["az-a:prod-chat"], max_tokens=8)
    unknown = [w for w in caught if issubclass(w.category, UnknownPriceWarning)]
    assert math.isnan(c.cost) and math.isnan(df["cost"][0])
    assert len(unknown) == 1 and "'prod-chat'" in str(unknown[0].message)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_that_warning_raised_as_an_error_keeps_the_row_and_frees_the_slot(fresh, streamed):
    (az,) = fresh.provider_specs(["az-a"])
    spec = dataclasses.replace(az, model="prod-chat", input_price=None, output_price=None, max_concurrency=1)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pytest -W error
            with pytest.raises(UnknownPriceWarning):
                ask(r, streamed, "hello", max_tokens=8)
        c = asyncio.run(asyncio.wait_for(r.acomplete("again", max_tokens=8), 5))  # the only slot is free
        statuses = [x["status"] for x in rows(r)]
    assert c.provider == "az-a" and statuses == ["ok", "ok"]  # the answered attempt kept its row
    assert fresh.stats()["providers"]["az-a"]["requests"] == 2


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("form", FORMS)
def test_prose_instead_of_json_fails_over_to_an_azure_provider_that_answers_json(fresh, form, streamed):
    fresh.inject("az-a", ["ignore_schema"])
    sleeps = Sleeps()
    with ModelClientRouter(ProviderRoutingConfig(specs_for(fresh, ["az-a", "az-b"], form)), sleep=sleeps) as r:
        c = ask(r, streamed, "The biggest city in Japan?", response_format=City)
        rec = rows(r)
    assert c.provider == "az-b" and c.attempts == 2 and isinstance(c.parsed, City)
    first = rec[0]
    assert (first["provider"], first["status"], first["error_type"], first["http_status"]) == (
        "az-a",
        "error",
        "malformed_response",
        200,
    )
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0 and first["cost"] > 0  # the prose was billed
    assert rec[1]["provider"] == "az-b" and rec[1]["status"] == "ok" and sleeps.delays == []
    assert fresh.stats()["providers"]["az-a"]["statuses"] == {"ignore_schema": 1}
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("form", FORMS)
def test_an_image_skips_a_provider_without_vision(fresh, form, streamed):
    blind, eyes = specs_for(fresh, ["az-a", "az-b"], form)
    blind = dataclasses.replace(blind, capabilities=frozenset({"tools", "json_schema", "streaming"}))
    with ModelClientRouter(ProviderRoutingConfig([blind, eyes])) as r:
        c = ask(r, streamed, IMAGE_PROMPT, max_tokens=16)
        assert c.provider == "az-b"
        assert fresh.stats()["providers"]["az-a"]["requests"] == 0  # the simulator saw nothing there
        assert r.complete("text goes anywhere", max_tokens=8).provider == "az-a"
    assert_ledger_matches_sim(r, fresh)
    with ModelClientRouter(ProviderRoutingConfig([blind])) as r:
        with pytest.raises(ConfigError, match="vision.*az-a"):
            r.complete(IMAGE_PROMPT)


# -- faults --------------------------------------------------------------------------------------------------

# Azure answers every fault with OpenAI's status (a spent quota is a 429 asking to come back in a
# day, a missing model is DeploymentNotFound's 404); a streamed stream_error is an error event after the first words.
AZURE_OUTCOMES = injected_fault_outcomes()
RETRY_AFTER = {"rate_limit": 0.7, "insufficient_quota": 86400.0}  # retry-after-ms wins over retry-after


def expected(fault: str, streamed: bool) -> tuple[str, int | None]:
    return streamed_or_plain_outcome(AZURE_OUTCOMES, fault, streamed)


def test_the_table_covers_every_fault_the_simulator_can_inject():
    assert set(AZURE_OUTCOMES) == set(FAULT_KINDS)


def faulty_spec(sim, fault: str, form: str = "v1") -> ProviderSpec:
    spec = specs_for(sim, ["az-a"], form)[0]
    sim.inject("az-a", [fault])
    return spec.with_timeout(0.25) if fault == "hang" else spec


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize("form", FORMS)
def test_each_fault_is_the_error_type_its_answer_means(fresh, form, fault, streamed):
    spec = faulty_spec(fresh, fault, form)
    with ModelClientRouter(ProviderRoutingConfig([spec], max_retries=0), sleep=Sleeps()) as r:
        with pytest.raises((ProviderError, AllProvidersFailed)) as info:
            ask(r, streamed, "What is the CAP theorem?", max_tokens=24)
        rec = rows(r)
    err = info.value if isinstance(info.value, ProviderError) else info.value.attempts[-1]
    error_type, status = expected(fault, streamed)
    assert (err.provider, err.error_type, err.status_code) == ("az-a", error_type, status)
    assert [(x["status"], x["error_type"], x["http_status"], x["streamed"]) for x in rec] == [
        ("error", error_type, status, streamed)
    ]
    assert err.retry_after == RETRY_AFTER.get(fault)
    if fault == "model_not_found":
        assert "DeploymentNotFound: no deployment 'gpt-4o-mini'" in err.message
    if streamed and fault in ("stream_error", "truncated_stream"):
        assert err.partial_text  # the words shown before the break travel with the error
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_each_fault_with_a_healthy_azure_fallback_follows_the_error_policy(fresh, fault, streamed):
    error_type, status = expected(fault, streamed)
    policy = ERROR_POLICY[error_type]
    if streamed and fault in ("stream_error", "truncated_stream"):
        policy = Policy.SURFACE  # the first words were shown: not retried behind the user's back
    specs = [faulty_spec(fresh, fault), specs_for(fresh, ["az-b"], "v1")[0]]
    if policy is Policy.LARGER_CONTEXT:
        specs[1] = specs[1].with_context_window(200_000)
    sleeps = Sleeps()
    with ModelClientRouter(ProviderRoutingConfig(specs, max_retries=2), sleep=sleeps) as r:
        if policy in (Policy.FAIL_FAST, Policy.SURFACE):
            with pytest.raises(ProviderError) as info:
                ask(r, streamed, "What is the CAP theorem?", max_tokens=24)
            assert (info.value.provider, info.value.error_type) == ("az-a", error_type)
            assert len(rows(r)) == 1  # the backup is not asked
        else:
            c = ask(r, streamed, "What is the CAP theorem?", max_tokens=24)
            assert c.provider == "az-b" and c.attempts == 2 and sleeps.delays == []
            if policy is Policy.DROP_PROVIDER:
                assert "az-a" in r.cooling_down()  # a spent quota, a bad key, no such deployment: not asked again
    assert_ledger_matches_sim(r, fresh)


# -- the content filter, a cancelled stream, a key from the environment --------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_prompt_the_content_filter_refuses_fails_fast_and_says_why(fresh, streamed):
    with ModelClientRouter(ProviderRoutingConfig(specs_for(fresh, ["az-a", "az-b"], "v1"))) as r:
        with pytest.raises(ProviderError) as info:
            ask(r, streamed, f"Describe it {PROMPT_FILTER_TRIGGER}")
        rec = rows(r)
    err = info.value
    assert (err.provider, err.error_type, err.status_code) == ("az-a", "invalid_request", 400)
    assert "Azure's content filter refused the prompt (violence: medium)" in str(err)
    assert [(x["error_type"], x["input_tokens"], x["cost"]) for x in rec] == [("invalid_request", 0, 0.0)]
    assert fresh.stats()["providers"]["az-b"]["requests"] == 0  # no other provider asked to get round the filter
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("form", FORMS)
def test_an_answer_the_content_filter_stopped_is_returned_and_billed(fresh, form, streamed):
    with ModelClientRouter(ProviderRoutingConfig(specs_for(fresh, ["az-a", "az-b"], form))) as r:
        c = ask(r, streamed, f"Tell a story {COMPLETION_FILTER_TRIGGER}")
    assert (c.provider, c.finish_reason, c.attempts) == ("az-a", "content_filter", 1)
    assert (c.text != "") == streamed  # a stream showed words before the filter stopped it; a plain answer none
    assert c.output_tokens > 0 and c.cost > 0
    assert_ledger_matches_sim(r, fresh)


async def test_a_stream_cancelled_mid_way_is_recorded_with_what_was_reported(fresh):
    with ModelClientRouter(ProviderRoutingConfig(specs_for(fresh, ["az-drip"], "v1"))) as r:
        await cancel_after_first_item(r.astream("a long story", max_tokens=200))
        rec = rows(r)
        await asyncio.to_thread(
            wait_until, lambda: fresh.stats()["providers"]["az-drip"]["statuses"].get("disconnected", 0) == 1
        )
    # Azure reports usage only at the end of a stream: nothing was reported, nothing billed.
    assert [(x["status"], x["error_type"], x["streamed"], x["input_tokens"], x["cost"]) for x in rec] == [
        ("cancelled", "cancelled", True, 0, 0.0)
    ]
    assert_ledger_matches_sim(r, fresh)


def test_keys_from_the_environment_go_in_the_api_key_header(fresh, no_azure_env):
    spec = dataclasses.replace(specs_for(fresh, ["az-keyed"], "v1")[0], api_key=None)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        no_azure_env.setenv("AZ_KEYED_API_KEY", KEY)
        assert r.complete("hello", max_tokens=4).text
        no_azure_env.setenv("AZ_KEYED_API_KEY", "wrong")
        with pytest.raises(AllProvidersFailed, match="authentication"):
            r.complete("hello", max_tokens=4)
    # The SDK's pair: AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY, no base_url and no key in the code.
    no_azure_env.setenv("AZURE_OPENAI_ENDPOINT", fresh.base_url("az-keyed"))
    no_azure_env.setenv("AZURE_OPENAI_API_KEY", KEY)
    with ModelClientRouter(ProviderRoutingConfig([ProviderSpec("azure", "gpt-4o-mini").with_prices(1, 2)])) as r:
        assert r.complete("hello", max_tokens=4).text
    assert fresh.stats()["providers"]["az-keyed"]["statuses"] == {"200": 2, "401": 1}


def test_the_simulators_legacy_route_wants_an_api_version_and_takes_the_deployment_from_the_path(fresh):
    url = fresh.base_url("az-a") + "/openai/deployments/team-deployment/chat/completions"
    body = {"messages": [{"role": "user", "content": "hello"}]}  # no model: the path names the deployment
    ok = httpx.post(url, params={"api-version": VERSION}, json=body, headers={"api-key": "any"})
    assert ok.status_code == 200 and ok.json()["model"] == "team-deployment"
    missing = httpx.post(url, json=body)
    assert missing.status_code == 400 and "api-version" in missing.json()["error"]["message"]
    assert fresh.stats()["providers"]["az-a"]["statuses"] == {"200": 1, "400": 1}
