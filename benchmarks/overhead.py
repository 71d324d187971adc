"""Part 1: what the router costs per request, beside raw HTTP clients hitting the same server.

The server (``_server.py``) runs in its own process and answers at once, so every figure is
client-side cost. The methods are interleaved round by round (A B C D E, then B C D E A, ...), so a
busy spell on the machine hits them all alike; each figure is a ratio to raw aiohttp in this run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any, Awaitable, Callable

from ._server import LoopbackServer
from ._table import Section

PROMPT = "Explain the CAP theorem in one line."
_BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]},
                   separators=(",", ":")).encode()
_STREAM_BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}],
                           "stream": True, "stream_options": {"include_usage": True}},
                          separators=(",", ":")).encode()
_HEADERS = {"content-type": "application/json", "accept": "application/json"}


def _router(base: str, *, providers: list[tuple[str, str]] | None = None, max_connections: int = 100):
    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec

    providers = providers or [("bench", base + "/v1")]
    specs = [ProviderSpec(name, "bench-model", api="openai", base_url=url, priority=i).with_prices(
        input=0.15, output=0.6) for i, (name, url) in enumerate(providers)]
    return ModelClientRouter(ProviderRoutingConfig(specs))


class _Clients:
    """Every contender, built once, each a coroutine function doing one request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.chat = url + "/v1/chat/completions"

    async def open(self) -> None:
        import aiohttp
        import httpx
        from httpx_aiohttp import AiohttpTransport

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        self.httpx_default = httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
        self.httpx_aiohttp = httpx.AsyncClient(transport=AiohttpTransport(
            limits=httpx.Limits(max_connections=100)))
        self.router = _router(self.url)

    async def close(self) -> None:
        await self.session.close()
        await self.httpx_default.aclose()
        await self.httpx_aiohttp.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.router.close)

    async def aiohttp_post(self) -> None:
        async with self.session.post(self.chat, data=_BODY, headers=_HEADERS) as r:
            json.loads(await r.read())

    async def httpx_post(self) -> None:
        r = await self.httpx_default.post(self.chat, content=_BODY, headers=_HEADERS)
        r.json()

    async def httpx_aiohttp_post(self) -> None:
        r = await self.httpx_aiohttp.post(self.chat, content=_BODY, headers=_HEADERS)
        r.json()

    async def acomplete(self) -> None:
        await self.router.acomplete(PROMPT)

    async def aiohttp_ttft(self) -> float:
        t0 = time.perf_counter()
        async with self.session.post(self.chat, data=_STREAM_BODY, headers=_HEADERS) as r:
            first = None
            async for line in r.content:
                if first is None and line.startswith(b"data: {"):
                    if json.loads(line[6:])["choices"][0]["delta"].get("content"):
                        first = time.perf_counter() - t0
        return first  # type: ignore[return-value]

    async def router_ttft(self) -> float:
        t0 = time.perf_counter()
        first = None
        async for _ in self.router.astream(PROMPT):
            if first is None:
                first = time.perf_counter() - t0
        return first  # type: ignore[return-value]


class _Timing:
    """Per-request seconds in rounds; CPU seconds of this process per round."""

    def __init__(self) -> None:
        self.rounds: list[list[float]] = []
        self.cpu: list[float] = []

    def add(self, times: list[float], cpu_s: float) -> None:
        self.rounds.append(times)
        self.cpu.append(cpu_s / len(times))

    @property
    def median(self) -> float:
        return statistics.median(t for r in self.rounds for t in r)

    @property
    def round_medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def ratio_to(self, base: "_Timing") -> float:
        """Median over rounds of this round's median / the baseline's median in the same round: the
        machine's load changes between rounds, but little within one, so pairs cancel it out."""
        return statistics.median(a / b for a, b in zip(self.round_medians, base.round_medians))

    def cpu_ratio_to(self, base: "_Timing") -> float:
        return statistics.median(a / b for a, b in zip(self.cpu, base.cpu))


async def _timed_async(fn: Callable[[], Awaitable[Any]], n: int) -> tuple[list[float], float]:
    times = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return times, time.process_time() - cpu0


