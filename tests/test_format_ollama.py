"""Ollama's native API end to end: the router, the ``ollama`` adapter and the simulator's /api/chat,
over real loopback HTTP.

After each request through ``ModelClientRouter`` the ledger must equal what the simulator served and
billed. Covered: (plain, streamed) x (text, tools, schema, image); forced tool calls (Ollama has no
tool_choice: the adapter asks for them through ``format``); failover from a provider that answers a
schema with prose; images kept away from a text-only model; every fault kind mapped to its error
type; a cancelled stream; num_ctx reaching the server; keys for a remote Ollama. Request bodies and
answer shapes the simulator does not produce are checked on the adapter's own functions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math

import httpx
import jsonschema
import pytest
from helpers import (
    City,
    assert_ledger_matches_sim,
    cancel_after_first_item,
    injected_fault_outcomes,
    rows,
    simulator_fixtures,
    streamed_or_plain_outcome,
    wait_until,
)

from llmroute_magic import (
    AllProvidersFailed,
    ConfigError,
    LLMRouteError,
    ModelClientRouter,
    ProviderError,
    ProviderRoutingConfig,
    ProviderSpec,
)
from llmroute_magic._providers import ChatRequest, adapter_for
from llmroute_magic._providers.ollama import OllamaAdapter, iter_ndjson, usage_of
from llmroute_magic._request import build_request
from llmroute_magic._types import ToolCall
from llmroute_magic.sim import FAULT_KINDS, ProviderProfile
from llmroute_magic.sim._neutral import IMAGE_TOKENS

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 2}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
TIME = {
    "name": "get_time",
    "description": "The time in a zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
}


PRICES = {"input_price": 2.0, "output_price": 8.0}
PROFILES = [
    ProviderProfile("ol-a", api="ollama", model="gemma3:4b", seed=1, **PRICES),  # gemma3: vision by default
    ProviderProfile("ol-b", api="ollama", model="gemma3:12b", seed=2, **PRICES),
    ProviderProfile("ol-text", api="ollama", model="llama3.1:8b", seed=3, vision=False, **PRICES),  # text only
    ProviderProfile("ol-drip", api="ollama", model="llama3.1:8b", seed=4, tokens_per_s=40.0, **PRICES),
    ProviderProfile("ol-keyed", api="ollama", model="llama3.1:8b", require_api_key="ol-secret-key"),
]


sim, fresh = simulator_fixtures(PROFILES)


def router(sim, *names: str, specs=None, **cfg) -> ModelClientRouter:
    return ModelClientRouter(ProviderRoutingConfig(specs or sim.provider_specs(list(names)), **cfg))


def ask(r: ModelClientRouter, prompt, streamed: bool, **options):
    """A Completion, plain or streamed (then the chunks must add up to its text)."""
    if not streamed:
        return r.complete(prompt, **options)
    s = r.stream(prompt, **options)
    chunks = list(s)
    assert "".join(chunks) == s.completion.text
    return s.completion


def expected_input_tokens(text: str, images: int = 0) -> int:
    return max(1, math.ceil(len(text) / 4)) + 3 + IMAGE_TOKENS * images


# -- the matrix: (plain, streamed) x (text, tools, schema, image) ---------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_text(fresh, streamed):
    with router(fresh, "ol-a") as r:
        c = ask(r, "Explain the CAP theorem in one line.", streamed, max_tokens=200)
        assert c.text and c.provider == "ol-a" and c.model == "gemma3:4b" and c.finish_reason == "stop"
        assert c.input_tokens == expected_input_tokens("Explain the CAP theorem in one line.")
        assert c.output_tokens == len(c.text.split()) and c.cost == pytest.approx(
            (c.input_tokens * 2 + c.output_tokens * 8) / 1e6
        )
        cut = ask(r, "Explain the CAP theorem in one line.", streamed, max_tokens=3)
        assert (cut.output_tokens, cut.finish_reason) == (3, "length")
        assert [x["streamed"] for x in rows(r)] == [streamed] * 2
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_tool_calls(fresh, streamed):
    with router(fresh, "ol-a") as r:
        c = ask(r, "Call get_weather and get_time for Oslo.", streamed, tools=[WEATHER, TIME])
        assert [t.name for t in c.tool_calls] == ["get_weather", "get_time"] and c.text == ""
        jsonschema.validate(c.tool_calls[0].arguments, WEATHER["parameters"])
        jsonschema.validate(c.tool_calls[1].arguments, TIME["parameters"])
        assert len({t.id for t in c.tool_calls}) == 2  # ids tell the results apart
        follow = [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": list(c.tool_calls)},
            {"role": "tool", "tool_call_id": c.tool_calls[0].id, "content": "9 C, rain"},
            {"role": "tool", "tool_call_id": c.tool_calls[1].id, "content": "14:05"},
        ]
        answer = ask(r, follow, streamed, tools=[WEATHER, TIME])  # after tool results: text, no new call
        assert answer.text and answer.tool_calls == ()
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_schema(fresh, streamed):
    with router(fresh, "ol-a") as r:
        c = ask(r, "The biggest city in Norway?", streamed, response_format=City)
        assert isinstance(c.parsed, City) and City.model_validate_json(c.text) == c.parsed
        raw = ask(r, "Again, as a dict.", streamed, response_format=City.model_json_schema())
        assert set(raw.parsed) == {"name", "population"}
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_image(fresh, streamed):
    prompt = [
        {
            "role": "user",
            "content": [
                "What is in this picture?",
                {"type": "image", "data": PNG},
                {"type": "image", "data": base64.b64encode(PNG).decode()},
            ],
        }
    ]
    with router(fresh, "ol-a") as r:
        c = ask(r, prompt, streamed)
        assert c.text and c.input_tokens == expected_input_tokens("What is in this picture?", images=2)
    assert_ledger_matches_sim(r, fresh)


# -- tool_choice, which Ollama's API does not have ---------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_forced_tool_call_comes_back_as_that_call(fresh, streamed):
    with router(fresh, "ol-a") as r:
        c = ask(r, "Use get_time, please.", streamed, tools=[WEATHER, TIME], tool_choice="get_weather")
        assert [t.name for t in c.tool_calls] == ["get_weather"] and c.text == ""
        jsonschema.validate(c.tool_calls[0].arguments, WEATHER["parameters"])
        required = ask(r, "Weather please.", streamed, tools=[WEATHER], tool_choice="required")
        assert [t.name for t in required.tool_calls] == ["get_weather"]
        some = ask(r, "Anything.", streamed, tools=[WEATHER, TIME], tool_choice="required")
        assert len(some.tool_calls) == 1 and some.tool_calls[0].name in ("get_weather", "get_time")
        none = ask(r, "Use get_weather.", streamed, tools=[WEATHER], tool_choice="none")
        assert none.tool_calls == () and none.text
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_forced_call_answered_in_prose_is_malformed_and_fails_over(fresh, streamed):
    """The forced call's JSON is never shown as text, so even a stream can still fall back."""
    fresh.inject("ol-a", ["ignore_schema"])
    with router(fresh, "ol-a", "ol-b") as r:
        c = ask(r, "Weather?", streamed, tools=[WEATHER], tool_choice="get_weather")
        assert (c.provider, c.attempts, [t.name for t in c.tool_calls]) == ("ol-b", 2, ["get_weather"])
        first = rows(r)[0]
        assert (first["error_type"], first["http_status"]) == ("malformed_response", 200)
        assert first["input_tokens"] > 0 and first["output_tokens"] > 0  # prose is billed
    assert_ledger_matches_sim(r, fresh)


