"""``%%llm`` (the cell is the prompt) and ``%llm`` (subcommands), thin over the router.

User mistakes raise ``UsageError``: IPython shows its message without a traceback. Failed
requests do the same by default (``short_errors``), so a notebook shows the attempts and what to
do instead of a stack; every attempt is in the ledger either way.
Settings: ``%config LLMRouteMagics.<name> = value``.
"""

from __future__ import annotations

import keyword
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Float, Unicode
from traitlets.config import Configurable

from .._errors import ConfigError, LLMRouteError
from .._format import cost_total, count, plural
from .._types import RoutingStrategy
from . import defaults
from .interpolate import interpolate
from .render import FORMATS, RichRenderer, TextRenderer, compare_bundle

STRATEGIES = ", ".join(s.value for s in RoutingStrategy)
SAVE_FORMATS = (".csv", ".parquet")

SUBCOMMANDS: dict[str, str] = {
    "status": "strategy, providers (enabled / cooling down) and total cost",
    "use VAR": "switch the magics to the router stored in variable VAR",
    "strategy [NAME]": f"show or set the routing strategy ({STRATEGIES})",
    "providers": "list the providers with model, API, base URL, priority and prices",
    "enable NAME": "put a provider back into rotation",
    "disable NAME": "take a provider out of rotation",
    "usage [--all]": "the usage ledger as a DataFrame, one row per attempt (--all: every row of the ledger file)",
    "stats": "usage statistics per provider (DataFrame) and totals",
    "plot KIND [PATH]": "plot usage: cost, latency, tokens, requests or timeline (PATH saves a PNG)",
    "panel": "the interactive control panel (strategy, providers, fallback, retries, live stats)",
    "config PATH": "load a TOML config and rebuild the router",
    "reset": "start the usage view afresh (a ledger file keeps every row: %llm usage --all)",
    "save PATH": "write the usage ledger to PATH (.csv or .parquet)",
    "help": "this list",
}


def _subcommand_help() -> str:
    width = max(map(len, SUBCOMMANDS))
    return "\n".join(f"  %llm {k.ljust(width)}  {v}" for k, v in SUBCOMMANDS.items())


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
        raise UsageError(f"{command}: {str(path)!r} is a directory; give a file name inside it, "
                         f"e.g. {str(path / ('usage' + suffixes[0]))!r}")
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{command}: unsupported file type {path.suffix or '(none)'!r}; "
                         f"use a name ending in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"{command}: no such directory: {str(path.parent)!r}; create it first or pick another path")
    return path


def _cannot_write(command: str, path: Path, error: OSError) -> UsageError:
    return UsageError(f"{command}: cannot write {str(path)!r}: {error.strerror or error}")




