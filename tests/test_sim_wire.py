"""Every registered wire format, the same checks, over real loopback HTTP.

Each format gets a small test client (``CLIENTS``): how to write a neutral request in the format and
how to read its answers, streams and errors back. The tests then run text, tool calls, JSON
schemas, images, ``vision=False``, ``ignore_schema`` and the body faults through every format,
plain and streamed, and check that the simulator's counters equal exactly what the client was told
(the ledger == simulator rule, without the router).

Adding a format: write its client below and add it to ``CLIENTS``; ``test_every_registered_format_
has_a_test_client`` fails until you do. ``test_a_new_format_is_one_module_and_one_registry_line``
shows a whole (toy) format end to end.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import pytest
from helpers import fresh_simulator_fixture, simulator_fixture

from llmroute_magic import ConfigError
from llmroute_magic.sim import ProviderProfile, Simulator
from llmroute_magic.sim._answers import JSON_CHARS_PER_TOKEN
from llmroute_magic.sim._neutral import IMAGE_TOKENS, BadRequest, SimRequest
from llmroute_magic.sim._wire import (
    FAULT_STATUS,
    FORMATS,
    ROUTES,
    Call,
    Reply,
    Route,
    RouteTable,
    Step,
    Usage,
    WireFormat,
    broken_stream,
    register,
    unregister,
)
from llmroute_magic.sim._wire._base import ERROR_STATUS, dumps, json_object, ndjson

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
}
TIME = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
TOOLS = [("get_weather", "Current weather for a city", WEATHER), ("get_time", "Time in a zone", TIME)]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
        "address": {"$ref": "#/$defs/Address"},
        "active": {"type": "boolean"},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    },
    "required": ["name", "age", "email", "tags", "address", "active", "score"],
    "additionalProperties": False,
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string", "minLength": 5, "maxLength": 5}},
            "required": ["street", "zip"],
            "additionalProperties": False,
        }
    },
}


# -- the neutral test request, and what a client read back --------------------------------------------


@dataclass
class Ask:
    prompt: str = "Say hello to the simulator."
    system: str | None = None
    images: int = 0
    tools: list = field(default_factory=list)
    tool_choice: Any = None  # None (the format's default), "auto", "none", "required" or ("tool", name)
    schema: dict | None = None
    json_mode: bool = False
    max_tokens: int | None = None
    stream: bool = False


@dataclass
class Reading:
    text: str = ""
    tool_calls: list = field(default_factory=list)  # (name, arguments JSON text)
    finish: str | None = None  # "stop", "length" or "tool_calls"
    input_tokens: int = 0  # as reported to the client (0 when never reported)
    output_tokens: int = 0
    usage_seen: bool = False
    complete: bool = False  # the stream reached its proper end
    error: str | None = None  # an error event inside the stream


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    out, event = [], None
    for line in raw.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            out.append((event, line[6:]))
            event = None
    return out


class OpenAIClient:
    path = "/chat/completions"
    json_mode = True

    def body(self, a: Ask) -> dict:
        content: Any = a.prompt
        if a.images:
            content = [{"type": "text", "text": a.prompt}] + [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} for _ in range(a.images)
            ]
        messages = ([{"role": "system", "content": a.system}] if a.system else []) + [
            {"role": "user", "content": content}
        ]
        body: dict[str, Any] = {"model": "m", "messages": messages}
        if a.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": n, "description": d, "parameters": p}} for n, d, p in a.tools
            ]
        if a.tool_choice is not None:
            body["tool_choice"] = (
                a.tool_choice
                if isinstance(a.tool_choice, str)
                else {"type": "function", "function": {"name": a.tool_choice[1]}}
            )
        if a.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": a.schema, "strict": True},
            }
        elif a.json_mode:
            body["response_format"] = {"type": "json_object"}
        if a.max_tokens is not None:
            body["max_tokens"] = a.max_tokens
        if a.stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def read(self, data: dict) -> Reading:
        choice = data["choices"][0]
        r = Reading(text=choice["message"]["content"] or "", finish=choice["finish_reason"], complete=True)
        r.tool_calls = [
            (c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or []
        ]
        if "usage" in data:
            r.input_tokens, r.output_tokens = data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"]
            r.usage_seen = True
        return r

    def read_stream(self, raw: str) -> Reading:
        r, calls = Reading(), {}
        for _, data in sse_events(raw):
            if data == "[DONE]":
                r.complete = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                r.error = chunk["error"]["message"]
                continue
            if chunk.get("usage"):
                r.input_tokens, r.output_tokens = chunk["usage"]["prompt_tokens"], chunk["usage"]["completion_tokens"]
                r.usage_seen = True
            for choice in chunk["choices"]:
                delta = choice["delta"]
                r.text += delta.get("content") or ""
                for c in delta.get("tool_calls") or []:
                    slot = calls.setdefault(c["index"], ["", ""])
                    slot[0] += (c.get("function") or {}).get("name") or ""
                    slot[1] += (c.get("function") or {}).get("arguments") or ""
                r.finish = choice["finish_reason"] or r.finish
        r.tool_calls = [tuple(calls[i]) for i in sorted(calls)]
        return r

    def error(self, data: dict) -> str:
        return data["error"]["message"]


class AnthropicClient:
    path = "/v1/messages"
    json_mode = False  # Anthropic has a schema (output_config), no schema-less JSON mode
    _finish = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}

    def body(self, a: Ask) -> dict:
        content: Any = a.prompt
        if a.images:
            content = [{"type": "text", "text": a.prompt}] + [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
                for _ in range(a.images)
            ]
        body: dict[str, Any] = {
            "model": "m",
            "max_tokens": a.max_tokens or 1000,
            "messages": [{"role": "user", "content": content}],
        }
        if a.system:
            body["system"] = a.system
        if a.tools:
            body["tools"] = [{"name": n, "description": d, "input_schema": p} for n, d, p in a.tools]
        if a.tool_choice is not None:
            body["tool_choice"] = (
                {"type": {"required": "any"}.get(a.tool_choice, a.tool_choice)}
                if isinstance(a.tool_choice, str)
                else {"type": "tool", "name": a.tool_choice[1]}
            )
        if a.schema is not None:
            body["output_config"] = {"format": {"type": "json_schema", "schema": a.schema}}
        if a.stream:
            body["stream"] = True
        return body

    def read(self, data: dict) -> Reading:
        r = Reading(finish=self._finish[data["stop_reason"]], complete=True)
        for block in data["content"]:
            if block["type"] == "text":
                r.text += block["text"]
            elif block["type"] == "tool_use":
                r.tool_calls.append((block["name"], json.dumps(block["input"])))
        if "usage" in data:
            r.input_tokens, r.output_tokens = data["usage"]["input_tokens"], data["usage"]["output_tokens"]
            r.usage_seen = True
        return r

    def read_stream(self, raw: str) -> Reading:
        r, blocks = Reading(), {}
        for event, data in sse_events(raw):
            e = json.loads(data)
            if event == "message_start" and "usage" in e["message"]:
                r.input_tokens = e["message"]["usage"]["input_tokens"]
                r.usage_seen = True
            elif event == "content_block_start":
                blocks[e["index"]] = [e["content_block"]["type"], e["content_block"].get("name", ""), ""]
            elif event == "content_block_delta":
                d = e["delta"]
                if d["type"] == "text_delta":
                    r.text += d["text"]
                else:
                    blocks[e["index"]][2] += d["partial_json"]
            elif event == "message_delta":
                r.finish = self._finish[e["delta"]["stop_reason"]]
                if "usage" in e:
                    r.output_tokens = e["usage"]["output_tokens"]
            elif event == "message_stop":
                r.complete = True
            elif event == "error":
                r.error = e["error"]["message"]
        r.tool_calls = [(b[1], b[2]) for _, b in sorted(blocks.items()) if b[0] == "tool_use"]
        return r

    def error(self, data: dict) -> str:
        assert data["type"] == "error"
        return data["error"]["message"]


class ResponsesClient:
    path = "/responses"
    json_mode = True
    min_max_tokens = 16  # the API refuses a smaller max_output_tokens

    def body(self, a: Ask) -> dict:
        content: Any = a.prompt
        if a.images:
            content = [{"type": "input_text", "text": a.prompt}] + [
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"}
                for _ in range(a.images)
            ]
        body: dict[str, Any] = {"model": "m", "input": [{"role": "user", "content": content}], "store": False}
        if a.system:
            body["instructions"] = a.system
        if a.tools:
            body["tools"] = [
                {"type": "function", "name": n, "description": d, "parameters": p, "strict": False}
                for n, d, p in a.tools
            ]
        if a.tool_choice is not None:
            body["tool_choice"] = (
                a.tool_choice if isinstance(a.tool_choice, str) else {"type": "function", "name": a.tool_choice[1]}
            )
        if a.schema is not None:
            body["text"] = {"format": {"type": "json_schema", "name": "answer", "schema": a.schema, "strict": True}}
        elif a.json_mode:
            body["text"] = {"format": {"type": "json_object"}}
        if a.max_tokens is not None:
            body["max_output_tokens"] = a.max_tokens
        if a.stream:
            body["stream"] = True
        return body

    @staticmethod
    def _finish(response: dict) -> str:
        if response["status"] == "incomplete":
            assert response["incomplete_details"]["reason"] == "max_output_tokens"
            return "length"
        assert response["status"] == "completed"
        return "tool_calls" if any(i["type"] == "function_call" for i in response["output"]) else "stop"

    def read(self, data: dict) -> Reading:
        assert data["object"] == "response"
        r = Reading(finish=self._finish(data), complete=True)
        for item in data["output"]:
            if item["type"] == "message":
                r.text += "".join(p["text"] for p in item["content"] if p["type"] == "output_text")
            elif item["type"] == "function_call":
                assert item["call_id"].startswith("call_")
                r.tool_calls.append((item["name"], item["arguments"]))
        if data["usage"] is not None:
            r.input_tokens, r.output_tokens = data["usage"]["input_tokens"], data["usage"]["output_tokens"]
            r.usage_seen = True
        return r

    def read_stream(self, raw: str) -> Reading:
        r, calls = Reading(), {}
        for n, (event, data) in enumerate(sse_events(raw)):
            e = json.loads(data)
            assert e["type"] == event and e["sequence_number"] == n
            if event == "response.output_text.delta":
                r.text += e["delta"]
            elif event == "response.output_item.added" and e["item"]["type"] == "function_call":
                calls[e["output_index"]] = [e["item"]["name"], ""]
            elif event == "response.function_call_arguments.delta":
                calls[e["output_index"]][1] += e["delta"]
            elif event in ("response.completed", "response.incomplete"):
                r.finish, r.complete = self._finish(e["response"]), True
                if e["response"]["usage"] is not None:
                    r.input_tokens = e["response"]["usage"]["input_tokens"]
                    r.output_tokens = e["response"]["usage"]["output_tokens"]
                    r.usage_seen = True
            elif event == "response.failed":
                r.error = e["response"]["error"]["message"]
            elif event == "error":
                r.error = e["message"]
        r.tool_calls = [tuple(calls[i]) for i in sorted(calls)]
        return r

    error = OpenAIClient.error  # the Responses API's HTTP errors have chat completions' shape


class GeminiClient:
    """Gemini's generateContent: the model and the streaming method in the path, parts in contents."""

    path = "/v1beta/models/m:generateContent"
    json_mode = True
    whole_tool_calls = True  # a call comes whole in one frame: a broken stream may carry none
    fault_statuses = {"overloaded": 503, "unauthorized": 400}  # UNAVAILABLE; Google's 400 API_KEY_INVALID

    def path_for(self, a: Ask) -> str:
        return "/v1beta/models/m:streamGenerateContent?alt=sse" if a.stream else self.path

    def body(self, a: Ask) -> dict:
        parts: list[dict] = [{"text": a.prompt}] + [
            {"inline_data": {"mime_type": "image/png", "data": PNG}} for _ in range(a.images)
        ]
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
        if a.system:
            body["systemInstruction"] = {"parts": [{"text": a.system}]}
        if a.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": n, "description": d, "parametersJsonSchema": p} for n, d, p in a.tools
                    ]
                }
            ]
        if a.tool_choice is not None:
            mode = (
                {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(a.tool_choice, "ANY")
                if isinstance(a.tool_choice, str)
                else "ANY"
            )
            calling: dict[str, Any] = {"mode": mode}
            if not isinstance(a.tool_choice, str):
                calling["allowedFunctionNames"] = [a.tool_choice[1]]
            body["toolConfig"] = {"functionCallingConfig": calling}
        config: dict[str, Any] = {}
        if a.schema is not None:
            config.update(responseMimeType="application/json", responseJsonSchema=a.schema)
        elif a.json_mode:
            config["responseMimeType"] = "application/json"
        if a.max_tokens is not None:
            config["maxOutputTokens"] = a.max_tokens
        if config:
            body["generationConfig"] = config
        return body

    def _take(self, r: Reading, data: dict) -> None:
        usage = data.get("usageMetadata")
        if usage is not None:
            r.input_tokens = usage.get("promptTokenCount", 0)
            r.output_tokens = usage.get("candidatesTokenCount", 0)
            r.usage_seen = True
        candidate = data["candidates"][0]
        for part in candidate["content"].get("parts", []):
            if "text" in part:
                r.text += part["text"]
            elif "functionCall" in part:
                r.tool_calls.append((part["functionCall"]["name"], json.dumps(part["functionCall"]["args"])))
        reason = candidate.get("finishReason")
        if reason is not None:
            r.finish = {"STOP": "tool_calls" if r.tool_calls else "stop", "MAX_TOKENS": "length"}[reason]
            r.complete = True

    def read(self, data: dict) -> Reading:
        r = Reading()
        self._take(r, data)
        return r

    def read_stream(self, raw: str) -> Reading:
        r = Reading()
        for _, data in sse_events(raw):
            chunk = json.loads(data)
            if "error" in chunk:
                r.error = chunk["error"]["message"]
            else:
                self._take(r, chunk)
        return r

    def retry_hint(self, resp: httpx.Response) -> str | None:
        details = resp.json()["error"].get("details", [])
        return next((d["retryDelay"] for d in details if d["@type"].endswith("google.rpc.RetryInfo")), None)

    def error(self, data: dict) -> str:
        assert set(data["error"]) >= {"code", "message", "status"}
        return data["error"]["message"]


class AzureClient(OpenAIClient):
    """Azure OpenAI's v1 API: chat completions at /openai/v1 under the resource endpoint (the legacy
    deployments URL is checked in test_format_azure.py)."""

    path = "/openai/v1/chat/completions"


class OllamaClient:
    """Ollama's native /api/chat: NDJSON streams, ``stream`` sent explicitly (it defaults to true)."""

    path = "/api/chat"
    json_mode = True  # format: "json"
    fault_statuses = {"overloaded": 503, "insufficient_quota": 402}  # "server busy"; ollama.com's usage limit

    def body(self, a: Ask) -> dict:
        user: dict[str, Any] = {"role": "user", "content": a.prompt}
        if a.images:
            user["images"] = [PNG] * a.images
        body: dict[str, Any] = {
            "model": "m",
            "messages": ([{"role": "system", "content": a.system}] if a.system else []) + [user],
            "stream": a.stream,
        }
        if a.tool_choice not in (None, "auto", "none"):
            pytest.skip("Ollama's API has no tool_choice: a call cannot be forced on the wire")
        if a.tools and a.tool_choice != "none":  # "none": a model that sees no tools calls none
            body["tools"] = [
                {"type": "function", "function": {"name": n, "description": d, "parameters": p}} for n, d, p in a.tools
            ]
        if a.schema is not None or a.json_mode:
            body["format"] = a.schema if a.schema is not None else "json"
        if a.max_tokens is not None:
            body["options"] = {"num_predict": a.max_tokens}
        return body

    @staticmethod
    def _take(r: Reading, obj: dict) -> None:
        message = obj.get("message") or {}
        r.text += message.get("content") or ""
        r.tool_calls += [
            (c["function"]["name"], json.dumps(c["function"]["arguments"])) for c in message.get("tool_calls") or []
        ]
        if obj.get("done"):
            r.complete = True
            r.finish = "length" if obj["done_reason"] == "length" else "tool_calls" if r.tool_calls else "stop"
            if "prompt_eval_count" in obj:
                r.input_tokens, r.output_tokens = obj["prompt_eval_count"], obj.get("eval_count", 0)
                r.usage_seen = True

    def read(self, data: dict) -> Reading:
        r = Reading()
        self._take(r, data)
        return r

    def read_stream(self, raw: str) -> Reading:
        r = Reading()
        for line in raw.splitlines():
            obj = json.loads(line)
            if "error" in obj:
                r.error = obj["error"]
            else:
                self._take(r, obj)
        return r

    def error(self, data: dict) -> str:
        return data["error"]


# One client per registered format. A new format adds its own here.
CLIENTS: dict[str, Any] = {
    "openai": OpenAIClient(),
    "anthropic": AnthropicClient(),
    "openai-responses": ResponsesClient(),
    "gemini": GeminiClient(),
    "azure": AzureClient(),
    "ollama": OllamaClient(),
}

APIS = sorted(FORMATS)
PRICES = {"input_price": 2.0, "output_price": 8.0}


def test_every_registered_format_has_a_test_client():
    assert set(CLIENTS) == set(FORMATS), "add a test client for each registered wire format to CLIENTS"


server = simulator_fixture(
    [
        ProviderProfile(name, api=api, seed=11, vision=vision, **PRICES)
        for api in APIS
        for name, vision in ((f"w-{api}", True), (f"w-{api}-blind", False))
    ]
)
sv = fresh_simulator_fixture("server")


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=10.0) as c:
        yield c


