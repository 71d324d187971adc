"""Part 1: what the router costs per request, against the public-API floor, beside raw clients.

The floor is what a router built on httpx's public API cannot beat: a raw ``httpx.AsyncClient`` over
the same ``httpx-aiohttp`` transport doing the same POST (``client.post`` + ``response.json()``).
Raw aiohttp, raw httpx on its default transport and LiteLLM's Router (when it is importable; it is
not a dependency) stand beside it. The server (``_server.py``) runs in its own process and answers
at once, so every figure is client-side cost.

Methods are interleaved round by round (A B C D, then B C D A, ...), so a busy spell on the machine
hits them all alike; each ratio is the median over rounds of (this round's median / the floor's
median in the same round). What each row times:

- sequential: one request after another, wall time per request, and this process's CPU time;
- throughput: requests per second with 100 concurrent workers on one event loop, many short runs,
  the floor's and the router's back to back (see ``_throughput_rounds``);
- stream TTFT / whole answer: the server sends three chunks 3 ms apart, so the time to the first
  text differs from the time to the end of the stream;
- per extra chunk: the slope of a stream's total time from 10 to 210 chunks sent back to back,
  through ``router.astream`` and the sync ``router.stream`` (the sync one hands chunks over threads);
- fallback: the primary answers 429 (or 500) to every request and is contacted every time
  (cooldown off: the server counts its hits), against the same request sent straight to the
  backup; a second row with the primary cooled down (default cooldown), where it is skipped.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._server import LoopbackServer
from ._table import Section

PROMPT = "Explain the CAP theorem in one line."
_MESSAGES = [{"role": "user", "content": PROMPT}]
_BODY = json.dumps({"model": "bench-model", "messages": _MESSAGES}, separators=(",", ":")).encode()
_STREAM_BODY = json.dumps(
    {"model": "bench-model", "messages": _MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    separators=(",", ":"),
).encode()
_HEADERS = {"content-type": "application/json", "accept": "application/json"}

FLOOR = "httpx + httpx-aiohttp (public-API floor)"
GAP_MS = 3  # between the streamed chunks of the TTFT rows
SMALL, BIG = 10, 210  # chunks per stream for the per-chunk slope


def _router(base: str, *, providers: list[tuple[str, str]] | None = None, cooldown_s: float = 30.0):
    from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec

    providers = providers or [("bench", base + "/v1")]
    specs = [
        ProviderSpec(name, "bench-model", api="openai", base_url=url, priority=i).with_prices(input=0.15, output=0.6)
        for i, (name, url) in enumerate(providers)
    ]
    return ModelClientRouter(ProviderRoutingConfig(specs, cooldown_s=cooldown_s))


class _Clients:
    """Every contender, built once, each a coroutine function (or a plain one) doing one request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.chat = url + "/v1/chat/completions"

    async def open(self) -> None:
        import aiohttp
        import httpx
        from httpx_aiohttp import AiohttpTransport

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        self.httpx_default = httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
        self.floor = httpx.AsyncClient(transport=AiohttpTransport(limits=httpx.Limits(max_connections=100)))
        u = self.url
        self.router = _router(u)  # one provider, as the floor has one server: routing at its cheapest
        # Streams are pinned to one of these (provider=), each a server path with its own chunking.
        self.stream_router = _router(
            u,
            providers=[
                ("gap", f"{u}/gap{GAP_MS}/v1"),
                ("small", f"{u}/chunks{SMALL}/v1"),
                ("big", f"{u}/chunks{BIG}/v1"),
            ],
        )
        self.litellm: Any = None  # made by the LiteLLM phase, last: importing litellm slows the whole process

    async def close(self) -> None:
        await self.session.close()
        await self.httpx_default.aclose()
        await self.floor.aclose()
        for router in (self.router, self.stream_router):
            await asyncio.get_running_loop().run_in_executor(None, router.close)

    # -- one plain request each
    async def aiohttp_post(self) -> None:
        async with self.session.post(self.chat, data=_BODY, headers=_HEADERS) as r:
            json.loads(await r.read())

    async def httpx_post(self) -> None:
        (await self.httpx_default.post(self.chat, content=_BODY, headers=_HEADERS)).json()

    async def floor_post(self) -> None:
        (await self.floor.post(self.chat, content=_BODY, headers=_HEADERS)).json()

    async def acomplete(self) -> None:
        await self.router.acomplete(PROMPT)

    def complete(self) -> None:
        self.router.complete(PROMPT)

    async def litellm_post(self) -> None:
        await self.litellm.acompletion(model="bench", messages=_MESSAGES)

    # -- one stream each: (seconds to the first text, seconds to the end)
    async def aiohttp_stream(self, path: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        async with self.session.post(f"{self.url}{path}/chat/completions", data=_STREAM_BODY, headers=_HEADERS) as r:
            async for line in r.content:
                if line.startswith(b"data: {") and _text_of(line[6:]) and first is None:
                    first = time.perf_counter() - t0
        return first, time.perf_counter() - t0  # type: ignore[return-value]

    async def floor_stream(self, path: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        request = self.floor.build_request(
            "POST", f"{self.url}{path}/chat/completions", content=_STREAM_BODY, headers=_HEADERS
        )
        response = await self.floor.send(request, stream=True)
        try:
            async for line in response.aiter_lines():
                if line.startswith("data: {") and _text_of(line[6:]) and first is None:
                    first = time.perf_counter() - t0
        finally:
            await response.aclose()
        return first, time.perf_counter() - t0  # type: ignore[return-value]

    async def astream(self, provider: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        async for _ in self.stream_router.astream(PROMPT, provider=provider):
            if first is None:
                first = time.perf_counter() - t0
        return first, time.perf_counter() - t0  # type: ignore[return-value]

    def stream(self, provider: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        for _ in self.stream_router.stream(PROMPT, provider=provider):
            if first is None:
                first = time.perf_counter() - t0
        return first, time.perf_counter() - t0  # type: ignore[return-value]


def _text_of(data: bytes | str) -> str:
    """The text of one chunk: the raw clients parse every event, as the router does."""
    choices = json.loads(data).get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def _litellm_router(url: str) -> Any:
    import logging
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of its price map at import
    import litellm

    litellm.telemetry = False
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    return litellm.Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {"model": "openai/bench-model", "api_base": url + "/v1", "api_key": "sk-bench"},
            }
        ]
    )


class _Timing:
    """Per-request seconds in rounds; CPU seconds of this process per request, per round."""

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

    def ratio_to(self, base: _Timing) -> float:
        """Median over rounds of this round's median / the baseline's median in the same round: the
        machine's load changes between rounds, but little within one, so pairs cancel it out."""
        return statistics.median(a / b for a, b in zip(self.round_medians, base.round_medians))

    def cpu_ratio_to(self, base: _Timing) -> float:
        return statistics.median(a / b for a, b in zip(self.cpu, base.cpu))

    def minus(self, base: _Timing) -> float:
        """Median over rounds of (this round's median - the baseline's median in the same round)."""
        return statistics.median(a - b for a, b in zip(self.round_medians, base.round_medians))


def _timed(run: Callable, fn: Callable, is_async: bool, n: int) -> tuple[list[float], float]:
    """``n`` sequential calls of ``fn``: wall seconds of each, and the CPU seconds of them all."""

    async def many() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t0)
        return out

    cpu0 = time.process_time()
    if is_async:
        times = run(many())
    else:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times, time.process_time() - cpu0


