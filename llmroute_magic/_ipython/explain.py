"""``%llm explain``: the notebook's last error as text a model can explain, and nothing more.

What is sent is the traceback as Python prints it — the exception, its message, and for each frame
the file, line and source line — never the values of variables (no frame locals, as verbose
tracebacks would show). IPython's own frames (the code that ran the cell) are left out. Secrets
that may sit in a source line or a message are masked first: the values of environment variables
whose names say key, token, secret or password, the router's own API keys, and anything shaped
like an API key. Long tracebacks keep their end, where the error is.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

MAX_CHARS = 6000

SYSTEM = (
    "You help a Python user working in a Jupyter notebook. Explain the error below in a few sentences: "
    "what went wrong, the most likely cause in their code, and how to fix it, with a short corrected "
    "snippet when it helps. Use Markdown."
)

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)
# Common API key shapes: OpenAI / Anthropic (sk-...), Google (AIza...), GitHub, Slack, AWS, Groq, bearer tokens.
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|gsk_[A-Za-z0-9]{20,})|(?<=Bearer )[A-Za-z0-9._\-]{16,}"
)
MASK = "***"


def last_error() -> BaseException | None:
    """The exception IPython last showed a traceback for (``sys.last_exc`` / ``sys.last_value``)."""
    err = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return err if isinstance(err, BaseException) else None


def _is_ipython_frame(filename: str) -> bool:
    parts = filename.replace("\\", "/").split("/")
    return "IPython" in parts and "core" in parts


def error_text(error: BaseException, tb: Any = None) -> str:
    """The traceback of ``error`` as text (chained causes included), without IPython's frames."""
    tb = tb if tb is not None else error.__traceback__
    while tb is not None and _is_ipython_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next  # the frames that ran the cell, before the user's code
    exc = traceback.TracebackException(type(error), error, tb, capture_locals=False)
    text = "".join(exc.format())
    if len(text) > MAX_CHARS:
        text = "… (start of the traceback left out)\n" + text[-MAX_CHARS:]
    return text


def secret_values(environ: Mapping[str, str] | None = None, extra: Iterable[str | None] = ()) -> list[str]:
    """Values worth masking: secret-looking environment variables and ``extra`` (e.g. the router's keys)."""
    env = os.environ if environ is None else environ
    found = [v for k, v in env.items() if _SECRET_NAME.search(k) and v and len(v) >= 8]
    found += [v for v in extra if v and len(v) >= 8]
    return sorted(set(found), key=len, reverse=True)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = text.replace(value, MASK)
    return _KEY_SHAPES.sub(MASK, text)


def prompt_for(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"My notebook cell failed with this error:\n\n{fence}\n{text.rstrip()}\n{fence}"


def headline(error: BaseException) -> str:
    """``ZeroDivisionError: division by zero``, the line Python ends a traceback with."""
    return "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]
