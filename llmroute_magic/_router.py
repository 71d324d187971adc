"""``ModelClientRouter``: the public router, the request core with its edges composed on top.

``RouterCore`` routes; this class adds what people analyse and look at: the usage ledger (a
listener of the core's ``AttemptEnded`` events), DataFrames, statistics, A/B comparison, plots
and the control panel. pandas, matplotlib and ipywidgets load only when one of those is asked
for. The edges are reached from here; the core never reaches for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._core import RouterCore
from ._errors import ConfigError, LLMRouteError
from ._events import AttemptEnded, UsageReset
from ._ledger import Ledger
from ._request import Prompt, RequestOptions
from ._types import AttemptRecord, Completion

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

    from ._stats import UsageStats

COMPARE_COLUMNS = [
    "provider",
    "model",
    "sample",
    "text",
    "latency_s",
    "ttft_s",
    "input_tokens",
    "output_tokens",
    "cost",
    "error",
]


def compare_target(entry: str, configured: list[str]) -> tuple[str, str | None]:
    """``"name"`` or ``"name:model"`` as (provider, model or None). A configured name wins as a whole
    (a name may contain ':'); else the longest configured name before a ':' is the provider and the
    rest the model, so a model with ':' in it (``ollama:llama3.1:8b``) stays whole."""
    entry = entry.strip()
    if entry in configured:
        return entry, None
    for i in reversed([i for i, ch in enumerate(entry) if ch == ":"]):
        name, model = entry[:i].strip(), entry[i + 1 :].strip()
        if name in configured:
            if not model:
                raise ConfigError(
                    f"providers: {entry!r} names no model after ':'; write {name}:MODEL or {name}", field="providers"
                )
            return name, model
    raise ConfigError(
        f"providers: unknown provider {entry!r}; configured: {', '.join(configured)} (an entry may also be NAME:MODEL)",
        field="providers",
    )


def _compare_row(
    name: str, sample: int, r: Completion | LLMRouteError, model: str, elapsed_s: float, spent: list[AttemptRecord]
) -> dict[str, Any]:
    """One arm of a comparison. Tokens and cost are what the arm spent: every attempt of its
    request, failed and retried ones included (a failed arm is not free). ``latency_s`` is the
    providers' time its attempts took, as in the ledger: not the wait for a concurrency slot
    behind the other arms, not backoff. A failed arm shows its error and the model asked for."""
    input_tokens, output_tokens, cost = _spent(spent)
    latency_s = sum(a.latency_s for a in spent) if spent else elapsed_s
    figures: tuple[Any, ...]
    if isinstance(r, Completion):
        figures = (r.model, r.text, latency_s, r.ttft_s, input_tokens, output_tokens, cost, None)
    else:
        figures = (model, None, latency_s, None, input_tokens, output_tokens, cost, str(r))
    return dict(zip(COMPARE_COLUMNS, (name, figures[0], sample, *figures[1:])))


def _spent(records: list[AttemptRecord]) -> tuple[int | None, int | None, float]:
    """Summed tokens (None when any attempt's are unknown) and cost (NaN when any is unknown)."""
    return (
        _total([r.input_tokens for r in records]),
        _total([r.output_tokens for r in records]),
        float(sum(r.cost for r in records)),
    )


def _total(tokens: list[int | None]) -> int | None:
    return None if None in tokens else sum(t for t in tokens if t is not None)


class ModelClientRouter(RouterCore):
    """Routes prompts across the providers of a ``ProviderRoutingConfig`` and records every attempt.

    Thread-safe; the sync methods work in scripts and inside a running Jupyter kernel alike (they
    run on the router's own event loop thread), the async ones (``acomplete``, ``astream``,
    ``acompare``, ``amap``) may be awaited from any event loop. Ctrl-C cancels a request cleanly and
    the ledger records it as ``cancelled``. Use it as a context manager, or ``close()`` it.

    Examples:
        >>> from llmroute_magic.sim import Simulator
        >>> with Simulator() as sim:
        ...     config = ProviderRoutingConfig(sim.provider_specs(), strategy="round_robin")
        ...     with ModelClientRouter(config) as r:
        ...         answers = [r.complete(f"question {i}", max_tokens=8) for i in range(3)]
        ...         usage = r.usage_df()
        >>> sorted(c.provider for c in answers)
        ['sim-anthropic', 'sim-local', 'sim-openai']
        >>> len(usage)
        3
    """

    def __init__(self, config: Any, **injected: Any) -> None:
        super().__init__(config, **injected)
        self._ledger = Ledger(self._config.ledger_path)
        self.events.subscribe(AttemptEnded, self._record)

    def _record(self, event: AttemptEnded) -> None:
        self._ledger.append(event.record)

    # -- A/B -------------------------------------------------------------------------------------
    def compare(
        self,
        prompt: Prompt,
        providers: Iterable[str] | str | None = None,
        n: int = 1,
        **options: Unpack[RequestOptions],
    ) -> pd.DataFrame:
        """The same prompt to every (or the named) provider concurrently: one row per answer.

        An entry of ``providers`` may be ``"name:model"``: that provider with that model instead of
        its configured one (``["openai:gpt-4o", "openai:gpt-4o-mini"]`` compares two models of one
        provider). A configured name that itself contains ``:`` is taken as the name.

        Examples:
            >>> df = router.compare("Summarise CAP in one sentence", max_tokens=16)
            >>> list(df["provider"])
            ['sim-openai', 'sim-anthropic', 'sim-local', 'sim-gemini', 'sim-azure', 'sim-ollama', 'sim-responses']
            >>> list(df.columns[:4])
            ['provider', 'model', 'text', 'latency_s']
        """
        return self._loop().run(self.acompare(prompt, providers, n, **options))

    async def acompare(
        self,
        prompt: Prompt,
        providers: Iterable[str] | str | None = None,
        n: int = 1,
        **options: Unpack[RequestOptions],
    ) -> pd.DataFrame:
        """``compare`` for any running event loop.

        Examples:
            >>> import asyncio
            >>> df = asyncio.run(router.acompare("hello", providers=["sim-openai", "sim-openai:gpt-4o"]))
            >>> list(df["model"])
            ['gpt-4o-mini', 'gpt-4o']
        """
        import pandas as pd

        targets = self._compare_targets(providers, n)
        rest: dict[str, Any] = dict(options)
        rest.pop("provider", None)
        default_model = rest.pop("model", None)
        jobs = [(name, model or default_model, i) for name, model in targets for i in range(n)]
        spent: dict[str, list[AttemptRecord]] = {}

        async def one(name: str, model: str | None) -> tuple[Completion | LLMRouteError, float, list[AttemptRecord]]:
            t0 = time.perf_counter()
            try:
                request = self._request(prompt, {**rest, "provider": name, "model": model}, streamed=False)
            except LLMRouteError as e:
                return e, time.perf_counter() - t0, []
            attempts = spent[request.request_id] = []
            try:
                return await self._complete(request), time.perf_counter() - t0, attempts
            except LLMRouteError as e:
                return e, time.perf_counter() - t0, attempts

        def note(record: AttemptRecord) -> None:
            arm = spent.get(record.request_id)
            if arm is not None:
                arm.append(record)

        unsubscribe = self.subscribe(note)
        try:
            results = await asyncio.gather(*(one(name, model) for name, model, _ in jobs))
        finally:
            unsubscribe()
        rows = [
            _compare_row(name, i, r, model or self._config.provider(name).model, elapsed, attempts)
            for (name, model, i), (r, elapsed, attempts) in zip(jobs, results)
        ]
        df = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
        return df.drop(columns="sample") if n == 1 else df

    def _compare_targets(self, providers: Iterable[str] | str | None, n: int) -> list[tuple[str, str | None]]:
        """(provider, model or None) per arm, each checked: a mistake is a ConfigError before any request."""
        if isinstance(providers, str):
            providers = [p.strip() for p in providers.split(",") if p.strip()]
        configured = [p.name for p in self._config.providers]
        targets: list[tuple[str, str | None]] = (
            [compare_target(str(p), configured) for p in providers]
            if providers is not None
            else [(name, None) for name in self.enabled]
        )
        if not targets:
            raise ConfigError("providers: no provider to compare; enable one or name them", field="providers")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n: expected a whole number >= 1, got {n!r}", field="n")
        return targets

    # -- usage -----------------------------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        """The usage ledger behind ``usage_df`` (the DataFrame methods are the stable way to read it).

        Examples:
            >>> len(router.ledger.to_frame(all=True)) == len(router.usage_df(all=True))
            True
        """
        return self._ledger

    def usage_df(self, *, all: bool = False, since: Any = None) -> pd.DataFrame:  # noqa: A002 - DESIGN's name
        """One row per attempt, failed and cancelled ones too, from the last ``reset_usage()`` on.

        ``all=True``: every row (of a persistent ledger: every session's and kernel's, earlier
        resets included). ``since``: rows whose attempt started at or after it (a datetime, a
        pandas Timestamp, an ISO string or epoch seconds; naive means UTC).

        Examples:
            >>> _ = router.complete("hello")
            >>> df = router.usage_df()
            >>> list(df.columns[:8])
            ['request_id', 'attempt', 'timestamp', 'provider', 'model', 'strategy', 'status', 'error_type']
            >>> df["status"].iloc[-1]
            'ok'
        """
        return self._ledger.to_frame(all=all, since=since)

    def get_usage_stats(self) -> UsageStats:
        """Totals per provider over the current view (see ``usage_df``).

        Examples:
            >>> _ = router.complete("hello", provider="sim-anthropic")
            >>> stats = router.get_usage_stats()
            >>> int(stats.by_provider.loc["sim-anthropic", "requests"]) >= 1
            True
            >>> stats.sim_anthropic_cost > 0
            True
        """
        from ._stats import UsageStats

        return UsageStats.from_frame(self.usage_df(), [p.name for p in self._config.providers])

    def reset_usage(self) -> None:
        """Start a new view: ``usage_df()``, stats, plots and panels show rows from now on. Nothing is
        deleted: ``usage_df(all=True)`` still has every row (and a ledger file keeps them all).

        Examples:
            >>> _ = router.complete("hello")
            >>> router.reset_usage()
            >>> len(router.usage_df()), len(router.usage_df(all=True)) > 0
            (0, True)
        """
        self._ledger.reset_view()
        self.events.emit(UsageReset())

    def plot(self, kind: str = "cost") -> Any:
        """A matplotlib Figure of the usage: cost, latency, tokens, requests or timeline.

        Examples:
            >>> fig = router.plot("latency")
            >>> type(fig).__name__
            'Figure'
        """
        from ._plots import plot_usage

        return plot_usage(self.usage_df(), kind)

    def panel(self) -> Any:
        """The ipywidgets control panel: strategy, providers, fallback, retries, live stats.

        Examples:
            In a notebook cell (or ``%llm panel``):

                llm.panel()
        """
        from ._ipython.widgets import RouterPanel

        return RouterPanel(self)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel requests still in flight (each is recorded), close connections and the ledger file.

        Examples:
            >>> r = ModelClientRouter(config)   # building a router sends nothing
            >>> r.close()
        """
        super().close()
        self._ledger.close()  # after the core: requests cancelled while closing still get their rows
