"""Conversations across cells: the ``chat`` module on its own (no IPython), then ``%%llm --chat``
through a real IPython shell over the simulator, checking what reached the simulator.

What was sent is read from the input tokens the simulator counted (and billed: the ledger equals
it): it counts ``ceil(characters / 4) + 3`` per message, so a prompt of known messages has exactly
one token count, and one message more or less shows.
"""

from __future__ import annotations

import math

import pytest
from ipython_fixtures import bind, magics, ok, router, run, shell, sim, usage_error  # noqa: F401

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig
from llmroute_magic._ipython.chat import (
    ANSWER_ROOM_TOKENS,
    Conversation,
    Conversations,
    Turn,
    check_name,
    default_estimate,
    token_budget,
)
from llmroute_magic._request import estimate_prompt_tokens
from llmroute_magic.sim._neutral import count_input_tokens


def turn(
    key: str,
    prompt: str,
    answer: str = "ok",
    provider: str = "p1",
    model: str = "m1",
    cost: float = 0.001,
    tokens: tuple[int | None, int | None] = (10, 5),
) -> Turn:
    return Turn(key, prompt, answer, provider, model, tokens[0], tokens[1], cost, f"r-{key}")


def chars_estimate(messages, system):
    """A transparent estimate for the pure tests: one token per character."""
    return len(system or "") + sum(len(m["content"]) for m in messages)


# -- the module, without IPython -----------------------------------------------------------------


def test_each_turn_sends_the_earlier_turns_then_its_prompt():
    conv = Conversation("c")
    sizes = []
    for i in range(3):
        plan = conv.plan(f"k{i}", f"q{i}")
        sizes.append(len(plan.messages))
        conv.commit(plan, turn(f"k{i}", f"q{i}", f"a{i}"))
    assert sizes == [1, 3, 5]
    assert [m["role"] for m in plan.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in plan.messages] == ["q0", "a0", "q1", "a1", "q2"]
    assert plan.note() == "chat c · turn 3 · 2 earlier turns sent"


def test_a_rerun_replaces_its_turn_in_place_and_sees_only_the_turns_before_it():
    conv = Conversation("c")
    for i in range(3):
        conv.commit(conv.plan(f"k{i}", f"q{i}"), turn(f"k{i}", f"q{i}", f"a{i}"))
    plan = conv.plan("k1", "q1 again")
    assert plan.replaces and plan.turn == 2
    assert [m["content"] for m in plan.messages] == ["q0", "a0", "q1 again"]
    conv.commit(plan, turn("k1", "q1 again", "a1'"))
    assert [t.prompt for t in conv.turns] == ["q0", "q1 again", "q2"]  # the later turn stays where it was
    assert "(replaced)" in plan.note()
    assert conv.requests == 4 and conv.cost == pytest.approx(0.004)  # the replaced answer was still paid for


def test_a_key_made_of_the_text_replaces_only_the_last_turn():
    conv = Conversation("c")
    for key, text in (("t:go", "go on"), ("t:why", "why?")):
        conv.commit(conv.plan(key, text, anywhere=False), turn(key, text))
    again = conv.plan("t:why", "why?", anywhere=False)
    assert again.replaces and again.turn == 2  # a retry of the last cell
    later = conv.plan("t:go", "go on", anywhere=False)
    assert not later.replaces and later.turn == 3  # the same words later: a new turn


def test_the_turn_limit_keeps_the_latest_turns():
    conv = Conversation("c")
    for i in range(5):
        conv.commit(conv.plan(f"k{i}", f"q{i}"), turn(f"k{i}", f"q{i}", f"a{i}"))
    plan = conv.plan("k5", "q5", max_turns=2)
    assert [m["content"] for m in plan.messages] == ["q3", "a3", "q4", "a4", "q5"]
    assert (plan.sent, plan.left_out_turns, plan.left_out_tokens) == (2, 3, 0)
    assert "3 by the turn limit" in plan.note()


def test_the_token_budget_drops_the_oldest_turns_first():
    conv = Conversation("c")
    for i in range(4):
        conv.commit(conv.plan(f"k{i}", f"q{i}" * 5), turn(f"k{i}", f"q{i}" * 5, "a" * 10))  # 10 + 10 a turn
    plan = conv.plan("k4", "new", system="sys", budget=50, estimate=chars_estimate)
    assert plan.prompt_tokens <= 50 and plan.sent == 2 and plan.left_out_tokens == 2
    assert plan.messages[0]["content"] == "q2" * 5  # the two newest earlier turns
    assert "2 by the token limit (≈46 of 50 tokens)" in plan.note()
    tight = conv.plan("k4", "x" * 60, budget=50, estimate=chars_estimate)
    assert tight.messages == [{"role": "user", "content": "x" * 60}]  # the prompt alone, even if over


