"""``python -m benchmarks.hotpath [layers|acomplete|complete|astream|stream] [--concurrency N] [--requests N]``:
where a router request spends its time, against the benchmark's loopback server.

``layers`` (the default) times the same request one layer at a time, interleaved in rounds, as
wall and CPU microseconds per request: the public-API floor (``httpx.AsyncClient`` over the
``httpx-aiohttp`` transport, ``post`` + ``json``), the router's own client (``_http.make_client``)
doing the same, the wire-format adapter (``adapter.complete``: body, headers, parsing), and
``router.acomplete``. Each difference is what that layer adds. With ``--concurrency N`` each layer
runs its requests on N workers (wall is then per request at that concurrency: 1 / throughput).

The other kinds profile the router with pyinstrument (``pip install pyinstrument``; the ``bench``
extra) and print the flat profile, heaviest functions first. pyinstrument samples the calling
thread only: ``complete`` and ``stream`` show the caller's side of the thread hand-over, while the
work on the router's loop thread is what ``acomplete`` and ``astream`` show.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from ._server import LoopbackServer
from .overhead import _BODY, _HEADERS, PROMPT, _router


async def _drive(router, kind: str, requests: int, concurrency: int) -> None:
    remaining = iter(range(requests))

    async def one() -> None:
        if kind == "astream":
            async for _ in router.astream(PROMPT):
                pass
        else:
            await router.acomplete(PROMPT)

    async def worker() -> None:
        for _ in remaining:
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _layers(url: str, requests: int, concurrency: int = 1) -> list[tuple[str, float, float]]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    from llmroute_magic import ProviderSpec
    from llmroute_magic._http import make_client
    from llmroute_magic._providers import ChatRequest, adapter_for

    floor = httpx.AsyncClient(transport=AiohttpTransport(limits=httpx.Limits(max_connections=100)))
    ours = make_client(timeout=60.0)
    spec = ProviderSpec("bench", "bench-model", api="openai", base_url=url + "/v1").with_prices(input=0.15, output=0.6)
    adapter = adapter_for("openai")(spec, ours)
    request = ChatRequest(messages=[{"role": "user", "content": PROMPT}])
    router = _router(url)
    chat = url + "/v1/chat/completions"

    async def floor_post() -> None:
        (await floor.post(chat, content=_BODY, headers=_HEADERS)).json()

    async def our_client_post() -> None:
        (await ours.post(chat, content=_BODY, headers=_HEADERS)).json()

    async def adapter_complete() -> None:
        await adapter.complete(request)

    async def router_acomplete() -> None:
        await router.acomplete(PROMPT)

    fns = {
        "floor: httpx + httpx-aiohttp post": floor_post,
        "router's client (_http.make_client) post": our_client_post,
        "adapter.complete": adapter_complete,
        "router.acomplete": router_acomplete,
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}

    async def many(fn, n: int) -> None:
        remaining = iter(range(n))

        async def worker() -> None:
            for _ in remaining:
                await fn()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        for fn in fns.values():
            await many(fn, max(100, concurrency))
        rounds, per_round = 8, max(10, requests // 8)
        names = list(fns)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                cpu0, t0 = time.process_time(), time.perf_counter()
                await many(fns[name], per_round)
                samples[name].append(((time.perf_counter() - t0) / per_round, (time.process_time() - cpu0) / per_round))
    finally:
        await floor.aclose()
        await ours.aclose()
        await asyncio.get_running_loop().run_in_executor(None, router.close)
    return [
        (name, statistics.median(s[0] for s in v), statistics.median(s[1] for s in v)) for name, v in samples.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__.splitlines()[0])
    parser.add_argument(
        "kind", nargs="?", default="layers", choices=["layers", "acomplete", "complete", "astream", "stream"]
    )
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)

    if args.kind == "layers":
        with LoopbackServer() as server:
            rows = asyncio.run(_layers(server.url, args.requests, args.concurrency))
        base_wall, base_cpu = rows[0][1], rows[0][2]
        print(f"{'layer':45s} {'wall us':>9s} {'CPU us':>9s} {'+CPU us vs floor':>17s}")
        for name, wall, cpu in rows:
            print(f"{name:45s} {wall * 1e6:9.1f} {cpu * 1e6:9.1f} {(cpu - base_cpu) * 1e6:17.1f}")
        print(
            f"(wall is loaded-machine sensitive; CPU is this process's, the router's loop thread included; "
            f"floor wall {base_wall * 1e6:.0f} us)"
        )
        return 0

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install pyinstrument", file=sys.stderr)
        return 2

    with LoopbackServer() as server:
        router = _router(server.url)
        try:
            if args.kind in ("complete", "stream"):

                def one() -> None:
                    if args.kind == "stream":
                        for _ in router.stream(PROMPT):
                            pass
                    else:
                        router.complete(PROMPT)

                for _ in range(200):
                    one()
                profiler = Profiler(interval=0.0002)
                profiler.start()
                for _ in range(args.requests):
                    one()
                profiler.stop()
            else:
                loop = asyncio.new_event_loop()
                loop.run_until_complete(_drive(router, args.kind, 200, args.concurrency))
                profiler = Profiler(interval=0.0002, async_mode="disabled")
                profiler.start()
                loop.run_until_complete(_drive(router, args.kind, args.requests, args.concurrency))
                profiler.stop()
                loop.run_until_complete(asyncio.sleep(0))
        finally:
            router.close()
    print(profiler.output_text(unicode=False, color=False, flat=True)[:8000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