def path_of(client, a: Ask) -> str:
    """Where the request goes: most formats have one path, Gemini's streams have their own."""
    return client.path_for(a) if hasattr(client, "path_for") else client.path


def ask(sv, http, api: str, a: Ask, name: str | None = None) -> tuple[httpx.Response, Reading | None]:
    client = CLIENTS[api]
    name = name or f"w-{api}"
    r = http.post(sv.base_url(name) + path_of(client, a), json=client.body(a))
    if r.status_code != 200:
        return r, None
    return r, (client.read_stream(r.text) if a.stream else client.read(r.json()))


def assert_stats_equal_readings(sv, name: str, readings: list[Reading], statuses: dict) -> None:
    s = sv.stats()["providers"][name]
    assert s["statuses"] == statuses
    assert s["requests"] == sum(statuses.values())
    assert s["input_tokens"] == sum(r.input_tokens for r in readings)
    assert s["output_tokens"] == sum(r.output_tokens for r in readings)
    assert s["cost"] == pytest.approx(s["input_tokens"] * 2.0 / 1e6 + s["output_tokens"] * 8.0 / 1e6, rel=1e-12)


def expected_input_tokens(text: str, system: str | None = None, images: int = 0) -> int:
    chars = len(text) + len(system or "")
    return max(1, math.ceil(chars / 4)) + 3 * (1 + (1 if system else 0)) + IMAGE_TOKENS * images


