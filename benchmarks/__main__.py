"""``python -m benchmarks [--quick] [--json PATH] [--only PARTS]``: run, print the table, write JSON.

Exit status: 1 when a part crashed, or, in a full run, when a target is missed (verdicts are printed
as PASS/MISS); a ``--quick`` run is informative only and exits 0 unless a part crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from ._table import Section, render_section, render_targets

# Order matters: the cheap, subprocess-based parts first, the network-heavy ones after.
PARTS = {
    "import": "benchmarks.imports",
    "ledger": "benchmarks.ledger_scale",
    "overhead": "benchmarks.overhead",
    "quality": "benchmarks.quality",
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run (< 30 s)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})")
    parser.add_argument("--only", default="", help=f"comma-separated parts to run: {', '.join(PARTS)}")
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    started = time.perf_counter()
    print(
        f"llmroute_magic benchmarks ({'quick' if args.quick else 'full'}) - python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {_load()}",
        flush=True,
    )
    if args.quick:
        print(
            "quick mode: a smoke run with a tenth of the sizes and short scenarios; its verdicts are "
            "indicative only (short drift phases and scaled-up ledger times read worse). "
            "The targets are judged by the full run: python -m benchmarks",
            flush=True,
        )
    sections: list[Section] = []
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    for name in chosen:
        t0 = time.perf_counter()
        try:
            section = importlib.import_module(PARTS[name]).run(quick=args.quick)
        except Exception:
            errors[name] = traceback.format_exc()
            print(f"\n== {name}: CRASHED ==\n{errors[name]}", file=sys.stderr, flush=True)
            continue
        finally:
            durations[name] = time.perf_counter() - t0
        sections.append(section)
        print("\n" + render_section(section) + f"\n  ({durations[name]:.1f} s)", flush=True)

    targets = [t for s in sections for t in s.targets]
    elapsed = time.perf_counter() - started
    print("\n== Summary ==")
    if targets:
        print(render_targets(targets))
    passed = sum(t.passed for t in targets)
    print(f"\n{passed}/{len(targets)} targets met; {len(errors)} part(s) crashed; {elapsed:.1f} s in all")

    result = {
        "quick": args.quick,
        "elapsed_s": elapsed,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": _load(),
        "parts": {s.key: s.as_dict() | {"duration_s": durations.get(s.key)} for s in sections},
        "targets": [t.as_dict() for t in targets],
        "passed": passed,
        "missed": len(targets) - passed,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=_jsonable))
    print(f"results written to {args.json}")
    if errors:
        return 1
    if passed < len(targets) and not args.quick:
        print(f"{len(targets) - passed} target(s) missed: exit status 1", file=sys.stderr)
        return 1
    return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _jsonable(value: object) -> object:
    if isinstance(value, float):
        return None
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
