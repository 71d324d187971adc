"""``RouterPanel``: the router's controls and live usage, as one ipywidgets box.

Controls write straight to the router (strategy, enabled providers, fallback, retries). The stats
table and plot are drawn from the panel's own running totals (a ``UsageSummary``), fed with only
the rows the ledger gained since the last redraw (``Ledger.rows_since``): a redraw costs the same
with ten rows or a million persisted ones, and shows what ``usage_df()`` would (other kernels'
rows in a shared ledger file included). Every attempt the router reports (on the thread that
ran it, from any cell) schedules a redraw, at most one per ``interval_s``, from a timer thread;
``reset_usage()`` starts the totals again. Redraws are serialised by a lock, so widget state
messages never interleave; ipykernel sends comm messages from any thread.

Where widgets cannot run (an exported HTML page, a terminal, a frontend without ipywidgets), the
panel's MIME bundle carries a static snapshot of the same settings and table beside the widget view.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from .._events import UsageReset
from .._format import cost_total, count, millis
from .._plots import PLOT_KINDS, figure_to_png, plot_summary
from .._stats import UsageSummary
from .._types import RoutingStrategy

TimerFactory = Callable[[float, Callable[[], None]], Any]

HEAD = ("provider", "state", "requests", "errors", "tokens in", "tokens out", "cost", "p50", "p95")


def _timer(delay: float, fn: Callable[[], None]) -> threading.Timer:
    t = threading.Timer(delay, fn)
    t.daemon = True
    return t


# -- the table ------------------------------------------------------------------------------------


def _state(name: str, enabled: set[str], cooling: set[str]) -> str:
    return ("enabled" if name in enabled else "disabled") + (" · cooling" if name in cooling else "")


def stats_rows(router: Any, summary: UsageSummary) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """The table's provider rows (config order, then any other provider seen) and its total row, as text."""
    enabled, cooling = set(router.enabled), set(router.cooling_down())
    names = list(dict.fromkeys([*(p.name for p in router.providers), *summary.providers]))
    rows: list[tuple[str, ...]] = []
    for name in names:
        r = summary.provider(name)
        rows.append(
            (
                name,
                _state(name, enabled, cooling),
                count(r["requests"]),
                count(r["errors"]),
                count(r["input_tokens"]),
                count(r["output_tokens"]),
                cost_total(r["priced_cost"], r["unpriced"], priced=r["priced_cost"]),
                millis(r["latency_p50_s"]),
                millis(r["latency_p95_s"]),
            )
        )
    t = summary.totals()
    total = (
        "total",
        "",
        count(t["attempts"]),
        count(t["errors"]),
        count(t["input_tokens"]),
        count(t["output_tokens"]),
        cost_total(t["cost"], t["unpriced"], priced=t["cost"]),
        "",
        "",
    )
    return rows, total


def stats_table_html(router: Any, summary: UsageSummary) -> str:
    """The stats table: one row per provider with its state, plus totals."""
    rows, total = stats_rows(router, summary)
    right = "padding:2px 8px;text-align:right"
    left = "padding:2px 8px;text-align:left"

    def cells(values: tuple[str, ...], tag: str = "td") -> str:
        return "".join(
            f"<{tag} style='{left if i < 2 else right}'>{html.escape(v)}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(r)}</tr>" for r in rows)
    return (
        f"<table class='llmroute-stats' style='border-collapse:collapse'><thead><tr>{cells(HEAD, 'th')}</tr>"
        f"</thead><tbody>{body}<tr style='font-weight:bold'>{cells(total)}</tr></tbody></table>"
    )


def settings_line(router: Any) -> str:
    enabled = set(router.enabled)
    providers = ", ".join(f"{p.name} ({'on' if p.name in enabled else 'off'})" for p in router.providers)
    return (
        f"strategy {router.strategy.value} · fallback {'on' if router.fallback_enabled else 'off'} · "
        f"max retries {router.max_retries} · providers: {providers}"
    )