def test_the_budget_is_the_window_less_room_for_the_answer():
    assert token_budget(None) is None
    assert token_budget(8000) == 6000  # a quarter of the window for the answer
    assert token_budget(128_000) == 128_000 - ANSWER_ROOM_TOKENS
    assert token_budget(8000, max_tokens=500) == 7500
    assert token_budget(8000, cap=1000) == 1000 and token_budget(None, cap=1000) == 1000


def test_the_estimate_is_the_routers():
    messages = [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y" * 40}]
    assert default_estimate(messages, "s" * 40) == estimate_prompt_tokens(messages, "s" * 40) == 120


def test_provider_model_and_system_are_kept_until_a_cell_names_others():
    conv = Conversation("c")
    conv.commit(
        conv.plan("k0", "q", model="m-big"),
        turn("k0", "q", provider="p1", model="m-big"),
        pinned_model="m-big",
        system="Be brief",
    )
    nxt = conv.plan("k1", "q", provider=conv.provider)
    assert (nxt.provider, nxt.model, nxt.system) == ("p1", "m-big", "Be brief")
    moved = conv.plan("k1", "q", provider="p2")  # another provider: the model may not exist there
    assert (moved.provider, moved.model) == ("p2", None)
    routed = conv.plan("k1", "q", provider=None)
    assert routed.model is None
    conv.commit(moved, turn("k1", "q", provider="p2", model="p2-default"))
    assert (conv.provider, conv.model, conv.system) == ("p2", None, "Be brief")


def test_totals_keep_unknown_tokens_and_prices_unknown():
    conv = Conversation("c")
    conv.commit(conv.plan("k0", "q"), turn("k0", "q", cost=0.002))
    conv.commit(conv.plan("k1", "q"), turn("k1", "q", cost=math.nan, tokens=(None, None)))
    assert conv.tokens == 15 and conv.unknown_tokens == 1 and conv.unpriced == 1
    assert conv.cost_text().startswith("unknown (1 unpriced attempt") and "$0.002" in conv.cost_text()
    assert "unreported" in conv.tokens_text()


def test_registry_opens_resets_and_checks_names():
    reg = Conversations()
    reg.open("a")
    reg.open("b")
    assert reg.names == ["a", "b"] and "a" in reg
    assert reg.reset("a") == ["a"] and reg.reset("a") == []
    assert reg.reset() == ["b"] and len(reg) == 0
    for bad in ("", "-x", "has space", "x" * 65, "a/b"):
        with pytest.raises(ValueError, match="letters, digits"):
            check_name(bad)
    assert check_name("trip-2.v1_a") == "trip-2.v1_a"


# -- %%llm --chat over the simulator --------------------------------------------------------------


def sent_tokens(system: str, *texts: str) -> int:
    """What the simulator counts (and bills) for these messages."""
    return count_input_tokens(system, texts)


def chat_rows(router) -> list[dict]:
    return [r for r in router.ledger.records()]


def test_a_three_turn_conversation_sends_1_3_and_5_messages(shell, router):
    prompts = ["Plan a day in Rome", "What should I eat there?", "And in the evening?"]
    for i, p in enumerate(prompts):
        ok(shell, f"%%llm --chat trip\n{p}", cell_id=f"cell-{i}")
    rows = chat_rows(router)
    answers = [t.answer for t in shell._llmroute_magics.conversations.get("trip").turns]
    assert [r["input_tokens"] for r in rows] == [
        sent_tokens("", prompts[0]),
        sent_tokens("", prompts[0], answers[0], prompts[1]),
        sent_tokens("", prompts[0], answers[0], prompts[1], answers[1], prompts[2]),
    ]
    assert [r["conversation"] for r in rows] == ["trip"] * 3


def test_rerunning_turn_two_replaces_it(shell, router, magics):
    for i, p in enumerate(["first question", "second question", "third question"]):
        ok(shell, f"%%llm -c\n{p}", cell_id=f"c{i}")
    out = ok(shell, "%%llm -c\nsecond question, put better", cell_id="c1")
    conv = magics.conversations.get("default")
    assert [t.prompt for t in conv.turns] == ["first question", "second question, put better", "third question"]
    first = conv.turns[0]
    rows = chat_rows(router)
    assert rows[-1]["input_tokens"] == sent_tokens("", "first question", first.answer, "second question, put better")
    assert "turn 2 (replaced) · 1 earlier turn sent" in out.stdout
    ok(shell, "%%llm -c\nfourth", cell_id="c3")
    texts = [x for t in conv.turns[:3] for x in (t.prompt, t.answer)]
    assert chat_rows(router)[-1]["input_tokens"] == sent_tokens("", *texts, "fourth")


def test_without_a_cell_id_the_same_text_again_is_a_retry_of_the_last_turn(shell, router, magics):
    ok(shell, "%%llm -c\ngo on")
    ok(shell, "%%llm -c\ngo on")  # a terminal's up-arrow and enter: a retry
    conv = magics.conversations.get("default")
    assert [t.prompt for t in conv.turns] == ["go on"]
    ok(shell, "%%llm -c\nwhy?")
    ok(shell, "%%llm -c\ngo on")  # the same words after another turn: a new turn
    assert [t.prompt for t in conv.turns] == ["go on", "why?", "go on"]


def test_the_cell_id_of_the_kernels_parent_message_is_used_too(shell, router, magics):
    """Older IPython gives no cell id to run_cell; ipykernel's parent message carries Jupyter's."""
    try:
        shell.parent_header = {"metadata": {"cellId": "nb-cell-7"}}
        ok(shell, "%%llm -c\nfirst wording")
        ok(shell, "%%llm -c\nsecond wording")
    finally:
        del shell.parent_header
    assert [t.prompt for t in magics.conversations.get("default").turns] == ["second wording"]


def test_the_token_limit_drops_the_oldest_turns_and_the_footer_says_so(shell, sim, magics):
    # A provider whose window (as configured) holds about two turns of this conversation.
    spec = sim.provider_specs(["sim-openai"])[0].with_context_window(400)
    r = ModelClientRouter(ProviderRoutingConfig([spec]))
    restore = bind(shell, r)
    try:
        prompts = [f"Question number {i}: " + "tell me more about it. " * 8 for i in range(4)]
        outs = [ok(shell, f"%%llm -c long --max-tokens 60\n{p}", cell_id=f"t{i}") for i, p in enumerate(prompts)]
        conv = magics.conversations.get("long")
        last = r.usage_df()["input_tokens"].iloc[-1]
        budget = token_budget(400, 60)
        # what was sent is the newest turns that fit the budget, oldest left out
        kept = [t for t in conv.turns[:3]]
        while (
            estimate_prompt_tokens(
                [{"role": "user", "content": x} for t in kept for x in (t.prompt, t.answer)]
                + [{"role": "user", "content": prompts[3]}]
            )
            > budget
        ):
            kept = kept[1:]
        assert 0 < len(kept) < 3
        assert last == sent_tokens("", *[x for t in kept for x in (t.prompt, t.answer)], prompts[3])
        assert f"oldest left out: {3 - len(kept)} by the token limit" in outs[-1].stdout
    finally:
        restore()
        r.close()


def test_chat_max_turns_and_chat_max_tokens_are_settings(shell, router, magics):
    shell.run_line_magic("config", "LLMRouteMagics.chat_max_turns = 1")
    for i in range(3):
        out = ok(shell, f"%%llm -c\nq{i}", cell_id=f"m{i}")
    conv = magics.conversations.get("default")
    assert chat_rows(router)[-1]["input_tokens"] == sent_tokens("", conv.turns[1].prompt, conv.turns[1].answer, "q2")
    assert "1 by the turn limit" in out.stdout
    shell.run_line_magic("config", "LLMRouteMagics.chat_max_turns = 0")
    shell.run_line_magic("config", "LLMRouteMagics.chat_max_tokens = 5")
    out = ok(shell, "%%llm -c\nq3", cell_id="m3")
    assert chat_rows(router)[-1]["input_tokens"] == sent_tokens("", "q3")
    assert "3 by the token limit" in out.stdout


def test_a_conversation_keeps_its_provider_unless_a_cell_pins_another(shell, router, sim):
    ok(shell, "%%llm -c -p sim-anthropic\nhello", cell_id="p0")
    ok(shell, "%%llm -c\nand then?", cell_id="p1")  # the priority strategy would pick sim-openai
    ok(shell, "%%llm -c -p sim-local\nswitch", cell_id="p2")
    ok(shell, "%%llm -c\nstill there?", cell_id="p3")
    assert [r["provider"] for r in chat_rows(router)] == ["sim-anthropic", "sim-anthropic", "sim-local", "sim-local"]
    router.disable("sim-local")
    out = ok(shell, "%%llm -c\nnow?", cell_id="p4")
    assert chat_rows(router)[-1]["provider"] == "sim-openai"
    assert "its provider sim-local is disabled: routed" in out.stdout
    # the history went with it: four earlier turns
    conv = shell._llmroute_magics.conversations.get("default")
    assert chat_rows(router)[-1]["input_tokens"] == sent_tokens(
        "", *[x for t in conv.turns[:4] for x in (t.prompt, t.answer)], "now?"
    )


def test_system_prompt_and_model_are_kept_by_the_conversation(shell, router):
    ok(shell, "%%llm -c -m gpt-4o --system 'Answer as a pirate'\nhello", cell_id="s0")
    out = ok(shell, "%%llm -c\nmore", cell_id="s1")
    rows = chat_rows(router)
    assert [r["model"] for r in rows] == ["gpt-4o", "gpt-4o"]
    assert "sim-openai · gpt-4o ·" in out.stdout
    conv = shell._llmroute_magics.conversations.get("default")
    assert rows[1]["input_tokens"] == sent_tokens("Answer as a pirate", "hello", conv.turns[0].answer, "more")


def test_list_show_and_reset(shell, router, magics):
    assert "none yet" in ok(shell, "%llm chat").stdout
    ok(shell, "%%llm -c trip\nRome?", cell_id="l0")
    ok(shell, "%%llm -c trip\nFood?", cell_id="l1")
    ok(shell, "%%llm -c\nhello", cell_id="l2")
    listing = ok(shell, "%llm chat").stdout
    trip = next(x for x in listing.splitlines() if x.startswith("trip "))
    conv = magics.conversations.get("trip")
    assert "  2  " in trip and f"{conv.tokens:,}" in trip and conv.cost_text() in trip and "sim-openai" in trip
    shown = ok(shell, "%llm chat show trip").stdout
    assert "Rome?" in shown and "Food?" in shown and conv.turns[1].answer in shown
    assert "no conversation 'ghost'" in usage_error(shell, "%llm chat show ghost")
    assert "trip" in usage_error(shell, "%llm chat reset ghost")  # names the ones there are
    ok(shell, "%llm chat reset trip")
    assert magics.conversations.get("trip") is None
    ok(shell, "%%llm -c trip\nRome again?", cell_id="l3")
    assert chat_rows(router)[-1]["input_tokens"] == sent_tokens("", "Rome again?")  # really afresh
    ok(shell, "%llm chat reset --all")
    assert len(magics.conversations) == 0
    assert "usage: %llm chat" in usage_error(shell, "%llm chat frob")


def test_show_in_jupyter_renders_markdown(shell, router, magics):
    ok(shell, "%%llm -c\nhello", cell_id="j0")
    magics.display_mode = "rich"
    out = ok(shell, "%llm chat show")
    md = out.outputs[-1].data["text/markdown"]
    assert "> hello" in md and "sim-openai" in md


def test_a_failed_first_turn_begins_no_conversation_and_a_failed_turn_changes_nothing(shell, router, sim, magics):
    for name in ("sim-openai", "sim-anthropic", "sim-local"):
        sim.inject(name, ["invalid_request"])
    usage_error(shell, "%%llm -c fresh\nhello", cell_id="f0")
    assert magics.conversations.get("fresh") is None
    ok(shell, "%%llm -c fresh\nhello", cell_id="f0")
    sim.inject("sim-openai", ["invalid_request"])
    usage_error(shell, "%%llm -c fresh\nhello again", cell_id="f0")
    assert [t.prompt for t in magics.conversations.get("fresh").turns] == ["hello"]


def test_chat_cell_mistakes_are_usage_errors(shell, router):
    assert "either --chat or --compare" in usage_error(shell, "%%llm -c --compare\nhi")
    assert "letters, digits" in usage_error(shell, "%%llm -c 'my chat'\nhi")
    assert len(router.usage_df()) == 0
