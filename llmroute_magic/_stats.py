"""``UsageStats``: the ledger summed per provider, with the seed's ``<name>_tokens`` / ``<name>_cost``."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

BY_PROVIDER_COLUMNS = ("requests", "errors", "input_tokens", "output_tokens", "tokens", "cost",
                       "latency_p50_s", "latency_p95_s")


def attr_name(provider: str) -> str:
    return re.sub(r"\W", "_", provider)


class UsageStats:
    """Per-provider totals. ``by_provider`` is a DataFrame indexed by provider name."""

    def __init__(self, by_provider, providers: Sequence[str] = ()) -> None:
        self.by_provider = by_provider
        self._providers = list(providers)

    @classmethod
    def from_frame(cls, df, providers: Sequence[str] = ()) -> "UsageStats":
        import pandas as pd

        names = list(dict.fromkeys([*providers, *df["provider"].astype(str).unique()]))
        if len(df):
            g = df.groupby(df["provider"].astype(str), sort=False, observed=True)
            ok = df[df["status"] == "ok"]
            lat = ok.groupby(ok["provider"].astype(str), observed=True)["latency_s"]
            table = pd.DataFrame({
                "requests": g.size(),
                "errors": g["status"].apply(lambda s: int((s != "ok").sum())),
                "input_tokens": g["input_tokens"].sum(),
                "output_tokens": g["output_tokens"].sum(),
                "cost": g["cost"].sum(min_count=1).where(~g["cost"].apply(lambda c: c.isna().any()), math.nan),
                "latency_p50_s": lat.quantile(0.5),
                "latency_p95_s": lat.quantile(0.95),
            })
        else:
            table = pd.DataFrame(columns=[c for c in BY_PROVIDER_COLUMNS if c != "tokens"], dtype=float)
        table = table.reindex(names)
        for c in ("requests", "errors", "input_tokens", "output_tokens"):
            table[c] = table[c].fillna(0).astype("int64")
        # A provider with attempts but no priced cost keeps NaN; one never used costs 0.
        table["cost"] = table["cost"].astype(float).where(table["requests"] > 0, 0.0)
        table["tokens"] = table["input_tokens"] + table["output_tokens"]
        table.index.name = "provider"
        return cls(table[list(BY_PROVIDER_COLUMNS)], names)

    @property
    def total_cost(self) -> float:
        return float(self.by_provider["cost"].sum(min_count=0)) if len(self.by_provider) else 0.0

    @property
    def total_tokens(self) -> int:
        return int(self.by_provider["tokens"].sum()) if len(self.by_provider) else 0

    @property
    def total_requests(self) -> int:
        return int(self.by_provider["requests"].sum()) if len(self.by_provider) else 0

    def provider(self, name: str) -> dict[str, Any]:
        if name not in self.by_provider.index:
            raise KeyError(f"no provider {name!r}; known: {', '.join(map(str, self.by_provider.index))}")
        return self.by_provider.loc[name].to_dict()

    def __getattr__(self, attr: str) -> Any:
        for suffix, column in (("_tokens", "tokens"), ("_cost", "cost"), ("_requests", "requests"),
                               ("_errors", "errors")):
            if attr.endswith(suffix):
                wanted = attr[: -len(suffix)]
                for name in self.by_provider.index:
                    if attr_name(str(name)) == wanted:
                        v = self.by_provider.at[name, column]
                        return float(v) if column == "cost" else int(v)
        raise AttributeError(f"UsageStats has no attribute {attr!r}; providers: "
                             f"{', '.join(attr_name(str(n)) for n in self.by_provider.index)} "
                             "(use <name>_tokens, <name>_cost, <name>_requests, <name>_errors)")

    def __dir__(self):
        extra = [f"{attr_name(str(n))}_{s}" for n in self.by_provider.index for s in ("tokens", "cost")]
        return [*super().__dir__(), *extra]

    def __repr__(self) -> str:
        return (f"UsageStats(total_cost=${self.total_cost:.6f}, total_tokens={self.total_tokens}, "
                f"requests={self.total_requests})\n{self.by_provider.to_string()}")

    def _repr_html_(self) -> str:
        head = (f"<p><b>Total</b>: ${self.total_cost:.6f} · {self.total_tokens:,} tokens · "
                f"{self.total_requests} attempts</p>")
        return head + self.by_provider.to_html(float_format=lambda v: f"{v:.6g}")