class RouterPanel(w.VBox):
    """Strategy dropdown, a checkbox per provider, fallback toggle, retries slider, live stats and plot."""

    def __init__(
        self,
        router: Any,
        *,
        interval_s: float = 0.5,
        plot_kind: str = "requests",
        show_plot: bool = True,
        clock: Callable[[], float] = time.monotonic,
        timer_factory: TimerFactory = _timer,
    ) -> None:
        self.router = router
        self.interval_s = interval_s
        self._clock = clock
        self._timer_factory = timer_factory
        self._lock = threading.Lock()  # guards the scheduling state and the running totals below
        self._draw_lock = threading.Lock()  # one redraw at a time
        self._timer: Any = None
        self._last_draw = -float("inf")
        self._closed = False
        self._syncing = False  # set while the panel mirrors router state into the controls
        self._summary = UsageSummary()
        self._cursor: Any = None  # where the last look at the ledger ended

        self._show_plot = show_plot
        self._plotted: tuple[int, int, str] | None = None
        self._build_controls(router, plot_kind)
        super().__init__(self._layout(show_plot))
        self._unsubscribe = [router.subscribe(self._on_record), router.events.subscribe(UsageReset, self._on_record)]
        self.refresh()

    def _build_controls(self, router: Any, plot_kind: str) -> None:
        """The widgets, each wired to the router (a change in the panel is a change in the router)."""
        self.strategy = w.Dropdown(
            options=[s.value for s in RoutingStrategy], value=router.strategy.value, description="strategy"
        )
        self.provider_boxes = {
            spec.name: w.Checkbox(
                value=spec.name in router.enabled, description=spec.name, indent=False, layout=w.Layout(width="auto")
            )
            for spec in router.providers
        }
        self.fallback = w.ToggleButton(
            value=bool(router.fallback_enabled), icon="random", tooltip="on failure, move to the next provider"
        )
        self._show_fallback()
        self.retries = w.IntSlider(
            value=int(router.max_retries), min=0, max=max(10, int(router.max_retries)), description="retries"
        )
        self.plot_kind = w.Dropdown(options=list(PLOT_KINDS), value=plot_kind, description="plot")
        self.table = w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.status = w.HTML()

        self.strategy.observe(self._on_strategy, names="value")
        for name, box in self.provider_boxes.items():
            box.observe(lambda change, name=name: self._on_provider(name, change), names="value")
        self.fallback.observe(self._on_fallback, names="value")
        self.retries.observe(self._on_retries, names="value")
        self.plot_kind.observe(lambda change: self.refresh(), names="value")

    def _layout(self, show_plot: bool) -> list[Any]:
        controls = w.HBox([self.strategy, self.fallback, self.retries])
        providers = w.HBox([w.Label("providers:"), *self.provider_boxes.values()])
        children = [controls, providers, self.table]
        if show_plot:
            children += [self.plot_kind, self.plot]
        children.append(self.status)
        return children

    # -- controls -> router ---------------------------------------------------------------------
    def _on_strategy(self, change: dict) -> None:
        if not self._syncing:
            self.router.set_strategy(RoutingStrategy.parse(change["new"]))

    def _on_provider(self, name: str, change: dict) -> None:
        if self._syncing:
            return
        (self.router.enable if change["new"] else self.router.disable)(name)
        self.refresh(plot=False)  # the state column changes; the usage (and so the plot) does not

    def _on_fallback(self, change: dict) -> None:
        self._show_fallback()
        if not self._syncing:
            self.router.fallback_enabled = bool(change["new"])

    def _show_fallback(self) -> None:
        # A pressed ToggleButton is only a shade darker in JupyterLab: say the state in words and colour.
        on = bool(self.fallback.value)
        self.fallback.description = "fallback on" if on else "fallback off"
        self.fallback.button_style = "success" if on else ""

    def _on_retries(self, change: dict) -> None:
        if not self._syncing:
            self.router.max_retries = int(change["new"])

    # -- router -> panel ------------------------------------------------------------------------
    def _catch_up(self) -> None:
        """Add the rows the ledger gained since the last look (all of a new view after a reset)."""
        rows, cursor = self.router.ledger.rows_since(self._cursor)
        with self._lock:
            if cursor.restart:
                self._summary = UsageSummary()
            self._summary.add_frame(rows)
            self._cursor = cursor

    @property
    def summary(self) -> UsageSummary:
        """The running totals the table and plot are drawn from."""
        return self._summary

    def stats_frame(self):
        """The table's figures as a DataFrame shaped like ``router.get_usage_stats().by_provider``."""
        return self._summary.stats([p.name for p in self.router.providers]).by_provider

    def _on_record(self, event: Any) -> None:
        """Called after every attempt (and reset), on the router's thread: schedule a redraw."""
        with self._lock:
            if self._closed:
                return
            if self._timer is not None:
                return  # a redraw is already due; it will include this attempt
            delay = max(0.0, self._last_draw + self.interval_s - self._clock())
            self._timer = self._timer_factory(delay, self._scheduled_refresh)
            self._timer.start()

    def _scheduled_refresh(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
        self.refresh()

    def refresh(self, plot: bool = True) -> None:
        """Mirror the router's settings into the controls and redraw the stats table (and plot)."""
        with self._draw_lock:
            with self._lock:
                self._last_draw = self._clock()
            try:
                self._catch_up()
                self._sync_controls()
                self.table.value = stats_table_html(self.router, self._summary)
                if plot and self._show_plot:
                    self._draw_plot()
                self.status.value = ""
            except Exception as e:  # noqa: BLE001 - a redraw failure must not break the router's callback
                self.status.value = f"<small style='color:#b00'>panel refresh failed: {html.escape(str(e))}</small>"

    def _sync_controls(self) -> None:
        self._syncing = True
        try:
            if self.strategy.value != self.router.strategy.value:
                self.strategy.value = self.router.strategy.value
            enabled = set(self.router.enabled)
            for name, box in self.provider_boxes.items():
                if box.value != (name in enabled):
                    box.value = name in enabled
            if self.fallback.value != bool(self.router.fallback_enabled):
                self.fallback.value = bool(self.router.fallback_enabled)
            retries = int(self.router.max_retries)
            if retries > self.retries.max:
                self.retries.max = retries
            if self.retries.value != retries:
                self.retries.value = retries
        finally:
            self._syncing = False

    def _draw_plot(self) -> None:
        summary = self._summary
        key = (id(summary), summary.version, self.plot_kind.value)
        if key == self._plotted:  # drawing costs ~0.1 s: skip it when nothing new landed
            return
        self.plot.value = figure_to_png(plot_summary(summary, self.plot_kind.value), dpi=80)
        self._plotted = key

    # -- where widgets cannot run -------------------------------------------------------------------
    def snapshot_html(self) -> str:
        """Settings and stats table as static HTML: what an export or a non-widget frontend shows."""
        return (
            f"<div class='llmroute-panel-snapshot'><p><b>llmroute panel</b> · "
            f"{html.escape(settings_line(self.router))}</p>"
            f"{stats_table_html(self.router, self._summary)}"
            "<p><small>A snapshot from when the cell ran; the live panel needs a frontend with "
            "ipywidgets (Jupyter Lab, Notebook, VS Code).</small></p></div>"
        )

    def snapshot_text(self) -> str:
        rows, total = stats_rows(self.router, self._summary)
        table = [HEAD, *rows, total]
        widths = [max(len(r[i]) for r in table) for i in range(len(HEAD))]
        lines = [
            "  ".join(c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(r, widths))) for r in table
        ]
        return "llmroute panel · " + settings_line(self.router) + "\n" + "\n".join(x.rstrip() for x in lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs)
        data["text/html"] = self.snapshot_html()
        data["text/plain"] = self.snapshot_text()
        return data

    def close(self) -> None:
        """Stop following the router and close the widgets."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None and hasattr(timer, "cancel"):
            timer.cancel()
        for unsubscribe in getattr(self, "_unsubscribe", ()):
            unsubscribe()
        self._unsubscribe = []
        for child in [
            self.strategy,
            self.fallback,
            self.retries,
            self.plot_kind,
            self.table,
            self.plot,
            self.status,
            *self.provider_boxes.values(),
        ]:
            child.close()
        super().close()
