"""The benchmark entry point runs and writes its JSON (figures are printed, never asserted here:
benchmarks are not timed tests). CI also runs the whole ``python -m benchmarks --quick``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_quick_run_prints_verdicts_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--only", "import", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Summary" in proc.stdout
    assert "PASS" in proc.stdout or "MISS" in proc.stdout
    data = json.loads(out.read_text())
    assert {"quick", "elapsed_s", "parts", "targets", "passed", "missed", "errors"} <= set(data)
    assert data["quick"] is True and data["errors"] == {}
    part = data["parts"]["import"]
    assert {"title", "rows", "targets", "data"} <= set(part)
    assert all({"name", "value", "op", "limit", "passed"} <= set(t) for t in data["targets"])
    assert data["targets"], "the import part checks at least one target"


def test_unknown_part_is_a_usage_error(tmp_path):
    proc = _run("--only", "nonsense", "--json", str(tmp_path / "x.json"))
    assert proc.returncode == 2
    assert "unknown part" in proc.stderr
    assert not (tmp_path / "x.json").exists()
