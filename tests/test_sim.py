"""The provider simulator over real loopback sockets: routes, shapes, faults, limits, billing, control, CLI."""

from __future__ import annotations

import json
import math
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx
import pytest
from helpers import fresh_simulator_fixture

from llmroute_magic import ConfigError
from llmroute_magic.sim import DEFAULT_PROFILES, FAULT_KINDS, ProviderProfile, Simulator, load_profiles
from llmroute_magic.sim._wire import FORMATS

KEY = "sk-sim-canary-7f3a"
PROFILES = [
    ProviderProfile("o", api="openai", model="gpt-test", input_price=0.5, output_price=2.0, seed=7),
    ProviderProfile("a", api="anthropic", model="claude-test", input_price=1.0, output_price=5.0, seed=7),
    ProviderProfile("small", api="openai", context_window=20),
    ProviderProfile("keyed", api="openai", require_api_key=KEY),
    ProviderProfile("limited", api="anthropic", rate_limit_rpm=2, retry_after_s=0.25),
]
HELLO = [{"role": "user", "content": "Say hello to the simulator."}]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock():
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock):
    with Simulator(PROFILES, clock=clock) as s:
        yield s


sv = fresh_simulator_fixture("server")


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5.0) as c:
        yield c


def chat(sv, http, name="o", messages=HELLO, **extra):
    return http.post(f"{sv.url}/{name}/v1/chat/completions", json={"model": "m", "messages": messages, **extra})


def msgs(sv, http, name="a", messages=HELLO, **extra):
    return http.post(
        f"{sv.url}/{name}/v1/messages", json={"model": "m", "max_tokens": 100, "messages": messages, **extra}
    )


