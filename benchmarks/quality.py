"""Part 4: how well each strategy routes, on simulated providers over real HTTP (fixed seeds).

The simulator runs in its own process. Every strategy gets its own router and runs at the same
time as the others, so all see the same provider behaviour at the same moments; the "oracle" is
the same router code pinned (``provider=``) to whichever provider is best right now.

The routers' clock runs CLOCK_SCALE times faster than the wall clock: the router's time
constants (latency estimates decay over 5 s, idle providers re-probed after 10 s, 30 s
cooldowns) are for LLM calls of about a second; the simulated calls here take 5-30 ms, so the
scaled clock plays a scenario of minutes in seconds, with the same number of requests per
router time constant as a real one.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any

from ._server import SimulatorProcess
from ._table import Section

CLOCK_SCALE = 20.0
STRATEGIES = ("least_latency", "round_robin", "random", "least_busy", "lowest_cost", "priority")
PROMPTS = [f"Summarise item {i} of the benchmark in one short sentence." for i in range(64)]
MAX_TOKENS = 24
PROBE_VARIANT = "least_latency, probe 40s"

# Same seed everywhere: the same prompt gets the same answer (and token count) from every provider,
# so cost differences are price differences only.
_SEED = 7
PROFILES = [
    # drift: a is fastest, then slowest
    {"name": "drift-a", "latency_s": 0.030, "jitter_s": 0.003, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    {"name": "drift-b", "latency_s": 0.060, "jitter_s": 0.003, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    {"name": "drift-c", "latency_s": 0.090, "jitter_s": 0.003, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    # cost: the cheapest one is broken; cheapest healthy is cost-cheap
    {"name": "cost-broken", "latency_s": 0.005, "input_price": 0.05, "output_price": 0.2, "seed": _SEED,
     "faults": {"server_error": 1.0}},
    {"name": "cost-cheap", "latency_s": 0.008, "input_price": 0.15, "output_price": 0.6, "seed": _SEED},
    {"name": "cost-mid", "latency_s": 0.005, "input_price": 0.8, "output_price": 4.0, "seed": _SEED},
    {"name": "cost-pricey", "latency_s": 0.004, "input_price": 3.0, "output_price": 15.0, "seed": _SEED},
    # failover: the primary fails every time / 30% of the time; two healthy backups
    {"name": "down-100", "latency_s": 0.010, "input_price": 0.5, "output_price": 1.5, "seed": _SEED,
     "faults": {"server_error": 1.0}},
    {"name": "down-30", "latency_s": 0.010, "input_price": 0.5, "output_price": 1.5, "seed": _SEED,
     "faults": {"server_error": 0.3}},
    {"name": "backup-1", "latency_s": 0.010, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    {"name": "backup-2", "latency_s": 0.012, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    # burst: three equal providers
    {"name": "equal-1", "latency_s": 0.050, "jitter_s": 0.003, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    {"name": "equal-2", "latency_s": 0.050, "jitter_s": 0.003, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
    {"name": "equal-3", "latency_s": 0.050, "jitter_s": 0.003, "input_price": 0.5, "output_price": 1.5, "seed": _SEED},
]
_PRICES = {p["name"]: (p["input_price"], p["output_price"]) for p in PROFILES}


def _clock(t0: float = time.monotonic()):
    return lambda: t0 + (time.monotonic() - t0) * CLOCK_SCALE


def _router(sim: SimulatorProcess, names: list[str], strategy: str, seed: int):
    import random

    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec

    specs = [ProviderSpec(n, "sim-model", api="openai", base_url=sim.base_url(n), priority=i).with_prices(
        input=_PRICES[n][0], output=_PRICES[n][1]) for i, n in enumerate(names)]
    config = ProviderRoutingConfig(specs, strategy=strategy)
    return ModelClientRouter(config, clock=_clock(), rng=random.Random(seed))


class _Run:
    """What one strategy did in one scenario."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.providers: Counter = Counter()
        self.cost = 0.0
        self.ok = 0
        self.failed = 0
        self.attempts: list[int] = []
        self.oracle_latency = float("nan")  # drift: the mean of the oracle that ran beside it

    def add(self, c: Any) -> None:
        self.latencies.append(c.latency_s)
        self.providers[c.provider] += 1
        self.cost += c.cost
        self.ok += 1
        self.attempts.append(c.attempts)

    @property
    def mean_latency(self) -> float:
        return statistics.fmean(self.latencies) if self.latencies else float("nan")

    @property
    def success(self) -> float:
        total = self.ok + self.failed
        return self.ok / total if total else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"mean_latency_s": self.mean_latency, "cost": self.cost, "ok": self.ok, "failed": self.failed,
                "success": self.success, "providers": dict(self.providers),
                "max_attempts": max(self.attempts, default=0)}