# -- text ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_text_plain_and_streamed_agree_and_are_billed_as_reported(sv, http, api):
    a = Ask(system="Be brief.")
    _, plain = ask(sv, http, api, a)
    _, streamed = ask(sv, http, api, Ask(system="Be brief.", stream=True))
    assert plain.text and streamed.text == plain.text and streamed.complete
    assert plain.finish == streamed.finish == "stop" and not plain.tool_calls
    assert (streamed.input_tokens, streamed.output_tokens) == (plain.input_tokens, plain.output_tokens)
    assert plain.input_tokens == expected_input_tokens(a.prompt, a.system)
    assert_stats_equal_readings(sv, f"w-{api}", [plain, streamed], {"200": 2})


def test_the_same_conversation_gets_the_same_answer_in_every_format(sv, http):
    texts = {api: ask(sv, http, api, Ask(system="Be brief."))[1].text for api in APIS}
    assert len(set(texts.values())) == 1, texts


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_max_tokens_cuts_text(sv, http, api, stream):
    n = max(3, getattr(CLIENTS[api], "min_max_tokens", 1))
    _, r = ask(sv, http, api, Ask(max_tokens=n, stream=stream))
    assert r.finish == "length" and r.output_tokens == n and len(r.text.split()) == n


# -- tool calls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_a_required_tool_call_has_arguments_that_satisfy_the_schema(sv, http, api, stream):
    _, r = ask(sv, http, api, Ask(prompt="Weather please.", tools=TOOLS, tool_choice="required", stream=stream))
    assert r.finish == "tool_calls" and r.text == ""
    assert [name for name, _ in r.tool_calls] == ["get_weather"]  # none named: the first tool
    jsonschema.validate(json.loads(r.tool_calls[0][1]), WEATHER)
    assert_stats_equal_readings(sv, f"w-{api}", [r], {"200": 1})


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_tool_choice_rules(sv, http, api, stream):
    def calls(prompt, choice=None):
        _, r = ask(sv, http, api, Ask(prompt=prompt, tools=TOOLS, tool_choice=choice, stream=stream))
        return [name for name, _ in r.tool_calls]

    assert calls("What time is it? Use get_time.") == ["get_time"]  # auto (the default): named in the prompt
    assert calls("Call GET_WEATHER and get_time for Oslo.") == ["get_weather", "get_time"]  # both, in tool order
    assert calls("Just say hello.") == []  # auto and no tool named: text
    assert calls("Say get_weathers or forget_time.") == []  # names count as whole words only
    assert calls("Use get_time.", "none") == []
    assert calls("Use get_time.", "required") == ["get_time"]
    assert calls("Use get_time.", ("tool", "get_weather")) == ["get_weather"]


