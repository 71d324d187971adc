"""``%%llm`` and ``%llm`` through a real IPython shell, against the simulator on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from ipython_fixtures import magics, router, run, shell, sim, usage_error  # noqa: F401 - fixtures and helpers

from llmroute_magic import Completion, ModelClientRouter, ProviderRoutingConfig
from llmroute_magic.sim import DEFAULT_PROFILES

SECRET = "sk-test-SECRET-do-not-print-4242"
DEFAULT_NAMES = [p.name for p in DEFAULT_PROFILES]  # one provider per wire format, and a local one


class SpyRouter(ModelClientRouter):
    """A real router over the simulator that also records what the magics ask of it."""

    def __init__(self, config):
        super().__init__(config)
        self.calls: list[tuple[str, object, dict]] = []

    def stream(self, prompt, **kw):
        self.calls.append(("stream", prompt, kw))
        return super().stream(prompt, **kw)

    def complete(self, prompt, **kw):
        self.calls.append(("complete", prompt, kw))
        return super().complete(prompt, **kw)

    def compare(self, prompt, **kw):
        self.calls.append(("compare", prompt, kw))
        return super().compare(prompt, **kw)


@pytest.fixture
def spy(shell, sim, magics):
    s = SpyRouter(ProviderRoutingConfig(sim.provider_specs()))
    shell.user_ns["spy"] = s
    with capture_output():
        shell.run_line_magic("llm", "use spy")
    yield s
    shell._llmroute_magics.router_var = "llm"
    shell.user_ns.pop("spy", None)
    s.close()


# -- loading -----------------------------------------------------------------------------------

LOAD_SCRIPT = r"""
import sys, json
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
ip = InteractiveShell.instance()
with capture_output() as out:
    ip.run_line_magic("load_ext", "llmroute_magic")
    heavy = [m for m in ("pandas", "matplotlib", "ipywidgets") if m in sys.modules]
    r = ip.user_ns["llm"]
    names = [p.name for p in r.providers]
    ip.run_line_magic("llm", "status")
    ip.run_line_magic("llm", "providers")
    ip.run_line_magic("unload_ext", "llmroute_magic")
print(json.dumps({"heavy": heavy, "names": names, "out": out.stdout + out.stderr,
                  "unloaded": "llm" not in ip.user_ns}))