# -- failover, capabilities ------------------------------------------------------------------------------


def test_a_schema_answered_in_prose_fails_over_to_one_that_answers_json(fresh):
    fresh.inject("ol-a", ["ignore_schema"])
    with router(fresh, "ol-a", "ol-b") as r:
        c = r.complete("The biggest city in Norway?", response_format=City)
        assert (c.provider, c.attempts) == ("ol-b", 2) and isinstance(c.parsed, City)
        first, second = rows(r)
        assert (first["provider"], first["status"], first["error_type"], first["http_status"]) == (
            "ol-a",
            "error",
            "malformed_response",
            200,
        )
        assert first["input_tokens"] > 0 and first["output_tokens"] > 0 and first["cost"] > 0  # billed
        assert (second["provider"], second["status"]) == ("ol-b", "ok")
    assert_ledger_matches_sim(r, fresh)
    assert fresh.stats()["providers"]["ol-a"]["statuses"] == {"ignore_schema": 1}


def test_a_streamed_schema_answered_in_prose_fails_over_before_anything_is_shown(fresh):
    """A schema answer is read whole before it is shown, so prose moves on to the next provider."""
    fresh.inject("ol-a", ["ignore_schema"])
    with router(fresh, "ol-a", "ol-b") as r:
        s = r.stream("The biggest city in Norway?", response_format=City)
        shown = list(s)
        assert s.completion.provider == "ol-b" and isinstance(s.completion.parsed, City)
        assert "".join(shown) == s.completion.text
        assert [(x["provider"], x["status"]) for x in rows(r)] == [("ol-a", "error"), ("ol-b", "ok")]
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_an_image_skips_a_provider_without_vision(fresh, streamed):
    prompt = [{"role": "user", "content": ["Describe it.", {"type": "image", "data": PNG}]}]
    with router(fresh, "ol-text", "ol-a") as r:
        assert "vision" not in r.providers[0].effective_capabilities
        c = ask(r, prompt, streamed)
        assert c.provider == "ol-a" and c.attempts == 1
        assert ask(r, "Plain text is fine.", streamed).provider == "ol-text"
    assert fresh.stats()["providers"]["ol-text"]["requests"] == 1  # the text request only
    assert_ledger_matches_sim(r, fresh)


