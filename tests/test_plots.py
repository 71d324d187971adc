"""Usage plots: each kind draws the ledger's numbers, labelled, without a GUI backend."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from llmroute_magic import ConfigError
from llmroute_magic._plots import PLOT_KINDS, figure_to_png, plot_summary, plot_usage
from llmroute_magic._stats import UsageSummary
from llmroute_magic._types import AttemptRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_ledger() -> pd.DataFrame:
    t0 = pd.Timestamp("2026-01-01 12:00:00", tz="UTC")
    rows = []
    spec = [  # provider, status, in, out, cost, latency
        ("alpha", "ok", 10, 20, 0.001, 0.05),
        ("beta", "ok", 12, 30, 0.004, 0.20),
        ("alpha", "error", 0, 0, 0.0, 0.01),
        ("alpha", "ok", 8, 16, 0.002, 0.07),
        ("gamma", "ok", 5, 5, float("nan"), 0.40),
        ("beta", "cancelled", 3, 0, 0.0, 0.10),
    ]
    for i, (p, status, it, ot, cost, lat) in enumerate(spec):
        rows.append(
            dict(
                request_id=f"r{i}",
                attempt=1,
                timestamp=t0 + pd.Timedelta(seconds=i),
                provider=p,
                model=f"{p}-model",
                strategy="priority",
                status=status,
                error_type=None if status == "ok" else "server_error",
                http_status=200 if status == "ok" else 500,
                input_tokens=it,
                output_tokens=ot,
                cost=cost,
                latency_s=lat,
                ttft_s=None,
                streamed=False,
            )
        )
    return pd.DataFrame(rows)


def texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        parts += [t.get_text() for t in ax.texts]
        parts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        legend = ax.get_legend()
        if legend is not None:
            parts += [t.get_text() for t in legend.get_texts()]
    return "\n".join(parts)


@pytest.mark.parametrize("kind", list(PLOT_KINDS))
def test_every_kind_is_one_labelled_figure_that_renders_to_png(kind):
    fig = plot_usage(make_ledger(), kind)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title()
    assert ax.get_xlabel() or ax.get_xticklabels()
    assert ax.get_ylabel() or ax.get_yticklabels()
    png = figure_to_png(fig)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_cost_bars_are_the_summed_cost_per_provider_and_unknown_price_is_not_zero():
    fig = plot_usage(make_ledger(), "cost")
    ax = fig.axes[0]
    heights = {t.get_text(): b.get_height() for t, b in zip(ax.get_xticklabels(), ax.patches)}
    assert heights["alpha"] == pytest.approx(0.003)
    assert heights["beta"] == pytest.approx(0.004)
    assert "unpriced" in texts(fig)  # gamma's NaN is flagged, not silently drawn as $0
    # the total is unknown, with the count of unpriced attempts, and the priced part beside it
    assert ax.get_title() == "Cost by provider — total unknown (1 unpriced attempt; $0.007 priced)"


def test_tokens_plot_shows_input_and_output_per_provider():
    fig = plot_usage(make_ledger(), "tokens")
    ax = fig.axes[0]
    heights = sorted(round(b.get_height()) for b in ax.patches)
    assert heights == sorted([18, 15, 5, 36, 30, 5])  # alpha 18/36, beta 15/30, gamma 5/5
    assert "input" in texts(fig) and "output" in texts(fig)


def test_requests_plot_counts_attempts_per_provider_with_share():
    fig = plot_usage(make_ledger(), "requests")
    t = texts(fig)
    assert "3 (50%)" in t  # alpha has 3 of the 6 attempts
    assert "ok" in t and "error" in t and "cancelled" in t


def test_latency_uses_successful_requests_only():
    fig = plot_usage(make_ledger(), "latency")
    t = texts(fig)
    assert "alpha\n(n=2)" in t and "beta\n(n=1)" in t
    assert "ms" in fig.axes[0].get_ylabel()


def test_timeline_ends_at_the_total_cost():
    fig = plot_usage(make_ledger(), "timeline")
    ax = fig.axes[0]
    total_line = [ln for ln in ax.get_lines() if ln.get_label() == "total"][0]
    assert total_line.get_ydata()[-1] == pytest.approx(0.007)
    assert all(ln.get_ydata()[0] == 0 for ln in ax.get_lines())


def test_empty_ledger_says_no_usage_yet():
    for kind in PLOT_KINDS:
        fig = plot_usage(pd.DataFrame(columns=["provider", "cost"]), kind)
        assert "no usage yet" in texts(fig)
        assert figure_to_png(fig).startswith(PNG_MAGIC)


def test_unknown_kind_is_a_config_error_listing_the_kinds():
    with pytest.raises(ConfigError) as err:
        plot_usage(make_ledger(), "pie")
    for kind in PLOT_KINDS:
        assert kind in str(err.value)


def test_kind_is_case_insensitive():
    assert math.isclose(plot_usage(make_ledger(), " Cost ").axes[0].patches[0].get_height(), 0.003)


def test_plotting_never_selects_a_gui_backend():
    code = (
        "import sys\n"
        "import pandas as pd\n"
        "from llmroute_magic._plots import plot_usage, figure_to_png\n"
        "df = pd.DataFrame({'provider': ['a'], 'cost': [0.1], 'status': ['ok'], 'request_id': ['r'],"
        " 'input_tokens': [1], 'output_tokens': [2], 'latency_s': [0.1],"
        " 'timestamp': [pd.Timestamp.now(tz='UTC')]})\n"
        "for k in ('cost', 'latency', 'tokens', 'requests', 'timeline'):\n"
        "    figure_to_png(plot_usage(df, k))\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no-pyplot')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MPLBACKEND": "tkagg"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no-pyplot"


def as_records(df: pd.DataFrame) -> list[AttemptRecord]:
    return [
        AttemptRecord(
            r.request_id,
            r.attempt,
            r.timestamp.timestamp(),
            r.provider,
            r.model,
            r.strategy,
            r.status,
            r.error_type,
            r.http_status,
            r.input_tokens,
            r.output_tokens,
            r.cost,
            r.latency_s,
            r.ttft_s,
            r.streamed,
        )
        for r in df.itertuples()
    ]


def test_a_summary_fed_record_by_record_equals_one_read_from_the_frame():
    df = make_ledger()
    fed = UsageSummary()
    for record in as_records(df):
        fed.add(record)
    read = UsageSummary.from_frame(df)
    pd.testing.assert_frame_equal(fed.stats().by_provider, read.stats().by_provider)
    assert fed.totals() == pytest.approx(read.totals(), nan_ok=True)
    assert fed.totals()["unpriced"] == 1 and fed.totals()["requests"] == 6
    for kind in PLOT_KINDS:
        assert texts(plot_summary(fed, kind)) == texts(plot_usage(df, kind)), kind


def test_a_summary_matches_usage_stats():
    from llmroute_magic import UsageStats

    df = make_ledger()
    pd.testing.assert_frame_equal(
        UsageSummary.from_frame(df).stats().by_provider,
        UsageStats.from_frame(df).by_provider,
        check_exact=False,
        rtol=1e-12,
    )


def test_a_large_ledger_draws_a_bounded_number_of_points():
    """Drawing every point of 200k attempts took ~5 s here (latency dots + timeline steps), ~0.8 s bounded."""
    import numpy as np

    from llmroute_magic._plots import _MAX_SCATTER, _MAX_STEPS

    n = 200_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "attempt": 1,
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "provider": rng.choice(["a", "b", "c"], n),
            "status": "ok",
            "input_tokens": 10,
            "output_tokens": 20,
            "cost": 0.0001,
            "latency_s": rng.uniform(0.01, 0.5, n),
        }
    )
    summary = UsageSummary.from_frame(df)
    latency = plot_summary(summary, "latency").axes[0]
    dots = sum(len(c.get_offsets()) for c in latency.collections)
    assert dots == 3 * _MAX_SCATTER
    assert "a\n(n=" in texts(latency.figure)  # the box and the count still cover every sample
    timeline = plot_summary(summary, "timeline").axes[0]
    assert max(len(line.get_xdata()) for line in timeline.get_lines()) <= _MAX_STEPS + 2
    total = [ln for ln in timeline.get_lines() if ln.get_label() == "total"][0]
    assert total.get_ydata()[-1] == pytest.approx(n * 0.0001)  # thinned, the running total still ends right
