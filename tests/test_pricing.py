"""PriceBook against genai-prices itself: every figure is what ``calc_price`` says for the same
usage (cache reads, cache writes, tiers), spec prices override at a flat rate, and unknown is NaN."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
import time
import warnings
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from llmroute_magic import ProviderSpec, UnknownPriceWarning
from llmroute_magic._pricing import PriceBook, _make_form


def genai(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    **provider: str,
) -> float:
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
    )
    return float(calc_price(usage, model, **provider).total_price)


OPENAI = ProviderSpec("openai", "gpt-4o")
ANTHROPIC = ProviderSpec("anthropic", "claude-sonnet-4-5")
GEMINI = ProviderSpec("google", "gemini-2.5-pro", base_url="https://generativelanguage.googleapis.com/v1beta")
GATEWAY = ProviderSpec("gateway", "gpt-4o-mini", base_url="https://llm-gateway.example.com/v1")
LOCAL = ProviderSpec("vllm", "llama-3.1-8b", base_url="http://127.0.0.1:8000/v1")


@pytest.fixture(scope="module")
def book() -> PriceBook:
    b = PriceBook()
    b.warm([OPENAI, ANTHROPIC, GEMINI, GATEWAY, LOCAL])
    return b


def test_openai_plain_and_cache_read_as_genai_prices(book):
    assert book.cost(OPENAI, 1200, 300) == pytest.approx(
        genai("gpt-4o", input_tokens=1200, output_tokens=300, provider_id="openai"), rel=1e-12
    )
    cached = book.cost(OPENAI, 10_000, 300, cache_read_tokens=8_000)
    assert cached == pytest.approx(
        genai("gpt-4o", input_tokens=10_000, output_tokens=300, cache_read_tokens=8_000, provider_id="openai"),
        rel=1e-12,
    )
    assert cached < book.cost(OPENAI, 10_000, 300)  # cached prompt tokens are cheaper
    assert book.rates(OPENAI) == (2.5, 10.0)  # what genai-prices lists for gpt-4o, base tier


def test_anthropic_50k_cache_write_is_billed_at_the_cache_write_rate(book):
    got = book.cost(ANTHROPIC, 60_000, 500, cache_write_tokens=50_000)
    want = genai(
        "claude-sonnet-4-5", input_tokens=60_000, output_tokens=500, cache_write_tokens=50_000, provider_id="anthropic"
    )
    assert got == pytest.approx(want, rel=1e-12)
    plain = book.cost(ANTHROPIC, 60_000, 500)
    assert got > plain * 1.15  # the first release billed this at the plain input rate: 20% low
    read = book.cost(ANTHROPIC, 60_000, 500, cache_read_tokens=50_000)
    assert read == pytest.approx(
        genai(
            "claude-sonnet-4-5",
            input_tokens=60_000,
            output_tokens=500,
            cache_read_tokens=50_000,
            provider_id="anthropic",
        ),
        rel=1e-12,
    )
    assert read < plain


@pytest.mark.parametrize("prompt", [2_000, 199_999, 200_000, 200_001, 250_000])
def test_gemini_25_pro_tiers_follow_the_prompt_size(book, prompt):
    got = book.cost(GEMINI, prompt, 1_000)
    assert got == pytest.approx(
        genai("gemini-2.5-pro", input_tokens=prompt, output_tokens=1_000, provider_id="google"), rel=1e-12
    )


def test_gemini_small_prompt_is_not_billed_at_the_large_prompt_tier(book):
    base_in, base_out = book.rates(GEMINI)  # the base tier, for LOWEST_COST
    assert (base_in, base_out) == (1.25, 10.0)
    # a 2k prompt is billed at the base tier (the first release used the >200k tier: 33% high)
    assert book.cost(GEMINI, 2_000, 1_000) == pytest.approx((2_000 * base_in + 1_000 * base_out) / 1e6, rel=1e-12)
    # per prompt token, a >200k prompt costs more, every token of it
    assert book.cost(GEMINI, 250_000, 0) / 250_000 > book.cost(GEMINI, 2_000, 0) / 2_000


def test_a_proxy_url_genai_prices_does_not_know_is_matched_by_model_alone(book):
    with pytest.raises(LookupError):
        calc_price(Usage(input_tokens=1), "gpt-4o-mini", provider_api_url=GATEWAY.base_url)
    assert book.cost(GATEWAY, 5_000, 100) == pytest.approx(
        genai("gpt-4o-mini", input_tokens=5_000, output_tokens=100), rel=1e-12
    )


def test_a_known_vendor_behind_a_loopback_proxy_keeps_its_vendors_prices():
    spec = ProviderSpec("openai", "gpt-4o", base_url="http://127.0.0.1:9/v1")
    assert PriceBook().cost(spec, 1000, 10) == pytest.approx(
        genai("gpt-4o", input_tokens=1000, output_tokens=10, provider_id="openai"), rel=1e-12
    )


def test_the_answers_model_is_priced_else_the_specs():
    book = PriceBook()
    as_mini = book.cost(OPENAI, 1000, 100, model="gpt-4o-mini-2024-07-18")
    assert as_mini == pytest.approx(
        genai("gpt-4o-mini-2024-07-18", input_tokens=1000, output_tokens=100, provider_id="openai"), rel=1e-12
    )
    # a model genai-prices does not know falls back to the spec's model, not to NaN
    assert book.cost(OPENAI, 1000, 100, model="house-finetune-7") == book.cost(OPENAI, 1000, 100)


def test_a_model_asked_for_per_request_that_genai_prices_does_not_know_is_unknown():
    """``model=`` on a request (``requested``) replaces the spec's model: unknown to genai-prices,
    the attempt's cost is NaN and the book warns once for that model, never the spec model's price.
    A known one is priced as itself; an answer naming an unknown snapshot falls back to it."""
    book = PriceBook()
    assert math.isnan(book.cost(OPENAI, 1000, 100, model="my-ft-model", requested="my-ft-model"))
    assert math.isnan(book.cost(OPENAI, 1000, 100, requested="my-ft-model"))
    mini = genai("gpt-4o-mini", input_tokens=1000, output_tokens=100, provider_id="openai")
    assert book.cost(OPENAI, 1000, 100, requested="gpt-4o-mini") == pytest.approx(mini, rel=1e-12)
    assert book.cost(OPENAI, 1000, 100, model="gpt-4o-mini-2099", requested="gpt-4o-mini") == pytest.approx(mini)
    with pytest.warns(UnknownPriceWarning, match="provider 'openai' \\(model 'my-ft-model'\\)") as caught:
        assert book.warn_if_unknown(OPENAI, "my-ft-model") is False
        assert book.warn_if_unknown(OPENAI, "my-ft-model") is False
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert book.warn_if_unknown(OPENAI, "gpt-4o-mini") is True and book.warn_if_unknown(OPENAI) is True
        assert book.warn_if_unknown(OPENAI.with_prices(input=1, output=2), "my-ft-model") is True  # flat: any model


def test_an_azure_deployment_is_priced_by_the_model_its_answer_names():
    """On Azure the spec's model is a deployment name genai-prices cannot know ("prod-chat"): the
    attempt is priced by the model the answer reports, and nothing is flagged before it answers."""
    deployment = ProviderSpec("azure", "prod-chat", api="azure", base_url="https://myres.openai.azure.com")
    book = PriceBook()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        book.warn_if_unknown(deployment)
    want = genai("gpt-4o-2024-08-06", input_tokens=1000, output_tokens=100, cache_read_tokens=600, provider_id="azure")
    got = book.cost(deployment, 1000, 100, 600, model="gpt-4o-2024-08-06", requested="prod-chat")
    assert got == pytest.approx(want, rel=1e-12) and want > 0
    assert math.isnan(book.cost(deployment, 1000, 100, model="prod-chat", requested="prod-chat"))
    assert math.isnan(book.cost(deployment, 1000, 100)) and book.rates(deployment) is None
    assert not book.known(deployment)


def test_spec_prices_override_the_catalogue_at_a_flat_rate():
    spec = OPENAI.with_prices(input=1.0, output=2.0)
    book = PriceBook()
    # cache reads and writes are prompt tokens at the spec's input price
    assert (
        book.cost(spec, 10_000, 500, cache_read_tokens=4_000, cache_write_tokens=3_000)
        == 10_000 * 1.0 / 1e6 + 500 * 2.0 / 1e6
    )
    assert book.rates(spec) == (1.0, 2.0)
    free = LOCAL.with_prices(input=0, output=0)
    assert book.cost(free, 10_000, 500) == 0.0 and book.rates(free) == (0.0, 0.0)


def test_unknown_is_nan_never_zero():
    book = PriceBook()
    book.warn_if_unknown(OPENAI)  # the router's protocol: cost() stays silent
    unknown_model = ProviderSpec("openai", "gpt-does-not-exist-9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec in (LOCAL, unknown_model):
            assert math.isnan(book.cost(spec, 100, 10)) and book.rates(spec) is None
            assert not book.known(spec)
    # usage the provider did not report: unknown, whatever the price
    assert math.isnan(book.cost(OPENAI, None, 10)) and math.isnan(book.cost(OPENAI, 100, None))
    assert math.isnan(book.cost(OPENAI.with_prices(input=1, output=1), None, None))
    # nothing used: nothing billed, even where the price is unknown
    assert book.cost(LOCAL, 0, 0) == 0.0
    # more cached than prompt tokens cannot be right: not priced as if it were
    assert math.isnan(book.cost(OPENAI, 100, 10, cache_read_tokens=200))


def test_random_usages_match_genai_prices_exactly():
    book = PriceBook()
    rng = random.Random(7)
    cases = [
        (OPENAI, "gpt-4o", {"provider_id": "openai"}),
        (ANTHROPIC, "claude-sonnet-4-5", {"provider_id": "anthropic"}),
        (ProviderSpec("anthropic", "claude-3-5-haiku-latest"), "claude-3-5-haiku-latest", {"provider_id": "anthropic"}),
        (GEMINI, "gemini-2.5-pro", {"provider_id": "google"}),
        (ProviderSpec("deepseek", "deepseek-chat"), "deepseek-chat", {"provider_id": "deepseek"}),
        (ProviderSpec("groq", "llama-3.1-8b-instant"), "llama-3.1-8b-instant", {"provider_id": "groq"}),
    ]
    for _ in range(400):
        spec, model, provider = rng.choice(cases)
        inp = rng.choice([rng.randint(1, 5_000), rng.randint(150_000, 400_000)])
        cr = rng.randint(0, inp // 2) if rng.random() < 0.5 else 0
        cw = rng.randint(0, (inp - cr) // 2) if rng.random() < 0.5 else 0
        out = rng.randint(0, 8_000)
        want = genai(
            model, input_tokens=inp, output_tokens=out, cache_read_tokens=cr, cache_write_tokens=cw, **provider
        )
        assert book.cost(spec, inp, out, cr, cw) == pytest.approx(want, rel=1e-12, abs=1e-15), (model, inp, cr, cw, out)


def test_a_price_rule_that_is_not_linear_is_left_to_genai_prices_per_attempt():
    class Period:  # no tiers
        pass

    def squared(input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0):
        return Decimal(input_tokens) ** 2 / 10**12 + Decimal(output_tokens) / 10**6

    assert _make_form(Period(), squared) is None

    def linear(input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0):
        return Decimal(3 * input_tokens + 15 * output_tokens) / 10**6

    form = _make_form(Period(), linear)
    assert form is not None and form.base_rates == (3.0, 15.0)


def test_cost_is_cheap_per_attempt(book):
    """calc_price itself takes ~200 µs; the book keeps its figures and prices in a few µs."""
    n = 20_000
    for spec in (OPENAI, GEMINI):
        book.cost(spec, 1000, 10)
        t0 = time.perf_counter()
        for i in range(n):
            book.cost(spec, 1000 + i, 200, 100, 0, model=spec.model)
        per_call = (time.perf_counter() - t0) / n
        assert per_call < 40e-6, per_call


def test_warn_if_unknown_warns_once_per_provider_and_cost_is_silent():
    book = PriceBook()
    with pytest.warns(UnknownPriceWarning, match="no price known for provider 'vllm'") as caught:
        assert book.warn_if_unknown(LOCAL) is False
        assert book.warn_if_unknown(LOCAL) is False
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from pricing the attempt (mid-stream)
        assert math.isnan(book.cost(LOCAL, 100, 10))
        assert book.warn_if_unknown(OPENAI) is True


# One router, a provider with no price, two requests: the user must read the warning once.
ONCE = """
    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec
    from llmroute_magic.sim import Simulator
    with Simulator() as sim:
        name = sim.provider_specs()[0].name
        spec = ProviderSpec(name, "house-model", base_url=sim.base_url(name))
        with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
            r.complete("one", max_tokens=4)
            r.complete("two", max_tokens=4)
