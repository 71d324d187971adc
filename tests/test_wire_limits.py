"""Limits real APIs enforce on the wire, through the router over loopback HTTP.

- A field the router adds on its own (OpenAI's ``stream_options``) that a compatible server refuses
  (Mistral answers 422 ``extra_forbidden``): that attempt is sent again at once without it, and
  the provider never gets it again. A stand-in Mistral server plays the refusing side.
- Values a format cannot carry route like capabilities: a temperature above 1 never goes to
  Anthropic (its range is 0..1), an image given by URL never to Ollama (it takes only bytes);
  another provider serves them as asked, and when none can, a ConfigError says why. The
  simulator refuses both as the real APIs do, so a request that slipped through would fail here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import ask, rows

from llmroute_magic import ConfigError, ModelClientRouter, ProviderError, ProviderRoutingConfig, ProviderSpec
from llmroute_magic._providers import ChatRequest
from llmroute_magic._providers.openai import OpenAIAdapter
from llmroute_magic.sim import Simulator

# -- a stand-in for api.mistral.ai ---------------------------------------------------------------------

EXTRA_FORBIDDEN = {  # what Mistral answers (422) to a body with stream_options
    "object": "error",
    "message": {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options", "include_usage"],
                "msg": "Extra inputs are not permitted",
                "input": True,
            }
        ]
    },
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}


class MistralStandIn(ThreadingHTTPServer):
    """Chat completions that refuse ``stream_options``; streams end with a usage chunk if ``usage``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MistralHandler)
        self.bodies: list[dict] = []
        self.usage = True
        self.refuses_stream_options = True  # False: a vLLM-like server, which takes them

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


