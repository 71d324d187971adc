"""``RouterPanel``: the router's controls and live usage, as one ipywidgets box.

Controls write straight to the router (strategy, enabled providers, fallback, retries). The stats
table and plot follow the ledger: ``router.subscribe`` tells the panel that an attempt ended (on
the router's event-loop thread, any cell or thread may have caused it); the panel then redraws
at most once per ``interval_s`` from a timer thread. Redraws are serialised by a lock, so widget
state messages never interleave; ipykernel sends comm messages from any thread.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any, Callable

import ipywidgets as w

from .._types import RoutingStrategy
from .magics import cooling_names

TimerFactory = Callable[[float, Callable[[], None]], Any]


def _timer(delay: float, fn: Callable[[], None]) -> threading.Timer:
    t = threading.Timer(delay, fn)
    t.daemon = True
    return t


def _fmt_cost(value: float) -> str:
    return "unknown" if value != value else f"${value:.6f}"


def _fmt_ms(value: float) -> str:
    return "–" if value is None or value != value else f"{value * 1000:.0f} ms"


def stats_table_html(router: Any) -> str:
    """The live stats table: one row per provider with its state, plus totals."""
    stats = router.get_usage_stats()
    by = stats.by_provider
    enabled, cooling = set(router.enabled), cooling_names(router)
    head = ("provider", "state", "requests", "errors", "tokens in", "tokens out", "cost", "p50", "p95")
    rows = []
    for spec in router.providers:
        name = spec.name
        state = ("enabled" if name in enabled else "disabled") + (" · cooling" if name in cooling else "")
        if name in by.index:
            r = by.loc[name]
            cells = (name, state, f"{int(r['requests'])}", f"{int(r['errors'])}", f"{int(r['input_tokens']):,}",
                     f"{int(r['output_tokens']):,}", _fmt_cost(float(r["cost"])), _fmt_ms(r["latency_p50_s"]),
                     _fmt_ms(r["latency_p95_s"]))
        else:
            cells = (name, state, "0", "0", "0", "0", "$0", "–", "–")
        rows.append(cells)
    style = "padding:2px 8px;text-align:right"
    first = "padding:2px 8px;text-align:left"
    th = "".join(f"<th style='{first if i < 2 else style}'>{h}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td style='{first if i < 2 else style}'>{html.escape(c)}</td>"
                                    for i, c in enumerate(cells)) + "</tr>" for cells in rows)
    total = (f"<tr style='font-weight:bold'><td style='{first}'>total</td><td></td>"
             f"<td style='{style}'>{int(by['requests'].sum()) if len(by) else 0}</td>"
             f"<td style='{style}'>{int(by['errors'].sum()) if len(by) else 0}</td>"
             f"<td colspan=2 style='{style}'>{int(stats.total_tokens):,} tokens</td>"
             f"<td style='{style}'>{_fmt_cost(float(stats.total_cost))}</td><td></td><td></td></tr>")
    return (f"<table class='llmroute-stats' style='border-collapse:collapse'><thead><tr>{th}</tr></thead>"
            f"<tbody>{body}{total}</tbody></table>")


class RouterPanel(w.VBox):
    """Strategy dropdown, a checkbox per provider, fallback toggle, retries slider, live stats and plot."""

    def __init__(self, router: Any, *, interval_s: float = 0.5, plot_kind: str = "requests",
                 show_plot: bool = True, clock: Callable[[], float] = time.monotonic,
                 timer_factory: TimerFactory = _timer) -> None:
        from .._plots import PLOT_KINDS

        self.router = router
        self.interval_s = interval_s
        self._clock = clock
        self._timer_factory = timer_factory
        self._lock = threading.Lock()  # guards the scheduling state below
        self._draw_lock = threading.Lock()  # one redraw at a time
        self._timer: Any = None
        self._last_draw = -float("inf")
        self._closed = False
        self._syncing = False  # set while the panel mirrors router state into the controls

        self.strategy = w.Dropdown(options=[s.value for s in RoutingStrategy], value=router.strategy.value,
                                   description="strategy")
        self.provider_boxes = {spec.name: w.Checkbox(value=spec.name in router.enabled, description=spec.name,
                                                     indent=False, layout=w.Layout(width="auto"))
                               for spec in router.providers}
        self.fallback = w.ToggleButton(value=bool(router.fallback_enabled), icon="random",
                                       tooltip="on failure, move to the next provider")
        self._show_fallback()
        self.retries = w.IntSlider(value=int(router.max_retries), min=0, max=max(10, int(router.max_retries)),
                                   description="retries")
        self.plot_kind = w.Dropdown(options=list(PLOT_KINDS), value=plot_kind, description="plot")
        self.table = w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.status = w.HTML()
        self._show_plot = show_plot
        self._plotted: tuple[int, int, str] | None = None
        self._seen = 0  # attempts reported by the router since the panel opened

        self.strategy.observe(self._on_strategy, names="value")
        for name, box in self.provider_boxes.items():
            box.observe(lambda change, name=name: self._on_provider(name, change), names="value")
        self.fallback.observe(self._on_fallback, names="value")
        self.retries.observe(self._on_retries, names="value")
        self.plot_kind.observe(lambda change: self.refresh(), names="value")

        controls = w.HBox([self.strategy, self.fallback, self.retries])
        providers = w.HBox([w.Label("providers:"), *self.provider_boxes.values()])
        children = [controls, providers, self.table]
        if show_plot:
            children += [self.plot_kind, self.plot]
        children.append(self.status)
        super().__init__(children)
        self.refresh()
        self._unsubscribe = router.subscribe(self._on_record)

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
    def _on_record(self, record: Any) -> None:
        """Called after every attempt, on the router's thread: only schedule a redraw."""
        with self._lock:
            self._seen += 1
            if self._closed or self._timer is not None:
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
                self._sync_controls()
                self.table.value = stats_table_html(self.router)
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
        from .._plots import figure_to_png, plot_usage

        df = self.router.usage_df()
        key = (len(df), self._seen, self.plot_kind.value)
        if key == self._plotted:  # drawing costs ~0.1 s: skip it when nothing new landed
            return
        self.plot.value = figure_to_png(plot_usage(df, self.plot_kind.value), dpi=80)
        self._plotted = key

    def close(self) -> None:
        """Stop following the router and close the widgets."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None and hasattr(timer, "cancel"):
            timer.cancel()
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe()
            self._unsubscribe = None
        for child in [self.strategy, self.fallback, self.retries, self.plot_kind, self.table, self.plot,
                      self.status, *self.provider_boxes.values()]:
            child.close()
        super().close()
