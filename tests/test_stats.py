"""UsageStats: unknown cost or usage is never a silent $0 or 0 tokens; one latency percentile
definition; running sums that equal a full recount."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec, UsageStats
from llmroute_magic._ledger import Ledger
from llmroute_magic._stats import UsageSummary, cost_text, latency_percentiles
from llmroute_magic._types import AttemptRecord
from llmroute_magic.sim import ProviderProfile, Simulator


def rec(i, provider="p1", *, cost=0.01, tokens=(10, 5), status="ok", latency=0.05):
    return AttemptRecord(
        f"r{i}",
        1,
        1.7e9 + i,
        provider,
        "m",
        "round_robin",
        status,
        None if status == "ok" else "server_error",
        200 if status == "ok" else 500,
        tokens[0],
        tokens[1],
        cost,
        latency,
        None,
        False,
    )


def stats_of(records, providers=()):
    ledger = Ledger()
    for r in records:
        ledger.append(r)
    return UsageStats.from_frame(ledger.to_frame(), providers)


def test_one_unpriced_row_makes_the_total_unknown_not_a_partial_sum():
    s = stats_of([rec(0), rec(1, "p2", cost=math.nan), rec(2, "p2", cost=math.nan), rec(3, "p2", cost=math.nan)])
    assert math.isnan(s.total_cost)
    assert s.unpriced_rows == 3
    assert s.cost_text() == "unknown (3 unpriced attempts)"
    assert s.cost_text("p1") == "$0.0100" and s.cost_text("p2") == "unknown (3 unpriced attempts)"
    assert s.known_cost == pytest.approx(0.01)
    assert math.isnan(s.p2_cost) and s.p1_cost == pytest.approx(0.01)
    assert "unknown (3 unpriced attempts)" in repr(s) and "unknown" in s._repr_html_()


def test_unknown_usage_makes_the_token_totals_unknown():
    s = stats_of([rec(0), rec(1, tokens=(None, None), cost=math.nan), rec(2, "p2")])
    assert math.isnan(s.total_tokens) and s.unknown_usage_rows == 1
    assert s.tokens_text() == "unknown (1 row without usage)"
    assert math.isnan(s.p1_tokens) and s.p2_tokens == 15
    assert s.tokens_text("p2") == "15"
    by = s.by_provider
    assert by.loc["p1", "input_tokens"] is not None and str(by["input_tokens"].dtype) == "Int64"
    assert by["input_tokens"].isna().tolist() == [True, False]


def test_everything_known_reads_as_before():
    s = stats_of([rec(0), rec(1, "p2", cost=0.02)], providers=["p1", "p2", "p3"])
    assert s.total_cost == pytest.approx(0.03) and s.unpriced_rows == 0 and s.total_tokens == 30
    assert s.cost_text() == "$0.0300" and s.tokens_text() == "30"
    assert s.p3_cost == 0.0 and s.p3_tokens == 0  # never used: nothing spent
    assert str(s.by_provider["input_tokens"].dtype) == "int64"
    assert cost_text(math.nan) == "unknown" and cost_text(0.5, 0) == "$0.5000"


def test_latency_percentiles_one_definition():
    # linear interpolation between closest ranks (numpy's default, pandas' quantile)
    assert latency_percentiles([0.010, 0.020, 0.030, 0.040]) == pytest.approx((0.025, 0.0385))
    assert latency_percentiles([0.048]) == (0.048, 0.048)
    p50, p95 = latency_percentiles([])
    assert math.isnan(p50) and math.isnan(p95)
    assert latency_percentiles([0.01, math.nan, 0.03]) == pytest.approx((0.02, 0.029))
    rng = np.random.default_rng(3)
    lat = rng.gamma(2.0, 0.02, size=501)
    records = [rec(i, latency=float(x)) for i, x in enumerate(lat)]
    records += [rec(900 + i, status="error", latency=9.0) for i in range(20)]  # failures are not in it
    s = stats_of(records)
    assert (s.by_provider.at["p1", "latency_p50_s"], s.by_provider.at["p1", "latency_p95_s"]) == pytest.approx(
        latency_percentiles(lat), rel=1e-12
    )


def test_running_sums_equal_a_full_recount():
    records = [
        rec(
            i,
            ("a", "b", "c")[i % 3],
            cost=math.nan if i % 50 == 7 else 0.001 * i,
            tokens=(None, None) if i % 41 == 3 else (i, 2 * i),
            status="error" if i % 9 == 0 else "ok",
            latency=0.01 + (i % 13) / 100,
        )
        for i in range(300)
    ]
    ledger = Ledger()
    from_rows, from_records = UsageSummary(), UsageSummary()
    cursor = None
    for start in range(0, 300, 37):
        for r in records[start : start + 37]:
            ledger.append(r)
            from_records.add(r)  # what a listener of the router's events sees
        new, cursor = ledger.rows_since(cursor)
        from_rows.add_frame(new)  # what the panel reads
    whole = UsageStats.from_frame(ledger.to_frame(), ["a", "b", "c"])
    running = from_rows.stats(["a", "b", "c"])
    assert from_records.stats(["a", "b", "c"]).by_provider.equals(whole.by_provider)
    assert running.by_provider.equals(whole.by_provider)
    assert running.unpriced_rows == whole.unpriced_rows == 6
    assert running.unknown_usage_rows == whole.unknown_usage_rows


def test_a_provider_without_a_price_shows_unknown_over_the_simulator():
    with Simulator([ProviderProfile("priced", input_price=1.0, output_price=2.0), ProviderProfile("house")]) as sim:
        specs = [
            sim.provider_specs(["priced"])[0],
            ProviderSpec("house", "house-model-1", base_url=sim.base_url("house")),
        ]  # no price anywhere
        with pytest.warns(UserWarning, match="no price known"):
            with ModelClientRouter(ProviderRoutingConfig(specs, strategy="round_robin")) as r:
                for i in range(6):
                    r.complete(f"q{i}", max_tokens=8)
                stats = r.get_usage_stats()
    assert stats.by_provider.at["house", "requests"] == 3
    assert math.isnan(stats.total_cost)  # the first release summed to the priced half: a silent $-figure
    assert stats.unpriced_rows == 3
    assert stats.cost_text() == "unknown (3 unpriced attempts)"
    assert stats.cost_text("priced").startswith("$") and stats.known_cost > 0