@pytest.mark.parametrize("api", APIS)
def test_tool_calls_are_deterministic_and_follow_the_seed(sv, http, api):
    a = Ask(prompt="Use get_weather.", tools=TOOLS)
    first = ask(sv, http, api, a)[1].tool_calls
    assert ask(sv, http, api, a)[1].tool_calls == first
    sv.update(f"w-{api}", seed=12)
    assert ask(sv, http, api, a)[1].tool_calls != first


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_tool_arguments_count_one_token_per_4_characters(sv, http, api, stream):
    _, r = ask(sv, http, api, Ask(prompt="Use get_weather and get_time.", tools=TOOLS, stream=stream))
    assert len(r.tool_calls) == 2
    # Anthropic sends `input` as an object: compare token counts on the compact JSON text
    compact = [json.dumps(json.loads(args), separators=(",", ":"), ensure_ascii=False) for _, args in r.tool_calls]
    assert r.output_tokens == sum(math.ceil(len(c) / JSON_CHARS_PER_TOKEN) for c in compact)


# -- JSON schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_a_schema_request_gets_json_that_satisfies_it(sv, http, api, stream):
    _, r = ask(sv, http, api, Ask(prompt="Describe a person.", schema=PERSON, stream=stream))
    value = json.loads(r.text)
    jsonschema.validate(value, PERSON)
    assert r.finish == "stop" and not r.tool_calls
    assert r.output_tokens == math.ceil(len(r.text) / JSON_CHARS_PER_TOKEN)
    assert_stats_equal_readings(sv, f"w-{api}", [r], {"200": 1})


