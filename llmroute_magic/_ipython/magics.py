"""``%%llm`` (the cell is the prompt) and ``%llm`` (subcommands), thin over the router.

User mistakes raise ``UsageError``: IPython shows its message without a traceback. Failed
requests do the same by default (``short_errors``), so a notebook shows the attempts and what to
do instead of a stack; every attempt is in the ledger either way.
Settings: ``%config LLMRouteMagics.<name> = value``.
"""

from __future__ import annotations

import argparse
import hashlib
import keyword
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Float, Int, Unicode
from traitlets.config import Configurable

from .._errors import AllProvidersFailed, ConfigError, LLMRouteError, ProviderError
from .._format import cost_total, count, money, plural
from .._types import RoutingStrategy
from . import defaults, explain
from .chat import DEFAULT_NAME, Conversation, Conversations, Plan, Turn, check_name, token_budget
from .interpolate import IMAGE_MARK, interpolate
from .reference import CELL_OPTIONS, EXPLAIN_OPTIONS, STRATEGIES, Option, magic_help, subcommand_help
from .render import FORMAT_INSTRUCTIONS, FORMATS, RichRenderer, TextRenderer, code_of, compare_bundle, with_instruction
from .structured import image_content, image_part, schema_option, tool_calls_markdown, tools_option

SAVE_FORMATS = (".csv", ".parquet")


def _with_arguments(options: tuple[Option, ...], name: str) -> Callable[[Any], Any]:
    """``magic_arguments`` for ``options`` (from the one table in ``reference``), in table order."""

    def decorate(func: Any) -> Any:
        for option in reversed(options):  # decorators apply bottom-up: the last is added first
            func = magic_arguments.argument(*option.flags, **option.argparse_kwargs())(func)
        return magic_arguments.magic_arguments(name=name)(func)

    return decorate


def _is_router(obj: Any) -> bool:
    if obj is None:
        return False
    from .. import ModelClientRouter  # lazy: the router module is the heavy part of the package

    return isinstance(obj, ModelClientRouter)


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing after an interrupt must not mask it
        pass


def _writable_file(path_text: str, command: str, suffixes: tuple[str, ...]) -> Path:
    """The path a subcommand will write, checked first so a typo costs one line, not a traceback."""
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise UsageError(
            f"{command}: {str(path)!r} is a directory; give a file name inside it, "
            f"e.g. {str(path / ('usage' + suffixes[0]))!r}"
        )
    if path.suffix.lower() not in suffixes:
        raise UsageError(
            f"{command}: unsupported file type {path.suffix or '(none)'!r}; "
            f"use a name ending in {' or '.join(suffixes)}"
        )
    if not path.parent.is_dir():
        raise UsageError(f"{command}: no such directory: {str(path.parent)!r}; create it first or pick another path")
    return path


def _cannot_write(command: str, path: Path, error: OSError) -> UsageError:
    return UsageError(f"{command}: cannot write {str(path)!r}: {error.strerror or error}")


def _host(url: str) -> str:
    """A base URL's host and port only: no scheme, path, user or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def _key_state(spec: Any) -> str:
    """Whether a provider has a key, by where it would come from. Looks only at whether one is
    there: no key's value is read out, shown or compared."""
    if spec.api_key is not None:
        return "given in the config"
    found = next((var for var in spec.key_env_vars if os.environ.get(var)), None)
    if found is not None:
        return f"{found} set"
    if spec.is_local:
        return "none needed (local)"
    return f"{' or '.join(spec.key_env_vars)} missing"


