"""``python -m benchmarks.hotpath [acomplete|complete|astream] [--concurrency N] [--requests N]``:
where a router request spends its time, against the benchmark's loopback server.

Uses pyinstrument (``pip install pyinstrument``; not a dependency of the package) and prints the
flat profile, heaviest functions first: the quickest way to see what the router adds on top of
the HTTP client before changing the hot path.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ._server import LoopbackServer
from .overhead import PROMPT, _router


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", default="acomplete", choices=["acomplete", "complete", "astream"])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install pyinstrument", file=sys.stderr)
        return 2

    with LoopbackServer() as server:
        router = _router(server.url)
        try:
            if args.kind == "complete":
                for _ in range(200):
                    router.complete(PROMPT)
                profiler = Profiler(interval=0.0002)
                profiler.start()
                for _ in range(args.requests):
                    router.complete(PROMPT)
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