@pytest.mark.parametrize("api", APIS)
def test_plain_json_mode_answers_a_json_object(sv, http, api):
    if not CLIENTS[api].json_mode:
        pytest.skip(f"{api} has no schema-less JSON mode")
    _, r = ask(sv, http, api, Ask(json_mode=True))
    assert isinstance(json.loads(r.text), dict)


@pytest.mark.parametrize("api", APIS)
def test_a_schema_answer_cut_by_max_tokens_is_invalid_json(sv, http, api):
    n = max(5, getattr(CLIENTS[api], "min_max_tokens", 1))
    _, r = ask(sv, http, api, Ask(schema=PERSON, max_tokens=n))
    assert r.finish == "length" and r.output_tokens == n and len(r.text) == n * JSON_CHARS_PER_TOKEN
    with pytest.raises(ValueError):
        json.loads(r.text)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_ignore_schema_answers_prose_billed_and_counted_under_its_name(sv, http, api, stream):
    sv.inject(f"w-{api}", ["ignore_schema", "ignore_schema", "ignore_schema"])
    _, prose = ask(sv, http, api, Ask(schema=PERSON, stream=stream))
    _, forced = ask(sv, http, api, Ask(tools=TOOLS, tool_choice=("tool", "get_time"), stream=stream))
    _, plain = ask(sv, http, api, Ask(stream=stream))  # nothing to ignore: a normal answer, counted as 200
    _, normal = ask(sv, http, api, Ask(schema=PERSON, stream=stream))
    for r in (prose, forced):
        assert r.finish == "stop" and not r.tool_calls and r.text == plain.text  # the same prose as a plain ask
        with pytest.raises(ValueError):
            json.loads(r.text)
    jsonschema.validate(json.loads(normal.text), PERSON)
    assert_stats_equal_readings(sv, f"w-{api}", [prose, forced, plain, normal], {"ignore_schema": 2, "200": 2})


# -- images -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_images_cost_a_fixed_number_of_input_tokens(sv, http, api, stream):
    _, r = ask(sv, http, api, Ask(prompt="What is in these pictures?", images=2, stream=stream))
    assert r.input_tokens == expected_input_tokens("What is in these pictures?", images=2)
    _, text_only = ask(sv, http, api, Ask(prompt="What is in these pictures?"))
    assert r.input_tokens - text_only.input_tokens == 2 * IMAGE_TOKENS
    assert r.text == text_only.text  # images change the price, not the words
    assert_stats_equal_readings(sv, f"w-{api}", [r, text_only], {"200": 2})


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_a_provider_without_vision_rejects_images_in_its_formats_shape(sv, http, api, stream):
    name = f"w-{api}-blind"
    resp, _ = ask(sv, http, api, Ask(images=1, stream=stream), name=name)
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    assert "does not accept images" in CLIENTS[api].error(resp.json())
    _, ok = ask(sv, http, api, Ask(stream=stream), name=name)  # text is fine
    assert_stats_equal_readings(sv, name, [ok], {"400": 1, "200": 1})


