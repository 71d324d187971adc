"""``UsageStats``: the ledger summed per provider, with the seed's ``<name>_tokens`` / ``<name>_cost``.

Unknown is never $0 or 0 tokens. A cost the ledger does not know (NaN: no price, or no usage
reported) makes the provider's cost and the total NaN, and ``unpriced_rows`` says how many rows
that is; ``cost_text()`` gives what a display should print ("$0.001234" or "unknown (3 unpriced
rows)"). Tokens a provider did not report work the same way (``unknown_usage_rows``,
``tokens_text()``).

Latency percentiles have one definition in the whole package, ``latency_percentiles``.
``UsageTally`` keeps running sums for a live display that reads only new rows
(``Ledger.rows_since``).
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

BY_PROVIDER_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "tokens", "cost",
                       "latency_p50_s", "latency_p95_s")


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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cost_text(cost: float, unpriced_rows: int = 0) -> str:
    """A cost for people: "$0.001234", or "unknown (3 unpriced rows)" — never "$0" for unknown."""
    if unpriced_rows or cost != cost:
        return f"unknown ({_plural(unpriced_rows, 'unpriced row')})" if unpriced_rows else "unknown"
    return f"${cost:.6f}"


class UsageTally:
    """Running per-provider sums, fed with the ledger's rows a few at a time
    (``Ledger.rows_since``), so a live display never re-reads the whole ledger."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        self._rows.clear()

    def update(self, df) -> "UsageTally":
        """Add the rows of a ledger DataFrame (any subset of it, each row once)."""
        if not len(df):
            return self
        prov = df["provider"].astype(str) if df["provider"].dtype != "category" else df["provider"]
        g = df.groupby(prov, observed=True, sort=False)
        requests = g.size()
        errors = (df["status"] != "ok").groupby(prov, observed=True).sum()
        inp = df["input_tokens"]
        out = df["output_tokens"]
        unknown_usage = (inp.isna() | out.isna()).groupby(prov, observed=True).sum()
        in_sum = g["input_tokens"].sum()  # the known ones
        out_sum = g["output_tokens"].sum()
        cost = df["cost"]
        unpriced = cost.isna().groupby(prov, observed=True).sum()
        cost_sum = g["cost"].sum()
        ok = df["status"] == "ok"
        lat = df.loc[ok, "latency_s"].groupby(prov[ok], observed=True)
        latencies = {str(k): v.to_numpy(dtype="float64") for k, v in lat}
        for name in requests.index:
            key = str(name)
            row = self._rows.setdefault(key, {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                                              "cost": 0.0, "unpriced": 0, "unknown_usage": 0, "latencies": []})
            row["requests"] += int(requests[name])
            row["errors"] += int(errors[name])
            row["input_tokens"] += int(in_sum[name])
            row["output_tokens"] += int(out_sum[name])
            row["cost"] += float(cost_sum[name])
            row["unpriced"] += int(unpriced[name])
            row["unknown_usage"] += int(unknown_usage[name])
            if key in latencies:
                row["latencies"].append(latencies[key])
        return self

    def stats(self, providers: Sequence[str] = ()) -> "UsageStats":
        import numpy as np
        import pandas as pd

        names = list(dict.fromkeys([*providers, *self._rows]))
        table: dict[str, list] = {c: [] for c in BY_PROVIDER_COLUMNS}
        unpriced, unknown_usage = [], []
        any_unknown = False
        for name in names:
            row = self._rows.get(name)
            if row is None:  # never used: nothing spent, nothing known to be unknown
                vals = dict(requests=0, errors=0, input_tokens=0, output_tokens=0, cost=0.0,
                            latency_p50_s=math.nan, latency_p95_s=math.nan)
                unpriced.append(0)
                unknown_usage.append(0)
            else:
                lat = np.concatenate(row["latencies"]) if row["latencies"] else np.empty(0)
                p50, p95 = latency_percentiles(lat)
                if len(row["latencies"]) > 1:
                    row["latencies"] = [lat]  # keep one array per provider
                no_usage = row["unknown_usage"]
                any_unknown = any_unknown or bool(no_usage)
                vals = dict(requests=row["requests"], errors=row["errors"],
                            input_tokens=pd.NA if no_usage else row["input_tokens"],
                            output_tokens=pd.NA if no_usage else row["output_tokens"],
                            cost=math.nan if row["unpriced"] else row["cost"],
                            latency_p50_s=p50, latency_p95_s=p95)
                unpriced.append(row["unpriced"])
                unknown_usage.append(no_usage)
            for c in BY_PROVIDER_COLUMNS:
                if c != "tokens":
                    table[c].append(vals[c])
        token_dtype = "Int64" if any_unknown else "int64"
        index = pd.Index(names, name="provider", dtype=object)
        frame = pd.DataFrame({
            "requests": pd.array(table["requests"], dtype="int64"),
            "errors": pd.array(table["errors"], dtype="int64"),
            "input_tokens": pd.array(table["input_tokens"], dtype=token_dtype),
            "output_tokens": pd.array(table["output_tokens"], dtype=token_dtype),
            "cost": pd.array(table["cost"], dtype="float64"),
            "latency_p50_s": pd.array(table["latency_p50_s"], dtype="float64"),
            "latency_p95_s": pd.array(table["latency_p95_s"], dtype="float64"),
        }, index=index)
        frame["tokens"] = frame["input_tokens"] + frame["output_tokens"]
        return UsageStats(frame[list(BY_PROVIDER_COLUMNS)], names,
                          unpriced=pd.Series(unpriced, index=index, dtype="int64"),
                          unknown_usage=pd.Series(unknown_usage, index=index, dtype="int64"))


