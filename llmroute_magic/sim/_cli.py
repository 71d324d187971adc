"""``llmroute sim [--port N] [--profiles FILE.toml]``: serve the simulated providers until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .._errors import ConfigError

DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--profiles",
        metavar="FILE.toml",
        help="TOML file of [[providers]] tables (default: one provider per wire format, and sim-local)",
    )


def run(args: argparse.Namespace) -> int:
    from . import Simulator, load_profiles

    try:
        profiles = load_profiles(args.profiles) if args.profiles else None
        sim = Simulator(profiles, port=args.port)
    except ConfigError as exc:
        print(f"llmroute sim: {exc}", file=sys.stderr)
        return 2
    try:
        sim.start()
    except OSError as exc:
        print(f"llmroute sim: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        print(f"llmroute simulator on {sim.url}  (Ctrl-C to stop)")
        for name, p in sim.profiles.items():
            print(f"  {name:<16} {p.api:<16} {p.model:<26} {sim.base_url(name)}")
        print(f"  stats: {sim.url}/_sim/stats   profiles: {sim.url}/_sim/profiles", flush=True)
        while not stop.wait(0.5):  # a timed wait keeps Ctrl-C responsive everywhere
            pass
    finally:
        sim.stop()
    print("llmroute sim: stopped", flush=True)
    return 0
