"""RouterPanel driven from Python: controls change the router, completions refresh the stats."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import simulator_fixture

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, RoutingStrategy
from llmroute_magic._format import money
from llmroute_magic._ipython.widgets import RouterPanel, stats_table_html
from llmroute_magic._types import AttemptRecord
from llmroute_magic.sim import DEFAULT_PROFILES

SECRET = "sk-widget-SECRET-777"


sim = simulator_fixture()


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
    assert set(panel.provider_boxes) == {p.name for p in DEFAULT_PROFILES}
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
    assert money(c.cost) in panel.table.value
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


def record(request_id, provider="sim-openai", *, status="ok", cost=0.001, latency_s=0.05, attempt=1):
    """An attempt record as the router reports it to subscribers."""
    return AttemptRecord(
        request_id,
        attempt,
        time.time(),
        provider,
        "m",
        "priority",
        status,
        None if status == "ok" else "server_error",
        200 if status == "ok" else 500,
        10,
        20,
        cost,
        latency_s,
        None,
        False,
    )


class ManualTimer:
    """A timer the test fires by hand: makes throttling deterministic."""

    created: list[ManualTimer] = []

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
        for i in range(20):  # a burst of attempts ending at once
            panel._on_record(record(f"burst-{i}"))
        assert len(ManualTimer.created) == 1  # one redraw scheduled for the whole burst
        assert ManualTimer.created[0].delay == pytest.approx(0.5)  # the construction draw was just now
        now[0] += 0.5
        ManualTimer.created[0].fire()
        assert draws == [100.5]
        now[0] += 2.0
        panel._on_record(record("later"))
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
            assert SECRET not in stats_table_html(r, p.summary)
            assert SECRET not in repr(p._repr_mimebundle_())
        finally:
            p.close()
    finally:
        r.close()


# -- running totals: each row of the ledger is read once -----------------------------------------------


class CountingRouter(ModelClientRouter):
    """A real router over the simulator that counts whole-ledger reads and the rows the panel pulls."""

    def __init__(self, config, during_read=None):
        super().__init__(config)
        self.reads = 0  # usage_df() calls: a panel refresh must make none
        self.rows_pulled = 0  # rows handed out by ledger.rows_since
        self.during_read = during_read  # called inside a rows_since, to land attempts mid-read
        original = self.ledger.rows_since

        def rows_since(cursor=None):
            frame, new = original(cursor)
            self.rows_pulled += len(frame)
            if self.during_read is not None:
                hook, self.during_read = self.during_read, None
                hook(self)
            return frame, new

        self.ledger.rows_since = rows_since

    def usage_df(self, *args, **kwargs):
        self.reads += 1
        return super().usage_df(*args, **kwargs)


def assert_table_is_the_routers_stats(panel, router):
    import pandas as pd

    pd.testing.assert_frame_equal(
        panel.stats_frame(), router.get_usage_stats().by_provider, check_exact=False, rtol=1e-12, check_index_type=False
    )


def test_refreshes_read_only_the_new_rows(sim):
    sim.reset()
    router = CountingRouter(ProviderRoutingConfig(sim.provider_specs()))
    try:
        router.complete("before the panel opens")
        panel = RouterPanel(router, interval_s=0.05)
        try:
            assert router.rows_pulled == 1
            sim.inject("sim-openai", ["server_error", "rate_limit", None, "unavailable"])
            results = router.map([f"question {i}" for i in range(12)], concurrency=4, progress=False)
            assert all(not isinstance(r, Exception) for r in results)
            served = sum(s["requests"] for s in sim.stats()["providers"].values())  # 1 + 12 + 3 failed attempts
            assert served == 16
            assert wait_for(lambda: f">{served}<" in panel.table.value.split("total")[1])
            panel.refresh()
            panel.plot_kind.value = "latency"  # every kind draws from the running totals too
            panel.plot_kind.value = "timeline"
            assert router.reads == 0, "a refresh read the whole ledger"
            assert router.rows_pulled == served, "a row was read twice (or missed)"
            assert_table_is_the_routers_stats(panel, router)
        finally:
            panel.close()
    finally:
        router.close()


def test_attempts_that_end_while_the_panel_reads_count_once(sim):
    router = CountingRouter(
        ProviderRoutingConfig(sim.provider_specs()), during_read=lambda r: r.complete("during the read")
    )
    try:
        router.complete("before")
        panel = RouterPanel(router, interval_s=0.05)
        try:
            assert wait_for(lambda: int(panel.stats_frame()["requests"].sum()) == 2)
            router.complete("after")
            assert wait_for(lambda: int(panel.stats_frame()["requests"].sum()) == 3)
            assert router.rows_pulled == 3 and router.reads == 0
            assert_table_is_the_routers_stats(panel, router)
        finally:
            panel.close()
    finally:
        router.close()


def test_unknown_cost_in_the_panel_is_unknown_with_the_count(sim):
    import warnings

    from llmroute_magic import ProviderSpec

    mystery = ProviderSpec("mystery", "mystery-model-9000", base_url=sim.base_url("sim-local"), api_key="sim")
    router = ModelClientRouter(ProviderRoutingConfig([sim.provider_specs(["sim-openai"])[0], mystery]))
    try:
        panel = RouterPanel(router, interval_s=0.05)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                router.complete("hi", provider="sim-openai")
                router.complete("hi", provider="mystery")
            assert wait_for(lambda: ">2<" in panel.table.value.split("total")[1])
            total = panel.table.value.split("total")[1]
            assert "unknown (1 unpriced attempt;" in total
            row = next(r for r in panel.table.value.split("<tr>") if ">mystery<" in r)
            assert "unknown (1 unpriced attempt" in row and "$0<" not in row
            assert_table_is_the_routers_stats(panel, router)
        finally:
            panel.close()
    finally:
        router.close()


# -- where widgets cannot run ---------------------------------------------------------------------


def test_mime_bundle_carries_a_static_snapshot_beside_the_widget_view(panel, router):
    router.set_strategy("round_robin")
    router.disable("sim-local")
    c = router.complete("hi")
    assert wait_for(lambda: ">1<" in panel.table.value.split("total")[1])
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    snapshot = bundle["text/html"]
    assert "table class='llmroute-stats'" in snapshot
    assert "strategy round_robin" in snapshot and "sim-local (off)" in snapshot and "fallback on" in snapshot
    assert money(c.cost) in snapshot
    text = bundle["text/plain"]
    assert "strategy round_robin" in text and c.provider in text and "total" in text
