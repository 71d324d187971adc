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
