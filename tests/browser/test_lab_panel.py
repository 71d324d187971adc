"""Infrastructure check: a plain ipywidgets Dropdown renders and talks to its kernel in JupyterLab."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_dropdown_round_trip(open_notebook):
    nb = open_notebook(
        "smoke.ipynb",
        [
            "import ipywidgets as w\n"
            "dd = w.Dropdown(options=['a', 'b'], value='a', description='pick')\n"
            "label = w.Label()\n"
            "dd.observe(lambda ch: setattr(label, 'value', f'VALUE={ch.new}'), 'value')\n"
            "label.value = f'VALUE={dd.value}'\n"
            "w.VBox([dd, label])",
            "print('KERNEL SEES', dd.value)",
        ],
    )
    nb.run_cell(0)
    expect(nb.output(0).locator("div.widget-label")).to_have_text("VALUE=a")
    nb.screenshot("rendered")

    nb.output(0).locator(".widget-dropdown select").select_option("b")
    expect(nb.output(0).locator("div.widget-label")).to_have_text("VALUE=b")
    nb.run_cell(1)
    expect(nb.output(1)).to_contain_text("KERNEL SEES b")
    nb.screenshot("changed")

    assert nb.widget_errors() == []
    assert nb.page_errors == []
