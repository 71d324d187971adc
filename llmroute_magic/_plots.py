"""Usage plots: one matplotlib Figure per question a user asks of the ledger.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so no GUI backend is
ever selected: this works in a headless kernel, a CI job and a terminal alike.
Every function takes the ledger DataFrame (``router.usage_df()``) and returns a new Figure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from ._errors import ConfigError

if TYPE_CHECKING:  # pandas and matplotlib are imported only when a plot is asked for
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


def plot_usage(df: "pd.DataFrame", kind: str = "cost") -> "Figure":
    """Draw ``kind`` (cost, latency, tokens, requests, timeline) from a usage ledger DataFrame."""
    key = str(kind).strip().lower()
    if key not in _PLOTTERS:
        allowed = ", ".join(PLOT_KINDS)
        raise ConfigError(f"plot kind: unknown kind {kind!r}; allowed: {allowed}", field="kind")
    if df is None or len(df) == 0:
        return _empty_figure(PLOT_KINDS[key])
    return _PLOTTERS[key](df)


# -- helpers ---------------------------------------------------------------------------------

def _new_figure() -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=_FIGSIZE, dpi=100, layout="constrained")


def _empty_figure(title: str) -> "Figure":
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.set_title(title.capitalize())
    ax.text(0.5, 0.5, "no usage yet\nrun a prompt, then plot again", ha="center", va="center",
            fontsize=13, color="#555555", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _providers(df: "pd.DataFrame") -> list[str]:
    # Order of first appearance follows config order for a live router and keeps colours stable.
    return list(dict.fromkeys(str(p) for p in df["provider"]))


def _colours(providers: list[str]) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {p: cmap(i % 10) for i, p in enumerate(providers)}


def _money(value: float) -> str:
    if value != value:  # NaN: the price of this model is unknown
        return "unknown"
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.4f}"


def _tidy(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _footnote(fig: "Figure", text: str) -> None:
    fig.text(0.99, 0.005, text, ha="right", va="bottom", fontsize=8, color="#666666")


# -- the plots -------------------------------------------------------------------------------

def _plot_cost(df: "pd.DataFrame") -> "Figure":
    providers = _providers(df)
    colours = _colours(providers)
    fig = _new_figure()
    ax = fig.add_subplot()
    totals, unknown = [], []
    for p in providers:
        costs = df.loc[df["provider"] == p, "cost"].astype(float)
        known = costs.dropna()
        totals.append(float(known.sum()) if len(known) else 0.0)
        unknown.append(int(costs.isna().sum()))
    bars = ax.bar(providers, totals, color=[colours[p] for p in providers])
    labels = [_money(t) + (f"\n(+{u} unpriced)" if u else "") for t, u in zip(totals, unknown)]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_ylim(0, max(max(totals) * 1.25, 1e-9))
    ax.set_ylabel("cost (USD)")
    ax.set_xlabel("provider")
    ax.set_title(f"Cost by provider — total {_money(sum(totals))}")
    _tidy(ax)
    if any(unknown):
        _footnote(fig, "unpriced: attempts whose model price is unknown (not counted as $0)")
    return fig


def _plot_latency(df: "pd.DataFrame") -> "Figure":
    import numpy as np

    ok = df[df["status"] == "ok"]
    fig = _new_figure()
    ax = fig.add_subplot()
    if ok.empty:
        ax.set_title("Latency by provider")
        ax.text(0.5, 0.5, "no successful requests yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    providers = _providers(ok)
    colours = _colours(_providers(df))
    samples = [ok.loc[ok["provider"] == p, "latency_s"].astype(float).dropna().to_numpy() * 1000
               for p in providers]
    positions = list(range(1, len(providers) + 1))
    box = ax.boxplot(samples, positions=positions, widths=0.5, showfliers=False, patch_artist=True,
                     medianprops={"color": "black"})
    for patch, p in zip(box["boxes"], providers):
        patch.set_facecolor(colours[p])
        patch.set_alpha(0.35)
    rng = np.random.default_rng(0)  # fixed jitter: the same ledger always draws the same picture
    for pos, p, values in zip(positions, providers, samples):
        xs = pos + rng.uniform(-0.12, 0.12, size=len(values))
        ax.scatter(xs, values, s=14, color=colours[p], alpha=0.8, zorder=3)
        if len(values):
            p50, p95 = np.percentile(values, [50, 95])
            ax.annotate(f"p50 {p50:.0f} ms\np95 {p95:.0f} ms", (pos, float(values.max())),
                        xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(positions, [f"{p}\n(n={len(v)})" for p, v in zip(providers, samples)])
    top = max((float(v.max()) for v in samples if len(v)), default=1.0)
    ax.set_ylim(0, top * 1.3 + 1)
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency by provider (successful requests)")
    _tidy(ax)
    return fig


def _plot_tokens(df: "pd.DataFrame") -> "Figure":
    import numpy as np

    providers = _providers(df)
    grouped = df.groupby("provider", sort=False)[["input_tokens", "output_tokens"]].sum()
    inputs = [int(grouped.loc[p, "input_tokens"]) for p in providers]
    outputs = [int(grouped.loc[p, "output_tokens"]) for p in providers]
    x = np.arange(len(providers))
    width = 0.38
    fig = _new_figure()
    ax = fig.add_subplot()
    b1 = ax.bar(x - width / 2, inputs, width, label="input (prompt)", color="#4878a8")
    b2 = ax.bar(x + width / 2, outputs, width, label="output (answer)", color="#e0893a")
    ax.bar_label(b1, labels=[f"{v:,}" for v in inputs], padding=2, fontsize=8)
    ax.bar_label(b2, labels=[f"{v:,}" for v in outputs], padding=2, fontsize=8)
    ax.set_xticks(x, providers)
    ax.set_ylim(0, max(inputs + outputs + [1]) * 1.2)
    ax.set_ylabel("tokens")
    ax.set_xlabel("provider")
    ax.set_title(f"Tokens by provider — {sum(inputs):,} in, {sum(outputs):,} out")
    ax.legend(frameon=False)
    _tidy(ax)
    return fig


def _plot_requests(df: "pd.DataFrame") -> "Figure":
    providers = _providers(df)
    total = len(df)
    fig = _new_figure()
    ax = fig.add_subplot()
    left = [0] * len(providers)
    statuses = [s for s in ("ok", "error", "cancelled") if (df["status"] == s).any()]
    statuses += sorted(set(map(str, df["status"])) - set(statuses))
    for status in statuses:
        counts = [int(((df["provider"] == p) & (df["status"] == status)).sum()) for p in providers]
        ax.barh(providers, counts, left=left, label=status,
                color=_STATUS_COLOURS.get(status, "#7f7f7f"), height=0.6)
        left = [a + b for a, b in zip(left, counts)]
    for i, n in enumerate(left):
        ax.text(n, i, f"  {n} ({100 * n / total:.0f}%)", va="center", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0, max(left) * 1.3 + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()  # first provider on top, like a table
    ax.set_xlabel("attempts")
    n_requests = df["request_id"].nunique() if "request_id" in df else total
    ax.set_title(f"Request share by provider — {total} attempts for {n_requests} requests")
    ax.legend(frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _plot_timeline(df: "pd.DataFrame") -> "Figure":
    import pandas as pd

    data = df.copy()
    data["timestamp"] = pd.to_datetime(data["timestamp"], utc=True)
    data = data.sort_values("timestamp", kind="stable")
    data["cost"] = data["cost"].astype(float).fillna(0.0)
    start = data["timestamp"].iloc[0]
    elapsed = (data["timestamp"] - start).dt.total_seconds()
    span = float(elapsed.iloc[-1]) if len(elapsed) else 0.0
    unit, scale = ("s", 1.0) if span < 180 else (("min", 60.0) if span < 3 * 3600 else ("h", 3600.0))
    x = elapsed / scale
    providers = _providers(df)
    colours = _colours(providers)
    fig = _new_figure()
    ax = fig.add_subplot()
    end = float(x.iloc[-1])
    for p in providers:
        mask = data["provider"] == p
        # Start every line at zero and carry it to the end, so the lines read as running totals.
        xs = [0.0, *x[mask].tolist(), end]
        ys = data.loc[mask, "cost"].cumsum().tolist()
        ax.step(xs, [0.0, *ys, ys[-1]], where="post", color=colours[p], label=p)
    total = data["cost"].cumsum()
    ax.step([0.0, *x.tolist()], [0.0, *total.tolist()], where="post", color="black", linestyle="--",
            linewidth=1.6, label="total")
    ax.set_xlabel(f"time since first request ({unit}), started {start:%Y-%m-%d %H:%M:%S} UTC")
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_title(f"Cumulative cost over time — total {_money(float(total.iloc[-1]))}")
    ax.set_ylim(bottom=0)
    if math.isclose(span, 0.0):
        ax.set_xlim(-1, 1)
    ax.legend(frameon=False, loc="upper left")
    _tidy(ax)
    if df["cost"].astype(float).isna().any():
        _footnote(fig, "attempts with unknown price are left out of the totals")
    return fig


_PLOTTERS: dict[str, Callable[["pd.DataFrame"], "Figure"]] = {
    "cost": _plot_cost,
    "latency": _plot_latency,
    "tokens": _plot_tokens,
    "requests": _plot_requests,
    "timeline": _plot_timeline,
}


def figure_to_png(fig: "Figure", dpi: int = 100) -> bytes:
    """PNG bytes of a figure, drawn with the Agg canvas (no GUI backend involved)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
