"""How answers look: streamed into a display handle, then finished as rich output with a footer.

Two front ends:
- ``RichRenderer`` (Jupyter): a display handle updated as text arrives (throttled), replaced at
  the end by the chosen format plus footer, with the figures in ``metadata["llmroute"]``.
- ``TextRenderer`` (terminal IPython): chunks written to stdout as they come, then (for JSON, code
  and HTML) the formatted answer, then the footer.
Nothing here talks to the router; it only turns text and ``Completion`` values into output.
"""

from __future__ import annotations

import html
import json
import math
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .._format import is_unknown, millis, money, tokens

FORMATS = ("markdown", "text", "code", "json", "html")

# What -f asks of the model (added to the system prompt; --raw leaves it out). Short: it is sent,
# and paid for, with every cell of that format.
FORMAT_INSTRUCTIONS: dict[str, str] = {
    "json": "Reply with one valid JSON value and nothing else: no prose, no Markdown code fences.",
    "code": (
        "Reply with the code only, in one fenced code block tagged with its language, "
        "with no explanation outside the block."
    ),
    "markdown": "Format the reply as Markdown.",
    "html": "Reply with an HTML fragment only: no <html>, <head> or <body> tags, no Markdown code fences.",
}
# Formats whose finished form differs from the raw text: a terminal shows it after the stream.
REFORMATTED = ("json", "code", "html")


def with_instruction(system: str | None, instruction: str | None) -> str | None:
    """The system prompt with a format's instruction after it (either may be None)."""
    if not instruction:
        return system
    return f"{system.rstrip()}\n\n{instruction}" if system and system.strip() else instruction


_FENCE = re.compile(r"^\s*```([\w+#.-]*)[^\n]*\n(.*?)\n?```\s*$", re.S)
_FIRST_FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)\n?```", re.S)


def _clean_number(value: Any) -> Any:
    # NaN (unknown price) is not valid JSON; the notebook file must stay loadable everywhere.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def completion_metadata(c: Any) -> dict[str, Any]:
    """The figures of one answer, as stored under ``metadata["llmroute"]``."""
    fields = (
        "provider",
        "model",
        "latency_s",
        "ttft_s",
        "input_tokens",
        "output_tokens",
        "cost",
        "request_id",
        "attempts",
        "finish_reason",
    )
    return {f: _clean_number(getattr(c, f)) for f in fields}


def footer_text(c: Any) -> str:
    return str(c.footer())


def _strip_fence(text: str) -> tuple[str, str]:
    """(language, code) of an answer that is one fenced block, else of its first block, else the text."""
    m = _FENCE.match(text) or _FIRST_FENCE.search(text)
    if m:
        return m.group(1), m.group(2)
    return "", text.strip("\n")


def _fence_for(code: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    return "`" * max(3, longest + 1)


def code_of(text: str) -> str:
    """The code of an answer: its fenced block (the first, when there are several), else the text."""
    return _strip_fence(text)[1]


def _html_of(text: str) -> str:
    """An HTML answer without the Markdown fence a model may still put around it."""
    m = _FENCE.match(text)
    return m.group(2) if m and m.group(1).lower() in ("", "html") else text


def _small(footer: str, tooltip: str | None) -> str:
    title = f' title="{html.escape(tooltip, quote=True)}"' if tooltip else ""
    return f'<small class="llmroute-footer"{title}>{html.escape(footer).replace(chr(10), "<br>")}</small>'


def _plain_footer(footer: str) -> str:
    return "— " + footer.replace("\n", "\n— ")