def test_an_image_by_url_is_never_routed_to_ollama_and_alone_it_says_to_pass_the_bytes(fresh):
    prompt = [{"role": "user", "content": ["Describe it.", {"type": "image", "url": "https://example.com/a.png"}]}]
    with router(fresh, "ol-a") as r:
        with pytest.raises(ConfigError) as info:
            r.complete(prompt)
        assert "image_url" in str(info.value) and "ol-a lacks image_url" in str(info.value)
        assert "'data'" in str(info.value) and "instead of its URL" in str(info.value)
        assert rows(r) == []  # refused before any attempt
    assert fresh.stats()["providers"]["ol-a"]["requests"] == 0


def test_the_request_model_is_sent_and_reported(fresh):
    with router(fresh, "ol-a") as r:
        c = r.complete("Hello.", model="qwen2.5:7b")
        assert c.model == "qwen2.5:7b" and rows(r)[0]["model"] == "qwen2.5:7b"
    assert_ledger_matches_sim(r, fresh)


# -- num_ctx: the reason for this adapter -------------------------------------------------------------

LONG = "Every attempt is counted so the ledger matches what was billed. " * 640  # ~41k chars: ~10k tokens


def test_a_long_prompts_num_ctx_reaches_the_server(fresh):
    # Without num_ctx Ollama keeps 4096 tokens of it (what its OpenAI-compatible endpoint always does).
    bare = httpx.post(
        fresh.base_url("ol-a") + "/api/chat",
        json={"model": "gemma3:4b", "messages": [{"role": "user", "content": LONG}], "stream": False},
    ).json()
    assert bare["prompt_eval_count"] <= 4096
    fresh.reset()
    spec = fresh.provider_specs(["ol-a"])[0].with_context_window(32_000)
    with router(fresh, specs=[spec]) as r:
        c = r.complete(LONG, max_tokens=20)
        assert c.input_tokens == expected_input_tokens(LONG) > 10_000  # the whole prompt was read
    assert_ledger_matches_sim(r, fresh)


def test_a_prompt_over_num_ctx_is_a_context_error_that_moves_to_a_larger_window(fresh):
    small, big = fresh.provider_specs(["ol-a", "ol-b"])
    specs = [small.with_context_window(4_000), big.with_context_window(32_000)]
    with router(fresh, specs=specs) as r:
        c = r.complete(LONG, max_tokens=20)
        assert (c.provider, c.input_tokens) == ("ol-b", expected_input_tokens(LONG))
        assert [(x["provider"], x["error_type"], x["http_status"]) for x in rows(r)] == [
            ("ol-a", "context_length", 400),
            ("ol-b", None, 200),
        ]
    assert_ledger_matches_sim(r, fresh)


# -- faults -> error types -------------------------------------------------------------------------------

