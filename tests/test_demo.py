"""``llmroute demo`` end to end: a newcomer's first command, with no keys."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

PLOTS = ("cost", "latency", "tokens", "requests", "timeline")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_writes_the_executed_notebook_html_usage_and_plots(tmp_path):
    out = tmp_path / "demo-out"
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-demo-never-sent"}
    proc = subprocess.run([sys.executable, "-m", "llmroute_magic._cli", "demo", "--out", str(out)],
                          capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("quickstart.ipynb", "quickstart.html", "usage.csv"):
        assert (out / name).stat().st_size > 0, name
    for kind in PLOTS:
        png = (out / f"{kind}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, kind
    usage = pd.read_csv(out / "usage.csv")
    assert len(usage) > 0
    # every request ends in an answer; the only failed attempt is the 429 the failover cell injects
    assert (usage.groupby("request_id")["status"].last() == "ok").all()
    failed = usage[usage["status"] != "ok"]
    assert list(failed["error_type"]) == ["rate_limit"] and list(failed["http_status"]) == [429]
    assert set(usage["provider"]) <= {"sim-openai", "sim-anthropic", "sim-local"}
    assert "total:" in proc.stdout and str(out) in proc.stdout  # prints the stats and where the files are
    assert "sk-test-demo-never-sent" not in (out / "quickstart.html").read_text()
    page = (out / "quickstart.html").read_text()
    assert "<html" in page[:500].lower()
    # the panel cell shows its settings and stats table, not an empty box waiting for a widget CDN
    assert "llmroute-panel-snapshot" in page and 'class="llmroute-stats"' in page
    assert "unpkg.com" not in page


def test_demo_defaults_to_llmroute_demo_in_the_working_directory():
    import argparse

    from llmroute_magic import _demo as demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert parser.parse_args([]).out == "llmroute-demo"


def test_simulated_env_drops_keys_and_config_and_forces_the_simulator():
    from llmroute_magic._demo import simulated_env

    env = simulated_env({"OPENAI_API_KEY": "k", "GROQ_API_KEY": "k", "LLMROUTE_CONFIG": "x.toml", "PATH": "/bin"})
    assert env["LLMROUTE_SIMULATE"] == "1" and env["PATH"] == "/bin"
    assert not [k for k in env if k.endswith("_API_KEY")] and "LLMROUTE_CONFIG" not in env
