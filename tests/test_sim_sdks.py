"""The official openai and anthropic SDKs, pointed at the simulator, parse every kind of answer it gives."""

from __future__ import annotations

import anthropic
import openai
import pytest

PROMPT = "Name three prime numbers."
FAST = {"latency_s": 0.0, "jitter_s": 0.0, "ttft_s": 0.0}


@pytest.fixture
def s(fresh_sim):
    for name in ("sim-openai", "sim-anthropic"):
        fresh_sim.update(name, **FAST)
    return fresh_sim


# One client each for the module: building an SDK client (TLS context, pool) costs more than a call.
@pytest.fixture(scope="module")
def oai(sim):
    with openai.OpenAI(base_url=sim.base_url("sim-openai"), api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude(sim):
    with anthropic.Anthropic(base_url=sim.base_url("sim-anthropic"), api_key="test", max_retries=0) as client:
        yield client


def counters(sim, name):
    return sim.stats()["providers"][name]


def openai_cost(i, o):
    return i * 0.15 / 1e6 + o * 0.60 / 1e6


def anthropic_cost(i, o):
    return i * 0.80 / 1e6 + o * 4.00 / 1e6


def ask_openai(client, **extra):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], **extra)


def ask_claude(client, **extra):
    return client.messages.create(model="claude-3-5-haiku-latest", max_tokens=extra.pop("max_tokens", 200),
                                  messages=[{"role": "user", "content": PROMPT}], **extra)


# -- answers ---------------------------------------------------------------------------------------