# Plain outcomes are OpenAI's but for two Ollama answers its own way; a streamed stream_error is an
# {"error": ...} line after text.
OLLAMA_FAULTS = injected_fault_outcomes(
    {
        "insufficient_quota": ("insufficient_quota", 402),  # ollama.com's usage limit
        "overloaded": ("overloaded", 503),  # "server busy": Ollama's queue is full
    }
)


def test_the_table_covers_every_fault_kind():
    assert set(OLLAMA_FAULTS) == set(FAULT_KINDS)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", sorted(OLLAMA_FAULTS))
def test_fault_maps_to_its_error_type(fresh, fault, streamed):
    spec = fresh.provider_specs(["ol-a"])[0].with_timeout(0.3 if fault == "hang" else 10.0)
    fresh.inject("ol-a", [fault])
    with router(fresh, specs=[spec], max_retries=0) as r:
        with pytest.raises(LLMRouteError) as info:
            ask(r, "Tell me something.", streamed)
        err = info.value.attempts[-1] if isinstance(info.value, AllProvidersFailed) else info.value
        error_type, status = streamed_or_plain_outcome(OLLAMA_FAULTS, fault, streamed)
        assert (err.error_type, err.status_code) == (error_type, status)
        assert [(x["error_type"], x["http_status"], x["streamed"]) for x in rows(r)] == [(error_type, status, streamed)]
        if fault == "rate_limit":
            assert err.retry_after == 1.0  # retry-after: whole seconds
        if fault == "model_not_found":
            assert "ollama pull gemma3:4b" in err.message
    assert_ledger_matches_sim(r, fresh)


def test_retryable_faults_fall_back_to_the_next_ollama(fresh):
    fresh.inject("ol-a", ["overloaded"])
    with router(fresh, "ol-a", "ol-b") as r:
        assert r.complete("Hello.").provider == "ol-b"
        assert [x["error_type"] for x in rows(r)] == ["overloaded", None]
    assert_ledger_matches_sim(r, fresh)


# -- cancel, keys ------------------------------------------------------------------------------------------


async def test_a_cancelled_stream_is_recorded_with_what_was_reported(fresh):
    with router(fresh, "ol-drip") as r:
        await cancel_after_first_item(r.astream("A long story, please.", max_tokens=200))
        got = [(x["status"], x["error_type"], x["streamed"], x["input_tokens"], x["output_tokens"]) for x in rows(r)]
        assert got == [("cancelled", "cancelled", True, 0, 0)]  # Ollama reports its counts only at the end
        await asyncio.to_thread(
            wait_until, lambda: fresh.stats()["providers"]["ol-drip"]["statuses"] == {"disconnected": 1}
        )
    assert_ledger_matches_sim(r, fresh)


def test_a_remote_ollama_without_a_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_CLOUD_API_KEY", raising=False)
    specs = [
        ProviderSpec("ollama", "gpt-oss:120b", base_url="https://ollama.com").with_prices(input=0, output=0),
        ProviderSpec("ollama-cloud", "gpt-oss:20b", api="ollama", base_url="https://ollama.com").with_prices(
            input=0, output=0
        ),
    ]
    assert specs[0].api == "ollama"
    with ModelClientRouter(ProviderRoutingConfig(specs)) as r:
        with pytest.raises(AllProvidersFailed) as info:
            r.complete("Hello.")
        assert [a.error_type for a in info.value.attempts] == ["missing_api_key"] * 2
        assert "set OLLAMA_API_KEY" in str(info.value) and "set OLLAMA_CLOUD_API_KEY" in str(info.value)
        assert [x["error_type"] for x in rows(r)] == ["missing_api_key"] * 2


def test_a_local_ollama_needs_no_key_and_a_key_goes_as_bearer(fresh, monkeypatch):
    default = ProviderSpec("ollama", "llama3.1:8b")
    assert (default.api, default.base_url, default.is_local) == ("ollama", "http://127.0.0.1:11434", True)
    assert "authorization" not in OllamaAdapter(default, None).headers_for(None)
    keyed = fresh.provider_specs(["ol-keyed"])[0]._copy(api_key=None)  # the key from the environment
    monkeypatch.setenv("OL_KEYED_API_KEY", "ol-secret-key")
    with router(fresh, specs=[keyed]) as r:
        assert r.complete("Hello.").text  # the sim checks the Bearer token
    assert_ledger_matches_sim(r, fresh)
    fresh.reset()
    monkeypatch.delenv("OL_KEYED_API_KEY")
    with router(fresh, specs=[keyed], max_retries=0) as r2:
        with pytest.raises(AllProvidersFailed) as info:
            r2.complete("Hello.")
        assert info.value.attempts[0].error_type == "authentication"
        assert "(the key is read from OL_KEYED_API_KEY)" in str(info.value) and "ol-secret-key" not in str(info.value)
    assert_ledger_matches_sim(r2, fresh)