"""


def load_in_subprocess(tmp_path, **env_extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("LLMROUTE_CONFIG", "LLMROUTE_SIMULATE")
    }
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT], capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_load_ext_binds_a_simulated_router_without_importing_heavy_libraries(tmp_path):
    info = load_in_subprocess(tmp_path)
    assert info["heavy"] == []
    assert info["names"] == DEFAULT_NAMES
    assert "SIMULATED" in info["out"] and "OPENAI_API_KEY" in info["out"]
    assert info["unloaded"]


def test_keys_in_the_environment_pick_real_providers_and_are_never_printed(tmp_path):
    info = load_in_subprocess(tmp_path, OPENAI_API_KEY=SECRET, ANTHROPIC_API_KEY=SECRET + "x")
    assert info["names"] == ["openai", "anthropic"]
    assert SECRET not in info["out"]
    assert "SIMULATED" not in info["out"]


def test_a_key_set_for_google_s_own_sdk_picks_gemini(tmp_path):
    info = load_in_subprocess(tmp_path, GOOGLE_API_KEY=SECRET)
    assert info["names"] == ["gemini"]
    assert SECRET not in info["out"] and "SIMULATED" not in info["out"]


def test_simulate_flag_wins_over_keys_so_demos_never_reach_the_network(tmp_path):
    info = load_in_subprocess(tmp_path, OPENAI_API_KEY=SECRET, LLMROUTE_SIMULATE="1")
    assert info["names"] == DEFAULT_NAMES


def test_llmroute_toml_in_the_working_directory_is_used(tmp_path):
    (tmp_path / "llmroute.toml").write_text(
        'strategy = "round_robin"\n[[providers]]\nname = "local-a"\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    info = load_in_subprocess(tmp_path)
    assert info["names"] == ["local-a"]
    assert "round_robin" in info["out"]


# -- %%llm -------------------------------------------------------------------------------------


def test_cell_streams_the_answer_with_a_footer_and_records_it(shell, router):
    result, out = run(shell, "%%llm -o ans\nExplain the CAP theorem in one line")
    assert result.success, result.error_in_exec
    ans = shell.user_ns["ans"]
    assert isinstance(ans, Completion) and ans.text
    assert ans.text in out.stdout
    assert f"{ans.provider} · {ans.model}" in out.stdout and "tokens" in out.stdout and "$" in out.stdout
    df = router.usage_df()
    assert len(df) == 1 and bool(df["streamed"].iloc[0]) and df["status"].iloc[0] == "ok"


def test_no_stream_uses_complete(shell, spy):
    result, _ = run(shell, "%%llm --no-stream -o ans\nhello")
    assert result.success
    assert spy.calls[0][0] == "complete"
    assert not bool(spy.usage_df()["streamed"].iloc[0])


def test_options_reach_the_router_for_that_cell_only(shell, spy):
    before = spy.strategy
    result, _ = run(
        shell, "%%llm -p sim-local -s lowest_cost --system 'Be brief' -t 0.2 --max-tokens 5 -o ans\nSay something"
    )
    assert result.success, result.error_in_exec
    kind, prompt, kw = spy.calls[0]
    assert kw == {
        "provider": "sim-local",
        "strategy": "lowest_cost",
        "system": "Be brief",
        "temperature": 0.2,
        "max_tokens": 5,
    }
    ans = shell.user_ns["ans"]
    assert ans.provider == "sim-local" and 0 < ans.output_tokens <= 5
    assert spy.strategy == before


def test_interpolation_fills_names_and_keeps_literals(shell, spy):
    shell.user_ns["topic"] = "Raft"
    run(shell, "%%llm\nExplain {topic}; keep {{braces}} and {not_defined}")
    assert spy.calls[-1][1] == "Explain Raft; keep {braces} and {not_defined}"
    run(shell, "%%llm --no-interpolate\nExplain {topic}")
    assert spy.calls[-1][1] == "Explain {topic}"


def test_rich_output_streams_into_one_display_and_ends_with_metadata(shell, router, magics):
    magics.display_mode = "rich"
    magics.stream_interval_s = 0.0
    try:
        result, out = run(shell, "%%llm -o ans\nWrite two sentences about queues")
    finally:
        magics.stream_interval_s = 0.1
    assert result.success, result.error_in_exec
    ans = shell.user_ns["ans"]
    ids = {o.transient["display_id"] for o in out.outputs if o.transient}
    assert len(ids) == 1  # every update went to the same display
    assert len(out.outputs) >= 3  # placeholder, streamed updates, final
    final = out.outputs[-1]
    assert final.data["text/markdown"].startswith(ans.text)
    meta = final.metadata["llmroute"]
    assert meta["provider"] == ans.provider and meta["model"] == ans.model
    assert meta["input_tokens"] == ans.input_tokens and meta["output_tokens"] == ans.output_tokens
    assert meta["cost"] == pytest.approx(ans.cost) and meta["latency_s"] > 0
    json.dumps(final.metadata)  # storable in a notebook


@pytest.mark.parametrize(
    "fmt, mime",
    [("text", "text/plain"), ("html", "text/html"), ("code", "text/markdown"), ("markdown", "text/markdown")],
)
def test_formats_choose_the_output_type(shell, router, magics, fmt, mime):
    magics.display_mode = "rich"
    result, out = run(shell, f"%%llm -f {fmt} --no-stream\nanswer")
    assert result.success
    final = out.outputs[-1]
    assert mime in final.data
    if fmt == "text":
        assert set(final.data) == {"text/plain"}
    if fmt == "code":
        assert final.data["text/markdown"].startswith("```")


def test_json_format_parses_json_answers_and_says_when_it_cannot(shell, router, magics):
    from llmroute_magic._ipython.render import answer_bundle

    bundle, note = answer_bundle('```json\n{"a": [1, 2]}\n```', "json", "footer")
    assert bundle["application/json"] == {"a": [1, 2]} and note is None
    magics.display_mode = "rich"
    result, out = run(shell, "%%llm -f json --no-stream\nnot json please")
    assert result.success
    assert "not valid JSON" in out.stderr
    assert "text/plain" in out.outputs[-1].data


def test_default_format_is_a_traitlet_setting(shell, router, magics):
    magics.display_mode = "rich"
    shell.run_line_magic("config", "LLMRouteMagics.default_format = 'html'")
    try:
        _, out = run(shell, "%%llm --no-stream\nhello")
        assert "text/html" in out.outputs[-1].data
    finally:
        shell.run_line_magic("config", "LLMRouteMagics.default_format = 'markdown'")


def test_compare_shows_every_provider_side_by_side(shell, router, magics):
    magics.display_mode = "rich"
    result, out = run(shell, "%%llm --compare -o cmp\nWhat is a mutex?")
    assert result.success, result.error_in_exec
    df = shell.user_ns["cmp"]
    assert isinstance(df, pd.DataFrame)
    assert list(df["provider"]) == DEFAULT_NAMES
    html = out.outputs[-1].data["text/html"]
    assert html.count("<th ") == len(DEFAULT_NAMES) and "ms" in html and "tokens" in html
    meta = out.outputs[-1].metadata["llmroute"]["compare"]
    assert [m["provider"] for m in meta] == DEFAULT_NAMES


def test_compare_named_providers_in_text_mode(shell, router):
    result, out = run(shell, "%%llm --compare sim-local,sim-openai -o cmp\nWhat is a mutex?")
    assert result.success
    assert set(shell.user_ns["cmp"]["provider"]) == {"sim-local", "sim-openai"}
    assert "== sim-local" in out.stdout and "sim-anthropic" not in out.stdout


@pytest.mark.parametrize(
    "line, cell, expected",
    [
        ("-s fastest", "hi", "allowed: round_robin, least_latency"),
        ("-p nobody", "hi", "allowed: sim-openai, sim-anthropic, sim-local"),
        ("-f xml", "hi", "allowed: markdown, text, code, json, html"),
        ("--max-tokens -4", "hi", "positive"),
        ("--max-tokens 0", "hi", "positive"),
        ("-t -1", "hi", ">= 0"),
        ("", "   \n  ", "prompt is empty"),
        ("--compare sim-openai,ghost", "hi", "unknown provider 'ghost'"),
        ("-p sim-openai --compare", "hi", "either -p"),
        ("-o 2bad", "hi", "not a valid variable name"),
        ("--bogus", "hi", "unrecognized arguments"),
    ],
)
def test_cell_mistakes_are_usage_errors_that_say_what_to_do(shell, router, line, cell, expected):
    assert expected in usage_error(shell, f"%%llm {line}\n{cell}")
    assert len(router.usage_df()) == 0  # nothing was sent


def test_failed_request_is_a_short_message_and_every_attempt_is_in_the_ledger(shell, router, sim):
    for name in ("sim-openai", "sim-anthropic", "sim-local"):
        sim.inject(name, ["unauthorized"])
    message = usage_error(shell, "%%llm\nhello")
    assert "all providers failed" in message and "authentication" in message
    assert "%llm usage" in message
    df = router.usage_df()
    assert len(df) == 3 and set(df["status"]) == {"error"}


def test_interrupting_a_streaming_cell_cancels_the_request(shell, router, sim):
    sim.update("sim-openai", tokens_per_s=5.0)
    # A kernel or terminal handles Ctrl-C; a test run started in the background by a
    # non-interactive shell inherits SIGINT ignored, so install the usual handler for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = sim.stats()["providers"].get("sim-openai", {}).get("requests", 0)

        def interrupt_when_streaming():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if sim.stats()["providers"].get("sim-openai", {}).get("requests", 0) > before:
                    time.sleep(0.4)
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                time.sleep(0.02)

        t = threading.Thread(target=interrupt_when_streaming, daemon=True)
        t.start()
        started = time.monotonic()
        message = usage_error(shell, "%%llm -p sim-openai --max-tokens 200\nA long answer please")
        t.join(5)
        assert "interrupted" in message
        assert time.monotonic() - started < 5  # stopped, not waited out (200 tokens at 5/s = 40 s)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "cancelled" not in set(router.usage_df()["status"]):
            time.sleep(0.05)
        assert "cancelled" in set(router.usage_df()["status"])
    finally:
        signal.signal(signal.SIGINT, previous)
        sim.update("sim-openai", tokens_per_s=1000.0)


# -- %llm --------------------------------------------------------------------------------------


def test_status_shows_strategy_providers_state_and_cost(shell, router):
    run(shell, "%%llm --no-stream\nhi")
    router.disable("sim-local")
    _, out = run(shell, "%llm status")
    assert "strategy priority" in out.stdout
    assert "sim-local" in out.stdout and "disabled" in out.stdout
    assert "1 attempt ·" in out.stdout and "total cost $" in out.stdout
    _, bare = run(shell, "%llm")
    assert bare.stdout == out.stdout


def test_strategy_enable_disable_change_the_router(shell, router):
    run(shell, "%llm strategy LeastLatency")
    assert router.strategy.value == "least_latency"
    run(shell, "%llm disable sim-openai")
    assert "sim-openai" not in router.enabled
    run(shell, "%llm enable sim-openai")
    assert "sim-openai" in router.enabled
    assert "allowed: round_robin" in usage_error(shell, "%llm strategy warp")
    assert "allowed: sim-openai" in usage_error(shell, "%llm disable ghost")
    assert "usage: %llm enable NAME" in usage_error(shell, "%llm enable")


def test_use_switches_to_another_router_in_the_namespace(shell, router, sim):
    other = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs(["sim-local"])))
    shell.user_ns["other"] = other
    try:
        run(shell, "%llm use other")
        run(shell, "%%llm -o ans\nhi")
        assert shell.user_ns["ans"].provider == "sim-local"
        assert len(other.usage_df()) == 1 and len(router.usage_df()) == 0
        shell.user_ns["a_string"] = "not a router"
        assert "not a ModelClientRouter" in usage_error(shell, "%llm use a_string")
        assert "no variable 'ghost'" in usage_error(shell, "%llm use ghost")
    finally:
        shell._llmroute_magics.router_var = "llm"
        other.close()


def test_usage_stats_reset_and_save(shell, router, tmp_path):
    run(shell, "%%llm --no-stream\nhi")
    run(shell, "%%llm --no-stream\nhello again")
    usage = shell.run_line_magic("llm", "usage")
    assert isinstance(usage, pd.DataFrame) and len(usage) == 2
    with capture_output() as out:
        stats = shell.run_line_magic("llm", "stats")
    assert int(stats["requests"].sum()) == 2 and "2 attempts" in out.stdout
    csv = tmp_path / "u.csv"
    run(shell, f"%llm save {csv}")
    assert len(pd.read_csv(csv)) == 2
    pq = tmp_path / "u.parquet"
    run(shell, f"%llm save {pq}")
    assert len(pd.read_parquet(pq)) == 2
    assert ".csv or .parquet" in usage_error(shell, f"%llm save {tmp_path / 'u.xlsx'}")
    run(shell, "%llm reset")
    assert len(router.usage_df()) == 0


def test_plot_returns_a_figure_or_saves_a_png(shell, router, tmp_path):
    from matplotlib.figure import Figure

    run(shell, "%%llm --no-stream\nhi")
    fig = shell.run_line_magic("llm", "plot cost")
    assert isinstance(fig, Figure)
    png = shell.display_formatter.format(fig)[0]["image/png"]
    assert png  # the extension taught IPython to show figures without pyplot
    target = tmp_path / "cost.png"
    run(shell, f"%llm plot latency {target}")
    assert target.read_bytes().startswith(b"\x89PNG")
    assert "allowed: cost, latency, tokens, requests, timeline" in usage_error(shell, "%llm plot pie")


def test_panel_subcommand_returns_the_panel(shell, router):
    from llmroute_magic._ipython.widgets import RouterPanel

    panel = shell.run_line_magic("llm", "panel")
    try:
        assert isinstance(panel, RouterPanel) and panel.router is router
    finally:
        panel.close()


def test_config_rebuilds_the_router_from_a_toml_file(shell, router, sim, tmp_path):
    url = sim.base_url("sim-local")
    path = tmp_path / "llmroute.toml"
    path.write_text(
        f'strategy = "round_robin"\nmax_retries = 1\n[[providers]]\nname = "only"\n'
        f'model = "llama-3.1-8b"\nbase_url = "{url}"\ninput_price = 0\noutput_price = 0\n'
    )
    _, out = run(shell, f"%llm config {path}")
    new = shell.user_ns["llm"]
    try:
        assert new is not router and [p.name for p in new.providers] == ["only"]
        assert new.strategy.value == "round_robin" and "rebuilt" in out.stdout
        result, _ = run(shell, "%%llm -o ans\nhi")
        assert result.success and shell.user_ns["ans"].provider == "only"
    finally:
        shell._llmroute_magics._owned.remove(new)
        new.close()
    bad = tmp_path / "bad.toml"
    bad.write_text('strategy = "warp"\n[[providers]]\nname = "x"\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\n')
    shell.user_ns["llm"] = router
    assert "strategy" in usage_error(shell, f"%llm config {bad}")
    assert "no such file" in usage_error(shell, f"%llm config {tmp_path / 'missing.toml'}")


def test_line_mistakes_are_usage_errors(shell, router):
    assert "unknown subcommand 'frobnicate'" in usage_error(shell, "%llm frobnicate")
    assert "%llm status" in usage_error(shell, "%llm frobnicate")  # lists what exists


def test_missing_router_variable_says_how_to_get_one(shell, magics):
    magics.router_var = "nothing_here"
    assert "%llm config PATH" in usage_error(shell, "%llm status")


def test_api_keys_never_appear_in_any_output(shell, sim, tmp_path):
    spec = sim.provider_specs(["sim-openai"])[0].with_api_key(SECRET)
    r = ModelClientRouter(ProviderRoutingConfig([spec]))
    shell.user_ns["keyed"] = r
    try:
        shown = []
        for src in (
            "%llm use keyed",
            "%%llm -o ans\nhi",
            "%%llm --compare\nhi",
            "%llm status",
            "%llm providers",
            "%%llm -c keyed -m gpt-4o -f json\nhi",
            "%%llm -c keyed\nmore",
            "%llm chat",
            "%llm chat show keyed",
            "%llm explain",
            "%llm stats",
            f"%llm save {tmp_path / 'k.csv'}",
        ):
            result, out = run(shell, src)
            assert result.success, (src, result.error_in_exec)
            shown.append(out.stdout + out.stderr + repr([o.data for o in out.outputs]))
        shown.append(r.usage_df().to_csv())
        shown.append((tmp_path / "k.csv").read_text())
        shown.append(repr(r) + repr(shell.user_ns["ans"]))
        assert not [s for s in shown if SECRET in s]
    finally:
        shell._llmroute_magics.router_var = "llm"
        shell._llmroute_magics.conversations.reset()
        r.close()


# -- the router's real API only ------------------------------------------------------------------


def test_use_refuses_an_object_that_only_looks_like_a_router(shell, router):
    from types import SimpleNamespace

    shell.user_ns["lookalike"] = SimpleNamespace(complete=print, stream=print, providers=[], set_strategy=print)
    assert "not a ModelClientRouter" in usage_error(shell, "%llm use lookalike")
    assert shell._llmroute_magics.router_var == "llm"


def test_status_reads_retries_fallback_and_cooldown_from_the_router(shell, router, sim):
    router.max_retries = 4
    router.fallback_enabled = False
    sim.inject("sim-local", ["server_error"] * 5)
    run(shell, "%%llm -p sim-local --no-stream\nhi")  # 5 failed attempts: sim-local cools down
    assert "sim-local" in router.cooling_down()
    _, out = run(shell, "%llm status")
    assert "fallback off · max retries 4" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("sim-local"))
    assert "cooling down" in line
    _, providers = run(shell, "%llm providers")
    assert "cooling down" in next(x for x in providers.stdout.splitlines() if x.startswith("sim-local"))


def test_widgets_do_not_import_the_magics():
    code = "import sys, llmroute_magic._ipython.widgets\nprint('llmroute_magic._ipython.magics' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# -- unknown cost ----------------------------------------------------------------------------------


@pytest.fixture
def unpriced(shell, sim, magics):
    """A router whose second provider serves a model genai-prices does not know, with no prices given."""
    from llmroute_magic import ProviderSpec

    mystery = ProviderSpec(
        "mystery", "mystery-model-9000", base_url=sim.base_url("sim-local"), api_key="sim", priority=1
    )
    r = ModelClientRouter(ProviderRoutingConfig([sim.provider_specs(["sim-openai"])[0], mystery]))
    default = shell.user_ns.get("llm")
    shell.user_ns["llm"] = r
    yield r
    shell.user_ns["llm"] = default
    r.close()


def test_stats_and_status_say_unknown_with_the_count_of_unpriced_attempts(shell, unpriced):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unknown price is flagged once; here we look at the figures
        run(shell, "%%llm --no-stream -p sim-openai\nhi")
        run(shell, "%%llm --no-stream -p mystery\nhi")
        run(shell, "%%llm --no-stream -p mystery\nhello")
    assert unpriced.usage_df()["cost"].isna().sum() == 2
    for command in ("%llm stats", "%llm status"):
        _, out = run(shell, command)
        line = next(x for x in out.stdout.splitlines() if x.startswith("usage:"))
        assert "total cost unknown (2 unpriced attempts" in line and "mystery" in line, line
        assert "$" not in line.split("total cost", 1)[1], line  # never a silent $0 or a partial sum as total
    fig = unpriced.plot("cost")
    assert "unknown (2 unpriced attempts" in fig.axes[0].get_title()


# -- what a newcomer hit -----------------------------------------------------------------------------


def test_unresolved_names_are_named_in_one_line_and_the_prompt_is_sent(shell, spy):
    shell.user_ns["topic"] = "Raft"
    result, out = run(shell, '%%llm --no-stream\nExplain {topic} to {audiance} and {doc.titel}; json: {"a": 1}')
    assert result.success, result.error_in_exec
    assert spy.calls[-1][1] == 'Explain Raft to {audiance} and {doc.titel}; json: {"a": 1}'
    notes = [x for x in out.stderr.splitlines() if x.startswith("llmroute:")]
    assert len(notes) == 1, out.stderr
    assert "{audiance}, {doc.titel} are not defined" in notes[0] and '"a"' not in notes[0]
    _, quiet = run(shell, "%%llm --no-stream\nExplain {topic}; {{literal}}")
    assert "not defined" not in quiet.stderr
    _, off = run(shell, "%%llm --no-stream --no-interpolate\nExplain {audiance}")
    assert "not defined" not in off.stderr


def _sys_denies_writes() -> bool:
    try:
        open("/sys/llmroute-probe.csv", "w").close()
    except PermissionError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.parametrize(
    "command, expected",
    [
        ("plot cost /no/dir/x.png", "no such directory: '/no/dir'"),
        ("save /no/dir/u.csv", "no such directory: '/no/dir'"),
        ("save {tmp}", "is a directory"),
        ("plot cost {tmp}", "is a directory"),
        ("plot cost {tmp}/x.jpg", "unsupported file type '.jpg'"),
        pytest.param(
            "save /sys/u.csv",
            "Permission denied",
            marks=pytest.mark.skipif(not _sys_denies_writes(), reason="needs a directory that refuses writes"),
        ),
        pytest.param(
            "plot cost /sys/x.png",
            "Permission denied",
            marks=pytest.mark.skipif(not _sys_denies_writes(), reason="needs a directory that refuses writes"),
        ),
    ],
)
def test_a_bad_path_is_one_line_not_a_traceback(shell, router, tmp_path, command, expected):
    run(shell, "%%llm --no-stream\nhi")
    result, out = run(shell, f"%llm {command.format(tmp=tmp_path)}")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    message = str(result.error_in_exec)
    assert expected in message and "\n" not in message, message
    assert "Traceback" not in out.stdout + out.stderr


def test_load_ext_says_which_config_providers_and_missing_keys(tmp_path):
    (tmp_path / "llmroute.toml").write_text(
        'strategy = "least_latency"\n'
        '[[providers]]\nname = "openai"\nmodel = "gpt-4o-mini"\n'
        '[[providers]]\nname = "groq"\nmodel = "llama-3.1-8b-instant"\n'
        '[[providers]]\nname = "local"\nmodel = "llama-3.1-8b"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    info = load_in_subprocess(tmp_path, GROQ_API_KEY=SECRET)
    first = info["out"].split("llmroute router", 1)[0]  # what %load_ext said, before %llm status
    assert "loaded" in first and "llmroute.toml" in first
    assert "openai (gpt-4o-mini), groq (llama-3.1-8b-instant), local (llama-3.1-8b)" in first
    assert "missing API keys: OPENAI_API_KEY (openai)" in first
    assert "GROQ_API_KEY" not in first and "local" not in first.split("missing", 1)[1]
    assert len([x for x in first.splitlines() if x.strip()]) <= 2
    assert SECRET not in info["out"]


def test_load_ext_counts_the_keys_the_official_sdks_read(tmp_path):
    # GOOGLE_API_KEY (google-genai) and AZURE_OPENAI_API_KEY (openai's AzureOpenAI) are keys for those
    # providers: the notice must not call them missing (the requests send them).
    (tmp_path / "llmroute.toml").write_text(
        '[[providers]]\nname = "gemini"\nmodel = "gemini-2.0-flash"\n'
        '[[providers]]\nname = "azure"\nmodel = "prod-chat"\napi = "azure"\n'
        'base_url = "https://res.openai.azure.com"\n'
    )
    info = load_in_subprocess(tmp_path, GOOGLE_API_KEY=SECRET, AZURE_OPENAI_API_KEY=SECRET + "x")
    first = info["out"].split("llmroute router", 1)[0]
    assert "gemini (gemini-2.0-flash), azure (prod-chat)" in first
    assert "missing" not in first
    bare = load_in_subprocess(tmp_path)["out"].split("llmroute router", 1)[0]
    assert "missing API keys: GEMINI_API_KEY (gemini), AZURE_API_KEY (azure)" in bare
    assert SECRET not in info["out"]


def test_load_ext_names_the_config_variable(tmp_path):
    cfg = tmp_path / "team.toml"
    cfg.write_text('[[providers]]\nname = "local"\nmodel = "m"\nbase_url = "http://127.0.0.1:9/v1"\n')
    info = load_in_subprocess(tmp_path, LLMROUTE_CONFIG=str(cfg))
    first = info["out"].split("llmroute router", 1)[0]
    assert "team.toml ($LLMROUTE_CONFIG)" in first and "missing" not in first


def test_reset_in_memory_starts_a_new_view_and_forgets_nothing(shell, router):
    run(shell, "%%llm --no-stream\nhi")
    run(shell, "%%llm --no-stream\nhello")
    _, out = run(shell, "%llm reset")
    assert "new usage view from now" in out.stdout and "%llm usage --all" in out.stdout
    assert len(shell.run_line_magic("llm", "usage")) == 0
    assert len(shell.run_line_magic("llm", "usage --all")) == 2


@pytest.fixture
def persisted(shell, sim, magics, tmp_path):
    r = ModelClientRouter(ProviderRoutingConfig(sim.provider_specs(), ledger_path=str(tmp_path / "usage.sqlite")))
    default = shell.user_ns.get("llm")
    shell.user_ns["llm"] = r
    yield r
    shell.user_ns["llm"] = default
    r.close()


def test_reset_with_a_ledger_file_says_the_file_keeps_every_row(shell, persisted, tmp_path):
    run(shell, "%%llm --no-stream\nhi")
    run(shell, "%%llm --no-stream\nhello")
    _, out = run(shell, "%llm reset")
    assert "new usage view from now" in out.stdout and "keeps every earlier row" in out.stdout
    assert "%llm usage --all" in out.stdout and "usage.sqlite" in out.stdout
    assert "cleared" not in out.stdout
    run(shell, "%%llm --no-stream\nagain")
    assert _wait(lambda: len(shell.run_line_magic("llm", "usage --all")) == 3)
    assert "usage: %llm usage [--all]" in usage_error(shell, "%llm usage --everything")


def test_after_reset_with_a_ledger_file_usage_shows_the_new_view_and_all_shows_everything(shell, persisted):
    run(shell, "%%llm --no-stream\nhi")
    run(shell, "%%llm --no-stream\nhello")
    run(shell, "%llm reset")
    assert len(shell.run_line_magic("llm", "usage")) == 0
    run(shell, "%%llm --no-stream\nagain")
    assert _wait(lambda: len(shell.run_line_magic("llm", "usage")) == 1)
    assert _wait(lambda: len(shell.run_line_magic("llm", "usage --all")) == 3)


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_reset_restarts_an_open_panel(shell, router):
    panel = shell.run_line_magic("llm", "panel")
    try:
        run(shell, "%%llm --no-stream\nhi")
        assert _wait(lambda: int(panel.stats_frame()["requests"].sum()) == 1)
        run(shell, "%llm reset")
        assert _wait(lambda: int(panel.stats_frame()["requests"].sum()) == 0)
        run(shell, "%%llm --no-stream\nhello")
        assert _wait(lambda: int(panel.stats_frame()["requests"].sum()) == 1)
    finally:
        panel.close()