def _timed_sync(fn: Callable[[], Any], n: int) -> tuple[list[float], float]:
    times = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times, time.process_time() - cpu0


def _interleaved(run: Callable, contenders: dict[str, tuple[bool, Callable]], rounds: int,
                 per_round: int) -> dict[str, _Timing]:
    """Each round runs every contender for ``per_round`` sequential requests, in rotating order."""
    out = {name: _Timing() for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            is_async, fn = contenders[name]
            times, cpu = run(_timed_async(fn, per_round)) if is_async else _timed_sync(fn, per_round)
            out[name].add(times, cpu)
    return out


async def _throughput(fn: Callable[[], Awaitable[None]], total: int, concurrency: int) -> float:
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            await fn()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0)


def _fallback_cost(url: str, loop: asyncio.AbstractEventLoop, kind: str, n: int) -> dict[str, float]:
    """Median added seconds per request when the primary answers ``kind`` every time, once cooled down."""
    failing = _router(url, providers=[("primary", f"{url}/{kind}/v1"), ("backup", url + "/v1")])
    healthy = _router(url, providers=[("backup", url + "/v1")])
    try:
        run = loop.run_until_complete
        first = []
        for _ in range(3):  # before the cooldown: one extra round trip each
            t0 = time.perf_counter()
            c = run(failing.acomplete(PROMPT))
            first.append(time.perf_counter() - t0)
            assert c.provider == "backup", c
        for _ in range(10):
            run(healthy.acomplete(PROMPT))
            run(failing.acomplete(PROMPT))
        with_fail, without = [], []
        for _ in range(n):
            for router, out in ((failing, with_fail), (healthy, without)):
                t0 = time.perf_counter()
                c = run(router.acomplete(PROMPT))
                out.append(time.perf_counter() - t0)
        rows = failing.usage_df()
        failed_attempts = int((rows["status"] == "error").sum())
        assert (rows["status"] == "ok").sum() == len(first) + 10 + n
        return {"cooled_added_s": statistics.median(with_fail) - statistics.median(without),
                "healthy_s": statistics.median(without), "cooled_s": statistics.median(with_fail),
                "before_cooldown_s": statistics.median(first), "failed_attempts": failed_attempts,
                "success_rate": 1.0}
    finally:
        failing.close()
        healthy.close()


def run(quick: bool = False) -> Section:
    rounds, per_round = (4, 15) if quick else (15, 40)
    with LoopbackServer() as server:
        loop = asyncio.new_event_loop()
        try:
            return _measure(server.url, loop, quick, rounds, per_round)
        finally:
            loop.close()


