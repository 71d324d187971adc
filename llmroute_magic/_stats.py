"""``UsageStats``: the ledger summed per provider, with the seed's ``<name>_tokens`` / ``<name>_cost``.

Unknown is never $0 or 0 tokens. A cost the ledger does not know (NaN: no price, or no usage
reported) makes the provider's cost and the total NaN, and ``unpriced_rows`` says how many rows
that is; ``cost_text()`` gives what a display should print ("$0.001234" or "unknown (3 unpriced
rows)"). Tokens a provider did not report work the same way (``unknown_usage_rows``,
``tokens_text()``).

Latency percentiles have one definition in the whole package, ``latency_percentiles``.
``UsageSummary`` keeps the running totals every figure is computed from: ``UsageStats`` for
a whole ledger frame, the plots, and the panel, which feeds it the new rows only
(``Ledger.rows_since``).
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._format import cost_total, plural

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BY_PROVIDER_COLUMNS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "tokens",
    "cost",
    "latency_p50_s",
    "latency_p95_s",
)


def latency_percentiles(values: Iterable[float]) -> tuple[float, float]:
    """(p50, p95) of latencies in seconds: the package's one definition, for stats, panel and CLI.

    Give it the latencies of successful attempts (``status == "ok"``); NaN values are left out.
    The quantile is numpy's default method, linear interpolation between closest ranks
    (Hyndman & Fan type 7, as in pandas' ``quantile`` and Excel's ``PERCENTILE.INC``), so
    [10, 20, 30, 40] ms gives p50 = 25 ms. No values: (NaN, NaN)."""
    import numpy as np

    a = np.asarray(values if hasattr(values, "__len__") else list(values), dtype=np.float64)
    a = a[~np.isnan(a)]
    if not a.size:
        return (math.nan, math.nan)
    p50, p95 = np.quantile(a, [0.5, 0.95], method="linear")
    return (float(p50), float(p95))


def attr_name(provider: str) -> str:
    return re.sub(r"\W", "_", provider)


def cost_text(cost: float, unpriced_rows: int = 0) -> str:
    """A cost for people: "$0.00123", or "unknown (3 unpriced attempts)" — never "$0" for unknown."""
    return cost_total(cost, unpriced_rows)


class _Slot:
    __slots__ = (
        "index",
        "requests",
        "errors",
        "statuses",
        "input_tokens",
        "output_tokens",
        "cost",
        "unpriced",
        "unknown_usage",
        "latencies",
    )

    def __init__(self, index: int = -1) -> None:
        self.index = index  # position in first-appearance order; the timeline refers to it
        self.requests = 0  # attempts, as UsageStats counts them
        self.errors = 0  # attempts whose status is not "ok"
        self.statuses: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0  # sum over priced attempts
        self.unpriced = 0  # attempts whose cost is unknown (NaN)
        self.unknown_usage = 0  # attempts whose provider reported no token usage
        self.latencies = array("d")  # successful attempts only


def _known(value: Any) -> bool:
    return value is not None and value == value


class UsageSummary:
    """Running per-provider totals of a usage ledger. Thread-safe: ``add`` may run on any thread.

    Fed either by ``add_frame(router.usage_df())`` or one ``add(record)`` per ``AttemptRecord``;
    both give the same totals, so a panel can read the ledger once and follow the new rows only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}  # in order of first appearance: stable colours
        self._requests = 0  # first attempts, i.e. requests
        self._ts = array("d")  # timeline: start of each attempt (epoch s), its provider, its cost
        self._tp = array("i")
        self._tc = array("d")
        self.version = 0  # bumped on every change: a cheap "anything new?" for redraws

    def _slot(self, name: str) -> tuple[int, _Slot]:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot(len(self._slots))
        return slot.index, slot

    # -- feeding ----------------------------------------------------------------------------------
    def add(self, r: Any) -> None:
        """One attempt record (``AttemptRecord`` or anything with its fields)."""
        cost = r.cost
        priced = _known(cost)
        with self._lock:
            i, s = self._slot(str(r.provider))
            s.requests += 1
            s.statuses[r.status] = s.statuses.get(r.status, 0) + 1
            if r.status != "ok":
                s.errors += 1
            elif _known(r.latency_s):
                s.latencies.append(r.latency_s)
            if _known(r.input_tokens) and _known(r.output_tokens):
                s.input_tokens += int(r.input_tokens)
                s.output_tokens += int(r.output_tokens)
            else:
                s.unknown_usage += 1
            if priced:
                s.cost += cost
            else:
                s.unpriced += 1
            if r.attempt == 1:
                self._requests += 1
            self._ts.append(float(r.timestamp))
            self._tp.append(i)
            self._tc.append(cost if priced else math.nan)
            self.version += 1

    def add_frame(self, df: pd.DataFrame) -> None:
        """Every row of a ledger DataFrame, vectorised (a million rows take about a second)."""
        if df is None or len(df) == 0 or "provider" not in df:
            return
        import numpy as np
        import pandas as pd

        n = len(df)
        provider = df["provider"].astype(str).to_numpy()
        status = df["status"].astype(str).to_numpy() if "status" in df else np.full(n, "ok", dtype=object)
        numeric = {
            c: (pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) if c in df else np.full(n, math.nan))
            for c in ("input_tokens", "output_tokens", "cost", "latency_s")
        }
        if "timestamp" in df:
            ts = pd.to_datetime(df["timestamp"], utc=True)
            epoch = ((ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
        else:
            epoch = np.arange(n, dtype=float)
        if "attempt" in df:
            requests = int((pd.to_numeric(df["attempt"], errors="coerce") == 1).sum())
        elif "request_id" in df:
            requests = int(df["request_id"].nunique())
        else:
            requests = n
        ok = status == "ok"
        with self._lock:
            codes = np.empty(n, dtype="int32")
            for name in dict.fromkeys(provider.tolist()):
                i, s = self._slot(name)
                mask = provider == name
                codes[mask] = i
                names, counts = np.unique(status[mask], return_counts=True)
                for k, v in zip(names.tolist(), counts.tolist()):
                    s.statuses[k] = s.statuses.get(k, 0) + v
                s.requests += int(mask.sum())
                s.errors += int((mask & ~ok).sum())
                inp, out = numeric["input_tokens"][mask], numeric["output_tokens"][mask]
                reported = ~(np.isnan(inp) | np.isnan(out))
                s.unknown_usage += int((~reported).sum())
                s.input_tokens += int(inp[reported].sum())
                s.output_tokens += int(out[reported].sum())
                costs = numeric["cost"][mask]
                s.unpriced += int(np.isnan(costs).sum())
                s.cost += float(np.nansum(costs))
                lat = numeric["latency_s"][mask & ok]
                s.latencies.frombytes(np.ascontiguousarray(lat[~np.isnan(lat)], dtype="float64").tobytes())
            self._requests += requests
            self._ts.frombytes(np.ascontiguousarray(epoch, dtype="float64").tobytes())
            self._tp.frombytes(codes.tobytes())
            self._tc.frombytes(np.ascontiguousarray(numeric["cost"], dtype="float64").tobytes())
            self.version += 1

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> UsageSummary:
        summary = cls()
        summary.add_frame(df)
        return summary

    # -- reading ----------------------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """Providers with at least one attempt, in order of first appearance."""
        with self._lock:
            return list(self._slots)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ts)

    def totals(self) -> dict[str, Any]:
        """attempts, requests, errors, input/output tokens, priced cost and unpriced attempts, over all providers."""
        with self._lock:
            slots = list(self._slots.values())
            return {
                "attempts": len(self._ts),
                "requests": self._requests,
                "errors": sum(s.errors for s in slots),
                "input_tokens": sum(s.input_tokens for s in slots),
                "output_tokens": sum(s.output_tokens for s in slots),
                "cost": math.fsum(s.cost for s in slots),
                "unpriced": sum(s.unpriced for s in slots),
            }

    def provider(self, name: str) -> dict[str, Any]:
        """One provider's figures: requests, errors, statuses, tokens, cost (NaN if any unpriced), unpriced,
        p50, p95."""
        import numpy as np

        with self._lock:
            s = self._slots.get(name) or _Slot()
            latencies = np.frombuffer(s.latencies, dtype="float64").copy()
            row = {
                "requests": s.requests,
                "errors": s.errors,
                "statuses": dict(s.statuses),
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "priced_cost": s.cost,
                "unpriced": s.unpriced,
                "unknown_usage": s.unknown_usage,
            }
        row["cost"] = math.nan if row["unpriced"] else row["priced_cost"]
        row["latency_p50_s"], row["latency_p95_s"] = latency_percentiles(latencies)
        return row

    def latencies(self, name: str) -> np.ndarray:
        import numpy as np

        with self._lock:
            s = self._slots.get(name)
            return np.frombuffer(s.latencies, dtype="float64").copy() if s else np.empty(0)

    def timeline(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start time in epoch seconds, provider index, cost or NaN) per attempt, in arrival order."""
        import numpy as np

        with self._lock:
            return (
                np.frombuffer(self._ts, dtype="float64").copy(),
                np.frombuffer(self._tp, dtype="int32").copy(),
                np.frombuffer(self._tc, dtype="float64").copy(),
            )

    def stats(self, providers: Sequence[str] = ()) -> UsageStats:
        """``UsageStats`` of these totals: ``providers`` first (config order), then any other seen."""
        import pandas as pd

        names = list(dict.fromkeys([*providers, *self.providers]))
        rows = [self.provider(n) for n in names]
        unknown = [r["unknown_usage"] for r in rows]
        token_dtype = "Int64" if any(unknown) else "int64"

        def tokens(key: str) -> Any:
            return pd.array([pd.NA if r["unknown_usage"] else r[key] for r in rows], dtype=token_dtype)

        index = pd.Index(names, name="provider", dtype=object)
        frame = pd.DataFrame(
            {
                "requests": pd.array([r["requests"] for r in rows], dtype="int64"),
                "errors": pd.array([r["errors"] for r in rows], dtype="int64"),
                "input_tokens": tokens("input_tokens"),
                "output_tokens": tokens("output_tokens"),
                "cost": pd.array([r["cost"] if r["requests"] else 0.0 for r in rows], dtype="float64"),
                "latency_p50_s": pd.array([r["latency_p50_s"] for r in rows], dtype="float64"),
                "latency_p95_s": pd.array([r["latency_p95_s"] for r in rows], dtype="float64"),
            },
            index=index,
        )
        frame["tokens"] = frame["input_tokens"] + frame["output_tokens"]
        return UsageStats(
            frame[list(BY_PROVIDER_COLUMNS)],
            names,
            unpriced=pd.Series([r["unpriced"] for r in rows], index=index, dtype="int64"),
            unknown_usage=pd.Series(unknown, index=index, dtype="int64"),
        )


class UsageStats:
    """Per-provider totals. ``by_provider`` is a DataFrame indexed by provider name.

    ``total_cost`` is NaN when any row's cost is unknown (``unpriced_rows`` of them);
    ``total_tokens`` is NaN when any row's usage is unknown (``unknown_usage_rows``).
    For displays: ``cost_text()``, ``tokens_text()`` (optionally for one provider).

    Examples:
        >>> _ = router.complete("hello")
        >>> stats = router.get_usage_stats()
        >>> list(stats.by_provider.columns)
        ['requests', 'errors', 'input_tokens', 'output_tokens', 'tokens', 'cost', 'latency_p50_s', 'latency_p95_s']
        >>> stats.sim_openai_tokens > 0, stats.total_cost > 0
        (True, True)
    """

    def __init__(
        self,
        by_provider: pd.DataFrame,
        providers: Sequence[str] = (),
        *,
        unpriced: pd.Series | None = None,
        unknown_usage: pd.Series | None = None,
    ) -> None:
        import pandas as pd

        self.by_provider = by_provider
        self._providers = list(providers)
        zeros = pd.Series(0, index=by_provider.index, dtype="int64")
        self.unpriced_by_provider = zeros if unpriced is None else unpriced
        self.unknown_usage_by_provider = zeros if unknown_usage is None else unknown_usage

    @classmethod
    def from_frame(cls, df: pd.DataFrame, providers: Sequence[str] = ()) -> UsageStats:
        """The statistics of a ledger DataFrame (``usage_df()``'s shape), e.g. one read back from CSV.

        Examples:
            >>> UsageStats.from_frame(router.usage_df(all=True)).total_requests == len(router.usage_df(all=True))
            True
        """
        return UsageSummary.from_frame(df).stats(providers)

    # -- totals -------------------------------------------------------------------------------
    @property
    def unpriced_rows(self) -> int:
        """Rows whose cost is unknown (no price, or no usage reported).

        Examples:
            >>> router.get_usage_stats().unpriced_rows   # the simulator's prices are known
            0
        """
        return int(self.unpriced_by_provider.sum())

    @property
    def unknown_usage_rows(self) -> int:
        """Rows whose provider reported no token usage.

        Examples:
            >>> router.get_usage_stats().unknown_usage_rows
            0
        """
        return int(self.unknown_usage_by_provider.sum())

    @property
    def total_cost(self) -> float:
        """USD over every row; NaN when any row's cost is unknown (never a silent partial sum).

        Examples:
            >>> stats = router.get_usage_stats()
            >>> stats.total_cost == stats.known_cost   # no unpriced rows
            True
        """
        if self.unpriced_rows:
            return math.nan
        return float(self.by_provider["cost"].sum()) if len(self.by_provider) else 0.0

    @property
    def known_cost(self) -> float:
        """USD over the rows whose cost is known (a lower bound when ``unpriced_rows``).

        Examples:
            >>> router.get_usage_stats().known_cost >= 0
            True
        """
        return float(self.by_provider["cost"].fillna(0).sum()) if len(self.by_provider) else 0.0

    @property
    def total_tokens(self) -> float | int:
        """Tokens over every row; NaN when any row's usage is unknown.

        Examples:
            >>> stats = router.get_usage_stats()
            >>> stats.total_tokens == int(stats.by_provider["tokens"].sum())
            True
        """
        if self.unknown_usage_rows:
            return math.nan
        return int(self.by_provider["tokens"].sum()) if len(self.by_provider) else 0

    @property
    def total_requests(self) -> int:
        """Attempts over every row (a request that failed over twice counts three).

        Examples:
            >>> stats = router.get_usage_stats()
            >>> stats.total_requests == len(router.usage_df())
            True
        """
        return int(self.by_provider["requests"].sum()) if len(self.by_provider) else 0

    def cost_text(self, provider: str | None = None) -> str:
        """ "$0.001234", or "unknown (3 unpriced rows)": what `%llm stats`, the panel and the cost
        plot's title print, for the total or for one provider.

        Examples:
            >>> router.get_usage_stats().cost_text()
            '$...'
        """
        if provider is None:
            return cost_text(self.total_cost, self.unpriced_rows)
        self._check(provider)
        return cost_text(float(self.by_provider.at[provider, "cost"]), int(self.unpriced_by_provider[provider]))

    def tokens_text(self, provider: str | None = None) -> str:
        """ "12,345", or "unknown (2 rows without usage)".

        Examples:
            >>> _ = router.complete("hello")
            >>> router.get_usage_stats().tokens_text("sim-openai")
            '...'
        """
        if provider is None:
            total, unknown = self.total_tokens, self.unknown_usage_rows
        else:
            self._check(provider)
            total, unknown = self.by_provider.at[provider, "tokens"], int(self.unknown_usage_by_provider[provider])
        if unknown:
            return f"unknown ({plural(unknown, 'row')} without usage)"
        return f"{int(total):,}"

    def _check(self, name: str) -> None:
        if name not in self.by_provider.index:
            raise KeyError(f"no provider {name!r}; known: {', '.join(map(str, self.by_provider.index))}")

    def provider(self, name: str) -> dict[str, Any]:
        """One provider's row of ``by_provider`` as a dict; ``KeyError`` naming the known ones.

        Examples:
            >>> _ = router.complete("hello")
            >>> router.get_usage_stats().provider("sim-openai")["requests"] >= 1
            True
        """
        self._check(name)
        return dict(self.by_provider.loc[name].to_dict())

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr in ("by_provider", "unpriced_by_provider", "unknown_usage_by_provider"):
            raise AttributeError(attr)
        for suffix, column in (
            ("_tokens", "tokens"),
            ("_cost", "cost"),
            ("_requests", "requests"),
            ("_errors", "errors"),
        ):
            if attr.endswith(suffix):
                wanted = attr[: -len(suffix)]
                for name in self.by_provider.index:
                    if attr_name(str(name)) == wanted:
                        v = self.by_provider.at[name, column]
                        if column == "cost":
                            return float(v)
                        return math.nan if v is None or v is _na() else int(v)
        raise AttributeError(
            f"UsageStats has no attribute {attr!r}; providers: "
            f"{', '.join(attr_name(str(n)) for n in self.by_provider.index)} "
            "(use <name>_tokens, <name>_cost, <name>_requests, <name>_errors)"
        )

    def __dir__(self) -> list[str]:
        extra = [f"{attr_name(str(n))}_{s}" for n in self.by_provider.index for s in ("tokens", "cost")]
        return [*super().__dir__(), *extra]

    def __repr__(self) -> str:
        return (
            f"UsageStats(total_cost={self.cost_text()}, total_tokens={self.tokens_text()}, "
            f"requests={self.total_requests})\n{self.by_provider.to_string()}"
        )

    def _repr_html_(self) -> str:
        import html

        head = (
            f"<p><b>Total</b>: {html.escape(self.cost_text())} · tokens: {html.escape(self.tokens_text())} · "
            f"{self.total_requests} attempts</p>"
        )
        return head + str(self.by_provider.to_html(float_format=lambda v: f"{v:.6g}"))


def _na() -> Any:
    import pandas as pd

    return pd.NA
