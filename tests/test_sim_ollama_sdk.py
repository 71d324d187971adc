"""The official ``ollama`` SDK, pointed at the simulator's /api/chat, parses every kind of answer it
gives (text, streams, tool calls, ``format`` schemas, images) and surfaces every error status as its
``ResponseError`` with that status; the simulator's counters equal what the SDK was told."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest
from helpers import City

from llmroute_magic.sim import ProviderProfile, Simulator

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
PROMPT = "Name three prime numbers."
MODEL = "gemma3:4b"


def get_weather(city: str, unit: str) -> str:
    """Current weather in a city.

    Args:
      city: The city's name
      unit: celsius or fahrenheit

    Returns:
      str: The weather
    """
    return f"18 {unit} in {city}"


@pytest.fixture(scope="module")
def server():
    with Simulator(
        [
            ProviderProfile(
                "sdk-ollama", api="ollama", model=MODEL, input_price=1.0, output_price=3.0, retry_after_s=2.0, seed=5
            ),
            ProviderProfile("sdk-blind", api="ollama", model=MODEL, vision=False),
        ]
    ) as s:
        yield s


@pytest.fixture
def s(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture(scope="module")
def client(server):
    with ollama.Client(host=server.base_url("sdk-ollama")) as c:
        yield c


def chat(client, prompt=PROMPT, **extra):
    return client.chat(model=MODEL, messages=[{"role": "user", "content": prompt}], **extra)


def billed(s, name="sdk-ollama") -> dict:
    return s.stats()["providers"][name]


# -- answers -------------------------------------------------------------------------------------------------


def test_plain_and_streamed_answers_agree_with_the_stats(s, client):
    plain = chat(client)
    assert plain.message.content and plain.done and plain.done_reason == "stop" and plain.model == MODEL
    assert plain.prompt_eval_count > 0 and plain.eval_count == len(plain.message.content.split())
    parts = list(chat(client, stream=True))
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content for p in parts) == plain.message.content
    last = parts[-1]
    assert (last.prompt_eval_count, last.eval_count, last.done_reason) == (
        plain.prompt_eval_count,
        plain.eval_count,
        "stop",
    )
    st = billed(s)
    assert st["statuses"] == {"200": 2}
    assert (st["input_tokens"], st["output_tokens"]) == (2 * plain.prompt_eval_count, 2 * plain.eval_count)
    assert st["cost"] == pytest.approx(2 * (plain.prompt_eval_count * 1.0 + plain.eval_count * 3.0) / 1e6)


def test_num_predict_cuts_the_answer(s, client):
    cut = chat(client, options={"num_predict": 4})
    assert (cut.eval_count, cut.done_reason) == (4, "length")


def test_tool_calls_plain_and_streamed(s, client):
    plain = chat(client, "Use get_weather for Oslo.", tools=[get_weather])  # a Python function, as the SDK allows
    call = plain.message.tool_calls[0]
    assert call.function.name == "get_weather" and set(call.function.arguments) == {"city", "unit"}
    parts = list(chat(client, "Use get_weather for Oslo.", tools=[get_weather], stream=True))
    streamed = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == [
        (call.function.name, dict(call.function.arguments))
    ]
    assert parts[-1].eval_count == plain.eval_count
    assert billed(s)["output_tokens"] == 2 * plain.eval_count


def test_a_format_schema_answer_parses(s, client):
    answer = chat(client, "The biggest city in Norway?", format=City.model_json_schema())
    assert isinstance(City.model_validate_json(answer.message.content), City)
    parts = list(chat(client, "The biggest city in Norway?", format=City.model_json_schema(), stream=True))
    assert City.model_validate_json("".join(p.message.content for p in parts)) == City.model_validate_json(
        answer.message.content
    )
    assert isinstance(json.loads(chat(client, format="json").message.content), dict)


def test_images_are_sent_as_base64_and_cost_input_tokens(s, client):
    text = chat(client, "What is this?")
    image = client.chat(model=MODEL, messages=[{"role": "user", "content": "What is this?", "images": [PNG]}])
    assert image.prompt_eval_count - text.prompt_eval_count == 85 and image.message.content == text.message.content
    with pytest.raises(ollama.ResponseError) as info:
        ollama.Client(host=s.base_url("sdk-blind")).chat(
            model=MODEL, messages=[{"role": "user", "content": "What is this?", "images": [PNG]}]
        )
    assert info.value.status_code == 400 and "does not accept images" in info.value.error


# -- errors --------------------------------------------------------------------------------------------------

ERRORS = [
    ("rate_limit", 429),
    ("rate_limit_no_retry_after", 429),
    ("insufficient_quota", 402),
    ("server_error", 500),
    ("bad_gateway", 502),
    ("unavailable", 503),
    ("gateway_timeout", 504),
    ("overloaded", 503),
    ("invalid_request", 400),
    ("context_length", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("model_not_found", 404),
    ("stream_error", 500),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault, status", ERRORS)
def test_every_error_status_is_a_response_error_with_that_status(s, client, fault, status, stream):
    s.inject("sdk-ollama", [fault])
    with pytest.raises(ollama.ResponseError) as info:
        result = chat(client, stream=stream)
        if stream:
            list(result)
    if fault == "stream_error" and stream:  # an {"error": ...} line after text: the SDK has no status for it
        assert info.value.status_code == -1 and info.value.error
    else:
        assert info.value.status_code == status and info.value.error
    if fault == "model_not_found":
        assert info.value.error == f"model '{MODEL}' not found, try pulling it first"
    if fault == "overloaded":
        assert info.value.error.startswith("server busy")


def test_rate_limit_carries_retry_after(s):
    s.inject("sdk-ollama", ["rate_limit"])
    r = httpx.post(
        s.base_url("sdk-ollama") + "/api/chat",
        json={"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "2" and "retry-after-ms" not in r.headers


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_malformed_answers_fail_to_parse(s, client, stream):
    s.inject("sdk-ollama", ["malformed_json"])
    with pytest.raises(json.JSONDecodeError):
        result = chat(client, stream=stream)
        if stream:
            list(result)


def test_a_truncated_stream_ends_without_done(s, client):
    """The SDK does not notice (it yields what came); the counts never came, so nothing was billed."""
    s.inject("sdk-ollama", ["truncated_stream"])
    parts = list(chat(client, stream=True))
    assert parts and not any(p.done for p in parts)
    assert (billed(s)["input_tokens"], billed(s)["statuses"]) == (0, {"truncated_stream": 1})


def test_without_stream_the_server_streams_as_ollama_does(s):
    r = httpx.post(
        s.base_url("sdk-ollama") + "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    )  # no "stream": Ollama streams
    assert r.headers["content-type"] == "application/x-ndjson" and json.loads(r.text.splitlines()[-1])["done"]
