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
    proc = subprocess.run(
        [sys.executable, "-m", "llmroute_magic._cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        cwd=tmp_path,
    )
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
    from llmroute_magic.sim import DEFAULT_PROFILES

    assert set(usage["provider"]) <= {p.name for p in DEFAULT_PROFILES}
    assert "total:" in proc.stdout and str(out) in proc.stdout  # prints the stats and where the files are
    assert "sk-test-demo-never-sent" not in (out / "quickstart.html").read_text()
    page = (out / "quickstart.html").read_text()
    assert "<html" in page[:500].lower()
    # the panel cell shows its settings and stats table, not an empty box waiting for a widget CDN
    assert "llmroute-panel-snapshot" in page and 'class="llmroute-stats"' in page
    assert "unpkg.com" not in page
    # the printed summary uses the stats' figures: attempts per provider, p50/p95 in ms, a total line
    assert "p50" in proc.stdout and " ms" in proc.stdout


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


def test_summary_p50_is_the_stats_p50(tmp_path, sim, capsys):
    """`llmroute demo` and `%llm stats` once disagreed (48 vs 52 ms): the summary took the median
    over every attempt, failed ones included; the stats take successful attempts only."""
    from helpers import make_router

    from llmroute_magic import UsageStats
    from llmroute_magic._demo import _print_stats
    from llmroute_magic._format import millis

    sim.reset()
    router = make_router(sim, ["sim-openai", "sim-anthropic"])
    try:
        # three fast failures between two 40-60 ms answers (never three in a row: no cooldown)
        sim.inject("sim-openai", ["server_error", None, "server_error", None, "server_error"])
        for i in range(5):
            router.complete(f"question {i}")
        df = router.usage_df()
    finally:
        router.close()
    assert (df["status"] != "ok").sum() == 3
    csv = tmp_path / "usage.csv"
    df.to_csv(csv, index=False)
    _print_stats(csv)
    printed = capsys.readouterr().out
    row = next(x for x in printed.splitlines() if x.startswith("sim-openai"))
    by = UsageStats.from_frame(df).by_provider
    p50, p95 = by.loc["sim-openai", ["latency_p50_s", "latency_p95_s"]]
    assert row.split()[-4:] == [*millis(p50).split(), *millis(p95).split()], row
    every_attempt = df.loc[df["provider"] == "sim-openai", "latency_s"].median()
    assert millis(every_attempt) not in row  # the old definition would have printed this
    assert "total: 8 attempts, 5 requests" in printed