def test_vision_false_leaves_vision_out_of_the_specs_capabilities(sv):
    specs = {s.name: s for s in sv.provider_specs()}
    for api in APIS:
        assert "vision" not in specs[f"w-{api}-blind"].effective_capabilities
        assert specs[f"w-{api}"].effective_capabilities == {"tools", "vision", "json_schema", "streaming"}


# -- faults in the body -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "tools", "schema"])
@pytest.mark.parametrize("fault", ["truncated_stream", "stream_error"])
@pytest.mark.parametrize("api", APIS)
def test_broken_streams_bill_only_what_was_reported(sv, http, api, fault, kind):
    a = {
        "text": Ask(stream=True),
        "tools": Ask(tools=TOOLS, tool_choice="required", stream=True),
        "schema": Ask(schema=PERSON, stream=True),
    }[kind]
    _, whole = ask(sv, http, api, a)
    sv.inject(f"w-{api}", [fault])
    resp, broken = ask(sv, http, api, a)
    assert resp.status_code == 200 and not broken.complete and broken.finish is None
    assert (broken.error is not None) == (fault == "stream_error")
    sent = broken.text + "".join(args for _, args in broken.tool_calls)
    expected = whole.text + "".join(args for _, args in whole.tool_calls)
    # A format whose calls come whole (Gemini) sends no call it could not finish: perhaps nothing at all.
    may_be_empty = kind == "tools" and getattr(CLIENTS[api], "whole_tool_calls", False)
    assert (sent or may_be_empty) and len(sent) < len(expected) and expected.startswith(sent)
    assert broken.output_tokens == 0  # the output count comes at the end, which never came
    assert_stats_equal_readings(sv, f"w-{api}", [whole, broken], {"200": 1, fault: 1})


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_malformed_answers_are_200_unparseable_and_unbilled(sv, http, api, stream):
    sv.inject(f"w-{api}", ["malformed_json"])
    a = Ask(stream=stream)
    resp = http.post(sv.base_url(f"w-{api}") + path_of(CLIENTS[api], a), json=CLIENTS[api].body(a))
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        CLIENTS[api].read_stream(resp.text) if stream else resp.json()
    s = sv.stats()["providers"][f"w-{api}"]
    assert (s["statuses"], s["input_tokens"], s["output_tokens"]) == ({"malformed_json": 1}, 0, 0)


@pytest.mark.parametrize(
    "fault",
    [
        "rate_limit",
        "rate_limit_no_retry_after",
        "server_error",
        "overloaded",
        "unauthorized",
        "model_not_found",
        "context_length",
        "invalid_request",
    ],
)
@pytest.mark.parametrize("api", APIS)
def test_http_faults_answer_in_the_formats_error_shape(sv, http, api, fault):
    sv.inject(f"w-{api}", [fault])
    resp, _ = ask(sv, http, api, Ask(tools=TOOLS, schema=PERSON, images=1))
    client = CLIENTS[api]
    status = getattr(client, "fault_statuses", {}).get(fault, FAULT_STATUS[fault][0])
    assert resp.status_code == status or (fault, api) == ("insufficient_quota", "anthropic")
    assert client.error(resp.json())
    hint = client.retry_hint(resp) if hasattr(client, "retry_hint") else resp.headers.get("retry-after")
    assert (hint is not None) == (fault == "rate_limit")
    s = sv.stats()["providers"][f"w-{api}"]
    assert (s["statuses"], s["input_tokens"]) == ({str(resp.status_code): 1}, 0)


@pytest.mark.parametrize("api", APIS)
def test_unknown_provider_and_wrong_method_in_the_formats_shape(sv, http, api):
    client = CLIENTS[api]
    url = sv.base_url(f"w-{api}").replace(f"/w-{api}", "/nobody") + client.path
    r = http.post(url, json=client.body(Ask()))
    assert r.status_code == 404 and "'nobody'" in client.error(r.json())
    r = http.get(sv.base_url(f"w-{api}") + client.path)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and client.error(r.json())
    assert all(p["requests"] == 0 for p in sv.stats()["providers"].values())


# -- the route table -------------------------------------------------------------------------------------


def test_route_table_matches_fixed_paths_then_patterns_and_refuses_clashes():
    class A(WireFormat):
        api = "a"
        routes = (Route("v1/chat/completions"),)

    class G(WireFormat):
        api = "g"
        routes = (
            Route("v1beta/models/{model}:generateContent"),
            Route("v1beta/models/{model}:streamGenerateContent", "stream"),
        )

    table = RouteTable()
    a, g = A(), G()
    table.add(a)
    table.add(g)
    assert table.match("/p/v1/chat/completions")[:2] == (a, a.routes[0])
    fmt, route, params = table.match("/p/v1beta/models/gemini-2.0-flash:streamGenerateContent")
    assert (fmt, route.endpoint, dict(params)) == (g, "stream", {"model": "gemini-2.0-flash"})
    assert table.match("/p/v1beta/models/a/b:generateContent") is None  # a placeholder stays in one segment
    assert table.match("/p/v1/chat/completions/") is None and table.match("/p") is None
    with pytest.raises(RuntimeError, match="both serve"):
        table.add(type("B", (A,), {"api": "b"})())
    table.remove(g)
    assert table.match("/p/v1beta/models/x:generateContent") is None