def test_openai_plain_and_streamed_answers_agree_with_the_stats(s, oai):
    plain = ask_openai(oai)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason == "stop" and plain.model == "gpt-4o-mini"
    chunks = list(ask_openai(oai, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    st = counters(s, "sim-openai")
    assert st["statuses"] == {"200": 2}
    assert st["input_tokens"] == plain.usage.prompt_tokens + usage.prompt_tokens
    assert st["output_tokens"] == plain.usage.completion_tokens + usage.completion_tokens
    assert st["cost"] == pytest.approx(openai_cost(plain.usage.prompt_tokens, plain.usage.completion_tokens)
                                       + openai_cost(usage.prompt_tokens, usage.completion_tokens), rel=1e-12)


def test_openai_max_tokens_cuts_the_answer(s, oai):
    cut = ask_openai(oai, max_tokens=4)
    assert cut.usage.completion_tokens == 4 and cut.choices[0].finish_reason == "length"


def test_anthropic_plain_and_streamed_answers_agree_with_the_stats(s, claude):
    plain = ask_claude(claude)
    assert plain.content[0].text and plain.stop_reason == "end_turn"
    with claude.messages.stream(model="claude-3-5-haiku-latest", max_tokens=200,
                                messages=[{"role": "user", "content": PROMPT}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == plain.content[0].text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (plain.usage.input_tokens,
                                                                     plain.usage.output_tokens)
    raw_events = [e.type for e in ask_claude(claude, stream=True)]
    assert raw_events[:3] == ["message_start", "content_block_start", "ping"] or raw_events[:2] == [
        "message_start", "content_block_start"]  # older SDKs drop pings
    assert raw_events[-2:] == ["message_delta", "message_stop"]
    st = counters(s, "sim-anthropic")
    assert st["statuses"] == {"200": 3}
    assert st["input_tokens"] == 3 * plain.usage.input_tokens
    assert st["output_tokens"] == 3 * plain.usage.output_tokens
    assert st["cost"] == pytest.approx(3 * anthropic_cost(plain.usage.input_tokens, plain.usage.output_tokens),
                                       rel=1e-12)


def test_anthropic_max_tokens_cuts_the_answer(s, claude):
    cut = ask_claude(claude, max_tokens=3)
    assert cut.usage.output_tokens == 3 and cut.stop_reason == "max_tokens"


# -- errors ----------------------------------------------------------------------------------------

# fault -> (openai exception, anthropic exception, status)
ERRORS = [
    ("rate_limit", openai.RateLimitError, anthropic.RateLimitError, 429),
    ("server_error", openai.InternalServerError, anthropic.InternalServerError, 500),
    ("bad_gateway", openai.InternalServerError, anthropic.InternalServerError, 502),
    ("unavailable", openai.InternalServerError, anthropic.InternalServerError, 503),
    ("gateway_timeout", openai.InternalServerError, anthropic.InternalServerError, 504),
    ("overloaded", openai.APIStatusError, anthropic.APIStatusError, 529),
    ("invalid_request", openai.BadRequestError, anthropic.BadRequestError, 400),
    ("context_length", openai.BadRequestError, anthropic.BadRequestError, 400),
    ("unauthorized", openai.AuthenticationError, anthropic.AuthenticationError, 401),
    ("forbidden", openai.PermissionDeniedError, anthropic.PermissionDeniedError, 403),
    ("model_not_found", openai.NotFoundError, anthropic.NotFoundError, 404),
]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("fault, o_exc, a_exc, status", ERRORS)
def test_each_error_status_maps_to_the_sdks_own_exception(s, oai, claude, fault, o_exc, a_exc, status, streamed):
    s.update("sim-openai", retry_after_s=2.5)
    s.update("sim-anthropic", retry_after_s=2.5)
    s.inject("sim-openai", [fault])
    s.inject("sim-anthropic", [fault])
    extra = {"stream": True} if streamed else {}
    with pytest.raises(o_exc) as o_info:
        ask_openai(oai, **extra)
    with pytest.raises(a_exc) as a_info:
        ask_claude(claude, **extra)
    assert o_info.value.status_code == a_info.value.status_code == status
    if fault == "overloaded":
        assert a_info.value.body["error"]["type"] == "overloaded_error"
    if fault == "rate_limit":
        for info in (o_info, a_info):
            assert info.value.response.headers["retry-after"] == "3"
            assert info.value.response.headers["retry-after-ms"] == "2500"
    if fault == "context_length":
        assert o_info.value.code == "context_length_exceeded"
        assert a_info.value.body["error"]["message"].startswith("prompt is too long: ")
    if fault == "model_not_found":
        assert o_info.value.code == "model_not_found"
    for name in ("sim-openai", "sim-anthropic"):
        st = counters(s, name)
        assert st["statuses"] == {str(status): 1} and st["input_tokens"] == st["output_tokens"] == 0


def test_insufficient_quota_looks_like_each_real_api(s, oai, claude):
    s.inject("sim-openai", ["insufficient_quota"])
    s.inject("sim-anthropic", ["insufficient_quota"])
    with pytest.raises(openai.RateLimitError) as o_info:
        ask_openai(oai)
    assert o_info.value.code == "insufficient_quota"
    with pytest.raises(anthropic.BadRequestError, match="credit balance is too low"):
        ask_claude(claude)


def test_unknown_provider_is_not_found_for_both_sdks(s):
    with openai.OpenAI(base_url=f"{s.url}/no-such/v1", api_key="test", max_retries=0) as o:
        with pytest.raises(openai.NotFoundError, match="known providers: sim-openai"):
            ask_openai(o)
    with anthropic.Anthropic(base_url=f"{s.url}/no-such", api_key="test", max_retries=0) as a:
        with pytest.raises(anthropic.NotFoundError, match="known providers: sim-openai"):
            ask_claude(a)


def test_mid_stream_error_events_raise_in_both_sdks(s, oai, claude):
    s.inject("sim-openai", ["stream_error"])
    s.inject("sim-anthropic", ["stream_error"])
    seen = []
    with pytest.raises(openai.APIError, match="simulated"):
        for chunk in ask_openai(oai, stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)
    assert seen  # some text arrived before the error
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        with claude.messages.stream(model="m", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]) as st:
            for _ in st.text_stream:
                pass
    assert counters(s, "sim-openai")["statuses"] == {"stream_error": 1}
    assert counters(s, "sim-openai")["input_tokens"] == 0  # no usage chunk was sent
    assert counters(s, "sim-anthropic")["output_tokens"] == 0  # message_delta was never sent


def test_reset_and_hang_are_connection_errors_to_the_sdks(s):
    s.inject("sim-openai", ["reset", "hang"])
    with openai.OpenAI(base_url=s.base_url("sim-openai"), api_key="test", max_retries=0, timeout=0.3) as o:
        with pytest.raises(openai.APIConnectionError) as info:
            ask_openai(o)
        assert not isinstance(info.value, openai.APITimeoutError)
        with pytest.raises(openai.APITimeoutError):
            ask_openai(o)
    assert counters(s, "sim-openai")["statuses"] == {"reset": 1, "hang": 1}
