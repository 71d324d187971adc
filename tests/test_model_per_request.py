"""A model per request: ``model=`` on the request methods and ``provider:model`` entries in
``compare``, over the simulator (which answers any model name and echoes it back)."""

from __future__ import annotations

import math
import warnings

import pytest
from genai_prices import Usage, calc_price

from llmroute_magic import ConfigError, ModelClientRouter, ProviderRoutingConfig, ProviderSpec, UnknownPriceWarning
from llmroute_magic._events import AttemptStarted
from llmroute_magic._router import compare_target


@pytest.fixture
def router(fresh_sim):
    r = ModelClientRouter(ProviderRoutingConfig(fresh_sim.provider_specs()))
    yield r
    r.close()


def test_compare_targets_parse_names_and_name_model_pairs():
    configured = ["sim-openai", "ollama", "odd:name"]
    assert compare_target("sim-openai", configured) == ("sim-openai", None)
    assert compare_target(" sim-openai:gpt-4o ", configured) == ("sim-openai", "gpt-4o")
    assert compare_target("ollama:llama3.1:8b", configured) == ("ollama", "llama3.1:8b")  # model keeps its ':'
    assert compare_target("odd:name", configured) == ("odd:name", None)  # a configured name wins whole
    assert compare_target("odd:name:m1", configured) == ("odd:name", "m1")
    with pytest.raises(ConfigError, match="names no model"):
        compare_target("sim-openai:", configured)
    with pytest.raises(ConfigError, match="unknown provider 'ghost:m'.*NAME:MODEL"):
        compare_target("ghost:m", configured)


def test_model_reaches_the_request_and_the_ledger(router):
    started: list[AttemptStarted] = []
    router.events.subscribe(AttemptStarted, started.append)
    c = router.complete("hello", provider="sim-openai", model="gpt-4o")
    assert [e.model for e in started] == ["gpt-4o"]  # what the attempt layer sent on
    assert c.model == "gpt-4o"  # the simulator answers with the model it was sent
    assert router.usage_df()["model"].tolist() == ["gpt-4o"]


def test_compare_two_models_of_one_provider_gives_two_rows(router, fresh_sim):
    started: list[AttemptStarted] = []
    router.events.subscribe(AttemptStarted, started.append)
    df = router.compare("Name one trade-off of caching", providers="sim-openai:model-a,sim-openai:model-b")
    assert list(df["provider"]) == ["sim-openai", "sim-openai"]
    assert sorted(e.model for e in started) == ["model-a", "model-b"]
    assert df["error"].isna().all()
    assert fresh_sim.stats()["providers"]["sim-openai"]["requests"] == 2
    assert list(df["model"]) == ["model-a", "model-b"]


def test_compare_mixes_plain_names_pairs_and_a_default_model(router):
    started: list[AttemptStarted] = []
    router.events.subscribe(AttemptStarted, started.append)
    df = router.compare("hi", providers=["sim-local", "sim-openai:x1"], model="y2")
    assert list(df["provider"]) == ["sim-local", "sim-openai"]
    assert {e.provider: e.model for e in started} == {"sim-local": "y2", "sim-openai": "x1"}


def test_a_failed_pair_names_the_model_it_asked_for(fresh_sim):
    spec = ProviderSpec("down", "m0", base_url="http://127.0.0.1:9/v1", api_key="k", input_price=0, output_price=0)
    with ModelClientRouter(ProviderRoutingConfig([spec], max_retries=0)) as r:
        df = r.compare("hi", providers=["down:m9"])
    assert df["model"].tolist() == ["m9"] and df["error"].iloc[0]


def test_a_model_genai_prices_does_not_know_costs_nan_not_the_specs_price(fresh_sim):
    """OpenAI behind a local proxy, priced from genai-prices: ``model=`` naming a model it does not
    know gives NaN (unknown) and one UnknownPriceWarning naming that model, never gpt-4o's price;
    a model it knows is priced as itself, silently."""
    spec = ProviderSpec("openai", "gpt-4o", base_url=fresh_sim.base_url("sim-openai"))
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        with pytest.warns(UnknownPriceWarning, match="provider 'openai' \\(model 'my-ft-model'\\)") as caught:
            first = r.complete("hello", model="my-ft-model", max_tokens=8)
            again = r.stream("hello again", model="my-ft-model", max_tokens=8)
            "".join(again)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mini = r.complete("hello", model="gpt-4o-mini", max_tokens=8)
        df = r.usage_df()
    assert len(caught) == 1
    for c in (first, again.completion):
        assert c.model == "my-ft-model" and c.input_tokens > 0 and math.isnan(c.cost)
    usage = Usage(input_tokens=mini.input_tokens, output_tokens=mini.output_tokens)
    assert mini.cost == pytest.approx(float(calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price))
    assert df["model"].tolist() == ["my-ft-model", "my-ft-model", "gpt-4o-mini"]
    assert df["cost"].isna().tolist() == [True, True, False]