def test_unknown_paths_are_answered_in_the_likeliest_format(sv, http):
    r = http.post(f"{sv.url}/nobody/v2/messages", json={})
    assert r.status_code == 404 and r.json()["type"] == "error"  # ends like Anthropic's path
    r = http.post(f"{sv.url}/w-anthropic/v1/complete", json={})  # a known provider: its own format
    assert r.status_code == 404 and r.json()["type"] == "error"
    for fmt in FORMATS.values():
        for route in fmt.routes:
            assert f"/<provider>/{route.pattern}" in r.json()["error"]["message"]


def test_api_must_be_a_registered_format():
    from llmroute_magic._types import APIS as ROUTER_APIS

    for api in [a for a in ROUTER_APIS if a not in FORMATS][:1]:  # none left once every format is simulated
        with pytest.raises(ConfigError, match=f"'{api}' has no simulated wire format yet.*allowed: openai, anthropic"):
            ProviderProfile("x", api=api)
    with pytest.raises(ConfigError, match="'soap' is unknown"):
        ProviderProfile("x", api="soap")
    with pytest.raises(ConfigError, match="api"):
        ProviderProfile("x", api=["openai"])


# -- a whole new format: one module (here, a class in this file) and one registration -----------------------


class ToyChat(WireFormat):
    """A made-up format: model in the path, NDJSON streams, its own error shape and key header."""

    api = "toy"
    routes = (Route("toy/{model}:chat"),)
    base_path = "/toy"
    stream_content_type = b"application/x-ndjson"
    id_prefix = "toy-"

    def api_key(self, call: Call) -> str | None:
        return call.header(b"x-toy-key")

    def parse(self, body: bytes, call: Call) -> SimRequest:
        data = json_object(body)
        if not isinstance(data.get("say"), str):
            raise BadRequest("say: text is required.", "say")
        return SimRequest(
            call.params["model"], "", [("user", data["say"])], None, call.query.get("stream") == "1", True, 0
        )

    def render(self, rid: str, req: SimRequest, answer, usage: Usage | None) -> bytes:
        return dumps(
            {"id": rid, "model": req.model, "reply": answer.text, "tokens": list(usage) if usage is not None else None}
        )

    def render_stream(self, rid, req, answer, usage, fault) -> list[Step]:
        if fault == "malformed_json":
            return [(b"{nope\n", False, None)]
        steps: list[Step] = [(ndjson({"piece": p}), True, None) for p in broken_stream(answer, fault).pieces]
        if fault == "stream_error":
            steps.append((ndjson({"oops": "boom"}), False, None))
        elif fault is None:
            steps.append(
                (
                    ndjson({"done": True, "tokens": list(usage) if usage else None}),
                    False,
                    tuple(usage) if usage else None,
                )
            )
        return steps

    def fault(self, kind: str, req: SimRequest, profile, retry_after_s: float) -> Reply:
        status, message = FAULT_STATUS[kind]
        return Reply(
            status,
            dumps({"oops": kind, "message": message}),
            {"x-toy-wait": str(retry_after_s)} if kind == "rate_limit" else None,
        )

    def error(self, kind: str, message: str, param: str | None = None) -> Reply:
        return Reply(ERROR_STATUS[kind], dumps({"oops": kind, "message": message}))


def test_a_new_format_is_one_module_and_one_registry_line(http):
    register(ToyChat())
    try:
        with Simulator(
            [
                ProviderProfile("t", api="toy", input_price=1.0, output_price=1.0),
                ProviderProfile("tk", api="toy", require_api_key="k"),
            ]
        ) as s:
            assert s.base_url("t") == f"{s.url}/t/toy"  # (no ProviderSpec: the router has no "toy" adapter)
            plain = http.post(f"{s.base_url('t')}/mini:chat", json={"say": "hi"}).json()
            assert plain["model"] == "mini" and plain["reply"] and plain["tokens"][0] > 0
            streamed = http.post(f"{s.base_url('t')}/mini:chat?stream=1", json={"say": "hi"})
            assert streamed.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in streamed.text.splitlines()]
            assert "".join(x.get("piece", "") for x in lines) == plain["reply"] and lines[-1]["done"]
            s.inject("t", ["rate_limit", "stream_error"])
            limited = http.post(f"{s.base_url('t')}/mini:chat", json={"say": "hi"})
            assert limited.status_code == 429 and limited.json()["oops"] == "rate_limit"
            assert limited.headers["x-toy-wait"] == "1.0"
            broken = http.post(f"{s.base_url('t')}/mini:chat?stream=1", json={"say": "hi"}).text
            assert broken.endswith('{"oops":"boom"}\n')
            assert http.post(f"{s.base_url('t')}/mini:chat", json={}).json()["oops"] == "invalid_request"
            assert http.post(f"{s.url}/nobody/toy/mini:chat", json={}).json()["oops"] == "not_found"
            assert http.post(f"{s.base_url('tk')}/mini:chat", json={"say": "hi"}).status_code == 401
            assert (
                http.post(f"{s.base_url('tk')}/mini:chat", json={"say": "hi"}, headers={"x-toy-key": "k"}).status_code
                == 200
            )
            st = s.stats()["providers"]["t"]
            assert st["statuses"] == {"200": 2, "429": 1, "stream_error": 1, "400": 1}
            assert st["input_tokens"] == 2 * plain["tokens"][0] and st["output_tokens"] == 2 * plain["tokens"][1]
    finally:
        unregister("toy")
    assert "toy" not in FORMATS and ROUTES.match("/t/toy/mini:chat") is None
    with pytest.raises(ConfigError, match="'toy' is unknown"):
        ProviderProfile("t", api="toy")


