"""``{name}`` interpolation: fills what it can, leaves every other brace exactly as written."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmroute_magic._ipython.interpolate import interpolate

NS = {
    "topic": "CAP theorem",
    "n": 3,
    "doc": SimpleNamespace(title="Paxos", meta=SimpleNamespace(year=1998), _secret="sk-hidden"),
    "rows": ["first", "second"],
    "cfg": {"model": "gpt-4o-mini", "nested": {"k": "v"}},
    "_private_name": "ok-too",
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Explain {topic} in {n} lines", "Explain CAP theorem in 3 lines"),
        ("{doc.title} ({doc.meta.year})", "Paxos (1998)"),
        ("{rows[0]} / {rows[-1]}", "first / second"),
        ("{cfg['model']} {cfg[\"model\"]}", "gpt-4o-mini gpt-4o-mini"),
        ("{cfg['nested']['k']}", "v"),
        ("{_private_name}", "ok-too"),
    ],
)
def test_known_references_are_filled(text, expected):
    assert interpolate(text, NS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "{unknown}",
        "{doc.missing}",
        "{rows[5]}",
        "{cfg['absent']}",
        "{n + 1}",
        "{topic.upper()}",
        "{ topic }",
        '{"key": "value", "n": 1}',
        "{}",
        "def f(): return {1: 2}",
    ],
)
def test_unresolvable_references_are_left_as_written(text):
    assert interpolate(text, NS) == text


@pytest.mark.parametrize("text", ["{doc._secret}", "{doc.__class__}", "{doc.__dict__}"])
def test_private_attributes_are_never_followed(text):
    assert interpolate(text, NS) == text
    assert "sk-hidden" not in interpolate(text, NS)


def test_double_braces_are_literal_braces():
    assert interpolate("{{topic}} is {topic}", NS) == "{topic} is CAP theorem"
    assert interpolate('json: {{"a": {n}}}', NS) == 'json: {"a": 3}'


def test_nested_braces_keep_the_outer_ones():
    assert interpolate("{{{topic}}}", NS) == "{CAP theorem}"
    assert interpolate('{"q": {topic}}', NS) == '{"q": CAP theorem}'


def test_unresolved_names_are_reported():
    missing: list[str] = []
    interpolate("{topic} {nope} {doc.nothing} {{x}}", NS, unresolved=missing)
    assert missing == ["nope", "doc.nothing"]


def test_values_are_inserted_once_not_reinterpolated():
    assert interpolate("{t}", {"t": "{topic}", "topic": "X"}) == "{topic}"


def test_references_do_not_span_lines():
    text = "{\n topic\n}"
    assert interpolate(text, NS) == text


@given(st.text(alphabet=st.sampled_from(list("ab {}.[]'0_\n")), max_size=40))
def test_text_without_known_names_round_trips_except_double_braces(text):
    # With an empty namespace only `{{`/`}}` change, exactly as str.format would treat them.
    out = interpolate(text, {})
    assert out.replace("{", "").replace("}", "") == text.replace("{", "").replace("}", "")
    assert len(out) <= len(text)


def test_only_braces_shaped_like_a_reference_are_reported():
    # JSON, code and expressions between braces are meant literally; a misspelt name is not.
    missing: list[str] = []
    text = '{"a": 1} {n + 1} {topic.upper()} def f(): return {1: 2} {tpoic} {rows[9]} {doc.titel}'
    assert interpolate(text, NS, unresolved=missing) == text
    assert missing == ["tpoic", "rows[9]", "doc.titel"]
