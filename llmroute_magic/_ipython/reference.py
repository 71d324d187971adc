"""What ``%%llm`` and ``%llm`` accept: one table, read by everything that describes or parses them.

- ``magics.py`` builds the ``%%llm`` argument parser from ``CELL_OPTIONS`` and the ``%llm explain``
  parser from ``EXPLAIN_OPTIONS``;
- ``%llm?`` / ``%%llm?`` show ``magic_help()``, ``%llm help`` shows ``subcommand_help()``;
- the documentation's magics page is filled in from ``*_markdown()`` when the site is built
  (``docs/hooks.py``), and ``tests/test_docs.py`` checks that the help and the page agree.

So an option or a subcommand is added here, once. Importing this module loads no IPython.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._plots import PLOT_KINDS
from .._types import RoutingStrategy
from .chat import DEFAULT_NAME as DEFAULT_CHAT
from .render import FORMATS

STRATEGIES = ", ".join(s.value for s in RoutingStrategy)


@dataclass(frozen=True)
class Option:
    """One command-line option: its flags, what it does, and how argparse parses it."""

    flags: tuple[str, ...]
    help: str
    metavar: str | None = None
    parse: dict[str, Any] = field(default_factory=dict)  # argparse's own keywords: type, nargs, const, action...

    def argparse_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.parse)
        if self.metavar is not None:
            kwargs["metavar"] = self.metavar
        kwargs["help"] = self.help
        return kwargs

    @property
    def takes_value(self) -> bool:
        return self.parse.get("action") not in ("store_true", "store_false")

    def usage(self) -> str:
        """The flags as a person types them: ``-m MODEL, --model MODEL``, ``--compare [NAMES]``."""
        if not self.takes_value:
            return ", ".join(self.flags)
        meta = self.metavar or self.flags[-1].lstrip("-").upper()
        value = f"[{meta}]" if self.parse.get("nargs") == "?" else meta
        return ", ".join(f"{flag} {value}" for flag in self.flags)


@dataclass(frozen=True)
class Subcommand:
    """One ``%llm`` subcommand: how it is written and what it does."""

    usage: str  # "chat reset [NAME|--all]": the first word is the subcommand
    help: str

    @property
    def name(self) -> str:
        return self.usage.split()[0]


CELL_OPTIONS: tuple[Option, ...] = (
    Option(("-p", "--provider"), "send to this provider only (this cell)", "PROVIDER"),
    Option(("-s", "--strategy"), f"routing strategy for this cell: {STRATEGIES}", "STRATEGY"),
    Option(
        ("--compare",),
        "ask several providers side by side: comma-separated names or NAME:MODEL pairs "
        "(two models of one provider), or all (default)",
        "NAMES",
        {"nargs": "?", "const": "all", "default": None},
    ),
    Option(
        ("-c", "--chat"),
        f"continue conversation NAME (default: {DEFAULT_CHAT!r}): its earlier turns are sent "
        "with this cell; re-running the cell replaces its own turn",
        "NAME",
        {"nargs": "?", "const": DEFAULT_CHAT, "default": None},
    ),
    Option(("-m", "--model"), "this model instead of the provider's configured one (priced as that model)", "MODEL"),
    Option(
        ("-f", "--format"),
        f"output format: {', '.join(FORMATS)}; json, code, markdown and html also ask the "
        "model for it (an instruction in the system prompt); code goes into a new cell below "
        "in Jupyter",
        "FORMAT",
    ),
    Option(("--raw",), "send no format instruction (-f only formats)", parse={"action": "store_true"}),
    Option(
        ("--schema",),
        "answer as this pydantic model or JSON schema (a variable); -o then keeps the object "
        "itself; an answer that does not fit fails over to the next provider",
        "VAR",
    ),
    Option(
        ("--tools",),
        "offer these tools: functions (their signatures are the schemas) or tool dicts, as "
        "comma-separated variables; the calls the model asks for are shown, never run",
        "NAMES",
    ),
    Option(
        ("-o", "--output"),
        "store the Completion (with --compare, the DataFrame; with --schema, the object) in VAR",
        "VAR",
    ),
    Option(("--system",), "system prompt (with --chat: kept by the conversation)", "TEXT"),
    Option(("-t", "--temperature"), "sampling temperature (>= 0)", "TEMP", {"type": float}),
    Option(("--max-tokens",), "most tokens to generate (> 0)", "N", {"type": int}),
    Option(("--no-stream",), "wait for the whole answer", parse={"action": "store_true"}),
    Option(("--no-interpolate",), "send {name} literally", parse={"action": "store_true"}),
)

EXPLAIN_OPTIONS: tuple[Option, ...] = (
    Option(("-p", "--provider"), "ask this provider (default: routed as usual)", "PROVIDER"),
    Option(("-m", "--model"), "ask this model of the provider", "MODEL"),
    Option(("--no-stream",), "wait for the whole explanation", parse={"action": "store_true"}),
)

SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("status", "strategy, providers (enabled / cooling down) and total cost; also what %llm alone shows"),
    Subcommand("use VAR", "switch the magics to the router stored in variable VAR"),
    Subcommand("strategy [NAME]", f"show or set the routing strategy ({STRATEGIES})"),
    Subcommand(
        "providers",
        "per provider: api, model, host, key set or missing (never the key), prices and their source, state",
    ),
    Subcommand("enable NAME", "put a provider back into rotation"),
    Subcommand("disable NAME", "take a provider out of rotation"),
    Subcommand(
        "usage [--all]", "the usage ledger as a DataFrame, one row per attempt (--all: every row of the ledger file)"
    ),
    Subcommand("stats", "usage statistics per provider (DataFrame) and totals"),
    Subcommand("plot KIND [PATH]", f"plot usage: {', '.join(PLOT_KINDS)} (PATH saves a PNG)"),
    Subcommand("panel", "the interactive control panel (strategy, providers, fallback, retries, live stats)"),
    Subcommand("config PATH", "load a TOML config and rebuild the router"),
    Subcommand("reset", "start the usage view afresh (a ledger file keeps every row: %llm usage --all)"),
    Subcommand("save PATH", "write the usage ledger to PATH (.csv or .parquet)"),
    Subcommand("chat", "the conversations of %%llm --chat cells: turns, tokens, cost, provider"),
    Subcommand("chat show [NAME]", f"a conversation's turns (NAME: {DEFAULT_CHAT})"),
    Subcommand(
        "chat reset [NAME|--all]",
        f"forget a conversation (NAME: {DEFAULT_CHAT}) or every one; the next --chat cell starts afresh",
    ),
    Subcommand(
        "explain [-p PROVIDER] [-m MODEL] [--no-stream]",
        "explain the notebook's last error: its traceback (no variables' values) to the routed provider",
    ),
    Subcommand("help", "this list"),
)


# -- text for %llm help and %llm? ---------------------------------------------------------------------

HELP_WIDTH = 100  # columns of the help text
_LEFT_MAX = 34  # a longer name puts its description on the next line


def _two_columns(rows: Iterable[tuple[str, str]]) -> str:
    """``  name   description`` lines, the description wrapped under itself."""
    rows = list(rows)
    left = min(max(len(name) for name, _ in rows), _LEFT_MAX)
    indent = " " * (2 + left + 2)
    out = []
    for name, text in rows:
        lines = textwrap.wrap(text, HELP_WIDTH - len(indent), break_on_hyphens=False) or [""]
        if len(name) > left:
            out.append(f"  {name}")
            out += [indent + line for line in lines]
        else:
            out.append(f"  {name.ljust(left)}  {lines[0]}")
            out += [indent + line for line in lines[1:]]
    return "\n".join(out)


def subcommand_help() -> str:
    """``%llm help``: every subcommand and what it does."""
    return _two_columns((f"%llm {s.usage}", s.help) for s in SUBCOMMANDS)


def _option_lines(options: Iterable[Option]) -> str:
    return _two_columns((o.usage(), o.help) for o in options)


def magic_help(settings: Iterable[tuple[str, str, str]] = ()) -> str:
    """What ``%llm?`` and ``%%llm?`` show: usage, every option, every subcommand and setting.

    ``settings`` are (name, default, help) of the ``%config LLMRouteMagics`` traits."""
    settings = list(settings)
    parts = [
        "Route prompts across LLM providers.",
        "",
        "%%llm [options]      the cell is the prompt ({name} is filled from the notebook's variables)",
        "%llm SUBCOMMAND ...  manage the router (%llm alone: status)",
        "",
        "%%llm options:",
        _option_lines(CELL_OPTIONS),
        "",
        "%llm subcommands:",
        subcommand_help(),
        "",
        "%llm explain options:",
        _option_lines(EXPLAIN_OPTIONS),
    ]
    if settings:
        parts += ["", "Settings (%config LLMRouteMagics.NAME = VALUE):"]
        parts.append(_two_columns((name, f"{text} (default: {default})") for name, default, text in settings))
    return "\n".join(parts) + "\n"


# -- Markdown for the documentation -------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def options_markdown(options: Iterable[Option] = CELL_OPTIONS) -> str:
    rows = ["| option | what it does |", "|---|---|"]
    rows += [f"| {'<br>'.join(_code(u) for u in o.usage().split(', '))} | {_cell(o.help)} |" for o in options]
    return "\n".join(rows)


def subcommands_markdown() -> str:
    rows = ["| subcommand | what it does |", "|---|---|"]
    rows += [f"| {_code('%llm ' + s.usage)} | {_cell(s.help)} |" for s in SUBCOMMANDS]
    return "\n".join(rows)


def settings_markdown(settings: Iterable[tuple[str, str, str]]) -> str:
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    rows += [f"| {_code(name)} | {_code(default)} | {_cell(text)} |" for name, default, text in settings]
    return "\n".join(rows)