class UsageStats:
    """Per-provider totals. ``by_provider`` is a DataFrame indexed by provider name.

    ``total_cost`` is NaN when any row's cost is unknown (``unpriced_rows`` of them);
    ``total_tokens`` is NaN when any row's usage is unknown (``unknown_usage_rows``).
    For displays: ``cost_text()``, ``tokens_text()`` (optionally for one provider)."""

    def __init__(self, by_provider, providers: Sequence[str] = (), *, unpriced=None, unknown_usage=None) -> None:
        import pandas as pd

        self.by_provider = by_provider
        self._providers = list(providers)
        zeros = pd.Series(0, index=by_provider.index, dtype="int64")
        self.unpriced_by_provider = zeros if unpriced is None else unpriced
        self.unknown_usage_by_provider = zeros if unknown_usage is None else unknown_usage

    @classmethod
    def from_frame(cls, df, providers: Sequence[str] = ()) -> "UsageStats":
        return UsageTally().update(df).stats(providers)

    # -- totals -------------------------------------------------------------------------------
    @property
    def unpriced_rows(self) -> int:
        """Rows whose cost is unknown (no price, or no usage reported)."""
        return int(self.unpriced_by_provider.sum())

    @property
    def unknown_usage_rows(self) -> int:
        """Rows whose provider reported no token usage."""
        return int(self.unknown_usage_by_provider.sum())

    @property
    def total_cost(self) -> float:
        """USD over every row; NaN when any row's cost is unknown (never a silent partial sum)."""
        if self.unpriced_rows:
            return math.nan
        return float(self.by_provider["cost"].sum()) if len(self.by_provider) else 0.0

    @property
    def known_cost(self) -> float:
        """USD over the rows whose cost is known (a lower bound when ``unpriced_rows``)."""
        return float(self.by_provider["cost"].fillna(0).sum()) if len(self.by_provider) else 0.0

    @property
    def total_tokens(self) -> float | int:
        """Tokens over every row; NaN when any row's usage is unknown."""
        if self.unknown_usage_rows:
            return math.nan
        return int(self.by_provider["tokens"].sum()) if len(self.by_provider) else 0

    @property
    def total_requests(self) -> int:
        return int(self.by_provider["requests"].sum()) if len(self.by_provider) else 0

    def cost_text(self, provider: str | None = None) -> str:
        """"$0.001234", or "unknown (3 unpriced rows)": what `%llm stats`, the panel and the cost
        plot's title print, for the total or for one provider."""
        if provider is None:
            return cost_text(self.total_cost, self.unpriced_rows)
        self._check(provider)
        return cost_text(float(self.by_provider.at[provider, "cost"]), int(self.unpriced_by_provider[provider]))

    def tokens_text(self, provider: str | None = None) -> str:
        """"12,345", or "unknown (2 rows without usage)"."""
        if provider is None:
            total, unknown = self.total_tokens, self.unknown_usage_rows
        else:
            self._check(provider)
            total, unknown = self.by_provider.at[provider, "tokens"], int(self.unknown_usage_by_provider[provider])
        if unknown:
            return f"unknown ({_plural(unknown, 'row')} without usage)"
        return f"{int(total):,}"

    def _check(self, name: str) -> None:
        if name not in self.by_provider.index:
            raise KeyError(f"no provider {name!r}; known: {', '.join(map(str, self.by_provider.index))}")

    def provider(self, name: str) -> dict[str, Any]:
        self._check(name)
        return self.by_provider.loc[name].to_dict()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr in ("by_provider", "unpriced_by_provider", "unknown_usage_by_provider"):
            raise AttributeError(attr)
        for suffix, column in (("_tokens", "tokens"), ("_cost", "cost"), ("_requests", "requests"),
                               ("_errors", "errors")):
            if attr.endswith(suffix):
                wanted = attr[: -len(suffix)]
                for name in self.by_provider.index:
                    if attr_name(str(name)) == wanted:
                        v = self.by_provider.at[name, column]
                        if column == "cost":
                            return float(v)
                        return math.nan if v is None or v is _na() else int(v)
        raise AttributeError(f"UsageStats has no attribute {attr!r}; providers: "
                             f"{', '.join(attr_name(str(n)) for n in self.by_provider.index)} "
                             "(use <name>_tokens, <name>_cost, <name>_requests, <name>_errors)")

    def __dir__(self):
        extra = [f"{attr_name(str(n))}_{s}" for n in self.by_provider.index for s in ("tokens", "cost")]
        return [*super().__dir__(), *extra]

    def __repr__(self) -> str:
        return (f"UsageStats(total_cost={self.cost_text()}, total_tokens={self.tokens_text()}, "
                f"requests={self.total_requests})\n{self.by_provider.to_string()}")

    def _repr_html_(self) -> str:
        import html

        head = (f"<p><b>Total</b>: {html.escape(self.cost_text())} · tokens: {html.escape(self.tokens_text())} · "
                f"{self.total_requests} attempts</p>")
        return head + self.by_provider.to_html(float_format=lambda v: f"{v:.6g}")


def _na():
    import pandas as pd

    return pd.NA