# -- request bodies ------------------------------------------------------------------------------------------


def chat(prompt, **options) -> ChatRequest:
    spec = ProviderSpec("p", "m", base_url="http://127.0.0.1:9")
    return build_request(prompt, options, config=ProviderRoutingConfig([spec]), request_id="r", streamed=False).chat


def adapter(**spec) -> OllamaAdapter:
    return adapter_for("ollama")(
        ProviderSpec("o", "llama3.1:8b", api="ollama", base_url="http://127.0.0.1:9", **spec), None
    )


def test_body_options_stream_and_params():
    body = adapter(context_window=32_768).build_body(
        chat(
            "Hi",
            system="Be brief.",
            max_tokens=64,
            temperature=0.2,
            top_p=0.9,
            seed=7,
            stop="END",
            keep_alive="10m",
            options={"num_gpu": 1},
        ),
        stream=False,
    )
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert body["options"] == {
        "num_ctx": 32_768,
        "num_predict": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "num_gpu": 1,
    }
    assert (body["stream"], body["truncate"], body["keep_alive"], body["model"]) == (False, False, "10m", "llama3.1:8b")
    streamed = adapter().build_body(chat("Hi", stream=False, truncate=True), stream=True)
    assert streamed["stream"] is True and streamed["truncate"] is True and "options" not in streamed


def test_body_images_tools_tool_results_and_schema():
    prompt = [
        {"role": "user", "content": ["What is ", "this?", {"type": "image", "data": PNG}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                ToolCall("c1", "get_weather", {"city": "Paris"}),
                {"id": "c2", "function": {"name": "get_time", "arguments": '{"zone": "CET"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "09:00"}]},
    ]
    body = adapter().build_body(chat(prompt, tools=[WEATHER, TIME], response_format=City, model="llava"), stream=True)
    user, assistant, r1, r2 = body["messages"]
    assert user == {"role": "user", "content": "What is this?", "images": [base64.b64encode(PNG).decode()]}
    assert assistant == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "c2", "function": {"name": "get_time", "arguments": {"zone": "CET"}}},
        ],
    }
    assert r1 == {"role": "tool", "content": "18 C", "tool_name": "get_weather", "tool_call_id": "c1"}
    assert r2 == {"role": "tool", "content": "09:00", "tool_name": "get_time", "tool_call_id": "c2"}
    assert body["tools"] == [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]
    assert body["format"] == City.model_json_schema() and body["model"] == "llava"


def test_body_tool_choice_through_format():
    forced = adapter().build_body(chat("x", tools=[WEATHER, TIME], tool_choice="get_time"), stream=False)
    assert "tools" not in forced
    assert forced["format"]["properties"] == {"name": {"const": "get_time"}, "arguments": TIME["parameters"]}
    required = adapter().build_body(
        chat("x", tools=[WEATHER, TIME], tool_choice="required", response_format=City), stream=False
    )
    assert [b["properties"]["name"] for b in required["format"]["anyOf"]] == [
        {"const": "get_weather"},
        {"const": "get_time"},
    ]
    none = adapter().build_body(chat("x", tools=[WEATHER], tool_choice="none", response_format=City), stream=False)
    assert "tools" not in none and none["format"] == City.model_json_schema()


# -- answers the simulator does not give -----------------------------------------------------------------


def test_counts_left_out_when_zero_and_no_counts_means_unknown():
    assert usage_of({"done": True, "prompt_eval_count": 12}) == (12, 0)  # Go's omitempty dropped eval_count: 0
    assert usage_of({"done": True, "eval_count": 3}) == (0, 3)
    assert usage_of({"done": True}) == (None, None)
    result = adapter().parse_response(
        {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True, "done_reason": "stop"},
        200,
        chat("x"),
    )
    assert (result.text, result.input_tokens, result.output_tokens, result.finish_reason) == ("hi", None, None, "stop")


def test_tool_calls_without_ids_get_distinct_ones():
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "A"}}},
            {"function": {"name": "get_weather", "arguments": {"city": "B"}}},
        ],
    }
    result = adapter().parse_response(
        {"message": message, "done": True, "prompt_eval_count": 5, "eval_count": 9}, 200, chat("x")
    )
    assert [c.arguments["city"] for c in result.tool_calls] == ["A", "B"]
    assert len({c.id for c in result.tool_calls}) == 2