def _rotations(names: list[str], rounds: int):
    for r in range(rounds):
        k = r % len(names)
        yield r, names[k:] + names[:k]


def _interleaved(run: Callable, contenders: dict[str, tuple[bool, Callable, int]], rounds: int) -> dict[str, _Timing]:
    """Each round runs every contender for its number of sequential requests, in rotating order."""
    out = {name: _Timing() for name in contenders}
    for _, order in _rotations(list(contenders), rounds):
        for name in order:
            is_async, fn, n = contenders[name]
            out[name].add(*_timed(run, fn, is_async, n))
    return out


def _streams(
    run: Callable, contenders: dict[str, tuple[bool, Callable]], arg: str | dict[str, str], rounds: int, n: int
) -> tuple[dict[str, _Timing], dict[str, _Timing]]:
    """(time to first text, time to the end) per contender, interleaved like ``_interleaved``."""
    first = {name: _Timing() for name in contenders}
    whole = {name: _Timing() for name in contenders}
    for _, order in _rotations(list(contenders), rounds):
        for name in order:
            is_async, fn = contenders[name]
            a = arg if isinstance(arg, str) else arg[name]
            cpu0 = time.process_time()
            pairs = [run(fn(a)) if is_async else fn(a) for _ in range(n)]
            cpu = time.process_time() - cpu0
            first[name].add([p[0] for p in pairs], cpu)
            whole[name].add([p[1] for p in pairs], cpu)
    return first, whole


