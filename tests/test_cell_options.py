"""``%%llm`` options of the notebook-as-conversation release: a model per cell (``-m``, ``--compare
NAME:MODEL``), formats that ask for themselves (``-f``, ``--raw``), ``-f code`` into a new cell, the
formatted answer after a stream in a terminal, and the help that lists it all. Over the simulator;
what was sent is read from the tokens it counted (``ceil(chars / 4) + 3`` per message)."""

from __future__ import annotations

import io
import json

import pytest
from ipython_fixtures import magics, ok, router, run, shell, sim, usage_error  # noqa: F401

from llmroute_magic import Completion
from llmroute_magic._ipython.render import FORMAT_INSTRUCTIONS, TextRenderer, answer_bundle
from llmroute_magic.sim._neutral import count_input_tokens


def last(router) -> dict:
    return list(router.ledger.records())[-1]


# -- a model per cell ----------------------------------------------------------------------------


def test_model_reaches_the_wire_the_ledger_and_the_footer(shell, router):
    out = ok(shell, "%%llm -p sim-openai -m gpt-4o -o ans\nhello")
    ans = shell.user_ns["ans"]
    assert ans.model == "gpt-4o"  # the simulator answers with the model it received
    assert last(router)["model"] == "gpt-4o"
    assert "sim-openai · gpt-4o ·" in out.stdout
    ok(shell, "%%llm -p sim-openai\nhello")
    assert last(router)["model"] == "gpt-4o-mini"  # the next cell: the provider's own model again


def test_a_model_is_priced_as_that_model(shell, sim, magics):
    """Without spec prices, the cost comes from genai-prices for the model asked for ("openai"
    behind a proxy on loopback: here, the simulator)."""
    from ipython_fixtures import bind

    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec

    spec = ProviderSpec("openai", "gpt-4o-mini", base_url=sim.base_url("sim-openai"), api_key="sim")
    r = ModelClientRouter(ProviderRoutingConfig([spec]))
    restore = bind(shell, r)
    try:
        ok(shell, "%%llm -o small\nhello")
        ok(shell, "%%llm -m gpt-4o -o big\nhello")
    finally:
        restore()
        r.close()
    small, big = shell.user_ns["small"], shell.user_ns["big"]
    assert (small.input_tokens, small.output_tokens) == (big.input_tokens, big.output_tokens)
    assert big.cost > 5 * small.cost  # gpt-4o costs ~16x gpt-4o-mini per token


def test_compare_two_models_of_one_provider_gives_two_rows(shell, router, magics):
    magics.display_mode = "rich"
    out = ok(shell, "%%llm --compare sim-openai:a,sim-openai:b -o cmp\nWhat is a mutex?")
    df = shell.user_ns["cmp"]
    assert list(df["provider"]) == ["sim-openai", "sim-openai"] and list(df["model"]) == ["a", "b"]
    assert sorted(r["model"] for r in router.ledger.records()) == ["a", "b"]
    html = out.outputs[-1].data["text/html"]
    assert html.count("<th ") == 2 and ">a</small>" in html and ">b</small>" in html
    assert "unknown provider 'ghost:x'" in usage_error(shell, "%%llm --compare sim-openai:a,ghost:x\nhi")
    assert "names no model" in usage_error(shell, "%%llm --compare sim-openai:\nhi")


def test_model_applies_to_every_compared_provider_without_its_own(shell, router):
    ok(shell, "%%llm --compare sim-local,sim-openai:x1 -m y2\nhi")
    assert {r["provider"]: r["model"] for r in router.ledger.records()} == {"sim-local": "y2", "sim-openai": "x1"}


# -- formats that ask ----------------------------------------------------------------------------


def test_json_adds_its_instruction_and_a_non_json_answer_says_why(shell, router):
    result, out = run(shell, "%%llm -f json -p sim-openai\nList three colours")
    assert result.success
    assert last(router)["input_tokens"] == count_input_tokens(FORMAT_INSTRUCTIONS["json"], ["List three colours"])
    note = next(x for x in out.stderr.splitlines() if "not valid JSON" in x)
    assert "Expecting value at line 1, column 1" in note  # why, not only that
    assert "asked for json in the system prompt" in out.stdout


def test_raw_sends_no_instruction_and_plain_cells_ask_nothing(shell, router):
    ok(shell, "%%llm -f json --raw -p sim-openai\nList three colours")
    assert last(router)["input_tokens"] == count_input_tokens("", ["List three colours"])
    ok(shell, "%%llm -p sim-openai\nList three colours")  # markdown by default: nothing asked
    assert last(router)["input_tokens"] == count_input_tokens("", ["List three colours"])
    ok(shell, "%%llm -f code --system 'Use Rust' -p sim-openai\nHello world")
    system = "Use Rust\n\n" + FORMAT_INSTRUCTIONS["code"]
    assert last(router)["input_tokens"] == count_input_tokens(system, ["Hello world"])