async def test_ndjson_lines_survive_any_chunking():
    lines = [{"message": {"content": "a\u2028b"}, "done": False}, {"message": {"content": "é"}, "done": True}]
    raw = b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\r\n" for x in lines)[:-2]  # no last newline

    async def chunks(size):
        for i in range(0, len(raw), size):
            yield raw[i : i + size]

    for size in (1, 3, 7, len(raw)):
        got = [json.loads(e.data) async for e in iter_ndjson(chunks(size))]
        assert got == lines


# -- the simulator's /api/chat, beyond the shared conformance suite ---------------------------------------


def post(sim, body: dict, name: str = "ol-a") -> httpx.Response:
    return httpx.post(sim.base_url(name) + "/api/chat", json={"model": "gemma3:4b", **body})


def lines(r: httpx.Response) -> list[dict]:
    return [json.loads(x) for x in r.text.splitlines()]


def test_sim_cuts_a_long_prompt_as_ollama_does_unless_told_not_to(fresh):
    old = {"role": "user", "content": "x" * 8000}  # ~2000 tokens
    system = {"role": "system", "content": "Be brief."}
    last = {"role": "user", "content": "What now?"}
    kept = post(
        fresh, {"messages": [system, old, old, old, last], "stream": False, "options": {"num_ctx": 5000}}
    ).json()
    # the oldest message went; the system prompt stayed: 2 x (2000 + 3) + the system's and the last's
    assert kept["prompt_eval_count"] == math.ceil((2 * 8000 + 9 + 9) / 4) + 3 * 4
    whole = post(
        fresh, {"messages": [system, old, old, old, last], "stream": False, "options": {"num_ctx": 8000}}
    ).json()
    assert whole["prompt_eval_count"] == math.ceil((3 * 8000 + 9 + 9) / 4) + 3 * 5
    front = post(fresh, {"messages": [{"role": "user", "content": "y" * 40_000}], "stream": False}).json()
    assert 4000 < front["prompt_eval_count"] <= 4096  # one message too long: its front is cut
    refused = post(fresh, {"messages": [{"role": "user", "content": "y" * 40_000}], "stream": True, "truncate": False})
    assert refused.status_code == 400 and "longer than the context length" in refused.json()["error"]
    st = fresh.stats()["providers"]["ol-a"]
    assert st["statuses"] == {"200": 3, "400": 1}
    assert st["input_tokens"] == kept["prompt_eval_count"] + whole["prompt_eval_count"] + front["prompt_eval_count"]


