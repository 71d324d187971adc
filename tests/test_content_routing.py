"""Tools, schemas and images through the router, for every wire format the simulator speaks.

For each registered format × (plain, streamed) × (text, tools, schema, image): the answer has
what was asked for, and the ledger equals what the simulator served and billed. Then one router
over every format at once routes, fails over (a schema answered with prose) and bills correctly,
and an image request never reaches a provider without vision. Formats added to the simulator's
registry join these tests without a line here.
"""

from __future__ import annotations

import base64
import math

import pytest
from helpers import WEATHER, City, Sleeps, ask, assert_ledger_matches_sim, rows, simulator_fixtures

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig
from llmroute_magic._providers import ADAPTERS
from llmroute_magic.sim import ProviderProfile, Simulator
from llmroute_magic.sim._wire import FORMATS

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
APIS = sorted(api for api in FORMATS if api in ADAPTERS)  # served by the simulator and spoken by the router


def profile(api: str, name: str | None = None, **kw) -> ProviderProfile:
    return ProviderProfile(
        name or f"p-{api}", api=api, model=f"{api}-model", input_price=1.0, output_price=2.0, seed=len(api), **kw
    )


sim, fresh = simulator_fixtures([profile(api) for api in APIS] + [profile(api, f"q-{api}") for api in APIS])


KINDS = {
    "text": ("Explain a mutex in one line.", {}),
    "tools": ("What is the weather in Paris? Use get_weather.", {"tools": [WEATHER], "tool_choice": "required"}),
    "schema": ("The biggest city in Japan?", {"response_format": City}),
    "image": ([{"role": "user", "content": ["What is in this picture?", {"type": "image", "data": PNG}]}], {}),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_every_format_carries_every_kind_of_request(fresh, api, streamed, kind):
    prompt, options = KINDS[kind]
    with ModelClientRouter(ProviderRoutingConfig(fresh.provider_specs([f"p-{api}"]))) as r:
        c = ask(r, streamed, prompt, max_tokens=64, **options)
        rec = rows(r)
    assert [x["status"] for x in rec] == ["ok"] and rec[0]["streamed"] == streamed
    if kind == "tools":
        assert [t.name for t in c.tool_calls] == ["get_weather"] and isinstance(c.tool_calls[0].arguments["city"], str)
    elif kind == "schema":
        assert isinstance(c.parsed, City)
    else:
        assert c.text and not c.tool_calls and c.parsed is None
    assert_ledger_matches_sim(r, fresh)


def test_one_router_over_every_format_routes_and_bills(fresh):
    specs = fresh.provider_specs([f"p-{api}" for api in APIS])
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="round_robin")) as r:
        served = [ask(r, i % 2 == 1, f"question {i}", max_tokens=16).provider for i in range(2 * len(APIS))]
        assert sorted(served) == sorted(2 * [s.name for s in specs])  # round robin reached every format, twice
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_prose_for_a_schema_fails_over_to_the_next_format(fresh, api, streamed):
    """The provider of ``api`` answers a schema request with prose: a billed, failed attempt; the
    next provider, of another format, answers with JSON."""
    others = [f"p-{a}" for a in APIS if a != api]
    specs = fresh.provider_specs([f"p-{api}", *others])
    fresh.inject(f"p-{api}", ["ignore_schema"])
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority"), sleep=Sleeps()) as r:
        c = ask(r, streamed, "The biggest city in Japan?", response_format=City)
        rec = rows(r)
    assert isinstance(c.parsed, City) and c.provider == others[0] and c.attempts == 2
    failed = rec[0]
    assert (failed["provider"], failed["status"], failed["error_type"]) == (f"p-{api}", "error", "malformed_response")
    assert failed["input_tokens"] > 0 and failed["cost"] > 0  # the prose was billed: so is its row
    assert_ledger_matches_sim(r, fresh)


@pytest.mark.parametrize("api", APIS)
def test_an_image_never_goes_to_a_provider_without_vision(api):
    with Simulator([profile(api, "blind", vision=False), profile(api, "eyes")]) as s:
        blind, eyes = s.provider_specs()  # the simulator's specs say which one has no vision
        config = ProviderRoutingConfig([blind, eyes])
        with ModelClientRouter(config) as r:
            c = r.complete([{"role": "user", "content": ["What is this?", {"type": "image", "data": PNG}]}])
            assert c.provider == "eyes" and r.complete("text goes anywhere").provider == "blind"
        assert s.stats()["providers"]["blind"]["requests"] == 1  # the text request only


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_prose_for_a_schema_without_usage_is_unknown_not_free(fresh, api, streamed):
    """A provider that reports no usage answers a schema request with prose: the failed row's tokens
    and cost are unknown (None, NaN) like its ok rows', never 0, and it names the answering model.
    The simulator, which billed nothing it did not report, served both attempts with 200s."""
    name = f"p-{api}"
    fresh.update(name, no_usage=True)
    fresh.inject(name, ["ignore_schema"])
    with ModelClientRouter(ProviderRoutingConfig(fresh.provider_specs([name])), sleep=Sleeps()) as r:
        c = ask(r, streamed, "The biggest city in Japan?", response_format=City)
        failed, ok = rows(r)
    assert isinstance(c.parsed, City) and c.attempts == 2
    assert (failed["status"], failed["error_type"], failed["http_status"]) == ("error", "malformed_response", 200)
    for row in (failed, ok):
        assert (row["input_tokens"], row["output_tokens"]) == (None, None), row
        assert math.isnan(row["cost"]), row
        assert (row["model"], row["cache_read_tokens"], row["cache_write_tokens"]) == (c.model, 0, 0)
    billed = fresh.stats()["providers"][name]
    assert billed["requests"] == 2 and (billed["input_tokens"], billed["output_tokens"], billed["cost"]) == (0, 0, 0.0)
    assert billed["statuses"] == {"ignore_schema": 1, "200": 1}