async def _one(router, run: _Run, i: int, provider: str | None = None) -> None:
    from llmroute_magic import LLMRouteError

    try:
        run.add(await router.acomplete(PROMPTS[i % len(PROMPTS)], provider=provider, max_tokens=MAX_TOKENS))
    except LLMRouteError:
        run.failed += 1


async def _sequential(router, run: _Run, n: int, provider: str | None = None) -> None:
    for i in range(n):
        await _one(router, run, i, provider)


async def _close_all(routers) -> None:
    loop = asyncio.get_running_loop()
    for r in routers:
        await loop.run_in_executor(None, r.close)


async def _drift(sim: SimulatorProcess, phase_s: float, quick: bool) -> dict[str, _Run]:
    """The drift scenario in batches: the targeted strategy first, beside its oracle, with few other
    routers sharing the client process (their CPU would show up as latency noise, and a peak-EWMA
    estimate reacts to every spike); the other strategies after, for the side-by-side table, each
    batch with its own oracle. Quick mode runs the first batch only."""
    batches = [["least_latency", PROBE_VARIANT]]
    if not quick:
        batches.append([s for s in STRATEGIES if s != "least_latency"])
    out: dict[str, _Run] = {}
    for b, batch in enumerate(batches):
        runs = await _drift_batch(sim, phase_s, batch)
        oracle = runs.pop("oracle")
        for name, run in runs.items():
            run.oracle_latency = oracle.mean_latency
            out[name] = run
        if b == 0:
            out["oracle"] = oracle
            oracle.oracle_latency = oracle.mean_latency
    return out


async def _drift_batch(sim: SimulatorProcess, phase_s: float, strategies: list[str]) -> dict[str, _Run]:
    names = ["drift-a", "drift-b", "drift-c"]
    routers = {}
    for k, s in enumerate(strategies):
        if s == PROBE_VARIANT:
            # An experiment, not a strategy: least_latency re-probing idle providers every 40 s, not 10 s.
            routers[s] = _router(sim, names, "least_latency", seed=k)
            routers[s]._strategy_for(routers[s].strategy).probe_after_s = 40.0
        else:
            routers[s] = _router(sim, names, s, seed=k)
    routers["oracle"] = _router(sim, names, "priority", seed=99)
    runs = {s: _Run() for s in routers}
    fastest = ["drift-a"]
    loop = asyncio.get_running_loop()
    end = time.monotonic() + 2 * phase_s

    async def worker(name: str) -> None:
        i = 0
        while time.monotonic() < end:
            await _one(routers[name], runs[name], i, fastest[0] if name == "oracle" else None)
            i += 1

    async def switch() -> None:
        await asyncio.sleep(phase_s)
        # the fastest becomes the slowest, the slowest the fastest
        await loop.run_in_executor(None, lambda: (sim.update("drift-a", latency_s=0.090),
                                                  sim.update("drift-c", latency_s=0.030)))
        fastest[0] = "drift-c"

    try:
        await asyncio.gather(switch(), *(worker(n) for n in routers))
    finally:
        await _close_all(routers.values())
        await loop.run_in_executor(None, lambda: (sim.update("drift-a", latency_s=0.030),
                                                  sim.update("drift-c", latency_s=0.090)))
    return runs


async def _fixed(sim: SimulatorProcess, names: list[str], n: int, oracle: str) -> dict[str, _Run]:
    routers = {s: _router(sim, names, s, seed=k) for k, s in enumerate(STRATEGIES)}
    routers["oracle"] = _router(sim, names, "priority", seed=99)
    runs = {s: _Run() for s in routers}
    try:
        await asyncio.gather(*(_sequential(r, runs[s], n, oracle if s == "oracle" else None)
                               for s, r in routers.items()))
    finally:
        await _close_all(routers.values())
    return runs


async def _burst(sim: SimulatorProcess, n: int) -> dict[str, _Run]:
    names = ["equal-1", "equal-2", "equal-3"]
    out = {}
    for k, s in enumerate(STRATEGIES):
        router = _router(sim, names, s, seed=k)
        try:
            await _sequential(router, _Run(), 9)  # every provider measured once or more
            run = _Run()
            await asyncio.gather(*(_one(router, run, i) for i in range(n)))
            out[s] = run
        finally:
            await _close_all([router])
    return out


