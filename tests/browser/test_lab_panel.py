"""The notebook layer the way a user meets it: JupyterLab 4 in headless Chromium.

One notebook, one kernel, driven step by step on the built-in simulator: a plain ipywidgets
round trip first (so a broken browser rig is not mistaken for a broken panel), then
`%load_ext llmroute_magic`, `%llm panel`, the strategy dropdown, `%%llm` cells, a provider
checkbox, the live stats table and a batch. Screenshots of each step land in the artifacts
directory (see conftest.py).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from llmroute_magic.sim import DEFAULT_PROFILES

try:
    from playwright.sync_api import expect
except ImportError:  # in CI a missing playwright must fail, not skip
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright (Python) not installed: pip install '.[browser]'", allow_module_level=True)

# Every wait inside is bounded; the generous timeout only covers a 2-core machine under load
# (measured: ~25 s idle, up to 85 s at load average 9).
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Every provider the default simulator serves, so a new one cannot desynchronise the test.
PROVIDERS = tuple(p.name for p in DEFAULT_PROFILES)
BATCH = 12  # prompts in the batch step: ~3 s at concurrency 2 on the slowest simulated provider

# "sim-local · llama-3.1-8b · 568 ms, ttft 269 ms · 14+46 tokens · $0.000000": provider and
# model first, then latency, tokens and cost in that order.
FOOTER = re.compile(
    r"(?P<provider>sim-[\w-]+) · (?P<model>[^·\n]+?) · (?P<ms>\d[\d,]*) ms[^·\n]* · "
    r"(?P<tokens>[^·\n]*?)\s*tokens · \$(?P<cost>\d[\d.]*)"
)

CELLS = {
    "plain": "import ipywidgets as w\n"
             "dd = w.Dropdown(options=['a', 'b'], value='a', description='pick')\n"
             "label = w.Label()\n"
             "dd.observe(lambda ch: setattr(label, 'value', f'VALUE={ch.new}'), 'value')\n"
             "label.value = f'VALUE={dd.value}'\n"
             "w.VBox([dd, label])",
    "plain_check": "print('KERNEL SEES', dd.value)",
    "load": "%load_ext llmroute_magic",
    "panel": "%llm panel",
    "strategy": "print('STRATEGY=' + llm.strategy.value)",
    "ask1": "%%llm\nIn one sentence, why do routers fall back?",
    "state": "print('ENABLED=' + ','.join(llm.enabled))\n"
             "print('STREAMED=' + str(bool(llm.usage_df()['streamed'].iloc[-1])))",
    "ask2": "%%llm\nIn one sentence, what is a token?",
    "batch": f"results = llm.map([f'Batch question {{i}}?' for i in range({BATCH})], concurrency=2)\n"
             "print('BATCH', sum(not isinstance(r, Exception) for r in results), 'ok of', len(results))",
}  # fmt: skip
C = {name: i for i, name in enumerate(CELLS)}

# Records the text of a cell's output area at every DOM change, to see an answer grow.
WATCH_OUTPUT_JS = """cell => {
    cell.__samples = [];
    const area = () => (cell.querySelector('.jp-OutputArea') || {innerText: ''}).innerText;
    new MutationObserver(() => cell.__samples.push(area()))
        .observe(cell, {subtree: true, childList: true, characterData: true});
}"""

# The stats table's 'requests' column per row (providers and 'total'), read from the page.
REQUESTS_JS = """t => {
    const head = [...t.querySelectorAll('thead th')].map(th => th.textContent.trim());
    const col = head.indexOf('requests');
    const out = {};
    for (const tr of t.querySelectorAll('tbody tr')) {
        const cells = [...tr.querySelectorAll('td')].map(td => td.textContent.trim());
        out[cells[0]] = parseInt(cells[col], 10);
    }
    return out;
}"""


def _norm(text: str) -> str:
    """'Lowest cost', 'LOWEST_COST' and 'lowest_cost' all become 'lowestcost'."""
    return re.sub(r"[^a-z]", "", text.lower())


def _footer(nb, cell: int) -> tuple[re.Match, str]:
    """The cell's footer, parsed, and the answer text above it."""
    expect(nb.output(cell).last).to_contain_text(re.compile(r"\bms\b.*tokens.*\$", re.S))
    text = nb.cell(cell).locator(".jp-OutputArea").inner_text()
    match = FOOTER.search(text)
    assert match, f"no 'provider · model · N ms · tokens · $cost' footer in:\n{text}"
    answer = text[: match.start()].strip()
    assert len(answer) > 10, f"no answer above the footer:\n{text}"
    assert int(match["ms"].replace(",", "")) > 0
    return match, answer


def _requests(panel) -> dict[str, int]:
    return panel.locator("table.llmroute-stats").evaluate(REQUESTS_JS)