def test_a_format_bug_is_a_counted_error_never_an_uncounted_crash(sv, http, monkeypatch):
    fmt = FORMATS["openai"]
    monkeypatch.setattr(fmt, "parse", lambda body, call: 1 / 0)
    r = http.post(sv.base_url("w-openai") + "/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 400 and "ZeroDivisionError" in r.json()["error"]["message"]
    monkeypatch.undo()
    monkeypatch.setattr(fmt, "render", lambda *a: 1 / 0)
    r = http.post(sv.base_url("w-openai") + "/chat/completions", json=CLIENTS["openai"].body(Ask()))
    assert r.status_code == 500
    s = sv.stats()["providers"]["w-openai"]
    assert (s["requests"], s["statuses"], s["input_tokens"]) == (2, {"400": 1, "500": 1}, 0)


def test_a_schema_that_nests_forever_still_gets_an_answer(sv, http):
    forever = {
        "$ref": "#/$defs/N",
        "$defs": {"N": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}, "required": ["n"]}},
    }
    for api in APIS:
        _, r = ask(sv, http, api, Ask(schema=forever))
        assert r.text.startswith('{"n":{"n":') and r.finish == "stop"


# -- limits the real APIs enforce: the same status and error body -----------------------------------------


def post_raw(sv, http, api: str, patch) -> httpx.Response:
    """A well-formed request of the format (``CLIENTS[api].body``), changed by ``patch(body)``."""
    client = CLIENTS[api]
    body = client.body(Ask())
    patch(body)
    return http.post(sv.base_url(f"w-{api}") + client.path, json=body)


def assert_refused_unbilled(sv, api: str, count: int) -> None:
    s = sv.stats()["providers"][f"w-{api}"]
    assert (s["statuses"], s["input_tokens"], s["output_tokens"], s["cost"]) == ({"400": count}, 0, 0, 0.0)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_max_output_tokens_below_16_is_the_apis_400(sv, http, stream):
    r = post_raw(sv, http, "openai-responses", lambda b: b.update(max_output_tokens=8, stream=stream))
    assert r.status_code == 400 and r.json() == {
        "error": {
            "message": "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
            "but got 8 instead.",
            "type": "invalid_request_error",
            "param": "max_output_tokens",
            "code": "integer_below_min_value",
        }
    }
    assert_refused_unbilled(sv, "openai-responses", 1)
    assert post_raw(sv, http, "openai-responses", lambda b: b.update(max_output_tokens=16)).status_code == 200


@pytest.mark.parametrize("temperature", [1.5, 2, -0.1])
def test_anthropic_temperature_outside_0_to_1_is_the_apis_400(sv, http, temperature):
    r = post_raw(sv, http, "anthropic", lambda b: b.update(temperature=temperature))
    assert r.status_code == 400 and r.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "temperature: range: 0..1"},
    }
    assert_refused_unbilled(sv, "anthropic", 1)
    for fine in (0, 0.7, 1):
        assert post_raw(sv, http, "anthropic", lambda b, t=fine: b.update(temperature=t)).status_code == 200


@pytest.mark.parametrize(
    "messages, message",
    [
        ([{"role": "user", "content": ""}], "messages.0: all messages must have non-empty content"),
        (
            [
                {"role": "user", "content": "Hi."},
                {"role": "assistant", "content": []},
                {"role": "user", "content": "?"},
            ],
            "messages.1: all messages must have non-empty content except for the optional final assistant message",
        ),
        (
            [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            "messages: text content blocks must be non-empty",
        ),
    ],
    ids=["empty-string", "empty-blocks", "empty-text-block"],
)
def test_anthropic_empty_content_is_the_apis_400(sv, http, messages, message):
    r = post_raw(sv, http, "anthropic", lambda b: b.update(messages=messages))
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"].startswith(message)
    assert_refused_unbilled(sv, "anthropic", 1)


def test_anthropic_takes_an_empty_final_assistant_message_a_prefill(sv, http):
    prefill = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": ""}]
    assert post_raw(sv, http, "anthropic", lambda b: b.update(messages=prefill)).status_code == 200


def test_ollama_image_given_by_url_is_the_apis_400(sv, http):
    def with_url(body):
        body["messages"][-1]["images"] = ["https://example.com/cat.png"]

    r = post_raw(sv, http, "ollama", with_url)
    assert r.status_code == 400 and r.json() == {"error": "illegal base64 data at input byte 5"}
    assert_refused_unbilled(sv, "ollama", 1)
