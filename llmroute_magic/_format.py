"""How figures read, everywhere a person sees one: money, milliseconds and token counts.

One module so that a footer, ``%llm stats``, a compare table, a plot title, the panel and the
``llmroute demo`` summary can never disagree on how a number is shown. Unknown is a value here,
not an accident: NaN or None money reads "unknown", never "$0" (an unpriced model is not free).
Pure functions of numbers; imports nothing beyond the standard library.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["cost_total", "count", "is_unknown", "millis", "money", "plural", "tokens"]

UNKNOWN = "unknown"


def is_unknown(value: Any) -> bool:
    """None, NaN, pandas' NA/NaT: anything that is not a real number."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def money(value: Any, *, unknown: str = UNKNOWN) -> str:
    """USD: ``$0``, ``$0.0000042`` (three significant digits below a cent), ``$0.0123``, ``$1,234.5678``.

    Below a cent a fixed number of decimals would show a cheap model's answer as ``$0.000000``;
    from a cent up, four decimals are enough to compare providers.
    """
    if is_unknown(value):
        return unknown
    v = float(value)
    if v == 0:
        return "$0"
    sign, v = ("-" if v < 0 else ""), abs(v)
    if v >= 0.01:
        return f"{sign}${v:,.4f}"
    decimals = min(12, 2 - math.floor(math.log10(v)))  # three significant digits
    text = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return f"{sign}${text}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def cost_total(total: Any, unpriced: int = 0, *, priced: Any = None) -> str:
    """A total over attempts: ``money(total)``, or "unknown (N unpriced attempts…)" when any price is unknown.

    ``priced`` (optional) is the sum over the attempts whose price is known, shown beside the count.
    """
    if not unpriced:
        return money(total)  # "unknown" without a count when the caller has none to give
    detail = plural(int(unpriced), "unpriced attempt")
    if priced is not None and not is_unknown(priced):
        detail += f"; {money(priced)} priced"
    return f"{UNKNOWN} ({detail})"


def millis(seconds: Any) -> str:
    """``48 ms``; one decimal below 10 ms (``0.4 ms``); ``–`` when there is no figure."""
    if is_unknown(seconds):
        return "–"
    ms = float(seconds) * 1000
    return f"{ms:.1f} ms" if abs(ms) < 10 else f"{ms:,.0f} ms"


def count(n: Any) -> str:
    """A whole number with thousands separators; ``unknown`` when the provider did not say."""
    return UNKNOWN if is_unknown(n) else f"{int(n):,}"


def tokens(input_tokens: Any, output_tokens: Any) -> str:
    """``12+30 tokens`` (prompt + answer)."""
    return f"{count(input_tokens)}+{count(output_tokens)} tokens"
