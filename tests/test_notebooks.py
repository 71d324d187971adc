"""Every shipped notebook runs clean in a real kernel on the simulator (no keys, no network)."""

from __future__ import annotations

import json

import nbformat
import pytest

from llmroute_magic._demo import execute_notebook, notebook_dirs

NOTEBOOKS = ["quickstart.ipynb", "ab_comparison.ipynb", "cost_analysis.ipynb"]


def source_notebook(name):
    for d in notebook_dirs():
        if (d / name).is_file():
            return d / name
    pytest.fail(f"{name} not found in {notebook_dirs()}")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_carry_no_outputs(name):
    nb = nbformat.read(source_notebook(name), as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_without_errors(name, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-be-used")  # the run must stay simulated
    nb = nbformat.read(source_notebook(name), as_version=4)
    execute_notebook(nb, cwd=tmp_path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, [(o.ename, o.evalue) for o in errors]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr and "Error" not in stderr
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    text = json.dumps(nb)
    assert "SIMULATED" in text
    assert "sk-test-must-not-be-used" not in text
    if name == "quickstart.ipynb":
        llm_outputs = [o for o in outputs if "llmroute" in o.get("metadata", {})]
        assert llm_outputs, "the %%llm cells should carry llmroute metadata"
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
        chat = [o["metadata"]["llmroute"]["chat"] for o in llm_outputs if "chat" in o["metadata"]["llmroute"]]
        assert [(c["name"], c["turn"], c["sent_turns"]) for c in chat] == [("trip", 1, 0), ("trip", 2, 1)]
        assert any(o["metadata"]["llmroute"]["model"] == "gpt-4o" for o in llm_outputs)  # the per-cell model
        assert "City(name=" in text  # the structured answer, kept as the object
        assert "ToolCall(" in text and "get_weather" in text  # the tool call the model asked for


@pytest.fixture(scope="module")
def panel_notebook(tmp_path_factory):
    """A notebook that asks once and opens the panel, executed in a real kernel on the simulator."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in ("%load_ext llmroute_magic", "%llm strategy round_robin", "%%llm --no-stream\nhello", "%llm panel")
    ]
    return execute_notebook(nb, cwd=tmp_path_factory.mktemp("panel-nb"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_panel_output_carries_a_static_snapshot(panel_notebook):
    (out,) = [o for o in panel_notebook.cells[-1].outputs if o.output_type == "execute_result"]
    assert "application/vnd.jupyter.widget-view+json" in out.data  # live where widgets run
    snapshot = out.data["text/html"]
    assert "table class='llmroute-stats'" in snapshot and "strategy round_robin" in snapshot
    assert "llmroute panel" in out.data["text/plain"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_exported_html_shows_the_panels_settings_and_table(panel_notebook):
    from llmroute_magic._demo import export_html

    page = export_html(panel_notebook)  # what `llmroute demo` writes
    assert "llmroute-panel-snapshot" in page and "strategy round_robin" in page
    table = page[page.index('class="llmroute-stats"') :]
    table = table[: table.index("</table>")]
    assert all(name in table for name in ("sim-openai", "sim-anthropic", "sim-local"))
    assert ">1<" in table.split(">total<")[1]  # the one request made before the panel opened
    assert "unpkg.com" not in page  # nothing to fetch: the page reads the same offline


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_plain_nbconvert_shows_the_snapshot_when_no_widget_state_was_saved(panel_notebook):
    """JupyterLab saves no widget state by default: `jupyter nbconvert --to html` then falls back to text/html."""
    import copy

    from nbconvert import HTMLExporter

    saved = copy.deepcopy(panel_notebook)
    saved.metadata.pop("widgets", None)
    page, _ = HTMLExporter().from_notebook_node(saved)
    assert "llmroute-panel-snapshot" in page and 'class="llmroute-stats"' in page
