"""Gemini's native API (``api="gemini"``) through the router, over the simulator on real loopback HTTP.

The matrix (plain, streamed) x (text, tools, schema, image) with the ledger equal to what the
simulator served and billed; tool calls and parsed answers; failover from a provider that answers a
schema with prose; images kept away from a provider without vision; every fault kind mapped to its
error type (Gemini's own table below) plain and streamed; a cancelled stream; the missing key.
Then the adapter's own translation against hand-written answers (a scripted server): requests,
usage with cached and thinking tokens, thought signatures, and Google's error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import jsonschema
import pydantic
import pytest
from helpers import (
    ask,
    assert_ledger_matches_sim,
    cancel_after_first_item,
    injected_fault_outcomes,
    make_router,
    rows,
    simulator_fixtures,
    streamed_or_plain_outcome,
    wait_until,
)
from test_adapters import client, json_reply, server, sse_reply  # noqa: F401 - the fixtures

from llmroute_magic import AllProvidersFailed, ModelClientRouter, ProviderError, ProviderRoutingConfig, ProviderSpec
from llmroute_magic._errors import ERROR_POLICY, Policy
from llmroute_magic._providers import ChatRequest, ProviderResult, adapter_for
from llmroute_magic._providers.gemini import MADE_ID_PREFIX, SKIP_SIGNATURE, GeminiAdapter
from llmroute_magic._request import build_request
from llmroute_magic._types import ToolCall
from llmroute_magic.sim import FAULT_KINDS, ProviderProfile

MODEL = "gemini-2.5-flash"
IN_PRICE, OUT_PRICE = 0.3, 2.5
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city", "unit"],
    },
}
TIMEOUT_S = 0.3


class Address(pydantic.BaseModel):
    street: str
    zip: str = pydantic.Field(min_length=5, max_length=5)


class City(pydantic.BaseModel):
    name: str
    population: int = pydantic.Field(ge=0)
    address: Address  # a nested model: $defs and $ref in the schema, sent as responseJsonSchema unchanged


def profile(name: str, seed: int, **extra) -> ProviderProfile:
    return ProviderProfile(
        name,
        api="gemini",
        model=MODEL,
        input_price=IN_PRICE,
        output_price=OUT_PRICE,
        retry_after_s=0.7,
        seed=seed,
        **extra,
    )


sim, fresh = simulator_fixtures(
    [
        profile("gem-a", 1, context_window=4000),
        profile("gem-b", 2, context_window=200_000),
        profile("gem-blind", 3, vision=False),
        profile("gem-drip", 4, tokens_per_s=40.0),
    ]
)


def cost(i: int, o: int) -> float:
    return i * IN_PRICE / 1e6 + o * OUT_PRICE / 1e6


IMAGE_PROMPT = [
    {
        "role": "user",
        "content": [
            "What is in these pictures?",
            {"type": "image", "data": PNG},
            {"type": "image", "url": "https://example.com/cat.png"},
        ],
    }
]
KINDS = {
    "text": ("Explain the CAP theorem in one line.", {"system": "Be brief.", "max_tokens": 200}),
    "tools": ("What is the weather in Paris? Use get_weather.", {"tools": [WEATHER]}),
    "schema": ("Which is the biggest city?", {"response_format": City}),
    "image": (IMAGE_PROMPT, {}),
}


# -- 1. the matrix ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_every_kind_of_request_plain_and_streamed_bills_what_the_simulator_billed(fresh, streamed, kind):
    prompt, options = KINDS[kind]
    with make_router(fresh, ["gem-a"]) as r:
        c = ask(r, streamed, prompt, **options)
        assert (c.provider, c.model, c.finish_reason) == ("gem-a", MODEL, "STOP")
        assert (
            c.input_tokens > 0
            and c.output_tokens > 0
            and c.cost == pytest.approx(cost(c.input_tokens, c.output_tokens))
        )
        if kind == "tools":
            (call,) = c.tool_calls
            assert call.name == "get_weather" and call.id.startswith(MADE_ID_PREFIX) and c.text == ""
            jsonschema.validate(call.arguments, WEATHER["parameters"])
            assert c.parsed is None
        elif kind == "schema":
            assert isinstance(c.parsed, City) and City.model_validate_json(c.text) == c.parsed
        elif kind == "image":
            text_only = r.complete("What is in these pictures?")
            assert c.input_tokens == text_only.input_tokens + 2 * 85 and c.text == text_only.text
        else:
            assert c.text and not c.tool_calls
        assert [(x["status"], x["streamed"]) for x in rows(r)][0] == ("ok", streamed)
        assert_ledger_matches_sim(r, fresh)


def test_tool_call_ids_are_stable_and_results_go_back(fresh):
    prompt = "Weather in Paris and the time? Use get_weather."
    with make_router(fresh, ["gem-a"]) as r:
        plain = r.complete(prompt, tools=[WEATHER])
        streamed = r.stream(prompt, tools=[WEATHER])
        list(streamed)
        assert streamed.completion.tool_calls == plain.tool_calls  # the same call, the same made-up id
        call = plain.tool_calls[0]
        answer = r.complete(
            [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": None, "tool_calls": list(plain.tool_calls)},
                {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
            ],
            tools=[WEATHER],
        )
        assert answer.text and answer.tool_calls == ()  # after a tool result, AUTO answers in words
        forced = r.complete("Say hello.", tools=[WEATHER], tool_choice="get_weather")
        assert [c.name for c in forced.tool_calls] == ["get_weather"]
        assert r.complete("Use get_weather.", tools=[WEATHER], tool_choice="none").tool_calls == ()
        assert_ledger_matches_sim(r, fresh)


def test_the_request_model_is_used_and_priced(fresh):
    with make_router(fresh, ["gem-a"]) as r:
        c = r.complete("hello", model="gemini-2.5-pro")
        assert c.model == "gemini-2.5-pro" and rows(r)[0]["model"] == "gemini-2.5-pro"
        assert_ledger_matches_sim(r, fresh)


# -- 2. failover and capabilities --------------------------------------------------------------------------


def test_a_schema_answered_in_prose_fails_over_to_a_provider_that_answers_json(fresh):
    fresh.inject("gem-a", ["ignore_schema"])
    with make_router(fresh, ["gem-a", "gem-b"]) as r:
        c = r.complete("Which is the biggest city?", response_format=City)
        rec = rows(r)
    assert c.provider == "gem-b" and c.attempts == 2 and isinstance(c.parsed, City)
    first = rec[0]
    assert (first["provider"], first["status"], first["error_type"], first["http_status"]) == (
        "gem-a",
        "error",
        "malformed_response",
        200,
    )
    assert first["output_tokens"] > 0 and first["cost"] > 0  # prose is billed: the provider did answer
    assert fresh.stats()["providers"]["gem-a"]["statuses"] == {"ignore_schema": 1}
    assert_ledger_matches_sim(r, fresh)


def test_a_streamed_schema_answered_in_prose_fails_over_before_anything_is_shown(fresh):
    fresh.inject("gem-a", ["ignore_schema"])
    with make_router(fresh, ["gem-a", "gem-b"]) as r:
        s = r.stream("Which is the biggest city?", response_format=City)
        shown = list(s)  # a schema answer is read whole before it is shown: the prose never is
        assert s.completion.provider == "gem-b" and isinstance(s.completion.parsed, City)
        assert "".join(shown) == s.completion.text
        assert [(x["provider"], x["status"]) for x in rows(r)] == [("gem-a", "error"), ("gem-b", "ok")]
        assert_ledger_matches_sim(r, fresh)


def test_an_image_request_skips_a_provider_without_vision(fresh):
    with make_router(fresh, ["gem-blind", "gem-a"]) as r:
        assert "vision" not in r.providers[0].effective_capabilities
        assert r.complete("Text goes to the first provider.").provider == "gem-blind"
        for streamed in (False, True):
            assert ask(r, streamed, IMAGE_PROMPT).provider == "gem-a"
        assert fresh.stats()["providers"]["gem-blind"]["requests"] == 1  # the text request only
        assert_ledger_matches_sim(r, fresh)


# -- 3. faults ---------------------------------------------------------------------------------------------

# fault -> (error_type, HTTP status) of the attempt, plain; Gemini's own where they differ from OpenAI's.
# A per-day quota is a 429 (retrying soon cannot help); a streamed stream_error is an error frame after text.
GEMINI_OUTCOMES = injected_fault_outcomes(
    {
        "overloaded": ("overloaded", 503),  # 503 UNAVAILABLE "The model is overloaded"
        "unauthorized": ("authentication", 400),  # 400 API_KEY_INVALID
    }
)


def expected(fault: str, streamed: bool) -> tuple[str, int | None, Policy]:
    error_type, status = streamed_or_plain_outcome(GEMINI_OUTCOMES, fault, streamed)
    policy = ERROR_POLICY[error_type]
    if streamed and fault in ("stream_error", "truncated_stream"):
        policy = Policy.SURFACE  # the first words were shown
    return error_type, status, policy


def test_the_table_covers_every_fault_the_simulator_can_inject():
    assert set(GEMINI_OUTCOMES) == set(FAULT_KINDS)


@pytest.mark.parametrize("fault", list(GEMINI_OUTCOMES))
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_each_fault_maps_to_its_error_type_and_the_router_acts_on_it(fresh, fault, streamed):
    error_type, status, policy = expected(fault, streamed)
    specs = fresh.provider_specs(["gem-a", "gem-b"])
    if fault == "hang":
        specs[0] = specs[0].with_timeout(TIMEOUT_S)
    fresh.inject("gem-a", [fault])
    with ModelClientRouter(ProviderRoutingConfig(specs, max_retries=2), sleep=_no_sleep) as r:
        if policy in (Policy.FAIL_FAST, Policy.SURFACE):
            with pytest.raises(ProviderError) as info:
                ask(r, streamed, "What is the CAP theorem?", max_tokens=24)
            err = info.value
            assert (err.provider, err.error_type, err.status_code) == ("gem-a", error_type, status)
        else:  # retried or dropped: the healthy provider (with the larger window) answers
            assert ask(r, streamed, "What is the CAP theorem?", max_tokens=24).provider == "gem-b"
        first = rows(r)[0]
    assert (first["provider"], first["status"], first["error_type"], first["http_status"], first["streamed"]) == (
        "gem-a",
        "error",
        error_type,
        status,
        streamed,
    )
    assert_ledger_matches_sim(r, fresh)


async def _no_sleep(delay: float) -> None:
    return None


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_the_retry_hint_is_google_s_retry_delay(fresh, streamed):
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    fresh.inject("gem-a", ["rate_limit"])
    specs = fresh.provider_specs(["gem-a"])
    cfg = ProviderRoutingConfig(specs, max_retries=1, fallback_enabled=False)
    with ModelClientRouter(cfg, sleep=sleep) as r:
        assert ask(r, streamed, "hello").attempts == 2
        assert_ledger_matches_sim(r, fresh)
    assert sleeps == [pytest.approx(0.7)]  # RetryInfo.retryDelay "0.700s": Gemini sends no retry-after header


# -- 4. cancelling and keys ----------------------------------------------------------------------------------


async def test_a_cancelled_stream_records_cancelled_with_the_prompt_tokens_it_was_told(fresh):
    with make_router(fresh, ["gem-drip"]) as r:
        await cancel_after_first_item(r.astream("a long story, please", max_tokens=200))
        rec = rows(r)
        await asyncio.to_thread(
            wait_until, lambda: fresh.stats()["providers"]["gem-drip"]["statuses"].get("disconnected") == 1
        )
    billed = fresh.stats()["providers"]["gem-drip"]
    assert [(x["status"], x["error_type"], x["streamed"]) for x in rec] == [("cancelled", "cancelled", True)]
    assert rec[0]["input_tokens"] == billed["input_tokens"] > 0  # every frame reports the prompt's tokens
    assert rec[0]["output_tokens"] == billed["output_tokens"] == 0 and rec[0]["cost"] == pytest.approx(
        cost(billed["input_tokens"], 0)
    )
    assert_ledger_matches_sim(r, fresh)


def test_a_missing_key_says_which_variable_to_set(fresh, monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with ModelClientRouter(ProviderRoutingConfig([ProviderSpec("gemini", MODEL)])) as r:
        assert r.providers[0].api == "gemini"
        assert r.providers[0].base_url == "https://generativelanguage.googleapis.com"
        with pytest.raises(AllProvidersFailed, match="set GEMINI_API_KEY") as info:
            r.complete("hello")
        assert [x["error_type"] for x in rows(r)] == ["missing_api_key"]
    assert info.value.attempts[0].error_type == "missing_api_key"


# -- 5. the adapter against hand-written answers ---------------------------------------------------------------


def spec_at(url: str, **kw) -> ProviderSpec:
    return ProviderSpec("g", MODEL, api="gemini", base_url=url, **kw)


def chat(prompt, **options) -> ChatRequest:
    cfg = ProviderRoutingConfig([ProviderSpec("p", "m", base_url="http://127.0.0.1:9/v1")])
    return build_request(prompt, options, config=cfg, request_id="r", streamed=False).chat


async def collect(adapter, request: ChatRequest) -> tuple[list[str], ProviderResult]:
    items = [item async for item in adapter.stream(request)]
    return items[:-1], items[-1]


def answer(parts: list, usage: dict | None = None, finish: str | None = "STOP", **extra) -> dict:
    candidate = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    body = {"candidates": [candidate], **extra}
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def test_the_body_carries_system_images_tools_results_schema_and_params():
    turns = [
        {"role": "system", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                "What is this?",
                {"type": "image", "data": PNG},
                {"type": "image", "url": "https://example.com/cat.png"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                ToolCall("gcall_1", "get_weather", {"city": "Paris", "unit": "C"}),
                {"id": "api-id-2", "function": {"name": "get_weather", "arguments": '{"city":"Oslo","unit":"C"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "gcall_1", "content": '{"temp": 18}'},
        {"role": "tool", "tool_call_id": "api-id-2", "content": "9 C"},
    ]
    adapter = GeminiAdapter(spec_at("https://generativelanguage.googleapis.com", api_key="k"), None)
    request = chat(
        turns,
        system="Be brief.",
        max_tokens=50,
        temperature=0.5,
        tools=[WEATHER],
        tool_choice="get_weather",
        response_format=City,
        model="gemini-2.5-pro",
        top_p=0.9,
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    )
    body = adapter.build_body(request, stream=True)
    assert adapter.url_for(request, True) == (
        "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nUse metric units."}]}
    user, model, results = body["contents"]
    assert user == {
        "role": "user",
        "parts": [
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
        ],
    }
    assert model == {
        "role": "model",
        "parts": [  # made-up ids stay home; the first call carries a signature
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "C"}},
                "thoughtSignature": SKIP_SIGNATURE,
            },
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo", "unit": "C"}, "id": "api-id-2"}},
        ],
    }
    assert results == {
        "role": "user",
        "parts": [  # both results in one turn, named after their calls
            {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": "9 C"}, "id": "api-id-2"}},
        ],
    }
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": WEATHER["description"],
                    "parametersJsonSchema": WEATHER["parameters"],
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "temperature": 0.5,
        "responseMimeType": "application/json",
        "responseJsonSchema": City.model_json_schema(),
        "top_p": 0.9,
    }
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE" and "stream" not in json.dumps(body)


def test_the_api_version_comes_from_the_spec_or_the_base_url():
    req = chat("hi")
    for spec, url in [
        (spec_at("http://127.0.0.1:9/g", api_version="v1beta"), "http://127.0.0.1:9/g/v1beta/models/"),
        (
            spec_at("https://generativelanguage.googleapis.com/v1beta"),
            "https://generativelanguage.googleapis.com/v1beta/models/",
        ),
        (
            ProviderSpec("g", "models/gemini-2.0-flash", api="gemini", base_url="http://127.0.0.1:9/g"),
            "http://127.0.0.1:9/g/v1/models/",
        ),
    ]:
        assert GeminiAdapter(spec, None).url_for(req, False).startswith(url)
    tuned = GeminiAdapter(spec_at("http://127.0.0.1:9/g"), None).url_for(chat("hi", model="tunedModels/t1"), False)
    assert tuned == "http://127.0.0.1:9/g/v1/tunedModels/t1:generateContent"


async def test_usage_counts_cached_prompt_and_thinking_tokens_as_genai_prices_does(server, client):
    usage = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 600,
        "toolUsePromptTokenCount": 20,
        "candidatesTokenCount": 50,
        "thoughtsTokenCount": 300,
        "totalTokenCount": 1370,
    }
    thought = {"text": "Let me think...", "thought": True}
    server.replies.append(json_reply(200, answer([thought, {"text": "Hi"}], usage, modelVersion="gemini-2.5-flash")))
    adapter = GeminiAdapter(spec_at(server.url), client)
    result = await adapter.complete(chat("hello"))
    assert (result.text, result.model, result.finish_reason) == ("Hi", "gemini-2.5-flash", "STOP")
    assert (result.input_tokens, result.cache_read_tokens, result.output_tokens) == (1020, 600, 350)
    assert "x-goog-api-key" not in server.seen[0].headers  # a loopback server needs no key
    frames = [
        answer([{"text": "H"}], {"promptTokenCount": 1000, "totalTokenCount": 1000}, finish=None),
        answer([{"text": "i"}], usage),
    ]
    server.replies.append(sse_reply([f"data: {json.dumps(f)}" for f in frames]))
    deltas, final = await collect(adapter, chat("hello"))
    assert deltas == ["H", "i"] and (final.input_tokens, final.cache_read_tokens, final.output_tokens) == (
        1020,
        600,
        350,
    )
    assert server.seen[1].path == f"/v1/models/{MODEL}:streamGenerateContent?alt=sse"


async def test_the_ledger_prices_cached_and_thinking_tokens_with_genai_prices(server):
    from genai_prices import Usage, calc_price

    usage = {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 600,
        "candidatesTokenCount": 50,
        "thoughtsTokenCount": 300,
    }
    server.replies.append(json_reply(200, answer([{"text": "Hi"}], usage, modelVersion=MODEL)))
    with ModelClientRouter(ProviderRoutingConfig([spec_at(server.url)])) as r:  # no prices: the catalogue's
        c = await r.acomplete("hello")
    want = calc_price(
        Usage(input_tokens=1000, cache_read_tokens=600, output_tokens=350), MODEL, provider_id="google"
    ).total_price
    assert c.cost == pytest.approx(float(want), rel=1e-9) and c.cost > 0


async def test_thought_signatures_are_kept_and_sent_back_with_their_calls(server, client):
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "C"}}, "thoughtSignature": "c2ln"}
    server.replies.append(json_reply(200, answer([call], {"promptTokenCount": 9, "candidatesTokenCount": 4})))
    adapter = GeminiAdapter(spec_at(server.url), client)
    result = await adapter.complete(chat("Weather in Paris?", tools=[WEATHER]))
    (made,) = result.tool_calls
    assert made.id.startswith(MADE_ID_PREFIX) and made.arguments == {"city": "Paris", "unit": "C"}
    body = adapter.build_body(
        chat(
            [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [made]},
                {"role": "tool", "tool_call_id": made.id, "content": "18 C"},
            ]
        ),
        False,
    )
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == "c2ln"
    assert "id" not in body["contents"][1]["parts"][0]["functionCall"]


async def test_a_stream_without_alt_sse_is_one_json_array_and_still_read(server, client):
    frames = [
        answer([{"text": "Hel"}], {"promptTokenCount": 5}, finish=None),
        answer([{"text": "lo"}], {"promptTokenCount": 5, "candidatesTokenCount": 2}),
    ]
    server.replies.append(json_reply(200, frames))
    deltas, final = await collect(GeminiAdapter(spec_at(server.url), client), chat("hi"))
    assert deltas == ["Hello"] and (final.text, final.input_tokens, final.output_tokens) == ("Hello", 5, 2)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
async def test_a_blocked_prompt_is_an_empty_answer_with_its_block_reason(server, client, streamed):
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 7}}
    server.replies.append(sse_reply([f"data: {json.dumps(blocked)}"]) if streamed else json_reply(200, blocked))
    adapter = GeminiAdapter(spec_at(server.url), client)
    result = (await collect(adapter, chat("hi")))[1] if streamed else await adapter.complete(chat("hi"))
    assert (result.text, result.finish_reason, result.input_tokens, result.output_tokens) == (
        "",
        "PROHIBITED_CONTENT",
        7,
        0,
    )


def google(code: int, status: str, message: str, details: list | None = None) -> dict:
    return {"error": {"code": code, "message": message, "status": status, **({"details": details} if details else {})}}


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}
ERROR_BODIES = [  # what Google sends, and what it means
    (
        429,
        google(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota ... Please retry in 20.04s.", [RETRY]),
        "rate_limit",
        20.0,
    ),
    (429, google(429, "RESOURCE_EXHAUSTED", "Quota exceeded ... Please retry in 1500ms."), "rate_limit", 1.5),
    (
        429,
        google(429, "RESOURCE_EXHAUSTED", "* Quota exceeded for metric: ..., limit: 0, model: gemini-2.5-pro", [RETRY]),
        "insufficient_quota",
        20.0,
    ),
    (429, google(429, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted."), "insufficient_quota", None),
    (400, google(400, "INVALID_ARGUMENT", "API key expired. Please renew the API key."), "authentication", None),
    (400, google(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), "permission", None),
    (
        400,
        google(
            400,
            "FAILED_PRECONDITION",
            "Gemini API free tier is not available in your country. Please enable "
            "billing on your project in Google AI Studio.",
        ),
        "insufficient_quota",
        None,
    ),
    (
        400,
        google(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
        ),
        "context_length",
        None,
    ),
    (
        400,
        google(
            400, "INVALID_ARGUMENT", "Function calling with a response mime type: 'application/json' is unsupported"
        ),
        "invalid_request",
        None,
    ),
    (401, google(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), "authentication", None),
    (503, google(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), "overloaded", None),
    (500, google(500, "INTERNAL", "An internal error has occurred."), "server_error", None),
    (502, b"<html><body>502. That's an error.</body></html>", "server_error", None),  # a front end's page
]


@pytest.mark.parametrize("status, body, error_type, retry_after", ERROR_BODIES)
async def test_google_error_bodies_map_onto_the_error_tree(server, client, status, body, error_type, retry_after):
    server.replies.append(json_reply(status, body))
    with pytest.raises(ProviderError) as info:
        await GeminiAdapter(spec_at(server.url, api_key="AIza-secret-key"), client).complete(chat("hi"))
    err = info.value
    assert (err.error_type, err.status_code, err.retry_after) == (error_type, status, retry_after)
    assert err.message and "AIza-secret-key" not in str(err)


async def test_an_error_frame_mid_stream_keeps_the_text_and_the_reported_prompt(server, client):
    frames = [
        f"data: {json.dumps(answer([{'text': 'Hel'}], {'promptTokenCount': 5}, finish=None))}",
        f"data: {json.dumps(google(500, 'INTERNAL', 'An internal error has occurred.'))}",
    ]
    server.replies.append(sse_reply(frames))
    with pytest.raises(ProviderError) as info:
        await collect(GeminiAdapter(spec_at(server.url), client), chat("hi"))
    err = info.value
    assert (err.error_type, err.status_code, err.partial_text, err.input_tokens) == ("stream_error", 200, "Hel", 5)
    assert "INTERNAL" in err.message


async def test_the_sdk_key_variables_are_a_fallback_for_google_s_own_endpoint_only(monkeypatch):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer([{"text": "ok"}], {"promptTokenCount": 1, "candidatesTokenCount": 1}))

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-from-google-var")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as plain:  # the network, not our code
        own = adapter_for("gemini")(ProviderSpec("gemini", MODEL), plain)
        assert (await own.complete(chat("hi"))).text == "ok"
        assert seen[0].headers["x-goog-api-key"] == "AIza-from-google-var"
        assert seen[0].url == f"https://generativelanguage.googleapis.com/v1/models/{MODEL}:generateContent"
        monkeypatch.setenv("GEMINI_API_KEY", "AIza-own-var")  # the spec's own variable wins once it is set
        await own.complete(chat("hi"))
        assert seen[1].headers["x-goog-api-key"] == "AIza-own-var"
        proxy = adapter_for("gemini")(
            ProviderSpec("my-gemini", MODEL, api="gemini", base_url="https://llm-proxy.example"), plain
        )
        with pytest.raises(ProviderError, match="set MY_GEMINI_API_KEY"):  # Google's key never goes elsewhere
            await proxy.complete(chat("hi"))
    assert len(seen) == 2