"""


def test_an_unknown_price_is_told_once_on_the_console():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(ONCE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("no price known for provider") == 1, out.stderr


# -- the native formats: Gemini, Azure, OpenAI Responses, Ollama --------------------------------------------


@pytest.mark.parametrize(
    "spec, provider_id, model",
    [
        (ProviderSpec("gemini", "gemini-2.5-flash"), "google", "gemini-2.5-flash"),
        (
            ProviderSpec("team-gemini", "gemini-2.0-flash", api="gemini", base_url="http://127.0.0.1:9/g"),
            "google",
            "gemini-2.0-flash",
        ),
        (
            ProviderSpec("work", "gpt-4o-mini", api="azure", base_url="https://acme.openai.azure.com"),
            "azure",
            "gpt-4o-mini",
        ),
        (ProviderSpec("resp", "gpt-4o", api="openai-responses", base_url="https://gw.example/v1"), "openai", "gpt-4o"),
    ],
)
def test_native_formats_are_priced_by_their_vendors_list(book, spec, provider_id, model):
    usage = Usage(input_tokens=12_345, output_tokens=678)
    want = float(calc_price(usage, model, provider_id=provider_id).total_price)
    assert book.cost(spec, 12_345, 678) == pytest.approx(want, rel=1e-12) and want > 0


def test_ollama_on_this_machine_is_free_and_a_remote_one_unknown(book):
    assert book.cost(ProviderSpec("ollama", "llama3.1:8b"), 5_000, 500) == 0.0
    assert book.warn_if_unknown(ProviderSpec("ollama", "llama3.1:8b"))
    remote = ProviderSpec("gpu-box", "llama3.1:8b", api="ollama", base_url="http://10.0.0.7:11434")
    assert math.isnan(book.cost(remote, 5_000, 500))