@magics_class
class LLMRouteMagics(Magics, Configurable):
    """The ``%llm`` / ``%%llm`` magics. One instance per shell, created by ``%load_ext``."""

    shell: Any  # the InteractiveShell (IPython types it as optional; the magics always have one)

    router_var = Unicode("llm", config=True, help="Name of the user-namespace variable holding the router.")
    default_format = Enum(list(FORMATS), "markdown", config=True, help="How answers are shown when -f is not given.")
    stream = Bool(True, config=True, help="Stream answers as they arrive (--no-stream turns it off per cell).")
    interpolate = Bool(True, config=True, help="Fill {name} from the user namespace (--no-interpolate per cell).")
    footer = Bool(True, config=True, help="End answers with provider, model, latency, tokens and cost.")
    short_errors = Bool(True, config=True, help="Show failed requests as a short message instead of a traceback.")
    display_mode = Enum(
        ["auto", "rich", "text"],
        "auto",
        config=True,
        help="rich: Jupyter display updates; text: plain stdout (terminal); auto: detect.",
    )
    stream_interval_s = Float(0.1, config=True, help="Least time between display updates while streaming.")
    chat_max_turns = Int(
        20,
        config=True,
        help="Earlier turns a --chat cell sends at most (0: no limit); "
        "the oldest are left out first and the footer says so.",
    )
    chat_max_tokens = Int(
        0,
        config=True,
        help="Most tokens (estimated as the router does) a --chat cell's prompt "
        "may take; 0: only the provider's context window limits it.",
    )
    format_instructions = Bool(
        True,
        config=True,
        help="-f json/code/markdown/html add a short instruction to the system prompt "
        "(--raw leaves it out for one cell).",
    )
    code_to_cell = Bool(True, config=True, help="-f code in Jupyter: put the code into a new cell below (never run).")

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._owned: list[Any] = []  # routers these magics built and must release
        self.conversations = Conversations()  # of the %%llm --chat cells
        self._explain_failed: tuple[BaseException, BaseException] | None = None  # (its error, the error explained)

    # -- the router -----------------------------------------------------------------------------
    def bind_default_router(self, announce: Callable[[str], None] | None = print) -> Any:
        """Build the default router and store it as ``llm`` (unless a router is already there)."""
        existing = self.shell.user_ns.get(self.router_var)
        if _is_router(existing):
            return existing
        router = defaults.default_router(announce=announce)
        self._owned.append(router)
        self.shell.user_ns[self.router_var] = router
        return router

    @property
    def router(self) -> Any:
        obj = self.shell.user_ns.get(self.router_var)
        if obj is None:
            raise UsageError(
                f"no router in variable {self.router_var!r}; create one "
                f"({self.router_var} = ModelClientRouter(config)), load one with %llm config PATH, "
                "or point the magics at another variable with %llm use VAR"
            )
        if not _is_router(obj):
            raise UsageError(
                f"variable {self.router_var!r} holds a {type(obj).__name__}, not a router; "
                "use %llm use VAR to pick the variable that holds your ModelClientRouter"
            )
        return obj

    def release_all(self) -> None:
        while self._owned:
            router = self._owned.pop()
            try:
                defaults.release(router)
            except Exception:  # noqa: BLE001 - unloading must go on
                pass

    def _provider_names(self, router: Any) -> list[str]:
        return [p.name for p in router.providers]

    def _check_provider(self, router: Any, name: str, what: str = "provider") -> str:
        names = self._provider_names(router)
        if name not in names:
            raise UsageError(f"unknown {what} {name!r}; allowed: {', '.join(names)}")
        return name

    def _rich(self) -> bool:
        if self.display_mode != "auto":
            return self.display_mode == "rich"
        return getattr(self.shell, "kernel", None) is not None

    def _request_failed(self, error: BaseException, router: Any = None) -> BaseException:
        hint = self._key_hint(error, router)
        if not self.short_errors:
            if hint:
                print(f"llmroute: {hint}", file=sys.stderr)
            return error
        if isinstance(error, ConfigError):
            return UsageError(str(error))
        return UsageError(
            f"request failed: {error}\n{hint + chr(10) if hint else ''}(every attempt is recorded: %llm usage)"
        )

    @staticmethod
    def _key_hint(error: BaseException, router: Any) -> str | None:
        """For attempts that had no API key: the %env line that sets each missing variable."""
        attempts = (
            error.attempts
            if isinstance(error, AllProvidersFailed)
            else [error]
            if isinstance(error, ProviderError)
            else []
        )
        names = list(dict.fromkeys(a.provider for a in attempts if a.error_type == "missing_api_key"))
        if not names or router is None:
            return None
        specs = {p.name: p for p in router.providers}
        variables = list(dict.fromkeys(specs[n].key_env_var for n in names if n in specs))
        if not variables:
            return None
        lines = "\n".join(f"  %env {var}=..." for var in variables)
        return (
            f"to set the missing key{'s' if len(variables) > 1 else ''} for this session, run (with your key "
            f"in place of ...):\n{lines}\nthen run the cell again (%llm providers shows which keys are set)"
        )

    # -- %%llm and %llm ---------------------------------------------------------------------------
    @_with_arguments(CELL_OPTIONS, name="%llm")  # shown as %%llm: IPython adds a "%"
    def _cell_args(self, line: str, cell: str) -> None:
        """Send the cell as a prompt through the router; see %llm help for the line form."""

    @line_cell_magic
    def llm(self, line: str = "", cell: str | None = None) -> Any:
        # The docstring (what %llm? and %%llm? show) is set below the class from reference.magic_help().
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    # -- cell -----------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str) -> None:
        # shlex (not IPython's arg_split) so that --system 'Be brief' arrives without its quotes.
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%%llm: cannot parse the options {line!r}: {e}") from None
        args = self._cell_args.parser.parse_args(argv)
        router = self.router
        fmt = (args.format or ("json" if args.schema is not None else self.default_format)).lower()
        if fmt not in FORMATS:
            raise UsageError(f"-f/--format: unknown format {args.format!r}; allowed: {', '.join(FORMATS)}")
        kwargs = self._request_options(router, args)
        chat_name = None
        if args.chat is not None:
            if args.compare is not None:
                raise UsageError("use either --chat or --compare, not both (a comparison is not a conversation turn)")
            try:
                chat_name = check_name(args.chat)
            except ValueError as e:
                raise UsageError(f"-c/--chat: {e}") from None
        prompt = self._prompt(cell, args)
        instruction = self._instruction(fmt, args)
        lines: list[str] = []
        metadata: dict[str, Any] = {"format": fmt}
        if instruction:
            lines.append(f"asked for {fmt} in the system prompt (--raw: not asked)")
            metadata["instruction"] = instruction
        if args.compare is not None:
            if args.provider is not None:
                raise UsageError("use either -p/--provider or --compare, not both")
            if args.system is not None or instruction:
                kwargs["system"] = with_instruction(args.system, instruction)
            return self._compare(router, prompt, args, kwargs)
        return self._send(router, cell, prompt, args, kwargs, fmt, chat_name, instruction, lines, metadata)

    def _request_options(self, router: Any, args: Any) -> dict[str, Any]:
        """The cell's options as request options, each checked (a mistake is a UsageError)."""
        kwargs: dict[str, Any] = {}
        if args.strategy is not None:
            try:
                kwargs["strategy"] = RoutingStrategy.parse(args.strategy)
            except ConfigError:
                raise UsageError(f"-s/--strategy: unknown strategy {args.strategy!r}; allowed: {STRATEGIES}") from None
        if args.provider is not None:
            kwargs["provider"] = self._check_provider(router, args.provider)
        if args.model is not None:
            if not args.model.strip():
                raise UsageError("-m/--model: give a model name, e.g. -m gpt-4o-mini")
            kwargs["model"] = args.model.strip()
        if args.max_tokens is not None:
            if args.max_tokens <= 0:
                raise UsageError(f"--max-tokens: must be a positive whole number, got {args.max_tokens}")
            kwargs["max_tokens"] = args.max_tokens
        if args.temperature is not None:
            if not args.temperature >= 0:
                raise UsageError(f"-t/--temperature: must be a number >= 0, got {args.temperature}")
            kwargs["temperature"] = args.temperature
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(f"-o/--output: {args.output!r} is not a valid variable name")
        if args.schema is not None:
            kwargs["response_format"] = schema_option(args.schema, self.shell.user_ns)
        if args.tools is not None:
            kwargs["tools"] = tools_option(args.tools, self.shell.user_ns)
        return kwargs

    def _prompt(self, cell: str, args: Any) -> str:
        """The prompt's text; images it names (``{photo}``) wait in ``self._images`` for ``_send``."""
        prompt = cell
        self._images: list[Any] = []
        if self.interpolate and not args.no_interpolate:
            unresolved: list[str] = []
            prompt = interpolate(
                prompt, self.shell.user_ns, unresolved=unresolved, images=self._images, image_of=image_part
            )
            if unresolved:
                names = list(dict.fromkeys(unresolved))
                shown = ", ".join("{" + n + "}" for n in names)
                verb = "is" if len(names) == 1 else "are"
                print(
                    f"llmroute: {shown} {verb} not defined, so the prompt keeps it as written "
                    "(define it, write {{ }} for literal braces, or use --no-interpolate)",
                    file=sys.stderr,
                )
        prompt = prompt.strip("\r\n").rstrip()  # the cell's trailing newline is not part of the prompt
        if not prompt.replace(IMAGE_MARK, "").strip() and not self._images:
            raise UsageError("the prompt is empty: write it in the cell below the %%llm line")
        return prompt

    def _send(
        self,
        router: Any,
        cell: str,
        prompt: str,
        args: Any,
        kwargs: dict[str, Any],
        fmt: str,
        chat_name: str | None,
        instruction: str | None,
        lines: list[str],
        metadata: dict[str, Any],
    ) -> None:
        """Ask (as a turn of conversation ``chat_name``, if given), show, and keep what the cell asked to keep."""
        images, marked = self._images, prompt
        prompt = marked.replace(IMAGE_MARK, "[image]")  # what a conversation keeps of this turn
        send: Any = [{"role": "user", "content": image_content(marked, images)}] if images else prompt
        plan = conv = None
        if chat_name is None:
            if args.system is not None or instruction:
                kwargs["system"] = with_instruction(args.system, instruction)
        else:
            conv, plan, send = self._as_turn(router, chat_name, cell, prompt, args, kwargs, instruction, lines)
            if images:  # the images go with this turn; the conversation keeps "[image]" in its text
                send = [*send[:-1], {**send[-1], "content": image_content(marked, images)}]
            metadata["chat"] = plan.metadata()
        to_cell = fmt == "code" and self.code_to_cell and self._rich()
        if to_cell:
            lines.append("the code is in a new cell below (not run)")
        try:
            tooltip = instruction and f"asked with -f {fmt}: {instruction}"
            stream = self.stream and not args.no_stream
            completion = self._ask(
                router, send, kwargs, fmt, stream, lines=tuple(lines), tooltip=tooltip, metadata=metadata
            )
        except BaseException:
            if conv is not None and not conv.turns:
                self.conversations.reset(conv.name)  # a conversation whose first cell failed was never begun
            raise
        if conv is not None and plan is not None:
            pinned = kwargs["model"] if args.model else None
            conv.commit(plan, Turn.of(plan.key, prompt, completion), pinned_model=pinned, system=args.system)
        self._keep(completion, args, to_cell)
        return None

    def _as_turn(
        self,
        router: Any,
        chat_name: str,
        cell: str,
        prompt: str,
        args: Any,
        kwargs: dict[str, Any],
        instruction: str | None,
        lines: list[str],
    ) -> tuple[Conversation, Plan, list[dict[str, Any]]]:
        """This cell as the next turn of ``chat_name``: the options it adds, and the messages to send."""
        conv, plan, moved = self._chat_plan(router, chat_name, cell, prompt, args, kwargs)
        for k, v in (
            ("provider", plan.provider),
            ("model", plan.model),
            ("system", with_instruction(plan.system, instruction)),
        ):
            if v is not None:
                kwargs[k] = v
        kwargs["conversation"] = chat_name
        lines.append(plan.note() + (f" · {moved}" if moved else ""))
        return conv, plan, plan.messages

    def _keep(self, completion: Any, args: Any, to_cell: bool) -> None:
        """What follows the answer: the code cell, the tool calls asked for, the ``-o`` variable."""
        if to_cell:
            self.shell.set_next_input(code_of(completion.text), replace=False)
        if completion.tool_calls:
            self._show_markdown(tool_calls_markdown(completion.tool_calls))
        if args.output:
            keep = completion.parsed if args.schema is not None and completion.parsed is not None else completion
            self.shell.user_ns[args.output] = keep

    def _show_markdown(self, text: str) -> None:
        if self._rich():
            from IPython.display import Markdown, display

            display(Markdown(text))
        else:
            print(text)

    def _instruction(self, fmt: str, args: Any) -> str | None:
        """The format's instruction for this cell: asked for with -f (or a non-Markdown default
        format), unless --raw or ``format_instructions`` is off."""
        if args.raw or not self.format_instructions or args.schema is not None:
            return None  # (a schema is asked for by response_format itself)
        if args.format is None and fmt in ("markdown", "text"):
            return None  # the out-of-the-box way of showing answers asks nothing of the model
        return FORMAT_INSTRUCTIONS.get(fmt)

    # -- conversations ----------------------------------------------------------------------------
    def _cell_key(self, cell: str) -> tuple[str, bool]:
        """Which cell this is, so a re-run replaces its own turn: (key, found anywhere in the
        conversation). The cell id Jupyter front ends send with each execution (JupyterLab,
        Notebook 7, VS Code), read from IPython's execution info, else from the kernel's parent
        message; without one (terminal IPython, nbclient), the cell's text, matched against the
        last turn only (a retry), so the same words later in the conversation are a new turn."""
        exec_result = getattr(getattr(self.shell, "displayhook", None), "exec_result", None)
        cell_id = getattr(getattr(exec_result, "info", None), "cell_id", None)
        if not cell_id:
            parent = getattr(self.shell, "parent_header", None)
            if isinstance(parent, dict):
                cell_id = (parent.get("metadata") or {}).get("cellId")
        if cell_id:
            return f"cell:{cell_id}", True
        digest = hashlib.sha256(cell.strip().encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return f"text:{digest}", False

    def _chat_plan(
        self, router: Any, name: str, cell: str, prompt: str, args: Any, kwargs: dict[str, Any]
    ) -> tuple[Conversation, Plan, str | None]:
        conv = self.conversations.open(name)
        provider, moved = kwargs.get("provider"), None
        if provider is None and conv.provider is not None:
            provider, moved = self._kept_provider(router, conv.provider)
        key, anywhere = self._cell_key(cell)
        window = self._context_window(router, provider)
        budget = token_budget(window, kwargs.get("max_tokens"), self.chat_max_tokens or None)
        plan = conv.plan(
            key,
            prompt,
            anywhere=anywhere,
            provider=provider,
            model=kwargs.get("model"),
            system=args.system,
            max_turns=max(0, self.chat_max_turns),
            budget=budget,
        )
        return conv, plan, moved

    def _kept_provider(self, router: Any, kept: str) -> tuple[str | None, str | None]:
        """The conversation's provider when it can still serve, else None (route) and why."""
        if kept not in self._provider_names(router):
            return None, f"its provider {kept} is not in this router: routed"
        if kept not in router.enabled:
            return None, f"its provider {kept} is disabled: routed"
        if kept in router.cooling_down():
            return None, f"its provider {kept} is cooling down: routed"
        return kept, None

    def _context_window(self, router: Any, provider: str | None) -> int | None:
        """The window the prompt must fit: the provider's; when routing, the largest known among the
        enabled ones (a context-length error falls back to a provider with a larger window)."""
        specs = [p for p in router.providers if (p.name == provider if provider else p.name in router.enabled)]
        windows = [p.context_window for p in specs if p.context_window]
        return max(windows) if windows else None

    def _renderer(self) -> RichRenderer | TextRenderer:
        if self._rich():
            from IPython.display import display

            return RichRenderer(display, interval_s=self.stream_interval_s)
        return TextRenderer()

    def _ask(
        self,
        router: Any,
        prompt: Any,
        kwargs: dict[str, Any],
        fmt: str,
        stream: bool,
        *,
        lines: tuple[str, ...] = (),
        tooltip: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        renderer = self._renderer()
        interrupted = "interrupted: the request was cancelled (recorded in %llm usage as 'cancelled')"
        if stream:
            try:
                s = router.stream(prompt, **kwargs)
            except LLMRouteError as e:
                raise self._request_failed(e, router) from None
            renderer.start()
            try:
                for chunk in s:
                    renderer.chunk(chunk)
            except KeyboardInterrupt:
                _close_quietly(s)
                renderer.abort("interrupted")
                raise UsageError(interrupted) from None
            except LLMRouteError as e:
                _close_quietly(s)
                renderer.abort("failed: see the message below")
                raise self._request_failed(e, router) from None
            completion = s.completion
        else:
            try:
                completion = router.complete(prompt, **kwargs)
            except KeyboardInterrupt:
                raise UsageError(interrupted) from None
            except LLMRouteError as e:
                raise self._request_failed(e, router) from None
        note = renderer.finish(completion, fmt, footer=self.footer, lines=lines, tooltip=tooltip, metadata=metadata)
        if note:
            print(f"llmroute: {note}", file=sys.stderr)
        return completion

    def _compare(self, router: Any, prompt: str, args: Any, kwargs: dict[str, Any]) -> None:
        from .._router import compare_target

        names = None
        if args.compare.strip().lower() != "all":
            names = [n.strip() for n in args.compare.split(",") if n.strip()]
            if not names:
                raise UsageError("--compare: give provider names (or NAME:MODEL pairs) separated by commas, or all")
            configured = self._provider_names(router)
            for n in names:
                try:
                    compare_target(n, configured)
                except ConfigError as e:
                    raise UsageError(f"--compare: {str(e).removeprefix('providers: ')}") from None
        kwargs.pop("strategy", None)  # every named provider answers: there is nothing to route
        send: Any = [{"role": "user", "content": image_content(prompt, self._images)}] if self._images else prompt
        try:
            df = router.compare(send, providers=names, **kwargs)
        except KeyboardInterrupt:
            raise UsageError("interrupted: the comparison was cancelled (recorded in %llm usage)") from None
        except LLMRouteError as e:
            raise self._request_failed(e, router) from None
        bundle, metadata = compare_bundle(df)
        if self._rich():
            from IPython.display import display

            display(bundle, raw=True, metadata={"llmroute": metadata})
        else:
            print(bundle["text/plain"])
        if args.output:
            self.shell.user_ns[args.output] = df
        return None

    # -- line -----------------------------------------------------------------------------------
    def _line(self, line: str) -> Any:
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%llm: cannot parse {line!r}: {e}") from None
        if not words:
            words = ["status"]
        name, rest = words[0].lower(), words[1:]
        handler = getattr(self, f"_cmd_{name}", None)
        if handler is None:
            raise UsageError(f"%llm: unknown subcommand {words[0]!r}; use one of:\n{subcommand_help()}")
        return handler(rest)

    def _expect(self, rest: list[str], count: int, usage: str) -> list[str]:
        if len(rest) != count:
            raise UsageError(f"usage: %llm {usage}")
        return rest

    def _cmd_help(self, rest: list[str]) -> None:
        print("%llm subcommands:\n" + subcommand_help() + "\n\n%%llm options: see %%llm? ")

    def _cmd_status(self, rest: list[str]) -> None:
        self._expect(rest, 0, "status")
        r = self.router
        enabled, cooling = set(r.enabled), set(r.cooling_down())
        fallback = "on" if r.fallback_enabled else "off"
        lines = [
            f"llmroute router {self.router_var!r}: strategy {r.strategy.value} · fallback {fallback} · "
            f"max retries {r.max_retries}"
        ]
        specs = list(r.providers)
        w = max(len(p.name) for p in specs)
        wm = max(len(p.model) for p in specs)
        for p in specs:
            state = "enabled" if p.name in enabled else "disabled"
            if p.name in cooling:
                state += ", cooling down"
            lines.append(f"  {p.name.ljust(w)}  {p.model.ljust(wm)}  {state}")
        lines.append(self._totals_line(r))
        print("\n".join(lines))

    def _totals_line(self, r: Any, stats: Any = None) -> str:
        stats = r.get_usage_stats() if stats is None else stats
        by = stats.by_provider
        attempts = int(by["requests"].sum()) if len(by) else 0
        unpriced = stats.unpriced_rows
        total = cost_total(stats.total_cost, unpriced)
        if unpriced:
            names = [str(n) for n, c in by["cost"].items() if c != c]
            total += f" from {', '.join(names)}: give their prices (input_price / output_price) to count them"
        return f"usage: {plural(attempts, 'attempt')} · {count(stats.total_tokens)} tokens · total cost {total}"

    def _cmd_use(self, rest: list[str]) -> None:
        (var,) = self._expect(rest, 1, "use VAR")
        obj = self.shell.user_ns.get(var)
        if obj is None:
            raise UsageError(f"%llm use: no variable {var!r} in the namespace")
        if not _is_router(obj):
            raise UsageError(f"%llm use: {var!r} is a {type(obj).__name__}, not a ModelClientRouter")
        self.router_var = var
        print(f"llmroute: magics now use router {var!r}")

    def _cmd_strategy(self, rest: list[str]) -> None:
        r = self.router
        if not rest:
            print(f"strategy: {r.strategy.value} (allowed: {STRATEGIES})")
            return
        (name,) = self._expect(rest, 1, "strategy NAME")
        try:
            r.set_strategy(RoutingStrategy.parse(name))
        except ConfigError:
            raise UsageError(f"%llm strategy: unknown strategy {name!r}; allowed: {STRATEGIES}") from None
        print(f"strategy: {r.strategy.value}")

    def _cmd_providers(self, rest: list[str]) -> None:
        self._expect(rest, 0, "providers")
        from .._pricing import PriceBook

        r = self.router
        enabled, cooling = set(r.enabled), set(r.cooling_down())
        book = PriceBook()  # the router's own way of finding a price, read here without its internals
        header = ("name", "api", "model", "host", "key", "price in/out per 1M", "price source", "priority", "state")
        rows, missing = [], []
        for p in r.providers:
            key = _key_state(p)
            if key.endswith(" missing"):
                missing.append(p)
            if p.input_price is not None and p.output_price is not None:
                price, source = f"{money(p.input_price)} / {money(p.output_price)}", "spec"
            else:
                rates = book.rates(p)
                if rates:
                    price, source = f"{money(rates[0])} / {money(rates[1])}", "genai-prices"
                elif book.priced_by_answer(p):  # an Azure deployment: priced by the model each answer names
                    price, source = "–", "answer's model"
                else:
                    price, source = "–", "unknown"
            state = ("enabled" if p.name in enabled else "disabled") + (", cooling down" if p.name in cooling else "")
            rows.append(
                (
                    p.name,
                    p.api or "",
                    p.model,
                    _host(p.base_url or ""),
                    key,
                    price,
                    source,
                    "–" if p.priority is None else str(p.priority),
                    state,
                )
            )
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        out = [fmt(header)] + [fmt(row) for row in rows]
        for p in missing:
            out.append(
                f"{p.name}: no API key; set one for this session with  %env {p.key_env_var}=...  "
                "(or api_key_env= in the config)"
            )
        if any(row[6] == "unknown" for row in rows):
            out.append("unknown price: costs show as unknown, never $0; give input_price/output_price (USD per 1M)")
        print("\n".join(out))

    def _cmd_enable(self, rest: list[str]) -> None:
        (name,) = self._expect(rest, 1, "enable NAME")
        r = self.router
        r.enable(self._check_provider(r, name))
        print(f"enabled: {', '.join(r.enabled)}")

    def _cmd_disable(self, rest: list[str]) -> None:
        (name,) = self._expect(rest, 1, "disable NAME")
        r = self.router
        r.disable(self._check_provider(r, name))
        print(f"enabled: {', '.join(r.enabled) or '(none: every request will fail until you enable one)'}")

    def _cmd_usage(self, rest: list[str]) -> Any:
        if rest not in ([], ["--all"]):
            raise UsageError(
                "usage: %llm usage [--all]  (--all: every row of the ledger file, "
                "earlier resets and other kernels included)"
            )
        return self.router.usage_df(all=bool(rest))

    def _cmd_stats(self, rest: list[str]) -> Any:
        self._expect(rest, 0, "stats")
        r = self.router
        stats = r.get_usage_stats()
        print(self._totals_line(r, stats))
        return stats.by_provider

    def _cmd_plot(self, rest: list[str]) -> Any:
        from .._plots import PLOT_KINDS, figure_to_png

        if len(rest) not in (1, 2):
            raise UsageError(f"usage: %llm plot KIND [PATH.png]; KIND is one of: {', '.join(PLOT_KINDS)}")
        if rest[0].strip().lower() not in PLOT_KINDS:
            raise UsageError(f"%llm plot: unknown kind {rest[0]!r}; allowed: {', '.join(PLOT_KINDS)}")
        path = _writable_file(rest[1], "%llm plot", (".png",)) if len(rest) == 2 else None
        fig = self.router.plot(rest[0])
        if path is None:
            return fig
        try:
            path.write_bytes(figure_to_png(fig))
        except OSError as e:
            raise _cannot_write("%llm plot", path, e) from None
        print(f"saved {path}")
        return None

    def _cmd_panel(self, rest: list[str]) -> Any:
        self._expect(rest, 0, "panel")
        return self.router.panel()

    def _cmd_config(self, rest: list[str]) -> None:
        (path_text,) = self._expect(rest, 1, "config PATH")
        from .. import ModelClientRouter, ProviderRoutingConfig

        path = Path(path_text).expanduser()
        if not path.is_file():
            raise UsageError(f"%llm config: no such file: {str(path)!r}")
        try:
            new = ModelClientRouter(ProviderRoutingConfig.from_file(path))
        except ConfigError as e:
            raise UsageError(f"%llm config: {path}: {e}") from None
        old = self.shell.user_ns.get(self.router_var)
        self.shell.user_ns[self.router_var] = new
        if old is not None and any(old is o for o in self._owned):
            self._owned = [o for o in self._owned if o is not old]
            defaults.release(old)
        self._owned.append(new)
        print(f"llmroute: router {self.router_var!r} rebuilt from {path}")
        print(defaults.describe_config(new.config, str(path)))

    def _cmd_reset(self, rest: list[str]) -> None:
        self._expect(rest, 0, "reset")
        r = self.router
        r.reset_usage()
        ledger_path = r.config.ledger_path
        kept = f"the ledger file {str(ledger_path)!r} keeps" if ledger_path is not None else "the ledger keeps"
        print(
            f"llmroute: new usage view from now: usage, stats, plots and the panel count from here; "
            f"{kept} every earlier row (%llm usage --all shows them)"
        )

    def _cmd_save(self, rest: list[str]) -> None:
        (path_text,) = self._expect(rest, 1, "save PATH (.csv or .parquet)")
        path = _writable_file(path_text, "%llm save", SAVE_FORMATS)
        df = self.router.usage_df()
        try:
            if path.suffix.lower() == ".csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path, index=False)
        except ImportError as e:
            raise UsageError(f"%llm save: parquet needs pyarrow ({e}); pip install pyarrow, or save .csv") from None
        except OSError as e:
            raise _cannot_write("%llm save", path, e) from None
        print(f"saved {len(df)} rows to {path}")

    # -- conversations ------------------------------------------------------------------------
    def _cmd_chat(self, rest: list[str]) -> None:
        usage = "chat | chat show [NAME] | chat reset [NAME|--all]"
        if not rest:
            return self._chat_list()
        sub, more = rest[0].lower(), rest[1:]
        if sub == "show" and len(more) <= 1:
            return self._chat_show(more[0] if more else DEFAULT_NAME)
        if sub == "reset" and len(more) <= 1:
            if more == ["--all"]:
                names = self.conversations.reset()
                print(
                    f"llmroute: forgot {plural(len(names), 'conversation')}"
                    + (f" ({', '.join(names)})" if names else "")
                    + "; the next --chat cell starts afresh"
                )
                return None
            name = more[0] if more else DEFAULT_NAME
            if not self.conversations.reset(name):
                raise UsageError(f"%llm chat reset: no conversation {name!r}; {self._known_conversations()}")
            print(
                f"llmroute: forgot conversation {name!r}; its next --chat cell starts afresh "
                "(its requests stay in %llm usage, conversation column)"
            )
            return None
        raise UsageError(f"usage: %llm {usage}")

    def _known_conversations(self) -> str:
        names = self.conversations.names
        return (
            f"conversations: {', '.join(names)}"
            if names
            else "there are none yet: start one with %%llm --chat (or -c NAME)"
        )

    def _chat_list(self) -> None:
        if not len(self.conversations):
            print(f"llmroute: {self._known_conversations()}")
            return
        header = ("name", "turns", "context", "tokens spent", "cost", "provider", "model")
        rows = [
            (
                c.name,
                str(len(c.turns)),
                f"≈{count(c.context_tokens())}",
                c.tokens_text(),
                c.cost_text(),
                c.provider or "–",
                c.model or "(the provider's)",
            )
            for c in self.conversations
        ]
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        print(
            "\n".join(
                [fmt(header)]
                + [fmt(row) for row in rows]
                + ["(context: what the next cell would send, before limits; %llm chat show NAME)"]
            )
        )

    def _chat_show(self, name: str) -> None:
        conv = self.conversations.get(name)
        if conv is None:
            raise UsageError(f"%llm chat show: no conversation {name!r}; {self._known_conversations()}")
        head = (
            f"chat {conv.name}: {plural(len(conv.turns), 'turn')} · {conv.tokens_text()} tokens · "
            f"{conv.cost_text()}" + (f" · system: {conv.system}" if conv.system else "")
        )
        if not self._rich():
            parts = [head]
            for i, t in enumerate(conv.turns, 1):
                parts.append(f"\n[{i}] you:\n{t.prompt}\n\n[{i}] {t.provider} · {t.model}:\n{t.answer}")
            print("\n".join(parts))
            return
        import html

        from IPython.display import display

        md = [f"**{html.escape(head)}**"]
        for i, t in enumerate(conv.turns, 1):
            quoted = "\n".join("> " + line for line in t.prompt.splitlines())
            md.append(
                f"<small>turn {i} · you</small>\n\n{quoted}\n\n"
                f"<small>{html.escape(t.provider)} · {html.escape(t.model)}</small>\n\n{t.answer}"
            )
        plain = "\n\n".join(
            [head] + [f"[{i}] you: {t.prompt}\n[{i}] {t.provider}: {t.answer}" for i, t in enumerate(conv.turns, 1)]
        )
        display(
            {"text/markdown": "\n\n---\n\n".join(md), "text/plain": plain},
            raw=True,
            metadata={"llmroute": {"chat": {"name": conv.name, "turns": len(conv.turns)}}},
        )

    # -- setup help ---------------------------------------------------------------------------
    def _cmd_explain(self, rest: list[str]) -> None:
        parser = _LineParser(prog="%llm explain", add_help=False)
        for option in EXPLAIN_OPTIONS:
            parser.add_argument(*option.flags, **option.argparse_kwargs())
        args = parser.parse_args(rest)
        router = self.router
        error = explain.last_error()
        if self._explain_failed is not None and error is self._explain_failed[0]:
            error = self._explain_failed[1]  # explaining failed last time: still the error to explain
        if error is None:
            print(
                "llmroute: no error to explain: nothing has failed in this session yet "
                "(run the cell that fails, then %llm explain)"
            )
            return None
        tb = getattr(sys, "last_traceback", None) if error is getattr(sys, "last_value", None) else None
        secrets = explain.secret_values(extra=_keys_to_mask(router))
        text = explain.mask_secrets(explain.error_text(error, tb), secrets)
        headline = explain.mask_secrets(explain.headline(error), secrets)
        kwargs: dict[str, Any] = {"system": explain.SYSTEM}
        if args.provider is not None:
            kwargs["provider"] = self._check_provider(router, args.provider)
        if args.model:
            kwargs["model"] = args.model
        print(f"llmroute: explaining {headline}", file=sys.stderr)
        try:
            self._ask(
                router,
                explain.prompt_for(text),
                kwargs,
                "markdown",
                self.stream and not args.no_stream,
                lines=(f"explained: {headline} (its traceback was sent, no variables' values)",),
                metadata={"explain": {"error": headline}},
            )
        except BaseException as failure:
            self._explain_failed = (failure, error)
            raise
        self._explain_failed = None
        return None


def settings(cls: type[Configurable] | None = None) -> list[tuple[str, str, str]]:
    """(name, default, help) of every ``%config LLMRouteMagics`` setting, in definition order."""
    cls = LLMRouteMagics if cls is None else cls
    traits = cls.class_traits(config=True)
    order = [name for name in vars(cls) if name in traits]
    return [(name, repr(traits[name].default_value), traits[name].help) for name in order]


LLMRouteMagics.llm.__doc__ = magic_help(settings())


class _LineParser(argparse.ArgumentParser):
    """argparse for a line subcommand: a mistake is a UsageError (one line), never an exit."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _keys_to_mask(router: Any) -> list[str]:
    """The router's own API keys, read only to mask them in text that is about to be sent elsewhere."""
    keys = []
    for spec in router.providers:
        try:
            key = spec.resolve_api_key()
        except Exception:  # noqa: BLE001 - masking must not fail the command
            continue
        if key:
            keys.append(key)
    return keys