def _measure(url: str, loop: asyncio.AbstractEventLoop, quick: bool, rounds: int, per_round: int) -> Section:
    asyncio.set_event_loop(loop)
    c = _Clients(url)
    run = loop.run_until_complete
    run(c.open())
    try:
        # Warm every pool and code path, and let the router's own loop thread start.
        for fn in (c.aiohttp_post, c.httpx_post, c.httpx_aiohttp_post, c.acomplete, c.aiohttp_ttft, c.router_ttft):
            run(_timed_async(fn, 10 if quick else 30))
        _timed_sync(lambda: c.router.complete(PROMPT), 10 if quick else 30)
        contenders = {
            "raw aiohttp": (True, c.aiohttp_post),
            "raw httpx (default transport)": (True, c.httpx_post),
            "httpx + httpx-aiohttp transport": (True, c.httpx_aiohttp_post),
            "router.acomplete": (True, c.acomplete),
            "router.complete (sync)": (False, lambda: c.router.complete(PROMPT)),
        }
        seq = _interleaved(run, contenders, rounds, per_round)

        fns = {"raw aiohttp": c.aiohttp_post, "raw httpx (default transport)": c.httpx_post,
               "httpx + httpx-aiohttp transport": c.httpx_aiohttp_post, "router.acomplete": c.acomplete}
        rates: dict[str, list[float]] = {name: [] for name in fns}
        total = 300 if quick else 1500
        names = list(fns)
        for r in range(3 if quick else 5):
            for name in names[r % len(names):] + names[:r % len(names)]:
                n = total // 10 if name.startswith("raw httpx") else total  # the slow one: fewer
                rates[name].append(run(_throughput(fns[name], n, 100)))

        ttft_fns = {"raw aiohttp": c.aiohttp_ttft, "router.astream": c.router_ttft}
        ttft: dict[str, _Timing] = {name: _Timing() for name in ttft_fns}
        for r in range(rounds):
            for name, fn in (list(ttft_fns.items())[::-1] if r % 2 else ttft_fns.items()):
                cpu0 = time.process_time()
                times = [run(fn()) for _ in range(per_round)]
                ttft[name].add(times, time.process_time() - cpu0)
        ledger_rows = len(c.router.ledger)
    finally:
        run(c.close())

    fb = {kind: _fallback_cost(url, loop, kind, 30 if quick else 200) for kind in ("fail429", "fail500")}

    floor = seq["raw aiohttp"]
    floor_rates = rates["raw aiohttp"]

    def rate_ratio(name: str) -> float:
        return statistics.median(a / b for a, b in zip(rates[name], floor_rates))

    s = Section("overhead", "Overhead per request (loopback server in its own process, 0 ms latency)",
                ["client", "median ms", "x aiohttp", "CPU us/req", "x aiohttp", "req/s @100", "x aiohttp"])
    for name in contenders:
        t = seq[name]
        r = rates.get(name)
        s.rows.append([name, t.median * 1e3, t.ratio_to(floor), t.cpu_median * 1e6, t.cpu_ratio_to(floor),
                       None if r is None else statistics.median(r), None if r is None else rate_ratio(name)])
    for name, t in ttft.items():
        base = ttft["raw aiohttp"]
        s.rows.append([f"stream TTFT: {name}", t.median * 1e3, t.ratio_to(base), t.cpu_median * 1e6,
                       t.cpu_ratio_to(base), None, None])
    for kind, f in fb.items():
        code = kind[4:]
        s.rows.append([f"primary answers {code}: first 3 requests", f["before_cooldown_s"] * 1e3,
                       f["before_cooldown_s"] / f["healthy_s"], None, None, None, None])
        s.rows.append([f"primary answers {code}: cooled down", f["cooled_s"] * 1e3, f["cooled_s"] / f["healthy_s"],
                       None, None, None, None])
    s.notes.append(f"sequential: {rounds} rounds x {per_round} requests per client, clients interleaved in "
                   "rotating order; 'x aiohttp' = median over rounds of (client's round median / aiohttp's in "
                   "the same round), which cancels the machine's changing load; CPU = this process's CPU "
                   "time per request (stream TTFT rows: for the whole stream)")
    s.notes.append(f"throughput: {total} requests by 100 concurrent workers (raw httpx: a tenth), "
                   f"{len(floor_rates)} interleaved runs; medians, ratio = median of paired runs")
    s.notes.append(f"fallback rows: ratio to a router with only the healthy provider, same run; the router "
                   f"recorded {ledger_rows} ledger rows in the main runs")
    s.data = {"sequential": {k: {"median_s": v.median, "ratio_to_aiohttp": v.ratio_to(floor),
                                 "cpu_per_req_s": v.cpu_median, "round_medians_s": v.round_medians}
                             for k, v in seq.items()},
              "throughput_rps": rates,
              "ttft": {k: {"median_s": v.median, "round_medians_s": v.round_medians} for k, v in ttft.items()},
              "fallback": fb}
    acomplete, complete = seq["router.acomplete"], seq["router.complete (sync)"]
    s.target("acomplete / aiohttp, sequential", acomplete.ratio_to(floor), "<=", 2.5, "x")
    s.target("complete (sync) / aiohttp, sequential", complete.ratio_to(floor), "<=", 3.0, "x")
    s.target("acomplete / aiohttp, throughput @100", rate_ratio("router.acomplete"), ">=", 0.35, "x")
    s.target("stream TTFT router / aiohttp", ttft["router.astream"].ratio_to(ttft["raw aiohttp"]), "<=", 2.5, "x")
    for kind, f in fb.items():
        s.target(f"fallback from a {kind[4:]} primary, cooled down, added", f["cooled_added_s"] * 1e3, "<=", 2.0,
                 " ms")
    return s
