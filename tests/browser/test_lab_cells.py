"""``%%llm`` cells that act on the notebook, in JupyterLab 4 in headless Chromium, on the simulator:
``-f code`` puts the answer's code into a new cell below (never run), and re-running a ``--chat``
cell replaces its own turn (JupyterLab sends each cell's id with its execution)."""

from __future__ import annotations

import os
import re

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # in CI a missing playwright must fail, not skip
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright (Python) not installed: pip install '.[browser]'", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = {
    "load": "%load_ext llmroute_magic",
    "code": "%%llm -f code\nWrite a Python function that adds two numbers.",
    "chat1": "%%llm --chat\nWhat is a queue?",
    "chat2": "%%llm --chat\nAnd a stack?",
    "list": "%llm chat",
}
C = {name: i for i, name in enumerate(CELLS)}


def _editor_text(nb, index: int) -> str:
    return nb.cell(index).locator(".jp-InputArea-editor .cm-content").inner_text()


def test_code_goes_into_a_new_cell_and_a_rerun_chat_cell_replaces_its_turn(open_notebook):
    nb = open_notebook("cells.ipynb", list(CELLS.values()))
    nb.run_cell(C["load"])
    expect(nb.output(C["load"])).to_contain_text(re.compile("answers are simulated", re.I))

    # -f code: the answer's code lands in a new cell right below, not run.
    expect(nb.cells).to_have_count(len(CELLS))
    nb.run_cell(C["code"])
    output = nb.output(C["code"]).last
    expect(output).to_contain_text("the code is in a new cell below (not run)")
    footer = output.locator("small.llmroute-footer")  # the instruction -f code added, on hover
    expect(footer).to_have_attribute("title", re.compile(r"^asked with -f code: Reply with the code only"))
    expect(nb.cells).to_have_count(len(CELLS) + 1)
    shown = output.locator("pre").first.inner_text().strip()
    new = C["code"] + 1
    assert _editor_text(nb, new).strip() == shown and len(shown) > 20
    expect(nb.prompt(new)).to_have_text(re.compile(r"^\[ \]:$"))  # never run
    expect(nb.cell(new).locator(".jp-OutputArea-output")).to_have_count(0)
    assert _editor_text(nb, new + 1).startswith("%%llm --chat")  # the cells below moved down, untouched
    nb.screenshot("code-in-new-cell", show=nb.cell(new))

    # --chat: two turns, then the second cell again replaces its turn instead of adding a third.
    chat1, chat2, listing = (C[k] + 1 for k in ("chat1", "chat2", "list"))
    nb.run_cell(chat1)
    expect(nb.output(chat1).last).to_contain_text("chat default · turn 1")
    nb.run_cell(chat2)
    expect(nb.output(chat2).last).to_contain_text("chat default · turn 2 · 1 earlier turn sent")
    nb.run_cell(chat2)
    expect(nb.output(chat2).last).to_contain_text("chat default · turn 2 (replaced) · 1 earlier turn sent")
    nb.run_cell(listing)
    expect(nb.output(listing).last).to_contain_text(re.compile(r"default\s+2\s"))
    nb.screenshot("chat-rerun", show=nb.cell(listing))

    assert nb.page_errors == []
