"""Usage plots: one matplotlib Figure per question a user asks of the ledger.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so no GUI backend is
ever selected: this works in a headless kernel, a CI job and a terminal alike.

The plots draw from a ``UsageSummary``: per-provider running totals (attempts by status, tokens,
priced cost and the count of unpriced attempts, successful latencies) plus the points of the cost
timeline. ``plot_usage(df, kind)`` builds one from a ledger DataFrame (``router.usage_df()``); the
control panel keeps one up to date from the attempt records the router reports, so a redraw never
re-reads the ledger. Figures, titles and labels are written with ``_format``, like every other figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._format import cost_total, count, millis, money
from ._stats import UsageSummary, latency_percentiles

if TYPE_CHECKING:  # pandas and matplotlib are imported only when a plot is asked for
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

PLOT_KINDS: dict[str, str] = {
    "cost": "cost by provider",
    "latency": "latency distribution by provider",
    "tokens": "input/output tokens by provider",
    "requests": "request share by provider (load balancing)",
    "timeline": "cumulative cost over time",
}

_FIGSIZE = (7.5, 4.2)
_STATUS_COLOURS = {"ok": "#4c9a2a", "error": "#c8412f", "cancelled": "#9a9a9a"}
_MAX_SCATTER = 400  # latency dots per provider; the box still summarises every sample
_MAX_STEPS = 4000  # points per timeline line; a million-row ledger draws as fast as a small one


def plot_usage(df: pd.DataFrame, kind: str = "cost") -> Figure:
    """Draw ``kind`` (cost, latency, tokens, requests, timeline) from a usage ledger DataFrame."""
    key = _kind(kind)
    return plot_summary(UsageSummary.from_frame(df), key)


def plot_summary(summary: UsageSummary, kind: str = "cost") -> Figure:
    """Draw ``kind`` from running totals (what the panel keeps), without touching the ledger."""
    key = _kind(kind)
    if len(summary) == 0:
        return _empty_figure(PLOT_KINDS[key])
    return _PLOTTERS[key](summary)


def _kind(kind: str) -> str:
    key = str(kind).strip().lower()
    if key not in PLOT_KINDS:
        allowed = ", ".join(PLOT_KINDS)
        raise ConfigError(f"plot kind: unknown kind {kind!r}; allowed: {allowed}", field="kind")
    return key


# -- helpers ---------------------------------------------------------------------------------


def _new_figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=_FIGSIZE, dpi=100, layout="constrained")


def _empty_figure(title: str) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.set_title(title.capitalize())
    ax.text(
        0.5,
        0.5,
        "no usage yet\nrun a prompt, then plot again",
        ha="center",
        va="center",
        fontsize=13,
        color="#555555",
        transform=ax.transAxes,
    )
    ax.set_axis_off()
    return fig


def _colours(providers: list[str]) -> dict[str, tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {p: cmap(i % 10) for i, p in enumerate(providers)}


def _tidy(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _footnote(fig: Figure, text: str) -> None:
    fig.text(0.99, 0.005, text, ha="right", va="bottom", fontsize=8, color="#666666")


# -- the plots -------------------------------------------------------------------------------


def _plot_cost(summary: UsageSummary) -> Figure:
    providers = summary.providers
    colours = _colours(providers)
    rows = [summary.provider(p) for p in providers]
    totals = [r["priced_cost"] for r in rows]
    unknown = [r["unpriced"] for r in rows]
    fig = _new_figure()
    ax = fig.add_subplot()
    bars = ax.bar(providers, totals, color=[colours[p] for p in providers])
    labels = [money(t) + (f"\n(+{u:,} unpriced)" if u else "") for t, u in zip(totals, unknown)]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_ylim(0, max(max(totals) * 1.25, 1e-9))
    ax.set_ylabel("cost (USD)")
    ax.set_xlabel("provider")
    priced = math.fsum(totals)
    ax.set_title(f"Cost by provider — total {cost_total(priced, sum(unknown), priced=priced)}")
    _tidy(ax)
    if any(unknown):
        _footnote(fig, "unpriced: attempts whose model price is unknown (not counted as $0)")
    return fig


def _plot_latency(summary: UsageSummary) -> Figure:
    import numpy as np

    colours = _colours(summary.providers)
    providers = [p for p in summary.providers if summary.provider(p)["statuses"].get("ok")]
    fig = _new_figure()
    ax = fig.add_subplot()
    if not providers:
        ax.set_title("Latency by provider")
        ax.text(0.5, 0.5, "no successful requests yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    samples = [summary.latencies(p) * 1000 for p in providers]
    positions = list(range(1, len(providers) + 1))
    box = ax.boxplot(
        samples, positions=positions, widths=0.5, showfliers=False, patch_artist=True, medianprops={"color": "black"}
    )
    for patch, p in zip(box["boxes"], providers):
        patch.set_facecolor(colours[p])
        patch.set_alpha(0.35)
    rng = np.random.default_rng(0)  # fixed jitter and sampling: the same ledger always draws the same picture
    for pos, p, values in zip(positions, providers, samples):
        dots = values if len(values) <= _MAX_SCATTER else rng.choice(values, _MAX_SCATTER, replace=False)
        xs = pos + rng.uniform(-0.12, 0.12, size=len(dots))
        ax.scatter(xs, dots, s=14, color=colours[p], alpha=0.8, zorder=3)
        if len(values):
            # The same p50/p95 as the stats table and %llm stats (one definition, in seconds).
            p50, p95 = latency_percentiles(values / 1000)
            ax.annotate(
                f"p50 {millis(p50)}\np95 {millis(p95)}",
                (pos, float(values.max())),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(positions, [f"{p}\n(n={len(v):,})" for p, v in zip(providers, samples)])
    top = max((float(v.max()) for v in samples if len(v)), default=1.0)
    ax.set_ylim(0, top * 1.3 + 1)
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency by provider (successful requests)")
    _tidy(ax)
    return fig


def _plot_tokens(summary: UsageSummary) -> Figure:
    import numpy as np

    providers = summary.providers
    rows = [summary.provider(p) for p in providers]
    inputs = [r["input_tokens"] for r in rows]
    outputs = [r["output_tokens"] for r in rows]
    x = np.arange(len(providers))
    width = 0.38
    fig = _new_figure()
    ax = fig.add_subplot()
    b1 = ax.bar(x - width / 2, inputs, width, label="input (prompt)", color="#4878a8")
    b2 = ax.bar(x + width / 2, outputs, width, label="output (answer)", color="#e0893a")
    ax.bar_label(b1, labels=[count(v) for v in inputs], padding=2, fontsize=8)
    ax.bar_label(b2, labels=[count(v) for v in outputs], padding=2, fontsize=8)
    ax.set_xticks(x, providers)
    ax.set_ylim(0, max(inputs + outputs + [1]) * 1.2)
    ax.set_ylabel("tokens")
    ax.set_xlabel("provider")
    ax.set_title(f"Tokens by provider — {count(sum(inputs))} in, {count(sum(outputs))} out")
    ax.legend(frameon=False)
    _tidy(ax)
    return fig


def _plot_requests(summary: UsageSummary) -> Figure:
    from matplotlib.ticker import MaxNLocator

    providers = summary.providers
    rows = [summary.provider(p) for p in providers]
    totals = summary.totals()
    fig = _new_figure()
    ax = fig.add_subplot()
    left = [0] * len(providers)
    seen = {k for r in rows for k, v in r["statuses"].items() if v}
    statuses = [s for s in ("ok", "error", "cancelled") if s in seen] + sorted(seen - {"ok", "error", "cancelled"})
    for status in statuses:
        counts = [r["statuses"].get(status, 0) for r in rows]
        ax.barh(providers, counts, left=left, label=status, color=_STATUS_COLOURS.get(status, "#7f7f7f"), height=0.6)
        left = [a + b for a, b in zip(left, counts)]
    attempts = totals["attempts"]
    for i, n in enumerate(left):
        ax.text(n, i, f"  {n:,} ({100 * n / attempts:.0f}%)", va="center", fontsize=9)
    ax.set_xlim(0, max(left) * 1.3 + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()  # first provider on top, like a table
    ax.set_xlabel("attempts")
    ax.set_title(f"Request share by provider — {attempts:,} attempts for {totals['requests']:,} requests")
    ax.legend(frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most _MAX_STEPS points of a running total, the last one always kept."""
    import numpy as np

    if len(xs) <= _MAX_STEPS:
        return xs, ys
    keep = np.unique(np.linspace(0, len(xs) - 1, _MAX_STEPS).astype(int))
    return xs[keep], ys[keep]


