"""One formatter for every figure a person reads: money (unknown is never $0), milliseconds, tokens."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from llmroute_magic import Completion
from llmroute_magic._format import cost_total, count, millis, money, tokens
from llmroute_magic._ipython.render import compare_bundle

PACKAGE = Path(__file__).resolve().parent.parent / "llmroute_magic"


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "$0"),
        (0.0, "$0"),
        (0.007, "$0.007"),
        (0.0000042, "$0.0000042"),
        (0.000036585, "$0.0000366"),
        (0.0099999, "$0.01"),
        (0.0123, "$0.0123"),
        (0.5, "$0.5000"),
        (1234.56789, "$1,234.5679"),
        (math.nan, "unknown"),
        (None, "unknown"),
        (pd.NA, "unknown"),
    ],
)
def test_money(value, text):
    assert money(value) == text


def test_a_cheap_answer_never_reads_as_free():
    # six fixed decimals showed a $0.0000004 answer as $0.000000
    assert money(4e-7) == "$0.0000004"


@pytest.mark.parametrize(
    "args, kwargs, text",
    [
        ((0.25, 0), {}, "$0.2500"),
        ((math.nan, 3), {}, "unknown (3 unpriced attempts)"),
        ((0.25, 1), {}, "unknown (1 unpriced attempt)"),
        ((0.25, 2), {"priced": 0.25}, "unknown (2 unpriced attempts; $0.2500 priced)"),
        ((math.nan, 0), {}, "unknown"),
    ],
)
def test_a_total_over_unpriced_attempts_is_unknown_with_the_count(args, kwargs, text):
    assert cost_total(*args, **kwargs) == text


@pytest.mark.parametrize(
    "seconds, text", [(0.048, "48 ms"), (0.0004, "0.4 ms"), (12.5, "12,500 ms"), (None, "–"), (math.nan, "–")]
)
def test_millis(seconds, text):
    assert millis(seconds) == text


def test_counts_and_tokens():
    assert count(1234567) == "1,234,567" and count(math.nan) == "unknown"
    assert tokens(12, 30) == "12+30 tokens" and tokens(None, 5) == "unknown+5 tokens"


def test_the_footer_and_the_compare_table_say_the_same_thing():
    c = Completion("hi", "p", "m", input_tokens=12, output_tokens=30, cost=0.0000042, latency_s=0.048)
    assert c.footer() == "p · m · 48 ms · 12+30 tokens · $0.0000042"
    assert "unknown cost" in Completion("hi", "p", "m", cost=math.nan).footer()
    df = pd.DataFrame(
        [
            {
                "provider": "p",
                "model": "m",
                "text": "hi",
                "latency_s": 0.048,
                "input_tokens": 12,
                "output_tokens": 30,
                "cost": 0.0000042,
                "error": None,
            }
        ]
    )
    bundle, _ = compare_bundle(df)
    assert "48 ms · 12+30 tokens · $0.0000042" in bundle["text/plain"]


# The notebook layer's modules: none of them may format a figure by hand any more.
MINE = [
    "_ipython/magics.py",
    "_ipython/widgets.py",
    "_ipython/render.py",
    "_ipython/defaults.py",
    "_plots.py",
    "_demo.py",
    "_cli.py",
]
HAND_MADE = re.compile(r"\$\{[^}]*:[,.\d]*f\}|def _money|def _fmt_cost|def _fmt_ms|\* ?1000:\.0f\}")


@pytest.mark.parametrize("name", MINE)
def test_no_module_formats_money_or_milliseconds_by_hand(name):
    source = (PACKAGE / name).read_text()
    assert not HAND_MADE.findall(source), f"{name}: use llmroute_magic._format"


def test_completion_footer_uses_the_formatter():
    source = (PACKAGE / "_types.py").read_text()
    footer = source[source.index("def footer") : source.index("def _repr_markdown_")]
    assert "_format" in footer and not HAND_MADE.findall(footer)