def sse_data(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def counters(sv, name):
    return sv.stats()["providers"][name]


# -- addresses and specs --------------------------------------------------------------------------


def test_base_urls_and_specs_point_at_the_server(sim):
    assert sim.base_url("sim-openai") == f"{sim.url}/sim-openai/v1"
    assert sim.base_url("sim-anthropic") == f"{sim.url}/sim-anthropic"
    specs = {s.name: s for s in sim.provider_specs()}
    assert set(specs) == {p.name for p in DEFAULT_PROFILES}
    assert {p.api for p in DEFAULT_PROFILES} == set(FORMATS)  # a default provider for every wire format
    for p in DEFAULT_PROFILES:
        s = specs[p.name]
        assert (s.api, s.model, s.base_url, s.input_price, s.output_price, s.context_window) == (
            p.api,
            p.model,
            sim.base_url(p.name),
            p.input_price,
            p.output_price,
            p.context_window,
        )
    assert specs["sim-openai"].input_price == 0.15 and specs["sim-anthropic"].output_price == 4.0
    assert specs["sim-local"].input_price == 0.0
    with pytest.raises(ConfigError, match="known: sim-openai"):
        sim.base_url("nope")


def test_plain_answers_in_both_shapes_and_stats_match(sv, http):
    r = chat(sv, http)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "m"
    assert body["choices"][0]["finish_reason"] == "stop" and body["choices"][0]["message"]["content"]
    u = body["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    r2 = msgs(sv, http)
    b2 = r2.json()
    assert b2["type"] == "message" and b2["content"][0]["type"] == "text" and b2["stop_reason"] == "end_turn"
    s = counters(sv, "o")
    assert s == {
        "requests": 1,
        "statuses": {"200": 1},
        "input_tokens": u["prompt_tokens"],
        "output_tokens": u["completion_tokens"],
        "cost": pytest.approx(u["prompt_tokens"] * 0.5 / 1e6 + u["completion_tokens"] * 2.0 / 1e6),
        "max_in_flight": 1,
    }
    a = counters(sv, "a")
    assert (a["input_tokens"], a["output_tokens"]) == (b2["usage"]["input_tokens"], b2["usage"]["output_tokens"])
    assert a["cost"] == pytest.approx(a["input_tokens"] * 1.0 / 1e6 + a["output_tokens"] * 5.0 / 1e6)
    assert http.get(f"{sv.url}/_sim/stats").json() == sv.stats()


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope/v1/chat/completions", "/nope/v1/messages"])
def test_unknown_provider_is_a_404_in_the_formats_shape(sv, http, path):
    r = http.post(sv.url + path, json={"model": "m", "messages": HELLO})
    assert r.status_code == 404
    body = r.json()
    if path.endswith("messages"):
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
        message = body["error"]["message"]
    else:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "not_found"
        message = body["error"]["message"]
    assert "'nope'" in message and "o, a, small, keyed, limited" in message
    assert all(p["requests"] == 0 for p in sv.stats()["providers"].values())


def test_unknown_path_and_wrong_method(sv, http):
    r = http.post(sv.url + "/o/v1/embeddings", json={})
    assert r.status_code == 404 and "/<provider>/v1/chat/completions" in r.json()["error"]["message"]
    r = http.get(sv.url + "/a/v1/messages")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "body, needle",
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"messages": HELLO}).encode(), "model"),
        (json.dumps({"model": "m"}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": HELLO, "max_tokens": 0}).encode(), "max_tokens"),
    ],
)
def test_invalid_request_bodies_get_a_400_in_the_formats_shape(sv, http, fmt, body, needle):
    name, path = ("o", "chat/completions") if fmt == "openai" else ("a", "messages")
    r = http.post(f"{sv.url}/{name}/v1/{path}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and needle in err["message"]
    if fmt == "anthropic":
        assert r.json()["type"] == "error"
    assert counters(sv, name)["statuses"] == {"400": 1} and counters(sv, name)["input_tokens"] == 0


# -- profiles from TOML ---------------------------------------------------------------------------

GOOD_TOML = """
[[providers]]
name = "fast"
api = "openai"
model = "m1"
latency_s = 0.01
input_price = 0.15
output_price = 0.6
rate_limit_rpm = 100
faults = { server_error = 0.1, reset = 0.05 }

[[providers]]
name = "claude"
api = "anthropic"
seed = 3
"""


def test_load_profiles_reads_providers_tables(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(GOOD_TOML)
    fast, claude = load_profiles(path)
    assert (fast.name, fast.model, fast.latency_s, fast.rate_limit_rpm) == ("fast", "m1", 0.01, 100)
    assert fast.faults == {"server_error": 0.1, "reset": 0.05}
    assert (claude.api, claude.seed, claude.faults) == ("anthropic", 3, {})


@pytest.mark.parametrize(
    "text, field, needles",
    [
        (
            '[[providers]]\nname = "x"\nfaults = { foo = 0.1 }',
            "profiles.x.faults.foo",
            ["unknown fault kind 'foo'", "allowed: rate_limit,", "stream_error"],
        ),
        ('[[providers]]\nname = "x"\nlatency_s = "fast"', "profiles.x.latency_s", ["expected a number", "'fast'"]),
        ('[[providers]]\nname = "x"\nlatency_s = -1', "profiles.x.latency_s", [">= 0"]),
        ('[[providers]]\nname = "x"\napi = "soap"', "profiles.x.api", ["'soap'", "allowed: openai, anthropic"]),
        ('[[providers]]\nname = "x"\nlatncy_s = 1', "profiles.x.latncy_s", ["unknown field", "latency_s"]),
        ('[[providers]]\nname = "x"\nfaults = { reset = 0.7, hang = 0.6 }', "profiles.x.faults", ["at most 1"]),
        ('[[providers]]\nname = "x"\nfaults = { reset = 1.5 }', "profiles.x.faults.reset", ["between 0 and 1"]),
        ('[[providers]]\nname = "x"\ncontext_window = 1.5', "profiles.x.context_window", ["whole number"]),
        ('[[providers]]\nname = "x"\nrate_limit_rpm = 0', "profiles.x.rate_limit_rpm", ["> 0"]),
        ('[[providers]]\nmodel = "m"', "providers[0].name", ["needs a name"]),
        ('[[providers]]\nname = "a b"', "profiles.name", ["'a b'"]),
        ('[[providers]]\nname = "x"\n[[providers]]\nname = "x"', "profiles.x.name", ["duplicate"]),
        ("providers = 3", "providers", ["[[providers]]"]),
        ('[provider]\nname = "x"', "provider", ["unknown top-level key"]),
        ("[[providers]\nname = ", "profiles", ["not valid TOML"]),
    ],
)
def test_malformed_profile_file_names_the_field(tmp_path, text, field, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_profiles(path)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message


def test_missing_profile_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_profiles(tmp_path / "missing.toml")


# -- determinism and token counting ---------------------------------------------------------------


def test_same_prompt_and_seed_give_the_same_text_in_both_formats(sv, http):
    a1 = chat(sv, http).json()["choices"][0]["message"]["content"]
    a2 = chat(sv, http).json()["choices"][0]["message"]["content"]
    b = msgs(sv, http).json()["content"][0]["text"]  # "a" has the same seed as "o"
    assert a1 == a2 == b
    other = chat(sv, http, messages=[{"role": "user", "content": "Something else entirely."}])
    assert other.json()["choices"][0]["message"]["content"] != a1
    sv.update("o", seed=8)
    assert chat(sv, http).json()["choices"][0]["message"]["content"] != a1


def test_system_prompt_counts_the_same_in_both_formats(sv, http):
    system, user = "You are terse and exact.", "What is 2 + 2? Answer in one word."
    o = chat(sv, http, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}]).json()
    a = msgs(sv, http, messages=[{"role": "user", "content": [{"type": "text", "text": user}]}], system=system).json()
    expected = math.ceil((len(system) + len(user)) / 4) + 3 * 2
    assert o["usage"]["prompt_tokens"] == a["usage"]["input_tokens"] == expected
    assert o["choices"][0]["message"]["content"] == a["content"][0]["text"]


def test_max_tokens_bounds_the_answer(sv, http):
    lengths = []
    for i in range(12):
        body = chat(sv, http, messages=[{"role": "user", "content": f"prompt number {i}"}]).json()
        lengths.append(body["usage"]["completion_tokens"])
    assert all(16 <= n <= 64 for n in lengths) and len(set(lengths)) > 3
    full = chat(sv, http).json()["choices"][0]["message"]["content"]
    cut = chat(sv, http, max_tokens=3).json()
    assert cut["usage"]["completion_tokens"] == 3 and cut["choices"][0]["finish_reason"] == "length"
    cut_text = cut["choices"][0]["message"]["content"]
    assert full.startswith(cut_text) and len(cut_text.split()) == 3
    a = msgs(sv, http, max_tokens=4).json()
    assert a["usage"]["output_tokens"] == 4 and a["stop_reason"] == "max_tokens"


# -- streaming ------------------------------------------------------------------------------------


def test_openai_stream_joins_to_the_plain_text_and_bills_only_with_usage(sv, http):
    plain = chat(sv, http).json()
    r = chat(sv, http, stream=True, stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream") and r.text.endswith("data: [DONE]\n\n")
    chunks = sse_data(r.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    before = counters(sv, "o")
    assert before["input_tokens"] == 2 * plain["usage"]["prompt_tokens"]
    r = chat(sv, http, stream=True)  # no include_usage: the client never learns the usage, so nothing is billed
    assert all("usage" not in c for c in sse_data(r.text))
    after = counters(sv, "o")
    assert (after["input_tokens"], after["output_tokens"], after["statuses"]) == (
        before["input_tokens"],
        before["output_tokens"],
        {"200": 3},
    )


def test_anthropic_stream_event_order_and_usage(sv, http):
    plain = msgs(sv, http).json()
    r = msgs(sv, http, stream=True)
    events = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    n = plain["usage"]["output_tokens"]
    assert events == (
        ["message_start", "content_block_start", "ping"]
        + ["content_block_delta"] * n
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    data = sse_data(r.text)
    assert data[0]["message"]["usage"] == {"input_tokens": plain["usage"]["input_tokens"], "output_tokens": 0}
    assert data[-2]["usage"] == {"output_tokens": n}
    streamed = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert streamed == plain["content"][0]["text"]
    s = counters(sv, "a")
    assert (s["input_tokens"], s["output_tokens"]) == (2 * plain["usage"]["input_tokens"], 2 * n)


def test_no_usage_profiles_answer_without_any_usage_and_bill_nothing(sv, http):
    """``no_usage``: like an OpenAI-compatible server that ignores include_usage. Plain and streamed,
    both formats: no usage anywhere, the same text, the request counted, no token billed."""
    with_usage = {
        "o": chat(sv, http).json()["choices"][0]["message"]["content"],
        "a": msgs(sv, http).json()["content"][0]["text"],
    }
    sv.reset_stats()
    for name in ("o", "a"):
        sv.update(name, no_usage=True)
    plain_o = chat(sv, http).json()
    plain_a = msgs(sv, http).json()
    assert "usage" not in plain_o and "usage" not in plain_a
    assert (plain_o["choices"][0]["message"]["content"], plain_a["content"][0]["text"]) == (
        with_usage["o"],
        with_usage["a"],
    )
    streamed_o = chat(sv, http, stream=True, stream_options={"include_usage": True}).text
    streamed_a = msgs(sv, http, stream=True).text
    assert streamed_o.endswith("data: [DONE]\n\n") and "message_stop" in streamed_a
    for data in (sse_data(streamed_o), sse_data(streamed_a)):
        assert data and all("usage" not in d and "usage" not in (d.get("message") or {}) for d in data)
    for name in ("o", "a"):
        s = counters(sv, name)
        assert (s["requests"], s["statuses"], s["input_tokens"], s["output_tokens"], s["cost"]) == (
            2,
            {"200": 2},
            0,
            0,
            0.0,
        )
    with pytest.raises(ConfigError, match="no_usage"):
        sv.update("o", no_usage="yes")


def test_truncated_and_errored_streams_bill_what_was_reported(sv, http):
    sv.inject("o", ["truncated_stream", "stream_error", "malformed_json"])
    t = chat(sv, http, stream=True, stream_options={"include_usage": True})
    assert t.status_code == 200 and "[DONE]" not in t.text and all(c["choices"] for c in sse_data(t.text))
    e = chat(sv, http, stream=True, stream_options={"include_usage": True})
    assert sse_data(e.text)[-1]["error"]["type"] == "server_error"
    m = chat(sv, http, stream=True, stream_options={"include_usage": True})
    with pytest.raises(ValueError):
        sse_data(m.text)
    assert counters(sv, "o") == {
        "requests": 3,
        "statuses": {"truncated_stream": 1, "stream_error": 1, "malformed_json": 1},
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": 0.0,
        "max_in_flight": 1,
    }
    sv.inject("a", ["truncated_stream", "stream_error"])
    t = msgs(sv, http, stream=True)
    assert "message_stop" not in t.text and "message_delta" not in t.text
    e = msgs(sv, http, stream=True)
    assert sse_data(e.text)[-1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    input_tokens = sse_data(t.text)[0]["message"]["usage"]["input_tokens"]
    s = counters(sv, "a")  # message_start was received whole both times: its input tokens are billed
    assert (s["input_tokens"], s["output_tokens"]) == (2 * input_tokens, 0)


def test_malformed_and_truncated_plain_bodies_are_200_and_unbilled(sv, http):
    sv.inject("a", ["malformed_json", "truncated_stream"])
    for _ in range(2):
        r = msgs(sv, http)
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()
    assert counters(sv, "a")["statuses"] == {"malformed_json": 1, "truncated_stream": 1}
    assert counters(sv, "a")["input_tokens"] == 0


# -- faults ---------------------------------------------------------------------------------------


def test_injected_faults_come_in_order_before_random_ones(sv, http):
    sv.update("o", faults={"unavailable": 1.0})
    sv.inject("o", ["rate_limit", "server_error", None, "overloaded"])
    assert [chat(sv, http).status_code for _ in range(5)] == [429, 500, 200, 529, 503]
    assert counters(sv, "o")["statuses"] == {"429": 1, "500": 1, "200": 1, "529": 1, "503": 1}
    with pytest.raises(ConfigError, match="unknown fault kind 'boom'"):
        sv.inject("o", ["boom"])


@pytest.mark.parametrize(
    "fault, status, o_type, o_code, a_type",
    [
        ("rate_limit", 429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
        ("rate_limit_no_retry_after", 429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
        ("server_error", 500, "server_error", None, "api_error"),
        ("bad_gateway", 502, "server_error", None, "api_error"),
        ("unavailable", 503, "server_error", None, "api_error"),
        ("gateway_timeout", 504, "server_error", None, "api_error"),
        ("overloaded", 529, "overloaded_error", None, "overloaded_error"),
        ("invalid_request", 400, "invalid_request_error", None, "invalid_request_error"),
        ("unauthorized", 401, "invalid_request_error", "invalid_api_key", "authentication_error"),
        ("forbidden", 403, "permission_error", "permission_denied", "permission_error"),
        ("model_not_found", 404, "invalid_request_error", "model_not_found", "not_found_error"),
        ("stream_error", 500, "server_error", None, "api_error"),  # a plain request gets a 500
    ],
)
def test_http_faults_have_each_formats_error_shape(sv, http, fault, status, o_type, o_code, a_type):
    sv.inject("o", [fault])
    sv.inject("a", [fault])
    o, a = chat(sv, http), msgs(sv, http)
    assert o.status_code == a.status_code == status
    assert o.json()["error"]["type"] == o_type and o.json()["error"]["code"] == o_code
    assert a.json() == {"type": "error", "error": {"type": a_type, "message": a.json()["error"]["message"]}}
    has_retry_after = fault == "rate_limit"
    assert ("retry-after" in o.headers) == ("retry-after-ms" in a.headers) == has_retry_after
    assert counters(sv, "o")["statuses"] == {str(status): 1} and counters(sv, "o")["input_tokens"] == 0


def test_quota_and_context_length_errors_say_what_the_real_apis_say(sv, http):
    sv.inject("o", ["insufficient_quota"])
    sv.inject("a", ["insufficient_quota"])
    o, a = chat(sv, http), msgs(sv, http)
    assert o.status_code == 429 and o.json()["error"]["code"] == o.json()["error"]["type"] == "insufficient_quota"
    assert a.status_code == 400 and a.json()["error"]["message"].startswith("Your credit balance is too low")
    long = [{"role": "user", "content": "x" * 200}]
    r = chat(sv, http, name="small", messages=long)  # 50 + 3 tokens > a window of 20, no fault needed
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 20 tokens" in r.json()["error"]["message"]
    sv.inject("a", ["context_length"])
    r = msgs(sv, http, messages=long)
    assert r.status_code == 400 and r.json()["error"]["message"] == "prompt is too long: 53 tokens > 128000 maximum"


def test_random_faults_follow_the_seed(http):
    profile = ProviderProfile("r", faults={"server_error": 0.3, "overloaded": 0.2}, seed=5)
    runs = []
    for _ in range(2):
        with Simulator([profile]) as s:
            runs.append([chat(s, http, name="r").status_code for _ in range(60)])
    assert runs[0] == runs[1]
    assert 8 <= runs[0].count(500) <= 30 and 4 <= runs[0].count(529) <= 22 and runs[0].count(200) >= 15


def test_reset_drops_the_connection_without_a_response(sv, http):
    sv.inject("o", ["reset"])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        chat(sv, http)
    assert chat(sv, http).status_code == 200  # the client's pool recovers
    assert counters(sv, "o")["statuses"] == {"reset": 1, "200": 1}


def test_hang_waits_until_the_client_gives_up(sv, http):
    sv.inject("o", ["hang"])
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{sv.url}/o/v1/chat/completions", json={"model": "m", "messages": HELLO}, timeout=0.3)
    assert time.monotonic() - t0 >= 0.3
    assert counters(sv, "o")["statuses"] == {"hang": 1} and counters(sv, "o")["input_tokens"] == 0


def test_stop_does_not_wait_for_hung_requests():
    s = Simulator([ProviderProfile("h", faults={"hang": 1.0})]).start()
    url = s.url
    errors = []

    def call():
        try:
            httpx.post(f"{url}/h/v1/chat/completions", json={"model": "m", "messages": HELLO}, timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    while s.stats()["providers"]["h"]["requests"] < 3:
        time.sleep(0.01)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 3
    for t in threads:
        t.join(5)
    assert len(errors) == 3  # each client saw its connection closed, none waited 30 s
    s.stop()  # idempotent
    assert not s.running


# -- limits and keys ------------------------------------------------------------------------------


def test_rpm_limit_answers_429_with_both_retry_after_headers(sv, http, clock):
    assert [msgs(sv, http, name="limited").status_code for _ in range(2)] == [200, 200]
    clock.now += 20.0
    r = msgs(sv, http, name="limited")
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("40", "40000")  # until the oldest slot frees
    clock.now += 40.0
    assert msgs(sv, http, name="limited").status_code == 200
    assert counters(sv, "limited")["statuses"] == {"200": 3, "429": 1}


def test_required_key_is_checked_and_never_echoed(sv, http):
    url = f"{sv.url}/keyed/v1/chat/completions"
    body = {"model": "m", "messages": HELLO}
    assert http.post(url, json=body).status_code == 401
    wrong = http.post(url, json=body, headers={"authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401 and "sk-wrong" not in wrong.text
    assert http.post(url, json=body, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    assert http.post(url, json=body, headers={"x-api-key": KEY}).status_code == 200
    assert KEY not in http.get(f"{sv.url}/_sim/profiles").text
    assert KEY not in repr(sv.profiles["keyed"])
    assert next(s for s in sv.provider_specs() if s.name == "keyed").resolve_api_key() == KEY


# -- timing ---------------------------------------------------------------------------------------


def test_latency_ttft_and_pacing(sv, http):
    sv.update("o", latency_s=0.2)
    t0 = time.monotonic()
    chat(sv, http, max_tokens=5)
    assert time.monotonic() - t0 >= 0.2
    sv.update("o", latency_s=0.0, ttft_s=0.1, tokens_per_s=50.0)
    t0 = time.monotonic()
    with http.stream(
        "POST",
        f"{sv.url}/o/v1/chat/completions",
        json={"model": "m", "messages": HELLO, "max_tokens": 11, "stream": True},
    ) as r:
        arrivals = []
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 11
    assert arrivals[0] >= 0.1
    assert arrivals[-1] - arrivals[0] >= 10 / 50 * 0.9


def test_a_client_that_leaves_during_latency_is_not_billed(sv, http):
    sv.update("o", latency_s=1.0)
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{sv.url}/o/v1/chat/completions", json={"model": "m", "messages": HELLO}, timeout=0.2)
    deadline = time.monotonic() + 3
    while counters(sv, "o")["statuses"] != {"disconnected": 1} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counters(sv, "o") == {
        "requests": 1,
        "statuses": {"disconnected": 1},
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": 0.0,
        "max_in_flight": 1,
    }


def test_zero_latency_answers_are_fast(sv):
    """Benchmarks compare clients against this server, so its own cost must be small (and no Nagle stalls)."""
    body = json.dumps({"model": "m", "messages": HELLO}).encode()
    request = (
        b"POST /o/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    with socket.create_connection(("127.0.0.1", sv.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(60):
            t0 = time.perf_counter()
            s.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf or len(buf.partition(b"\r\n\r\n")[2]) < int(
                buf.lower().split(b"content-length: ")[1].split(b"\r\n")[0]
            ):
                buf += s.recv(65536)
            times.append(time.perf_counter() - t0)
    assert statistics.median(times[10:]) < 0.015  # ~0.5 ms here; a 40 ms delayed-ACK stall would show


# -- control at run time --------------------------------------------------------------------------


def test_update_over_python_changes_the_live_profile(sv, http):
    new = sv.update("o", faults={"server_error": 1.0}, output_price=3.0)
    assert sv.profiles["o"] is new and new.output_price == 3.0
    assert chat(sv, http).status_code == 500
    with pytest.raises(ConfigError, match="profiles.o.latency_s: expected a number"):
        sv.update("o", latency_s="slow")
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        sv.update("o", colour="red")
    with pytest.raises(ConfigError, match="known: o, a"):
        sv.update("zzz", latency_s=1)
    sv.add_profile(ProviderProfile("extra", api="anthropic"))
    assert msgs(sv, http, name="extra").status_code == 200


def test_control_over_http(sv, http):
    r = http.post(f"{sv.url}/_sim/profiles/o", json={"faults": {"bad_gateway": 1.0}, "latency_s": 0})
    assert r.status_code == 200 and r.json()["profile"]["faults"] == {"bad_gateway": 1.0}
    assert http.get(f"{sv.url}/_sim/profiles").json()["profiles"]["o"]["faults"] == {"bad_gateway": 1.0}
    assert sv.profiles["o"].faults == {"bad_gateway": 1.0}
    r = http.post(f"{sv.url}/_sim/inject/o", json=[None, "forbidden"])
    assert r.json() == {"queued": 2}
    assert [chat(sv, http).status_code for _ in range(3)] == [200, 403, 502]
    bad = http.post(f"{sv.url}/_sim/profiles/o", json={"faults": {"meteor": 0.1}})
    assert bad.status_code == 400 and "profiles.o.faults.meteor: unknown fault kind" in bad.json()["error"]["message"]
    assert http.post(f"{sv.url}/_sim/inject/o", json=["meteor"]).status_code == 400
    assert http.post(f"{sv.url}/_sim/inject/o", content=b"nope").status_code == 400
    assert http.post(f"{sv.url}/_sim/profiles/zzz", json={}).status_code == 404
    assert http.post(f"{sv.url}/_sim/reset").json()["reset"] == "stats"
    assert counters(sv, "o")["requests"] == 0 and sv.profiles["o"].faults == {"bad_gateway": 1.0}
    assert http.post(f"{sv.url}/_sim/reset?all=1").json()["reset"] == "all"
    assert sv.profiles["o"] == PROFILES[0]


def test_stats_are_consistent_under_concurrent_load(sv):
    sv.update("o", faults={"server_error": 0.5})

    def worker(results):
        with httpx.Client() as c:
            for _ in range(25):
                results.append(chat(sv, c).status_code)

    results: list[int] = []
    threads = [threading.Thread(target=worker, args=(results,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = counters(sv, "o")
    assert s["requests"] == 150 == sum(s["statuses"].values())
    assert s["statuses"] == {"200": results.count(200), "500": results.count(500)}


# -- packaging and the command line -------------------------------------------------------------------


def test_import_is_light():
    code = (
        "import sys, llmroute_magic.sim; "
        "print(sorted(m for m in ('pandas', 'httpx', 'starlette', 'uvicorn', 'IPython') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fault_kinds_are_the_contracts():
    assert set(FAULT_KINDS) == {
        "rate_limit",
        "rate_limit_no_retry_after",
        "insufficient_quota",
        "server_error",
        "bad_gateway",
        "unavailable",
        "gateway_timeout",
        "overloaded",
        "invalid_request",
        "context_length",
        "unauthorized",
        "forbidden",
        "model_not_found",
        "hang",
        "reset",
        "malformed_json",
        "truncated_stream",
        "stream_error",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_until_terminated(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute_magic._cli", "sim", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        assert f"http://127.0.0.1:{port}" in lines[0]
        assert any(f"http://127.0.0.1:{port}/sim-openai/v1" in line for line in lines)
        assert any(f"http://127.0.0.1:{port}/sim-anthropic\n" in line for line in lines)
        stats = httpx.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=5).json()
        assert set(stats["providers"]) == {p.name for p in DEFAULT_PROFILES}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err


def test_cli_bad_profile_file_exits_2_with_the_message(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[providers]]\nname = "sim-openai"\nfaults = { foo = 0.1 }\n')
    proc = subprocess.run(
        [sys.executable, "-m", "llmroute_magic._cli", "sim", "--port", "0", "--profiles", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "profiles.sim-openai.faults.foo: unknown fault kind 'foo'; allowed: rate_limit" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_loads_a_profile_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(GOOD_TOML)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmroute_magic._cli", "sim", "--port", "0", "--profiles", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().split(" on ")[1].split()[0]
        assert set(httpx.get(f"{url}/_sim/stats", timeout=5).json()["providers"]) == {"fast", "claude"}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_profiles_may_be_given_as_a_dict_keyed_by_name():
    s = Simulator({"x": ProviderProfile("ignored", api="anthropic"), "y": ProviderProfile("y")})
    assert list(s.profiles) == ["x", "y"] and s.profiles["x"].api == "anthropic"
    with pytest.raises(RuntimeError, match="not been started"):
        _ = s.url
    with pytest.raises(ConfigError, match="port"):
        Simulator(port=70000)
    with pytest.raises(ConfigError, match="at least one"):
        Simulator([])


# -- tools, schemas, images: each format's exact wire shapes ------------------------------------------

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
O_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
A_TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_PARAMS},
    {"name": "get_time", "input_schema": {"type": "object"}},
]
ASK_BOTH = [{"role": "user", "content": "Use get_weather and get_time for Oslo."}]


def sse_events(text: str) -> list[str]:
    return [line[7:] for line in text.splitlines() if line.startswith("event: ")]


def test_openai_streamed_tool_calls_come_as_a_header_then_argument_pieces(sv, http):
    plain = chat(sv, http, messages=ASK_BOTH, tools=O_TOOLS).json()
    calls = plain["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    r = chat(sv, http, messages=ASK_BOTH, tools=O_TOOLS, stream=True, stream_options={"include_usage": True})
    chunks = sse_data(r.text)
    first = chunks[0]["choices"][0]["delta"]
    assert (first["role"], first["content"]) == ("assistant", None)
    assert first["tool_calls"] == [
        {"index": 0, "id": calls[0]["id"], "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    ]
    pieces: dict[int, list[str]] = {0: [], 1: []}
    for c in chunks[1:-2]:
        (tc,) = c["choices"][0]["delta"]["tool_calls"]
        if "id" in tc:  # the second call's header
            assert (tc["index"], tc["id"], tc["function"]) == (1, calls[1]["id"], {"name": "get_time", "arguments": ""})
        else:
            assert set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"}
            pieces[tc["index"]].append(tc["function"]["arguments"])
    assert len(pieces[0]) > 1 and pieces[1] == ["{}"]  # get_time takes no arguments: "{}", one token
    assert ["".join(pieces[i]) for i in (0, 1)] == [c["function"]["arguments"] for c in calls]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and chunks[-1]["usage"] == plain["usage"]
    assert plain["usage"]["completion_tokens"] == sum(len(p) for p in pieces.values())


def test_anthropic_streamed_tool_use_event_order(sv, http):
    plain = msgs(sv, http, messages=ASK_BOTH, tools=A_TOOLS).json()
    assert [b["type"] for b in plain["content"]] == ["tool_use", "tool_use"] and plain["stop_reason"] == "tool_use"
    r = msgs(sv, http, messages=ASK_BOTH, tools=A_TOOLS, stream=True)
    data = sse_data(r.text)
    n0, n1 = (len(json.dumps(b["input"], separators=(",", ":"))) for b in plain["content"])
    per_block = lambda n: ["content_block_delta"] * (1 + math.ceil(n / 4))  # noqa: E731 - a "" delta, then pieces
    assert sse_events(r.text) == (
        ["message_start", "content_block_start", "ping"]
        + per_block(n0)
        + ["content_block_stop", "content_block_start"]
        + per_block(n1)
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    starts = [d for d in data if d["type"] == "content_block_start"]
    assert [s["content_block"] for s in starts] == [
        {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}} for b in plain["content"]
    ]
    for i, block in enumerate(plain["content"]):
        deltas = [d["delta"] for d in data if d["type"] == "content_block_delta" and d["index"] == i]
        assert deltas[0] == {"type": "input_json_delta", "partial_json": ""}
        assert json.loads("".join(d["partial_json"] for d in deltas)) == block["input"]
    assert data[-2]["delta"]["stop_reason"] == "tool_use" and data[-2]["usage"] == {
        "output_tokens": plain["usage"]["output_tokens"]
    }


def test_tool_results_in_the_conversation_are_counted_and_answered_with_text(sv, http):
    args = '{"city":"Oslo","days":1}'
    o = chat(
        sv,
        http,
        tools=O_TOOLS,
        messages=ASK_BOTH
        + [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees."},
        ],
    ).json()
    assert o["choices"][0]["finish_reason"] == "stop" and o["choices"][0]["message"]["content"]
    chars = len(ASK_BOTH[0]["content"]) + len("get_weather" + f"({args})") + len("Sunny, 21 degrees.")
    assert o["usage"]["prompt_tokens"] == math.ceil(chars / 4) + 3 * 3
    a = msgs(
        sv,
        http,
        tools=A_TOOLS,
        messages=ASK_BOTH
        + [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo", "days": 1}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "Sunny, 21 degrees."}],
                    }
                ],
            },
        ],
    ).json()
    assert a["stop_reason"] == "end_turn" and a["content"][0]["type"] == "text"


def test_json_answers_in_both_shapes(sv, http):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    o = chat(sv, http, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    a = msgs(sv, http, output_config={"format": {"type": "json_schema", "schema": schema}})
    o_text = o.json()["choices"][0]["message"]["content"]
    a_text = a.json()["content"][0]["text"]
    assert o_text == a_text and isinstance(json.loads(o_text)["answer"], int)  # same seed, same conversation
    assert o.json()["usage"]["completion_tokens"] == math.ceil(len(o_text) / 4)


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "retrieval"}]}, "tools.0"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
            "tools.0.function.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": O_TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": O_TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, "response_format.json_schema"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
            "messages.0.content.0.image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,AA"}]}
                ]
            },
            "messages.0.content.0.image_url.url",
        ),
    ],
)
def test_openai_bad_tools_formats_and_images_are_400s_naming_the_param(sv, http, extra, param):
    r = chat(sv, http, **extra)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.json()
    assert counters(sv, "o")["statuses"] == {"400": 1} and counters(sv, "o")["input_tokens"] == 0


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tools": [{"name": "", "input_schema": {}}]}, "tools.0.name"),
        ({"tools": A_TOOLS, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"tools": A_TOOLS, "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]},
            "messages.0.content.0.source",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0.source.media_type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}]},
            "messages.0.content.0.source.url",
        ),
    ],
)
def test_anthropic_bad_tools_formats_and_images_are_400s_naming_the_field(sv, http, extra, needle):
    r = msgs(sv, http, **extra)
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"].startswith(needle)


def test_anthropic_server_tools_are_accepted_and_never_called(sv, http):
    r = msgs(
        sv,
        http,
        messages=[{"role": "user", "content": "web_search for cats"}],
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
    )
    assert r.status_code == 200 and r.json()["content"][0]["type"] == "text"


def test_unknown_fault_kinds_name_ignore_schema_among_the_allowed(sv):
    with pytest.raises(ConfigError, match="stream_error, ignore_schema"):
        sv.inject("o", ["boom"])
    assert sv.update("o", faults={"ignore_schema": 0.5}).faults == {"ignore_schema": 0.5}
