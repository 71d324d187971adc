"""Part 2: what ``import llmroute_magic`` and ``%load_ext llmroute_magic`` cost and load.

Each run is a fresh interpreter (``sys.executable``); the bare interpreter start is measured in
the same loop, interleaved, and subtracted, so a busy machine slows both alike.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

from ._table import Section

HEAVY = ("pandas", "matplotlib", "ipywidgets", "IPython", "httpx")
NOTEBOOK_HEAVY = ("pandas", "matplotlib", "ipywidgets")

_PROBE_IMPORT = """
import sys, json
import llmroute_magic
from llmroute_magic import ModelClientRouter, ProviderRoutingConfig  # the public names still resolve
print(json.dumps(sorted(m for m in sys.modules if '.' not in m)))
"""

_PROBE_LOAD_EXT = """
import sys, json, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
before = set(sys.modules)
t0 = time.perf_counter()
shell.run_line_magic("load_ext", "llmroute_magic")
elapsed = time.perf_counter() - t0
router = shell.user_ns.get("llm")
ok = router is not None
if ok:
    router.close()
print(json.dumps({"modules": sorted(m for m in sys.modules if '.' not in m),
                  "new": sorted(m for m in set(sys.modules) - before if '.' not in m),
                  "elapsed_s": elapsed, "router_bound": ok}))
"""


def _time_run(code: str) -> tuple[float, float]:
    """Wall seconds and the child's CPU seconds (the latter barely moves when the machine is busy)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _probe(code: str) -> object:
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="llmroute-bench-") as tmp:
        env = dict(os.environ)
        # The extension must not pick up a user's real config, profile or keys while being measured.
        env.pop("LLMROUTE_CONFIG", None)
        env["IPYTHONDIR"] = tmp
        # Run from an empty directory (no ./llmroute.toml), importing the same package as this process.
        import llmroute_magic

        package_root = os.path.dirname(os.path.dirname(os.path.abspath(llmroute_magic.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> Section:
    runs = 3 if quick else 11
    bare, full, bare_cpu, full_cpu = [], [], [], []
    _time_run("import llmroute_magic")  # warm the file cache and .pyc files first
    for _ in range(runs):
        for code, wall_list, cpu_list in (("pass", bare, bare_cpu), ("import llmroute_magic", full, full_cpu)):
            wall, cpu = _time_run(code)
            wall_list.append(wall)
            cpu_list.append(cpu)
    bare_med, full_med = statistics.median(bare), statistics.median(full)
    added = max(full_med - bare_med, 0.0)
    added_cpu = max(statistics.median(full_cpu) - statistics.median(bare_cpu), 0.0)

    loaded = set(_probe(_PROBE_IMPORT))  # type: ignore[arg-type]
    heavy_loaded = [m for m in HEAVY if m in loaded]
    ext = _probe(_PROBE_LOAD_EXT)
    assert isinstance(ext, dict)
    ext_heavy = [m for m in NOTEBOOK_HEAVY if m in ext["modules"]]

    s = Section("import", "Import (fresh interpreter per run, medians)", ["measure", "seconds", "note"])
    s.rows = [
        ["python -c pass (bare interpreter)", bare_med, f"median of {runs}"],
        ["python -c 'import llmroute_magic'", full_med, f"median of {runs}"],
        ["import llmroute_magic, minus bare start", added, "wall clock"],
        ["  same, child CPU time", added_cpu, "steady on a busy machine"],
        [
            "%load_ext llmroute_magic (in shell)",
            ext["elapsed_s"],
            "router bound as llm" if ext["router_bound"] else "NO router bound",
        ],
    ]
    s.notes.append("import loads: " + (", ".join(heavy_loaded) if heavy_loaded else f"none of {', '.join(HEAVY)}"))
    s.notes.append(
        "%load_ext loads: " + (", ".join(ext_heavy) if ext_heavy else f"none of {', '.join(NOTEBOOK_HEAVY)}")
    )
    s.data = {
        "bare_s": bare,
        "import_s": full,
        "bare_median_s": bare_med,
        "import_median_s": full_med,
        "import_added_s": added,
        "import_added_cpu_s": added_cpu,
        "import_heavy_loaded": heavy_loaded,
        "load_ext_s": ext["elapsed_s"],
        "load_ext_heavy_loaded": ext_heavy,
        "load_ext_new_modules": ext["new"],
    }
    s.target("import llmroute_magic (minus bare start)", added, "<=", 0.30, " s")
    s.target("heavy modules loaded by import", len(heavy_loaded), "<=", 0, note=", ".join(heavy_loaded) or "none")
    s.target("heavy modules loaded by %load_ext", len(ext_heavy), "<=", 0, note=", ".join(ext_heavy) or "none")
    return s