def test_a_non_markdown_default_format_asks_too_and_the_setting_turns_it_off(shell, router, magics):
    shell.run_line_magic("config", "LLMRouteMagics.default_format = 'json'")
    ok(shell, "%%llm -p sim-openai\nhi")
    assert last(router)["input_tokens"] == count_input_tokens(FORMAT_INSTRUCTIONS["json"], ["hi"])
    shell.run_line_magic("config", "LLMRouteMagics.format_instructions = False")
    ok(shell, "%%llm -p sim-openai\nhi")
    assert last(router)["input_tokens"] == count_input_tokens("", ["hi"])


def test_the_instruction_is_in_the_output_metadata_and_the_footer_tooltip(shell, router, magics):
    magics.display_mode = "rich"
    out = ok(shell, "%%llm -f html --no-stream\nA table of two rows")
    final = out.outputs[-1]
    meta = final.metadata["llmroute"]
    assert meta["format"] == "html" and meta["instruction"] == FORMAT_INSTRUCTIONS["html"]
    assert (
        f'title="asked with -f html: {FORMAT_INSTRUCTIONS["html"]}'.replace("<", "&lt;").replace(">", "&gt;")
        in final.data["text/html"]
    )
    json.dumps(final.metadata)


def test_code_goes_into_a_new_cell_below_in_jupyter_and_is_never_run(shell, router, magics):
    magics.display_mode = "rich"
    shell.user_ns.pop("never_defined", None)
    out = ok(shell, "%%llm -f code\nnever_defined = 1")
    code = shell.rl_next_input  # what IPython's set_next_input hands the front end (a kernel: a payload)
    assert code and code in out.outputs[-1].data["text/plain"]
    assert "never_defined" not in shell.user_ns
    assert "new cell below (not run)" in out.outputs[-1].data["text/markdown"]
    shell.rl_next_input = None
    magics.display_mode = "text"
    out = ok(shell, "%%llm -f code\nhello")  # a terminal: printed, the next prompt left alone
    assert shell.rl_next_input is None and "new cell" not in out.stdout
    magics.display_mode = "rich"
    magics.code_to_cell = False
    ok(shell, "%%llm -f code\nhello")
    assert shell.rl_next_input is None


# -- a terminal shows the formatted answer after the raw stream -----------------------------------


@pytest.mark.parametrize(
    "fmt, raw, formatted",
    [
        ("json", '```json\n{"a": [1, 2]}\n```', '{\n  "a": [\n    1,\n    2\n  ]\n}'),
        ("code", "Here:\n```python\nprint('hi')\n```\nDone.", "print('hi')"),
        ("html", "```html\n<b>hi</b>\n```", "<b>hi</b>"),
    ],
)
def test_text_renderer_streams_raw_then_prints_the_formatted_answer(fmt, raw, formatted):
    buf = io.StringIO()
    r = TextRenderer(buf)
    r.start()
    for i in range(0, len(raw), 5):
        r.chunk(raw[i : i + 5])
    note = r.finish(Completion(raw, "p", "m", 3, 4, 0.0, 0.01), fmt, lines=("chat c · turn 2",))
    text = buf.getvalue()
    assert note is None and text.startswith(raw)
    after = text[len(raw) :]
    assert f"── {fmt} ──\n{formatted}" in after
    assert after.rstrip().endswith("— chat c · turn 2") and "— p · m ·" in after


def test_text_renderer_says_nothing_twice():
    buf = io.StringIO()
    r = TextRenderer(buf)
    r.chunk("<b>already a fragment</b>")
    r.finish(Completion("<b>already a fragment</b>", "p", "m"), "html")
    assert buf.getvalue().count("already a fragment") == 1
    buf = io.StringIO()
    r = TextRenderer(buf)
    r.chunk("not json")
    note = r.finish(Completion("not json", "p", "m"), "json")
    assert "not valid JSON" in note and buf.getvalue().count("not json") == 1


def test_a_streamed_json_cell_in_a_terminal_ends_with_the_reason(shell, router):
    result, out = run(shell, "%%llm -f json\nanything")
    assert result.success and "not valid JSON (" in out.stderr


def test_html_answers_lose_a_fence_a_model_put_around_them():
    bundle, _ = answer_bundle("```html\n<p>x</p>\n```", "html", "f")
    assert bundle["text/html"].startswith("<p>x</p>")


# -- help --------------------------------------------------------------------------------------------


def test_help_lists_every_new_option_and_subcommand(shell):
    doc = shell.find_cell_magic("llm").__doc__
    for item in (
        "--chat",
        "-c",
        "--model",
        "-m MODEL",
        "--raw",
        "NAME:MODEL",
        "new cell below",
        "%%llm [",
        "%llm chat show [NAME]",
        "%llm chat reset [NAME|--all]",
        "%llm explain",
        "%llm providers",
    ):
        assert item in doc, item
    assert "%%%llm" not in doc
    assert doc == shell.find_line_magic("llm").__doc__  # %llm? and %%llm? show the same