async def _throughput(fn: Callable[[], Awaitable[None]], total: int, concurrency: int) -> float:
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            await fn()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t0)


def _fewer(total: int) -> int:
    """Requests per throughput run for a contender ~10x slower (raw httpx, LiteLLM): a tenth, but
    never so few that the 100 workers would not all have one in flight."""
    return max(total // 10, 150)


def _throughput_rounds(run: Callable, fns: dict[str, Callable], total: int, rounds: int) -> dict[str, list[float]]:
    """Requests per second, ``rounds`` runs each, the floor and the router back to back in every
    round (alternating which goes first) and every run after a full garbage collection.

    On this shared 2-core machine the speed of the host drifts from one second to the next: one
    pair of runs reads anywhere from 0.55x to 1.5x. Many short pairs, each run a few tenths of a
    second from its partner, follow the drift: the median ratio of 31 pairs of 500 requests read
    0.899 and 0.890 in two runs of the same code, where 11 pairs of 1500, with a whole round
    between partners, read 0.851 and 0.938. The collection before each run keeps a generation-2
    collection owed to the previous contenders' garbage (25-50 ms here) from landing in the next
    one's run: interleaved without it, all 13 of one run's full collections landed in the
    router's runs; run alone, the floor and the router each spent about the same share of their
    time on them (1.8% and 1.9%, measured). The collections a run triggers itself are in its time."""
    pair = [FLOOR, "router.acomplete"]
    others = [name for name in fns if name not in pair]
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        flip = r % 2 == 1
        for name in (others[::-1] if flip else others) + (pair[::-1] if flip else pair):
            slow = name.startswith("raw httpx")
            gc.collect()
            rates[name].append(run(_throughput(fns[name], _fewer(total) if slow else total, 100)))
    return rates


def _fallback(server: LoopbackServer, run: Callable, floor: Any, kind: str, n: int) -> dict[str, float]:
    """Per request: straight to the backup; through a primary answering ``kind`` every time and contacted
    every time (cooldown off); and with that primary cooled down. Interleaved request by request."""
    url = server.url
    fail_url = f"{url}/{kind}/v1/chat/completions"
    pair = [("primary", f"{url}/{kind}/v1"), ("backup", url + "/v1")]
    backup_only = _router(url, providers=[("backup", url + "/v1")])
    contacted = _router(url, providers=pair, cooldown_s=0.0)
    cooled = _router(url, providers=pair)
    try:

        async def failed_round_trip() -> None:
            r = await floor.post(fail_url, content=_BODY, headers=_HEADERS)
            assert r.status_code == int(kind[4:]), r.status_code
            r.json()

        for router in (backup_only, contacted, cooled):  # warm pools; cools `cooled`'s primary down (3 failures)
            for _ in range(10):
                run(router.acomplete(PROMPT))
        before = server.counts()
        times: dict[str, list[float]] = {"backup only": [], "contacted": [], "cooled down": [], "failed trip": []}
        served_by_backup = 0
        for i in range(n):
            order = [
                ("backup only", backup_only),
                ("contacted", contacted),
                ("cooled down", cooled),
                ("failed trip", None),
            ]
            k = i % len(order)
            for name, router in order[k:] + order[:k]:
                t0 = time.perf_counter()
                if router is None:
                    run(failed_round_trip())
                else:
                    c = run(router.acomplete(PROMPT))
                    served_by_backup += name == "contacted" and c.provider == "backup"
                times[name].append(time.perf_counter() - t0)
        after = server.counts()
        primary_hits = after.get(kind, 0) - before.get(kind, 0) - n  # minus the raw failed trips
        errors = contacted.usage_df()["status"].eq("error").sum()
    finally:
        for router in (backup_only, contacted, cooled):
            router.close()
    med = {name: statistics.median(t) for name, t in times.items()}

    def added(name: str) -> float:
        """Median of per-pair differences: the two requests of a pair ran back to back, so a busy spell
        on the machine hits both."""
        return statistics.median(a - b for a, b in zip(times[name], times["backup only"]))

    return {
        "backup_only_s": med["backup only"],
        "contacted_s": med["contacted"],
        "cooled_s": med["cooled down"],
        "failed_round_trip_s": med["failed trip"],
        "contacted_added_s": added("contacted"),
        "cooled_added_s": added("cooled down"),
        "primary_contacted_per_request": primary_hits / n,
        "contacted_error_rows": int(errors),
        "success_rate": served_by_backup / n,
    }


def run(quick: bool = False) -> Section:
    with LoopbackServer() as server:
        loop = asyncio.new_event_loop()
        try:
            return _measure(server, loop, quick)
        finally:
            loop.close()


def _measure(server: LoopbackServer, loop: asyncio.AbstractEventLoop, quick: bool) -> Section:
    asyncio.set_event_loop(loop)
    rounds, per_round = (4, 15) if quick else (15, 40)
    stream_n = 5 if quick else 15
    c = _Clients(server.url)
    run = loop.run_until_complete
    run(c.open())
    try:
        contenders: dict[str, tuple[bool, Callable, int]] = {
            "raw aiohttp": (True, c.aiohttp_post, per_round),
            "raw httpx (default transport)": (True, c.httpx_post, per_round),
            FLOOR: (True, c.floor_post, per_round),
            "router.acomplete": (True, c.acomplete, per_round),
            "router.complete (sync)": (False, c.complete, per_round),
        }
        for is_async, fn, _ in contenders.values():  # warm every pool and code path
            _timed(run, fn, is_async, 10 if quick else 30)
        seq = _interleaved(run, contenders, rounds)

        fns = {name: fn for name, (is_async, fn, _) in contenders.items() if is_async}
        total = 300 if quick else 600
        rates = _throughput_rounds(run, fns, total, 3 if quick else 25)

        stream_fns = {
            "raw aiohttp": (True, c.aiohttp_stream),
            FLOOR: (True, c.floor_stream),
            "router.astream": (True, c.astream),
            "router.stream (sync)": (False, c.stream),
        }
        gap_arg = {
            "raw aiohttp": f"/gap{GAP_MS}/v1",
            FLOOR: f"/gap{GAP_MS}/v1",
            "router.astream": "gap",
            "router.stream (sync)": "gap",
        }
        _streams(run, stream_fns, gap_arg, 1, 3)  # warm
        ttft, whole = _streams(run, stream_fns, gap_arg, rounds, stream_n)

        slope: dict[str, _Timing] = {}
        for size, label in ((SMALL, "small"), (BIG, "big")):
            args = {
                "raw aiohttp": f"/chunks{size}/v1",
                FLOOR: f"/chunks{size}/v1",
                "router.astream": label,
                "router.stream (sync)": label,
            }
            _, done = _streams(run, stream_fns, args, 1, 3)  # warm
            _, done = _streams(run, stream_fns, args, rounds, stream_n)
            slope.update({f"{name}@{size}": t for name, t in done.items()})
        ledger_rows = len(c.router.ledger) + len(c.stream_router.ledger)
        fb = {kind: _fallback(server, run, c.floor, kind, 30 if quick else 200) for kind in ("fail429", "fail500")}
        lite = _litellm_phase(c, run, rounds, per_round, total) if importlib.util.find_spec("litellm") else None
    finally:
        run(c.close())

    return _section(quick, rounds, per_round, stream_n, total, seq, rates, ttft, whole, slope, fb, ledger_rows, lite)


def _litellm_phase(c: _Clients, run: Callable, rounds: int, per_round: int, total: int) -> dict[str, Any]:
    """LiteLLM's Router beside the floor and router.acomplete, in a phase of its own after the others:
    importing litellm loads a large module graph into this process, and with it loaded the router's
    own throughput read 10-15% lower here (more garbage-collector work per allocation, most likely),
    which must not leak into the rows above."""
    t0 = time.perf_counter()
    c.litellm = _litellm_router(c.url)
    import_s = time.perf_counter() - t0
    n = max(3, per_round // 5)
    contenders = {
        "LiteLLM Router.acompletion": (True, c.litellm_post, n),
        FLOOR: (True, c.floor_post, n),
        "router.acomplete": (True, c.acomplete, n),
    }
    for is_async, fn, _ in contenders.values():
        _timed(run, fn, is_async, 5)
    seq = _interleaved(run, contenders, rounds)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _, order in _rotations(list(contenders), 3):
        for name in order:
            rates[name].append(run(_throughput(contenders[name][1], _fewer(total), 100)))
    return {"seq": seq, "rates": rates, "import_s": import_s, "per_round": n}


def _section(
    quick, rounds, per_round, stream_n, total, seq, rates, ttft, whole, slope, fb, ledger_rows, lite
) -> Section:
    floor, aio = seq[FLOOR], seq["raw aiohttp"]

    def rate_ratio(name: str, base: str = FLOOR) -> float:
        return statistics.median(a / b for a, b in zip(rates[name], rates[base]))

    s = Section(
        "overhead",
        "Overhead per request (loopback server in its own process, 0 ms latency)",
        ["what", "median ms", "x floor", "x aiohttp", "CPU us/req", "req/s @100", "x floor", "added ms"],
    )
    for name, t in seq.items():
        r = rates.get(name)
        s.rows.append(
            [
                name,
                t.median * 1e3,
                t.ratio_to(floor),
                t.ratio_to(aio),
                t.cpu_median * 1e6,
                None if r is None else statistics.median(r),
                None if r is None else rate_ratio(name),
                None,
            ]
        )
    if lite is not None:
        ls, lr, name = lite["seq"], lite["rates"], "LiteLLM Router.acompletion"
        ratio = statistics.median(a / b for a, b in zip(lr[name], lr[FLOOR]))
        s.rows.append(
            [
                f"{name} (its own phase, after the rest)",
                ls[name].median * 1e3,
                ls[name].ratio_to(ls[FLOOR]),
                None,
                ls[name].cpu_median * 1e6,
                statistics.median(lr[name]),
                ratio,
                None,
            ]
        )
    for label, table in (
        (f"stream TTFT (3 chunks {GAP_MS} ms apart)", ttft),
        (f"stream whole answer (3 chunks {GAP_MS} ms apart)", whole),
    ):
        for name, t in table.items():
            s.rows.append(
                [
                    f"{label}: {name}",
                    t.median * 1e3,
                    t.ratio_to(table[FLOOR]),
                    t.ratio_to(table["raw aiohttp"]),
                    t.cpu_median * 1e6,
                    None,
                    None,
                    None,
                ]
            )
    per_chunk: dict[str, float] = {}
    for name in ("raw aiohttp", FLOOR, "router.astream", "router.stream (sync)"):
        big, small = slope[f"{name}@{BIG}"], slope[f"{name}@{SMALL}"]
        per_chunk[name] = big.minus(small) / (BIG - SMALL)
        s.rows.append(
            [
                f"stream, per extra chunk ({SMALL}->{BIG} back to back): {name}",
                None,
                None,
                None,
                (big.cpu_median - small.cpu_median) / (BIG - SMALL) * 1e6,
                None,
                None,
                per_chunk[name] * 1e3,
            ]
        )
    for kind, f in fb.items():
        code = kind[4:]
        s.rows.append(
            [f"fallback {code}: straight to the backup", f["backup_only_s"] * 1e3, None, None, None, None, None, None]
        )
        s.rows.append(
            [
                f"fallback {code}: primary contacted every time (cooldown off)",
                f["contacted_s"] * 1e3,
                None,
                None,
                None,
                None,
                None,
                f["contacted_added_s"] * 1e3,
            ]
        )
        s.rows.append(
            [
                f"fallback {code}: primary cooled down",
                f["cooled_s"] * 1e3,
                None,
                None,
                None,
                None,
                None,
                f["cooled_added_s"] * 1e3,
            ]
        )
        s.rows.append(
            [
                f"fallback {code}: one failed round trip (floor client)",
                f["failed_round_trip_s"] * 1e3,
                None,
                None,
                None,
                None,
                None,
                None,
            ]
        )

    s.notes.append(
        f"floor = {FLOOR}: httpx.AsyncClient(transport=AiohttpTransport()) doing client.post + .json(); "
        "'x floor' / 'x aiohttp' = median over rounds of (round median / that client's round median)"
    )
    s.notes.append(
        f"sequential: {rounds} rounds x {per_round} requests per client, rotating "
        "order; CPU = this process's CPU time per request (the router's loop thread included)"
    )
    s.notes.append(
        f"throughput: {total} requests by 100 concurrent workers (raw httpx: {_fewer(total)}), "
        f"{len(rates[FLOOR])} rounds, the floor and the router back to back in each; medians, "
        "ratio = median of the pairs"
    )
    s.notes.append(
        f"streams: {rounds} rounds x {stream_n} streams per client; 'added ms' of a per-chunk row = "
        f"(median stream time with {BIG} chunks - with {SMALL}) / {BIG - SMALL}, paired by round"
    )
    s.notes.append(
        "fallback: the three routers and a raw failed request interleaved request by request; 'added "
        "ms' = median of (this request - the request straight to the backup next to it). Primary "
        "contacted per request (server count): "
        + ", ".join(
            f"{k[4:]}: {f['primary_contacted_per_request']:.2f}, served by the backup {f['success_rate']:.1%}"
            for k, f in fb.items()
        )
    )
    if lite is None:
        s.notes.append("LiteLLM is not installed: no LiteLLM row (pip install litellm to add it)")
    else:
        s.notes.append(
            f"LiteLLM row: measured last, interleaved with the floor and router.acomplete only "
            f"({rounds} rounds x {lite['per_round']}; throughput: {_fewer(total)} requests, 3 runs); "
            f"its Router took {lite['import_s']:.1f} s to import and build"
        )
    s.notes.append(
        f"router.acomplete/complete: a router with one provider; streams: a router with three, each "
        f"stream pinned to one (provider=); {ledger_rows} ledger rows recorded"
    )
    s.data = {
        "litellm": None
        if lite is None
        else {
            "median_s": lite["seq"]["LiteLLM Router.acompletion"].median,
            "import_s": lite["import_s"],
            "throughput_rps": lite["rates"],
        },
        "sequential": {
            k: {
                "median_s": v.median,
                "ratio_to_floor": v.ratio_to(floor),
                "ratio_to_aiohttp": v.ratio_to(aio),
                "cpu_per_req_s": v.cpu_median,
                "round_medians_s": v.round_medians,
            }
            for k, v in seq.items()
        },
        "throughput_rps": rates,
        "ttft": {k: {"median_s": v.median, "round_medians_s": v.round_medians} for k, v in ttft.items()},
        "stream_whole": {k: {"median_s": v.median} for k, v in whole.items()},
        "per_extra_chunk_s": per_chunk,
        "fallback": fb,
    }

    s.target("acomplete / floor, sequential", seq["router.acomplete"].ratio_to(floor), "<=", 1.15, "x")
    s.target("complete (sync) / floor, sequential", seq["router.complete (sync)"].ratio_to(floor), "<=", 1.7, "x")
    s.target("acomplete / floor, throughput @100", rate_ratio("router.acomplete"), ">=", 0.85, "x")
    if lite is not None:
        ls = lite["seq"]
        s.target(
            "LiteLLM Router / acomplete, sequential",
            ls["LiteLLM Router.acompletion"].ratio_to(ls["router.acomplete"]),
            ">=",
            10.0,
            "x",
            "the router at least 10x faster",
        )
    s.target("stream per extra chunk: astream", per_chunk["router.astream"] * 1e3, "<=", 0.03, " ms")
    s.target("stream per extra chunk: stream (sync)", per_chunk["router.stream (sync)"] * 1e3, "<=", 0.03, " ms")
    for kind, f in fb.items():
        code = kind[4:]
        s.target(
            f"fallback {code}, primary contacted: added",
            f["contacted_added_s"] * 1e3,
            "<=",
            (f["failed_round_trip_s"] + 0.0005) * 1e3,
            " ms",
            "one failed round trip + 0.5 ms",
        )
        s.target(
            f"fallback {code}, primary contacted on every request",
            f["primary_contacted_per_request"],
            ">=",
            1.0,
            "",
            "server-side count",
        )
        s.target(f"fallback {code}, served by the backup", f["success_rate"], ">=", 1.0)
        s.target(
            f"fallback {code}, cooled down: added", f["cooled_added_s"] * 1e3, "<=", 0.1, " ms", "nothing, within noise"
        )
    return s