@pytest.mark.parametrize(
    "body, says",
    [
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, "of type string"),
        ({"messages": [{"role": "user", "content": "hi", "images": ["https://example.com/a.png"]}]}, "base64"),
        ({"messages": [{"role": "user", "content": "hi"}], "format": "yaml"}, "invalid format"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "of type bool"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": ""}, "model is required"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}],
                    },
                    {"role": "user", "content": "hi"},
                ]
            },
            "arguments",
        ),
    ],
)
def test_sim_refuses_what_the_go_server_cannot_decode(fresh, body, says):
    r = post(fresh, body)
    assert r.status_code == 400 and says in r.json()["error"]
    assert fresh.stats()["providers"]["ol-a"]["input_tokens"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_sim_a_tool_call_cut_by_num_predict_comes_back_as_text(fresh, stream):
    body = {
        "messages": [{"role": "user", "content": "Use get_weather."}],
        "stream": stream,
        "tools": [{"type": "function", "function": WEATHER}],
        "options": {"num_predict": 2},
    }
    objs = lines(post(fresh, body)) if stream else [post(fresh, body).json()]
    assert not any(o["message"].get("tool_calls") for o in objs)
    assert "".join(o["message"]["content"] for o in objs).startswith('{"city"')
    assert (objs[-1]["done_reason"], objs[-1]["eval_count"]) == ("length", 2)


@pytest.mark.parametrize("fault", ["truncated_stream", "stream_error"])
def test_sim_a_broken_stream_sends_only_whole_tool_calls_and_bills_nothing(fresh, fault):
    body = {
        "messages": [{"role": "user", "content": "Call get_weather and get_time."}],
        "stream": True,
        "tools": [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}],
    }
    whole = lines(post(fresh, body))
    calls = [c["function"]["name"] for o in whole for c in o["message"].get("tool_calls") or []]
    assert calls == ["get_weather", "get_time"] and whole[-1]["done"]
    fresh.inject("ol-a", [fault])
    broken = lines(post(fresh, body))
    assert not any(o.get("done") for o in broken)
    assert any("error" in o for o in broken) == (fault == "stream_error")
    sent = [c["function"]["name"] for o in broken for c in (o.get("message") or {}).get("tool_calls") or []]
    assert sent in ([], ["get_weather"])  # a call half generated is never sent
    st = fresh.stats()["providers"]["ol-a"]
    assert st["statuses"] == {"200": 1, fault: 1}
    assert (st["input_tokens"], st["output_tokens"]) == (whole[-1]["prompt_eval_count"], whole[-1]["eval_count"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_sim_ignore_schema_answers_a_format_with_prose(fresh, stream):
    fresh.inject("ol-a", ["ignore_schema"])
    body = {"messages": [{"role": "user", "content": "A city?"}], "stream": stream, "format": City.model_json_schema()}
    objs = lines(post(fresh, body)) if stream else [post(fresh, body).json()]
    text = "".join(o["message"]["content"] for o in objs)
    with pytest.raises(ValueError):
        json.loads(text)
    assert fresh.stats()["providers"]["ol-a"]["statuses"] == {"ignore_schema": 1}
    assert fresh.stats()["providers"]["ol-a"]["output_tokens"] == objs[-1]["eval_count"] > 0  # billed


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
async def test_no_counts_mean_unknown_tokens(fresh, streamed):
    from llmroute_magic._http import make_client
    from llmroute_magic._providers._failures import AttemptContext

    fresh.update("ol-b", no_usage=True)
    spec = fresh.provider_specs(["ol-b"])[0]
    client = make_client(timeout=10.0)
    try:
        ctx = AttemptContext(spec.name, spec.model)
        request = ChatRequest([{"role": "user", "content": "Hello."}])
        if streamed:
            items = [x async for x in adapter_for("ollama")(spec, client).stream(request, ctx)]
            result = items.pop()
            assert "".join(items) == result.text
        else:
            result = await adapter_for("ollama")(spec, client).complete(request, ctx)
    finally:
        await client.aclose()
    assert result.text and (result.input_tokens, result.output_tokens) == (None, None)
    assert (ctx.input_tokens, ctx.output_tokens) == (None, None)
    assert fresh.stats()["providers"]["ol-b"]["input_tokens"] == 0  # nothing reported, nothing billed


def test_a_forced_answer_must_name_an_allowed_tool():
    """An Ollama too old to enforce ``format`` may answer other JSON: a malformed answer, not a call."""
    request = chat("x", tools=[WEATHER, TIME], tool_choice="get_time")
    ok = adapter().parse_response(
        {
            "message": {"content": '{"name": "get_time", "arguments": {"zone": "CET"}}'},
            "done": True,
            "prompt_eval_count": 5,
            "eval_count": 9,
        },
        200,
        request,
    )
    assert [(c.name, c.arguments) for c in ok.tool_calls] == [("get_time", {"zone": "CET"})] and ok.text == ""
    for content in ('{"name": "get_weather", "arguments": {}}', '{"zone": "CET"}', "It is nine."):
        with pytest.raises(ProviderError) as info:
            adapter().parse_response(
                {"message": {"content": content}, "done": True, "prompt_eval_count": 5, "eval_count": 9}, 200, request
            )
        assert info.value.error_type == "malformed_response"
        assert (info.value.input_tokens, info.value.output_tokens) == (5, 9)  # billed all the same