@magics_class
class LLMRouteMagics(Magics, Configurable):
    """The ``%llm`` / ``%%llm`` magics. One instance per shell, created by ``%load_ext``."""

    router_var = Unicode("llm", config=True, help="Name of the user-namespace variable holding the router.")
    default_format = Enum(list(FORMATS), "markdown", config=True,
                          help="How answers are shown when -f is not given.")
    stream = Bool(True, config=True, help="Stream answers as they arrive (--no-stream turns it off per cell).")
    interpolate = Bool(True, config=True, help="Fill {name} from the user namespace (--no-interpolate per cell).")
    footer = Bool(True, config=True, help="End answers with provider, model, latency, tokens and cost.")
    short_errors = Bool(True, config=True,
                        help="Show failed requests as a short message instead of a traceback.")
    display_mode = Enum(["auto", "rich", "text"], "auto", config=True,
                        help="rich: Jupyter display updates; text: plain stdout (terminal); auto: detect.")
    stream_interval_s = Float(0.1, config=True, help="Least time between display updates while streaming.")

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._owned: list[Any] = []  # routers these magics built and must release

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
            raise UsageError(f"no router in variable {self.router_var!r}; create one "
                             f"({self.router_var} = ModelClientRouter(config)), load one with %llm config PATH, "
                             "or point the magics at another variable with %llm use VAR")
        if not _is_router(obj):
            raise UsageError(f"variable {self.router_var!r} holds a {type(obj).__name__}, not a router; "
                             "use %llm use VAR to pick the variable that holds your ModelClientRouter")
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

    def _request_failed(self, error: BaseException) -> BaseException:
        if not self.short_errors:
            return error
        if isinstance(error, ConfigError):
            return UsageError(str(error))
        return UsageError(f"request failed: {error}\n(every attempt is recorded: %llm usage)")

    # -- %%llm and %llm ---------------------------------------------------------------------------
    @magic_arguments.magic_arguments(name="%%llm")
    @magic_arguments.argument("-p", "--provider", help="send to this provider only (this cell)")
    @magic_arguments.argument("-s", "--strategy", help=f"routing strategy for this cell: {STRATEGIES}")
    @magic_arguments.argument("--compare", nargs="?", const="all", default=None, metavar="NAMES",
                              help="ask several providers side by side: comma-separated names, or all (default)")
    @magic_arguments.argument("-f", "--format", help=f"output format: {', '.join(FORMATS)}")
    @magic_arguments.argument("-o", "--output", metavar="VAR",
                              help="store the Completion (with --compare, the DataFrame) in VAR")
    @magic_arguments.argument("--system", metavar="TEXT", help="system prompt")
    @magic_arguments.argument("-t", "--temperature", type=float, help="sampling temperature (>= 0)")
    @magic_arguments.argument("--max-tokens", type=int, metavar="N", help="most tokens to generate (> 0)")
    @magic_arguments.argument("--no-stream", action="store_true", help="wait for the whole answer")
    @magic_arguments.argument("--no-interpolate", action="store_true", help="send {name} literally")
    def _cell_args(self, line: str, cell: str) -> None:
        """Send the cell as a prompt through the router; see %llm help for the line form."""

    @line_cell_magic
    def llm(self, line: str = "", cell: str | None = None) -> Any:
        """Route prompts across LLM providers.

        %%llm [options]   the cell is the prompt (see the options below)
        %llm SUBCOMMAND   manage the router: status, use, strategy, providers, enable, disable,
                          usage, stats, plot, panel, config, reset, save, help
        """
        if cell is None:
            return self._line(line)
        return self._cell(line, cell)

    llm.__doc__ = (llm.__doc__ or "") + "\nSubcommands:\n" + _subcommand_help() + "\n\n" + (_cell_args.__doc__ or "")

    # -- cell -----------------------------------------------------------------------------------
    def _cell(self, line: str, cell: str) -> None:
        # shlex (not IPython's arg_split) so that --system 'Be brief' arrives without its quotes.
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%%llm: cannot parse the options {line!r}: {e}") from None
        args = self._cell_args.parser.parse_args(argv)
        router = self.router
        fmt = (args.format or self.default_format).lower()
        if fmt not in FORMATS:
            raise UsageError(f"-f/--format: unknown format {args.format!r}; allowed: {', '.join(FORMATS)}")
        kwargs: dict[str, Any] = {}
        if args.strategy is not None:
            try:
                kwargs["strategy"] = RoutingStrategy.parse(args.strategy)
            except ConfigError:
                raise UsageError(f"-s/--strategy: unknown strategy {args.strategy!r}; allowed: {STRATEGIES}") from None
        if args.provider is not None:
            kwargs["provider"] = self._check_provider(router, args.provider)
        if args.max_tokens is not None:
            if args.max_tokens <= 0:
                raise UsageError(f"--max-tokens: must be a positive whole number, got {args.max_tokens}")
            kwargs["max_tokens"] = args.max_tokens
        if args.temperature is not None:
            if not args.temperature >= 0:
                raise UsageError(f"-t/--temperature: must be a number >= 0, got {args.temperature}")
            kwargs["temperature"] = args.temperature
        if args.system is not None:
            kwargs["system"] = args.system
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(f"-o/--output: {args.output!r} is not a valid variable name")
        prompt = cell
        if self.interpolate and not args.no_interpolate:
            unresolved: list[str] = []
            prompt = interpolate(prompt, self.shell.user_ns, unresolved=unresolved)
            if unresolved:
                names = list(dict.fromkeys(unresolved))
                shown = ", ".join("{" + n + "}" for n in names)
                verb = "is" if len(names) == 1 else "are"
                print(f"llmroute: {shown} {verb} not defined, so the prompt keeps it as written "
                      "(define it, write {{ }} for literal braces, or use --no-interpolate)", file=sys.stderr)
        prompt = prompt.strip("\r\n").rstrip()  # the cell's trailing newline is not part of the prompt
        if not prompt.strip():
            raise UsageError("the prompt is empty: write it in the cell below the %%llm line")
        if args.compare is not None:
            if args.provider is not None:
                raise UsageError("use either -p/--provider or --compare, not both")
            return self._compare(router, prompt, args, kwargs)
        stream = self.stream and not args.no_stream
        completion = self._ask(router, prompt, kwargs, fmt, stream)
        if args.output:
            self.shell.user_ns[args.output] = completion
        return None

    def _renderer(self) -> RichRenderer | TextRenderer:
        if self._rich():
            from IPython.display import display

            return RichRenderer(display, interval_s=self.stream_interval_s)
        return TextRenderer()

    def _ask(self, router: Any, prompt: str, kwargs: dict[str, Any], fmt: str, stream: bool) -> Any:
        renderer = self._renderer()
        interrupted = ("interrupted: the request was cancelled (recorded in %llm usage as 'cancelled')")
        if stream:
            try:
                s = router.stream(prompt, **kwargs)
            except LLMRouteError as e:
                raise self._request_failed(e) from None
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
                raise self._request_failed(e) from None
            completion = s.completion
        else:
            try:
                completion = router.complete(prompt, **kwargs)
            except KeyboardInterrupt:
                raise UsageError(interrupted) from None
            except LLMRouteError as e:
                raise self._request_failed(e) from None
        note = renderer.finish(completion, fmt, footer=self.footer)
        if note:
            print(f"llmroute: {note}", file=sys.stderr)
        return completion

    def _compare(self, router: Any, prompt: str, args: Any, kwargs: dict[str, Any]) -> None:
        names = None
        if args.compare.strip().lower() != "all":
            names = [n.strip() for n in args.compare.split(",") if n.strip()]
            if not names:
                raise UsageError("--compare: give provider names separated by commas, or all")
            for n in names:
                self._check_provider(router, n)
        kwargs.pop("strategy", None)  # every named provider answers: there is nothing to route
        try:
            df = router.compare(prompt, providers=names, **kwargs)
        except KeyboardInterrupt:
            raise UsageError("interrupted: the comparison was cancelled (recorded in %llm usage)") from None
        except LLMRouteError as e:
            raise self._request_failed(e) from None
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
            raise UsageError(f"%llm: unknown subcommand {words[0]!r}; use one of:\n{_subcommand_help()}")
        return handler(rest)

    def _expect(self, rest: list[str], count: int, usage: str) -> list[str]:
        if len(rest) != count:
            raise UsageError(f"usage: %llm {usage}")
        return rest

    def _cmd_help(self, rest: list[str]) -> None:
        print("%llm subcommands:\n" + _subcommand_help() + "\n\n%%llm options: see %%llm? ")

    def _cmd_status(self, rest: list[str]) -> None:
        self._expect(rest, 0, "status")
        r = self.router
        enabled, cooling = set(r.enabled), set(r.cooling_down())
        fallback = "on" if r.fallback_enabled else "off"
        lines = [f"llmroute router {self.router_var!r}: strategy {r.strategy.value} · fallback {fallback} · "
                 f"max retries {r.max_retries}"]
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
        r = self.router
        enabled, cooling = set(r.enabled), set(r.cooling_down())
        header = ("name", "model", "api", "base_url", "priority", "weight", "price in/out per 1M", "state")
        rows = []
        for p in r.providers:
            price = ("genai-prices" if p.input_price is None and p.output_price is None
                     else f"{p.input_price if p.input_price is not None else '?'}/"
                          f"{p.output_price if p.output_price is not None else '?'}")
            state = ("enabled" if p.name in enabled else "disabled") + (", cooling down" if p.name in cooling else "")
            rows.append((p.name, p.model, p.api, p.base_url, str(p.priority), f"{p.weight:g}", price, state))
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        print("\n".join([fmt(header)] + [fmt(row) for row in rows]))

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
            raise UsageError("usage: %llm usage [--all]  (--all: every row of the ledger file, "
                             "earlier resets and other kernels included)")
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
        print(f"llmroute: new usage view from now: usage, stats, plots and the panel count from here; "
              f"{kept} every earlier row (%llm usage --all shows them)")

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