def _plot_timeline(summary: UsageSummary) -> Figure:
    import datetime as dt

    import numpy as np

    ts, who, cost = summary.timeline()
    order = np.argsort(ts, kind="stable")
    ts, who, cost = ts[order], who[order], cost[order]
    unpriced = int(np.isnan(cost).sum())
    cost = np.nan_to_num(cost, nan=0.0)
    start = float(ts[0])
    elapsed = ts - start
    span = float(elapsed[-1])
    unit, scale = ("s", 1.0) if span < 180 else (("min", 60.0) if span < 3 * 3600 else ("h", 3600.0))
    x = elapsed / scale
    providers = summary.providers
    colours = _colours(providers)
    fig = _new_figure()
    ax = fig.add_subplot()
    end = float(x[-1])
    for i, p in enumerate(providers):
        mask = who == i
        if not mask.any():
            continue
        # Start every line at zero and carry it to the end, so the lines read as running totals.
        xs, ys = _thin(x[mask], np.cumsum(cost[mask]))
        ax.step([0.0, *xs.tolist(), end], [0.0, *ys.tolist(), float(ys[-1])], where="post", color=colours[p], label=p)
    xs, total = _thin(x, np.cumsum(cost))
    ax.step(
        [0.0, *xs.tolist()],
        [0.0, *total.tolist()],
        where="post",
        color="black",
        linestyle="--",
        linewidth=1.6,
        label="total",
    )
    started = dt.datetime.fromtimestamp(start, tz=dt.UTC)
    ax.set_xlabel(f"time since first request ({unit}), started {started:%Y-%m-%d %H:%M:%S} UTC")
    ax.set_ylabel("cumulative cost (USD)")
    priced = float(total[-1])
    ax.set_title(f"Cumulative cost over time — total {cost_total(priced, unpriced, priced=priced)}")
    ax.set_ylim(bottom=0)
    if math.isclose(span, 0.0):
        ax.set_xlim(-1, 1)
    ax.legend(frameon=False, loc="upper left")
    _tidy(ax)
    if unpriced:
        _footnote(fig, "attempts with unknown price are left out of the running totals")
    return fig


_PLOTTERS: dict[str, Callable[[UsageSummary], Figure]] = {
    "cost": _plot_cost,
    "latency": _plot_latency,
    "tokens": _plot_tokens,
    "requests": _plot_requests,
    "timeline": _plot_timeline,
}


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, drawn with the Agg canvas (no GUI backend involved)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
