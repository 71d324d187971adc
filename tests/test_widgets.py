"""RouterPanel driven from Python: controls change the router, completions refresh the stats."""

from __future__ import annotations

import threading
import time

import pytest

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, RoutingStrategy
from llmroute_magic._ipython.widgets import RouterPanel, stats_table_html
from llmroute_magic.sim import Simulator

SECRET = "sk-widget-SECRET-777"


@pytest.fixture(scope="module")
def sim():
    with Simulator() as s:
        yield s


@pytest.fixture
def router(sim):
    r = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs()))
    yield r
    r.close()


@pytest.fixture
def panel(router):
    p = RouterPanel(router, interval_s=0.1)
    yield p
    p.close()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_panel_shows_the_routers_settings(panel, router):
    assert panel.strategy.value == router.strategy.value
    assert set(panel.provider_boxes) == {"sim-openai", "sim-anthropic", "sim-local"}
    assert all(box.value for box in panel.provider_boxes.values())
    assert panel.fallback.value is True and panel.retries.value == router.max_retries
    assert "sim-openai" in panel.table.value and "total" in panel.table.value


def test_dropdown_changes_the_strategy(panel, router):
    panel.strategy.value = "least_latency"
    assert router.strategy is RoutingStrategy.LEAST_LATENCY


def test_unchecking_a_provider_disables_it_and_routing_avoids_it(panel, router):
    panel.provider_boxes["sim-openai"].value = False
    assert "sim-openai" not in router.enabled
    assert "disabled" in panel.table.value
    for _ in range(3):
        assert router.complete("hi").provider != "sim-openai"
    panel.provider_boxes["sim-openai"].value = True
    assert "sim-openai" in router.enabled


def test_fallback_toggle_and_retries_slider_write_to_the_router(panel, router):
    assert panel.fallback.description == "fallback on" and panel.fallback.button_style == "success"
    panel.fallback.value = False
    assert router.fallback_enabled is False
    assert panel.fallback.description == "fallback off" and panel.fallback.button_style == ""
    panel.retries.value = 5
    assert router.max_retries == 5


def test_a_completion_updates_the_stats_table_and_plot(panel, router):
    before_table, before_plot = panel.table.value, panel.plot.value
    c = router.complete("Explain backpressure")
    assert wait_for(lambda: panel.table.value != before_table)
    assert f"${c.cost:.6f}" in panel.table.value
    assert wait_for(lambda: panel.plot.value != before_plot)
    assert bytes(panel.plot.value).startswith(b"\x89PNG")


def test_completions_from_other_threads_refresh_the_panel(panel, router):
    threads = [threading.Thread(target=router.complete, args=(f"prompt {i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wait_for(lambda: ">6<" in panel.table.value.split("total")[1])


def test_changes_made_elsewhere_show_up_in_the_controls(panel, router):
    router.set_strategy("round_robin")
    router.disable("sim-local")
    router.complete("hi")  # any completion triggers a refresh
    assert wait_for(lambda: panel.strategy.value == "round_robin" and not panel.provider_boxes["sim-local"].value)
    assert router.strategy is RoutingStrategy.ROUND_ROBIN  # mirroring did not write back a stale value


class ManualTimer:
    """A timer the test fires by hand: makes throttling deterministic."""

    created: list["ManualTimer"] = []

    def __init__(self, delay, fn):
        self.delay, self.fn, self.cancelled = delay, fn, False
        ManualTimer.created.append(self)

    def start(self):
        pass

    def cancel(self):
        self.cancelled = True

    def fire(self):
        self.fn()


def test_refreshes_are_throttled_to_one_per_interval(router):
    now = [100.0]
    ManualTimer.created = []
    panel = RouterPanel(router, interval_s=0.5, clock=lambda: now[0], timer_factory=ManualTimer, show_plot=False)
    try:
        draws = []
        original = panel.refresh
        panel.refresh = lambda: (draws.append(now[0]), original())
        for _ in range(20):  # a burst of attempts ending at once
            panel._on_record(None)
        assert len(ManualTimer.created) == 1  # one redraw scheduled for the whole burst
        assert ManualTimer.created[0].delay == pytest.approx(0.5)  # the construction draw was just now
        now[0] += 0.5
        ManualTimer.created[0].fire()
        assert draws == [100.5]
        now[0] += 2.0
        panel._on_record(None)
        assert ManualTimer.created[-1].delay == 0.0  # idle long enough: redraw at once
    finally:
        panel.close()


def test_close_unsubscribes(router):
    panel = RouterPanel(router, interval_s=0.05, show_plot=False)
    panel.close()
    before = panel.table.value
    router.complete("hi")
    time.sleep(0.2)
    assert panel.table.value == before


def test_router_panel_method_returns_a_panel(router):
    p = router.panel()
    try:
        assert isinstance(p, RouterPanel)
    finally:
        p.close()


def test_widget_state_never_holds_an_api_key(sim):
    spec = sim.provider_specs(["sim-openai"])[0].with_api_key(SECRET)
    r = ModelClientRouter(ProviderRoutingConfig([spec]))
    try:
        r.complete("hi")
        p = RouterPanel(r, show_plot=False)
        try:
            states = [w.get_state() for w in p.children] + [p.table.get_state(), p.strategy.get_state()]
            states += [b.get_state() for b in p.provider_boxes.values()]
            assert SECRET not in repr(states)
            assert SECRET not in stats_table_html(r)
        finally:
            p.close()
    finally:
        r.close()
