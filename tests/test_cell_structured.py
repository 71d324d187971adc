"""``%%llm --schema``, ``--tools`` and images named in the prompt, over the simulator.

What reached the wire is read from what the simulator counted and answered: a schema answer is
JSON that meets the schema, a tool call names the tool, an image adds its 85 tokens to the input.
"""

from __future__ import annotations

import base64

from ipython_fixtures import magics, ok, router, run, shell, sim, usage_error  # noqa: F401

from llmroute_magic import Completion, ModelClientRouter, ProviderRoutingConfig
from llmroute_magic.sim import ProviderProfile, Simulator
from llmroute_magic.sim._neutral import IMAGE_TOKENS, count_input_tokens

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def last(router) -> dict:
    return list(router.ledger.records())[-1]


CITY = """
from pydantic import BaseModel

class City(BaseModel):
    name: str
    population: int
"""


def test_schema_gives_the_object_and_shows_json(shell, router):
    ok(shell, CITY)
    out = ok(shell, "%%llm --schema City -o city -p sim-openai\nThe biggest city in Japan?")
    city = shell.user_ns["city"]
    assert type(city).__name__ == "City" and isinstance(city.population, int)
    assert '"population"' in out.stdout  # pretty-printed JSON, not prose
    assert last(router)["status"] == "ok"


def test_a_json_schema_dict_works_too_and_a_bad_variable_says_what_to_give(shell, router):
    shell.user_ns["colour"] = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    ok(shell, "%%llm --schema colour -o c -p sim-anthropic\nA warm colour?")
    assert isinstance(shell.user_ns["c"], dict) and isinstance(shell.user_ns["c"]["name"], str)
    assert "no variable 'nowhere'" in usage_error(shell, "%%llm --schema nowhere\nhi")
    shell.user_ns["num"] = 3
    assert "give a pydantic model class or a JSON schema dict" in usage_error(shell, "%%llm --schema num\nhi")


def test_a_schema_answered_with_prose_fails_over_to_valid_json(shell, router, sim):
    ok(shell, CITY)
    sim.inject("sim-openai", ["ignore_schema"])
    ok(shell, "%%llm --schema City -o city\nThe biggest city in Japan?")
    rows = list(router.ledger.records())
    assert [(r["provider"], r["status"], r["error_type"]) for r in rows] == [
        ("sim-openai", "error", "malformed_response"),
        ("sim-anthropic", "ok", None),
    ]
    assert rows[0]["input_tokens"] > 0 and rows[0]["cost"] > 0  # the prose was billed, and so recorded
    assert type(shell.user_ns["city"]).__name__ == "City"


WEATHER = '''
def get_weather(city: str, unit: str = "C") -> str:
    """The weather in a city, right now.

    More words the model does not need."""
    raise AssertionError("a tool is never run by the magic")
'''


def test_tools_show_the_calls_the_model_asks_for_and_never_run_them(shell, router):
    ok(shell, WEATHER)
    out = ok(shell, "%%llm --tools get_weather -o ans -p sim-openai\nUse get_weather for Paris, please.")
    ans = shell.user_ns["ans"]
    assert isinstance(ans, Completion) and [c.name for c in ans.tool_calls] == ["get_weather"]
    assert "city" in ans.tool_calls[0].arguments
    assert "get_weather(city=" in out.stdout and "not run" in out.stdout
    assert "no variable 'nope'" in usage_error(shell, "%%llm --tools nope\nhi")


def test_an_image_named_in_the_prompt_is_sent_as_an_image(shell, router):
    shell.user_ns["photo"] = PNG
    ok(shell, "%%llm -p sim-openai --no-stream\nDescribe {photo} in one line.")
    text_tokens = count_input_tokens("", ["Describe  in one line."])
    assert last(router)["input_tokens"] == text_tokens + IMAGE_TOKENS  # the image reached the wire as one


def test_an_image_cell_skips_a_provider_without_vision(shell, magics):
    with Simulator(
        [ProviderProfile("blind", model="text-only", vision=False), ProviderProfile("eyes", model="gpt-4o")]
    ) as s:
        blind, eyes = s.provider_specs()
        r = ModelClientRouter(ProviderRoutingConfig([blind.with_capabilities("tools", "streaming"), eyes]))
        shell.user_ns["llm"], shell.user_ns["photo"] = r, PNG
        try:
            ok(shell, "%%llm -o ans\nWhat is in {photo}?")
            assert shell.user_ns["ans"].provider == "eyes"
            assert s.stats()["providers"]["blind"]["requests"] == 0
        finally:
            r.close()


def test_compare_sends_the_image_to_every_arm(shell, router):
    shell.user_ns["photo"] = PNG
    ok(shell, "%%llm --compare sim-openai,sim-anthropic -o df\nDescribe {photo} in one line.")
    df = shell.user_ns["df"]
    text_tokens = count_input_tokens("", ["Describe  in one line."])
    assert df["error"].isna().all()
    assert list(df["input_tokens"]) == [text_tokens + IMAGE_TOKENS] * 2  # each arm got the picture, not a marker


def test_a_chat_turn_that_only_asked_for_a_tool_is_kept_as_text_the_next_cell_can_send(shell, router, magics):
    ok(shell, WEATHER)
    ok(shell, "%%llm --chat trip -p sim-anthropic --tools get_weather\nUse get_weather for Rome, please.")
    (turn,) = magics.conversations.get("trip").turns
    assert turn.answer.startswith("[asked to call get_weather(") and "not run" in turn.answer
    ok(shell, "%%llm --chat trip\nAnd what should I wear?")  # Anthropic refuses an empty assistant turn
    assert last(router)["status"] == "ok" and last(router)["provider"] == "sim-anthropic"