def answer_bundle(text: str, fmt: str, footer: str, *, tooltip: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The MIME bundle for a finished answer and an optional note (e.g. why it is not JSON).

    ``footer`` may have several lines; ``tooltip`` (the instruction a format added to the request)
    shows when the pointer rests on the footer of a Markdown or HTML answer."""
    plain_foot = f"\n\n{_plain_footer(footer)}" if footer else ""
    md_foot = f"\n\n---\n{_small(footer, tooltip)}" if footer else ""
    plain = f"{text}{plain_foot}"
    if fmt == "markdown":
        return {"text/markdown": f"{text}{md_foot}", "text/plain": plain}, None
    if fmt == "text":
        return {"text/plain": plain}, None
    if fmt == "code":
        lang, code = _strip_fence(text)
        fence = _fence_for(code)
        md = f"{fence}{lang}\n{code}\n{fence}" + (f"\n\n{_small(footer, tooltip)}" if footer else "")
        return {"text/markdown": md, "text/plain": f"{code}{plain_foot}"}, None
    if fmt == "json":
        _, body = _strip_fence(text)
        try:
            data = json.loads(body)
        except ValueError as e:
            why = f"{e.msg} at line {e.lineno}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
            return {"text/plain": plain}, f"the answer is not valid JSON ({why}); shown as text"
        pretty = json.dumps(data, indent=2, ensure_ascii=False)
        bundle: dict[str, Any] = {
            "text/plain": f"{pretty}{plain_foot}",
            "text/markdown": f"```json\n{pretty}\n```" + (f"\n\n{_small(footer, tooltip)}" if footer else ""),
        }
        if isinstance(data, (dict, list)):
            bundle["application/json"] = data
        return bundle, None
    if fmt == "html":
        body = _html_of(text)
        foot = f"<hr>{_small(footer, tooltip)}" if footer else ""
        return {"text/html": f"{body}{foot}", "text/plain": f"{body}{plain_foot}"}, None
    raise ValueError(f"unknown format {fmt!r}")


# -- compare ---------------------------------------------------------------------------------


def _row_figures(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"error: {row['error']}"
    parts = []
    lat = row.get("latency_s")
    if not is_unknown(lat):
        parts.append(millis(lat))
    parts.append(tokens(row.get("input_tokens"), row.get("output_tokens")))
    parts.append(money(row.get("cost"), unknown="unknown cost"))
    return " · ".join(parts)


def compare_rows(df: Any) -> list[dict[str, Any]]:
    rows = []
    for rec in df.to_dict("records"):
        err = rec.get("error")
        if err is not None and (err != err or err == ""):  # NaN / empty -> no error
            err = None
        rec["error"] = err
        rows.append(rec)
    return rows


def compare_bundle(df: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Side-by-side answers (HTML table, one column per provider) and their metadata."""
    rows = compare_rows(df)
    head = "".join(
        f"<th style='text-align:left'>{html.escape(str(r.get('provider')))}"
        f"<br><small style='font-weight:normal'>{html.escape(str(r.get('model') or ''))}</small></th>"
        for r in rows
    )
    cells = "".join(
        "<td style='vertical-align:top;text-align:left;white-space:pre-wrap;max-width:40em'>"
        + (
            html.escape(str(r.get("text") or ""))
            if not r["error"]
            else f"<span style='color:#b00'>{html.escape(str(r['error']))}</span>"
        )
        + "</td>"
        for r in rows
    )
    figures = "".join(f"<td style='text-align:left'><small>{html.escape(_row_figures(r))}</small></td>" for r in rows)
    table = (
        f"<table class='llmroute-compare'><thead><tr>{head}</tr></thead>"
        f"<tbody><tr>{cells}</tr><tr>{figures}</tr></tbody></table>"
    )
    plain_blocks = []
    for r in rows:
        title = f"== {r.get('provider')} ({r.get('model')}) =="
        body = str(r.get("text") or "") if not r["error"] else ""
        plain_blocks.append(f"{title}\n{body}\n— {_row_figures(r)}".replace("\n\n— ", "\n— "))
    metadata = {
        "compare": [
            {
                k: _clean_number(r.get(k))
                for k in ("provider", "model", "latency_s", "input_tokens", "output_tokens", "cost", "error")
            }
            for r in rows
        ]
    }
    for m in metadata["compare"]:
        for k in ("input_tokens", "output_tokens"):
            if m[k] is not None:
                m[k] = int(m[k])
        if m["latency_s"] is not None:
            m["latency_s"] = float(m["latency_s"])
        if m["cost"] is not None:
            m["cost"] = float(m["cost"])
    return {"text/html": table, "text/plain": "\n\n".join(plain_blocks)}, metadata


# -- front ends ------------------------------------------------------------------------------


class RichRenderer:
    """Streams into one display handle and finishes it with the formatted answer."""

    def __init__(
        self, display: Callable[..., Any], *, interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._display = display  # IPython.display.display, injected for tests
        self._interval = interval_s
        self._clock = clock
        self._id: str | None = None
        self._text = ""
        self._last = -math.inf

    def _show(self, bundle: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        kwargs: dict[str, Any] = {"raw": True, "metadata": metadata or {}}
        if self._id is None:
            handle = self._display(bundle, display_id=True, **kwargs)
            self._id = getattr(handle, "display_id", None)
        else:
            self._display(bundle, display_id=self._id, update=True, **kwargs)

    def start(self) -> None:
        self._show({"text/plain": "…", "text/markdown": "*…*"})

    def chunk(self, text: str) -> None:
        self._text += text
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._show({"text/plain": self._text + " ▌", "text/markdown": self._text + " ▌"})

    def finish(
        self,
        completion: Any,
        fmt: str,
        *,
        footer: bool = True,
        note: str | None = None,
        lines: tuple[str, ...] = (),
        tooltip: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str | None:
        """Replace the streamed text with the formatted answer; ``lines`` go under the footer,
        ``metadata`` beside the figures under ``"llmroute"``. Returns a note for the user, if any."""
        text = "\n".join([footer_text(completion), *lines]) if footer else ""
        bundle, fmt_note = answer_bundle(completion.text, fmt, text, tooltip=tooltip)
        self._show(bundle, {"llmroute": {**completion_metadata(completion), **(metadata or {})}})
        return fmt_note or note

    def abort(self, message: str) -> None:
        """Keep what was shown, marked as stopped (interrupt or failure mid-stream)."""
        text = self._text or ""
        note = f"<small>{html.escape(message)}</small>"
        md = f"{text}\n\n---\n{note}" if text else note
        self._show({"text/markdown": md, "text/plain": f"{text}\n\n— {message}".lstrip()})


class TextRenderer:
    """Terminal IPython: print the chunks as they come, then the footer line."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._wrote = ""

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    def start(self) -> None:
        pass

    def chunk(self, text: str) -> None:
        self._wrote += text
        self.out.write(text)
        self.out.flush()

    def finish(
        self,
        completion: Any,
        fmt: str,
        *,
        footer: bool = True,
        note: str | None = None,
        lines: tuple[str, ...] = (),
        tooltip: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str | None:
        """The answer formatted as plain text: when it was streamed raw, and the format changes it
        (pretty JSON, the code out of its fence, HTML out of its fence), that form follows the
        stream under a rule. Then the footer and ``lines``."""
        bundle, fmt_note = answer_bundle(completion.text, fmt, "")
        formatted = bundle["text/plain"]
        if not self._wrote:  # not streamed: print the whole answer now, formatted as plain text
            self.out.write(formatted)
        elif fmt in REFORMATTED and fmt_note is None and formatted.strip() != self._wrote.strip():
            self.out.write(f"\n\n── {fmt} ──\n{formatted}")
        if footer:
            self.out.write("\n\n" + _plain_footer("\n".join([footer_text(completion), *lines])) + "\n")
        else:
            self.out.write("\n")
        self.out.flush()
        return fmt_note or note

    def abort(self, message: str) -> None:
        self.out.write(f"\n\n— {message}\n")
        self.out.flush()