def _wait_requests(panel, expected: dict[str, int], timeout_s: float = 15.0) -> dict[str, int]:
    """The table redraws on a throttle after each attempt: poll until its rows named in
    `expected` show those counts; return the whole table for the caller to assert on."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = _requests(panel)
        if all(seen.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def _checkbox(panel, provider: str):
    return panel.locator(".widget-checkbox").filter(has_text=provider).locator("input[type=checkbox]")


def test_panel_drives_router(open_notebook):
    nb = open_notebook("panel.ipynb", list(CELLS.values()))

    # 0. The rig itself: a plain Dropdown renders and its change reaches the kernel.
    nb.run_cell(C["plain"])
    plain = nb.output(C["plain"])
    expect(plain.locator("div.widget-label")).to_have_text("VALUE=a")
    plain.locator(".widget-dropdown select").select_option("b")
    expect(plain.locator("div.widget-label")).to_have_text("VALUE=b")
    nb.run_cell(C["plain_check"])
    expect(nb.output(C["plain_check"])).to_contain_text("KERNEL SEES b")
    nb.screenshot("plain-widget")

    # 1. The extension loads on the simulator (no keys in the server's environment).
    nb.run_cell(C["load"])
    expect(nb.output(C["load"])).to_contain_text(re.compile("answers are simulated", re.I))
    nb.screenshot("load-ext", show=nb.cell(C["load"]))

    # 2. The panel renders: strategy dropdown, one ticked checkbox per provider, a zeroed table.
    nb.run_cell(C["panel"])
    panel = nb.output(C["panel"])
    # Two dropdowns (strategy, plot kind): pick by the description users read.
    select = panel.locator(".widget-dropdown").filter(has_text="strategy").locator("select")
    expect(select).to_have_count(1)
    for name in PROVIDERS:
        expect(_checkbox(panel, name)).to_be_checked()
    assert _requests(panel) == {**dict.fromkeys(PROVIDERS, 0), "total": 0}
    assert nb.widget_errors() == []
    nb.screenshot("panel", show=panel.locator("table.llmroute-stats"))

    # 3. Changing the strategy in the dropdown changes the kernel's router.
    options = select.locator("option").all_inner_texts()
    current = select.evaluate("s => s.options[s.selectedIndex].text")
    target = "priority" if _norm(current) == "lowestcost" else "lowestcost"
    wanted = next(o for o in options if _norm(o) == target)
    select.select_option(label=wanted)
    nb.run_cell(C["strategy"])
    expect(nb.output(C["strategy"])).to_contain_text("STRATEGY=")
    printed = nb.output(C["strategy"]).inner_text().split("STRATEGY=", 1)[1].strip()
    assert _norm(printed) == _norm(wanted)
    nb.screenshot("strategy-changed", show=nb.cell(C["strategy"]))

    # 4. A %%llm cell streams its answer (seen growing in the page), then ends with the footer.
    nb.cell(C["ask1"]).evaluate(WATCH_OUTPUT_JS)
    nb.run_cell(C["ask1"])
    first, answer = _footer(nb, C["ask1"])
    served = first["provider"]
    assert served in PROVIDERS
    states = [t.strip() for t in nb.cell(C["ask1"]).evaluate("c => c.__samples") if t.strip()]
    growing = [t for t in states if not FOOTER.search(t) and len(t) < len(answer)]
    assert growing, f"the answer appeared in one piece, not streamed; output states seen: {states}"
    nb.run_cell(C["state"])
    expect(nb.output(C["state"])).to_contain_text("STREAMED=True")
    expected = {**dict.fromkeys(PROVIDERS, 0), served: 1, "total": 1}
    assert _wait_requests(panel, expected) == expected
    nb.screenshot("first-answer", show=nb.cell(C["state"]))

    # 5. Unticking the provider that served sends the next answer elsewhere.
    _checkbox(panel, served).uncheck()
    nb.run_cell(C["state"])
    expect(nb.output(C["state"])).to_contain_text("ENABLED=")
    assert served not in nb.output(C["state"]).inner_text()
    nb.run_cell(C["ask2"])
    second, _ = _footer(nb, C["ask2"])
    assert second["provider"] != served
    nb.screenshot("second-answer", show=nb.cell(C["ask2"]))

    # 6. The stats table followed both requests and shows the unticked provider disabled.
    expect(panel.locator("table.llmroute-stats tr").filter(has_text=served)).to_contain_text("disabled")
    expected = {**dict.fromkeys(PROVIDERS, 0), served: 1, second["provider"]: 1, "total": 2}
    assert _wait_requests(panel, expected) == expected
    nb.screenshot("stats", show=panel.locator("table.llmroute-stats"))

    # 7. While a batch keeps the kernel busy, the table keeps updating and the progress bar renders.
    _checkbox(panel, served).check()
    nb.run_cell(C["batch"], wait=False)
    mid_batch = None
    deadline = time.monotonic() + 30
    while mid_batch is None and time.monotonic() < deadline:
        total = _requests(panel)["total"]
        if 2 < total < 2 + BATCH and nb.prompt(C["batch"]).inner_text().strip() == "[*]:":
            mid_batch = total
        time.sleep(0.05)
    nb.screenshot("mid-batch", show=panel.locator("table.llmroute-stats"))
    assert mid_batch is not None, "the stats table did not move while the batch ran"
    nb.wait_cell_done(C["batch"])
    expect(nb.output(C["batch"]).last).to_contain_text(f"BATCH {BATCH} ok of {BATCH}")
    assert _wait_requests(panel, {"total": 2 + BATCH})["total"] == 2 + BATCH
    nb.screenshot("after-batch", show=nb.cell(C["batch"]))
    time.sleep(1)  # only for the picture: the plot redraws just after the table
    nb.screenshot("panel-at-end", show=panel.locator("table.llmroute-stats"))

    assert nb.widget_errors() == []
    assert nb.page_errors == []
    # ipywidgets reports model and view failures on the console (none were ever seen here).
    assert [e for e in nb.console_errors if "widget" in e.lower()] == []