async def _all(sim: SimulatorProcess, quick: bool) -> dict[str, dict[str, _Run]]:
    n = 15 if quick else 80
    return {
        "drift": await _drift(sim, 1.2 if quick else 6.0, quick),
        # priority order deliberately unrelated to price: priority alone would pick the priciest
        "cost": await _fixed(sim, ["cost-pricey", "cost-broken", "cost-mid", "cost-cheap"], n, "cost-cheap"),
        "down100": await _fixed(sim, ["down-100", "backup-1", "backup-2"], n, "backup-1"),
        "down30": await _fixed(sim, ["down-30", "backup-1", "backup-2"], n, "backup-1"),
        "burst": await _burst(sim, 100),
    }


def run(quick: bool = False) -> Section:
    t0 = time.perf_counter()
    with SimulatorProcess(PROFILES) as sim:
        res = asyncio.run(_all(sim, quick))
    elapsed = time.perf_counter() - t0

    drift, cost, d100, d30, burst = res["drift"], res["cost"], res["down100"], res["down30"], res["burst"]
    s = Section("quality", "Routing quality (simulator in its own process, real HTTP, fixed seeds)",
                ["strategy", "drift ms", "x oracle", "cost $ (x1e6)", "x cheapest", "fail100 ok",
                 "fail100 ms", "fail30 ok", "fail30 ms", "burst max share"])
    for name in (*STRATEGIES, PROBE_VARIANT, "oracle"):
        d = drift.get(name)
        d_cells = [None, None] if d is None else [d.mean_latency * 1e3, d.mean_latency / d.oracle_latency]
        if name == PROBE_VARIANT:
            s.rows.append([name, *d_cells] + [None] * 7)
            continue
        b = burst.get(name)
        share = max(b.providers.values()) / sum(b.providers.values()) if b and b.providers else None
        s.rows.append([name, *d_cells,
                       cost[name].cost * 1e6, cost[name].cost / cost["oracle"].cost,
                       f"{d100[name].success:.0%}", d100[name].mean_latency * 1e3,
                       f"{d30[name].success:.0%}", d30[name].mean_latency * 1e3, share])
    ll = drift["least_latency"]
    s.notes.append(f"drift: drift-a 30 ms -> 90 ms and drift-c 90 ms -> 30 ms halfway (drift-b 60 ms); least_latency served "
                   f"{dict(ll.providers)}; oracle always pinned to the fastest; run in batches (least_latency "
                   "and the probe experiment first, the other strategies after; each 'x oracle' is against "
                   "the oracle of its own batch" + (", quick mode: first batch only)" if quick else ")"))
    s.notes.append(f"'{PROBE_VARIANT}' (drift only) is an experiment: the same strategy with its private "
                   f"probe_after_s raised from 10 to 40 router seconds; served {dict(drift[PROBE_VARIANT].providers)}")
    s.notes.append("cost: the cheapest provider answers 500 every time; 'x cheapest' is against the oracle pinned "
                   "to the cheapest healthy one; fail100/fail30: the priority-1 provider answers 500 on 100% / 30% "
                   "of requests, two healthy backups; 'ms' = mean request latency incl. failed attempts")
    s.notes.append(f"router clock x{CLOCK_SCALE:g} (see module docstring); {elapsed:.1f} s in all")
    s.data = {name: {k: v.summary() for k, v in runs.items()} for name, runs in res.items()}
    s.data["clock_scale"] = CLOCK_SCALE

    s.target("least_latency drift mean / oracle", ll.mean_latency / ll.oracle_latency, "<=", 1.15, "x")
    s.target("lowest_cost spend / cheapest healthy", cost["lowest_cost"].cost / cost["oracle"].cost, "<=", 1.01, "x")
    s.target("least_latency burst: busiest provider share",
             max(burst["least_latency"].providers.values()) / 100, "<=", 0.45)
    s.target("success with primary failing 100% (every strategy)", min(r.success for r in d100.values()), ">=", 1.0)
    s.target("success with primary failing 30% (every strategy)", min(r.success for r in d30.values()), ">=", 1.0)
    prio = d100["priority"]
    # Bounded by the cooldown: the failing primary is tried 3 times, then once per cooldown it sits out.
    stats_failed = sum(a - 1 for a in prio.attempts)
    router_span = sum(prio.latencies) * CLOCK_SCALE
    bound = 3 * (1 + int(router_span // 30.0))
    s.target("fail100 priority: failed attempts (bound: 3 per cooldown)", stats_failed, "<=", bound)
    s.target("fail30: attempts per request, worst", max(max(r.attempts, default=0) for r in d30.values()), "<=", 2)
    added = prio.mean_latency - d100["oracle"].mean_latency
    s.notes.append(f"fail100, priority: {stats_failed} failed attempts over {len(prio.attempts)} requests "
                   f"({router_span:.0f} router seconds, cooldown 30 s); mean latency {added * 1e3:+.2f} ms against "
                   "the oracle running at the same time (the overhead part measures this cost precisely)")
    return s