class _MistralHandler(BaseHTTPRequestHandler):
    server: MistralStandIn

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.bodies.append(body)
        if "stream_options" in body and self.server.refuses_stream_options:
            return self._send(422, "application/json", json.dumps(EXTRA_FORBIDDEN).encode())
        if not isinstance(body.get("top_k", 0), int):  # a caller's mistake, answered with the whole request quoted
            errors = [{"loc": ["body", "top_k"], "msg": "Input should be a valid integer"}, {"input": body}]
            quoted = {"object": "error", "message": str(errors), "type": "BadRequestError", "param": None}
            return self._send(400, "application/json", json.dumps(quoted).encode())
        usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
        model = body["model"]
        if not body.get("stream"):
            answer = {
                "id": "x",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "Bonjour !"}, "finish_reason": "stop"}
                ],
                "usage": usage,
            }
            return self._send(200, "application/json", json.dumps(answer).encode())
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Bon"}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {"content": "jour !"}, "finish_reason": "stop"}]},
        ]
        if self.server.usage:  # Mistral puts usage in the last chunk without being asked
            chunks[-1]["usage"] = usage
        events = "".join(f"data: {json.dumps({'id': 'x', 'model': model, **c})}\n\n" for c in chunks)
        self._send(200, "text/event-stream", (events + "data: [DONE]\n\n").encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def mistral():
    server = MistralStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sim():
    with Simulator() as s:
        yield s


def mistral_router(mistral, sim, **cfg) -> ModelClientRouter:
    spec = ProviderSpec("mistral", "mistral-small-latest", base_url=mistral.base_url, api_key="k").with_prices(
        input=0.1, output=0.3
    )
    backup = sim.provider_specs(["sim-openai"])[0]
    return ModelClientRouter(ProviderRoutingConfig([spec, backup], **cfg))


def summary(router) -> list[tuple]:
    return [(r["provider"], r["attempt"], r["status"], r["error_type"], r["http_status"]) for r in rows(router)]


# -- a field of the router's own that the server refuses ------------------------------------------------


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
def test_a_refused_stream_option_is_left_out_and_the_stream_still_works(mistral, sim, usage):
    mistral.usage = usage
    with mistral_router(mistral, sim, max_retries=0) as r:  # the resend is no retry: none is needed
        s = r.stream("Say hello in French.")
        assert "".join(s) == "Bonjour !" and s.completion.provider == "mistral"
        assert s.completion.attempts == 2
        assert summary(r) == [
            ("mistral", 1, "error", "unsupported_parameter", 422),
            ("mistral", 2, "ok", None, 200),
        ]
        again = r.stream("And in Italian?")  # remembered: no second refusal
        assert "".join(again) == "Bonjour !" and again.completion.attempts == 1
        assert len(rows(r)) == 3

        async def on_another_loop() -> str:
            return "".join([t async for t in r.astream("Once more.")])

        assert asyncio.run(on_another_loop()) == "Bonjour !"  # the router remembers it on every loop
        assert len(rows(r)) == 4
        ok = [x for x in rows(r) if x["status"] == "ok"]
    assert ["stream_options" in b for b in mistral.bodies] == [True, False, False, False]
    refused = rows(r)[0]
    assert (refused["input_tokens"], refused["cost"]) == (0, 0.0) and refused["streamed"]
    if usage:
        assert all((x["input_tokens"], x["output_tokens"]) == (7, 2) and x["cost"] > 0 for x in ok)
    else:  # the server sent no usage: unknown, never 0
        assert all(x["input_tokens"] is None and x["output_tokens"] is None and math.isnan(x["cost"]) for x in ok)
        assert s.completion.input_tokens is None and s.completion.output_tokens is None


def test_stream_options_the_caller_gave_are_the_callers_and_fail_fast(mistral, sim):
    with mistral_router(mistral, sim) as r:
        with pytest.raises(ProviderError) as info:
            "".join(r.stream("Hello.", stream_options={"include_usage": False}))
        assert (info.value.error_type, info.value.status_code) == ("invalid_request", 422)
        assert summary(r) == [("mistral", 1, "error", "invalid_request", 422)]
        assert "".join(r.stream("Hello.")) == "Bonjour !"  # the router's own is still dropped once
        assert [x[3] for x in summary(r)[1:]] == ["unsupported_parameter", None]


def test_an_error_that_only_quotes_the_field_does_not_take_it_away(mistral, sim):
    # A server that takes stream_options answers a caller's bad parameter with a 400 quoting the
    # whole request: the field is tried without once, then restored when that is refused too.
    mistral.refuses_stream_options = False
    with mistral_router(mistral, sim, max_retries=0) as r:
        with pytest.raises(ProviderError) as info:
            "".join(r.stream("Hi", top_k="bad"))
        assert info.value.error_type == "invalid_request"
        s = r.stream("Hi again")
        assert "".join(s) == "Bonjour !"
    assert ["stream_options" in b for b in mistral.bodies] == [True, False, True]
    assert (s.completion.input_tokens, s.completion.output_tokens) == (7, 2)  # usage still asked for


def test_api_mistral_ai_never_gets_stream_options():
    spec = ProviderSpec("mistral", "mistral-small-latest", api_key="k")
    assert spec.base_url == "https://api.mistral.ai/v1"
    body = OpenAIAdapter(spec, None).build_body(ChatRequest([{"role": "user", "content": "hi"}]), True)  # type: ignore[arg-type]
    assert body["stream"] is True and "stream_options" not in body
    other = ProviderSpec("groq", "llama-3.1-8b-instant", api_key="k")
    assert "stream_options" in OpenAIAdapter(other, None).build_body(
        ChatRequest([{"role": "user", "content": "hi"}]), True
    )  # type: ignore[arg-type]


# -- values a wire format cannot carry: routed elsewhere, never changed ----------------------------------

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
BY_URL = [
    {"role": "user", "content": ["What is in this picture?", {"type": "image", "url": "https://example.com/a.png"}]}
]
INLINE = [{"role": "user", "content": ["What is in this picture?", {"type": "image", "data": PNG}]}]


@pytest.fixture
def fresh(sim):
    sim.reset()
    yield sim
    sim.reset()


def requests_to(sim, name: str) -> int:
    return sim.stats()["providers"][name]["requests"]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_a_temperature_above_1_skips_anthropic_and_is_served_as_asked(fresh, streamed):
    specs = fresh.provider_specs(["sim-anthropic", "sim-openai"])  # Anthropic first
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority")) as r:
        hot = ask(r, streamed, "Write a wild haiku.", temperature=1.5)
        assert (hot.provider, hot.attempts) == ("sim-openai", 1)
        assert ask(r, streamed, "Write a calm haiku.", temperature=1.0).provider == "sim-anthropic"
        assert ask(r, streamed, "Write a haiku.").provider == "sim-anthropic"
        assert [(x["provider"], x["status"]) for x in rows(r)] == [
            ("sim-openai", "ok"),
            ("sim-anthropic", "ok"),
            ("sim-anthropic", "ok"),
        ]
    assert (requests_to(fresh, "sim-anthropic"), requests_to(fresh, "sim-openai")) == (2, 1)


def test_a_temperature_above_1_with_only_anthropic_says_why_and_sends_nothing(fresh):
    specs = fresh.provider_specs(["sim-anthropic", "sim-openai"])
    with ModelClientRouter(ProviderRoutingConfig(specs)) as r:
        with pytest.raises(ConfigError) as info:
            r.complete("Write a wild haiku.", temperature=1.5, provider="sim-anthropic")
        msg = str(info.value)
        assert "temperature" in msg and "sim-anthropic lacks temperature_above_1" in msg and "0 to 1" in msg
        assert "name a provider whose API takes it" in msg  # pinned: enabling another would not help
        r.disable("sim-openai")
        with pytest.raises(ConfigError, match="temperature_above_1") as routed:
            "".join(r.stream("Write a wild haiku.", temperature=2))
        assert "enable a provider whose API takes it" in str(routed.value)
        assert rows(r) == []
    assert requests_to(fresh, "sim-anthropic") == 0


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_an_image_given_by_url_skips_ollama_and_inline_images_still_go_there(fresh, streamed):
    specs = fresh.provider_specs(["sim-ollama", "sim-openai"])  # Ollama first
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority")) as r:
        by_url = ask(r, streamed, BY_URL)
        assert (by_url.provider, by_url.attempts) == ("sim-openai", 1)
        assert ask(r, streamed, INLINE).provider == "sim-ollama"  # the bytes themselves: Ollama takes them
        assert [(x["provider"], x["status"]) for x in rows(r)] == [("sim-openai", "ok"), ("sim-ollama", "ok")]
    assert (requests_to(fresh, "sim-ollama"), requests_to(fresh, "sim-openai")) == (1, 1)


def test_an_image_given_by_url_with_only_ollama_says_why_and_sends_nothing(fresh):
    specs = fresh.provider_specs(["sim-ollama", "sim-openai"])
    with ModelClientRouter(ProviderRoutingConfig(specs)) as r:
        r.disable("sim-openai")
        with pytest.raises(ConfigError) as info:
            r.complete(BY_URL)
        msg = str(info.value)
        assert "image_url" in msg and "sim-ollama lacks image_url" in msg and "instead of its URL" in msg
        with pytest.raises(ConfigError, match="image_url"):
            r.complete(BY_URL, provider="sim-ollama")
        assert rows(r) == []
    assert requests_to(fresh, "sim-ollama") == 0
