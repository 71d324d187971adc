"""``llmroute demo [--out DIR]``: run the quickstart notebook on the simulator and keep what it made.

The notebook runs headless (nbclient) in a kernel of this same Python, with ``LLMROUTE_SIMULATE=1``
so no key or config in the environment can send a request anywhere but loopback. A last cell,
added to the executed copy only, saves the usage ledger and the plots with the magics themselves.
Outputs: ``quickstart.ipynb`` (executed), ``quickstart.html``, ``usage.csv`` and one PNG per plot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_OUT = "llmroute-demo"
NOTEBOOK = "quickstart.ipynb"
PLOTS = ("cost", "latency", "tokens", "requests", "timeline")
CELL_TIMEOUT_S = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"directory for the outputs (default: ./{DEFAULT_OUT}/)"
    )


# -- finding the notebooks ------------------------------------------------------------------------


def notebook_dirs() -> list[Path]:
    """Where the shipped notebooks may be: inside the installed package, or in a source checkout."""
    here = Path(__file__).resolve().parent
    return [here / "notebooks", here.parent / "notebooks", Path(sys.prefix) / "share" / "llmroute_magic" / "notebooks"]


def find_notebook(name: str) -> Path:
    for d in notebook_dirs():
        if (d / name).is_file():
            return d / name
    looked = ", ".join(str(d) for d in notebook_dirs())
    raise FileNotFoundError(f"cannot find {name}; looked in {looked}")


# -- running notebooks ------------------------------------------------------------------------------


def simulated_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: simulator forced, no config file, no API keys."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.endswith("_API_KEY"):
            del env[key]  # belt and braces: LLMROUTE_SIMULATE already ignores them
    env.pop("LLMROUTE_CONFIG", None)
    env["LLMROUTE_SIMULATE"] = "1"
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # quiets a debugger warning on kernel start
    return env


def _kernel_manager(spec_dir: Path):
    """A kernel manager running ipykernel on this interpreter (not whatever "python" is on PATH)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kdir = spec_dir / "kernels" / "llmroute-python"
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (llmroute)",
                "language": "python",
            }
        )
    )
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="llmroute-python", kernel_spec_manager=ksm)


def execute_notebook(
    nb: Any, *, cwd: str | os.PathLike, env: Mapping[str, str] | None = None, timeout: int = CELL_TIMEOUT_S
) -> Any:
    """Execute ``nb`` (a NotebookNode) in place in a fresh kernel; raises on a cell error."""
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="llmroute-kernel-") as spec_dir:
        km = _kernel_manager(Path(spec_dir))
        client = NotebookClient(
            nb, km=km, timeout=timeout, coalesce_streams=True, resources={"metadata": {"path": str(cwd)}}
        )
        # The kernel's own stderr is start-up chatter; cell errors arrive as messages, not here.
        client.execute(env=dict(simulated_env() if env is None else env), cwd=str(cwd), stderr=subprocess.DEVNULL)
    return nb


def export_html(nb: Any) -> str:
    """The executed notebook as one HTML page that reads the same offline.

    Live widgets need JavaScript from a CDN and a kernel; neither is there when the page is opened
    later, so their views would render as nothing. Without the saved widget state nbconvert shows
    each widget's static fallback instead: the panel's snapshot table, or its text.
    """
    import copy

    from nbconvert import HTMLExporter

    offline = copy.deepcopy(nb)
    offline.metadata.pop("widgets", None)
    body, _ = HTMLExporter().from_notebook_node(offline)
    return body


def _save_cell(out: Path) -> str:
    lines = [
        "# Added by `llmroute demo`: save the usage table and the plots next to this notebook.",
        f"%llm save {_q(out / 'usage.csv')}",
    ]
    lines += [f"%llm plot {kind} {_q(out / f'{kind}.png')}" for kind in PLOTS]
    return "\n".join(lines)


def _q(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def _print_stats(usage_csv: Path) -> None:
    """The usage per provider, with the figures and the p50/p95 definition of ``%llm stats``."""
    import pandas as pd

    from ._format import cost_total, count, millis, plural
    from ._stats import UsageStats

    df = pd.read_csv(usage_csv)
    if df.empty:
        print("usage: no requests were made")
        return
    by = UsageStats.from_frame(df).by_provider
    cost = pd.to_numeric(df["cost"], errors="coerce")
    priced = cost.groupby(df["provider"].astype(str)).sum()
    unpriced = cost.isna().groupby(df["provider"].astype(str)).sum()
    head = ("provider", "attempts", "errors", "tokens in", "tokens out", "cost", "p50", "p95")
    rows = [head] + [
        (
            str(name),
            count(r["requests"]),
            count(r["errors"]),
            count(r["input_tokens"]),
            count(r["output_tokens"]),
            cost_total(priced.get(name, 0.0), int(unpriced.get(name, 0)), priced=priced.get(name, 0.0)),
            millis(r["latency_p50_s"]),
            millis(r["latency_p95_s"]),
        )
        for name, r in by.iterrows()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    tokens = int(by["input_tokens"].sum() + by["output_tokens"].sum())
    total = float(priced.sum())
    print(
        f"total: {plural(len(df), 'attempt')}, {plural(df['request_id'].nunique(), 'request')}, "
        f"{count(tokens)} tokens, {cost_total(total, int(cost.isna().sum()), priced=total)} (simulated prices)"
    )


def run(args: argparse.Namespace) -> int:
    import nbformat

    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        source = find_notebook(NOTEBOOK)
    except FileNotFoundError as e:
        print(f"llmroute demo: {e}", file=sys.stderr)
        return 1
    nb = nbformat.read(source, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("## Saved by `llmroute demo`"))
    nb.cells.append(nbformat.v4.new_code_cell(_save_cell(out)))
    print(f"llmroute demo: running {source.name} on the built-in simulator (no keys, no network)...", flush=True)
    started = time.monotonic()
    try:
        execute_notebook(nb, cwd=out)
    except Exception as e:  # noqa: BLE001 - the user needs the cell's error, not our stack
        failed = out / NOTEBOOK
        nbformat.write(nb, failed)
        print(f"llmroute demo: the notebook failed: {e}\npartial notebook: {failed}", file=sys.stderr)
        return 1
    nb_path = out / NOTEBOOK
    nbformat.write(nb, nb_path)
    html_path = out / "quickstart.html"
    html_path.write_text(export_html(nb), encoding="utf-8")
    print(f"done in {time.monotonic() - started:.1f} s\n")
    usage_csv = out / "usage.csv"
    _print_stats(usage_csv)
    print(f"\nfiles in {out}:")
    for p in [nb_path, html_path, usage_csv, *(out / f"{k}.png" for k in PLOTS)]:
        print(f"  {p.name:<18} {'missing!' if not p.exists() else f'{p.stat().st_size:,} bytes'}")
    print(
        "\nopen quickstart.html in a browser, or quickstart.ipynb in Jupyter; "
        "set OPENAI_API_KEY / ANTHROPIC_API_KEY to run it for real"
    )
    missing = [p for p in [usage_csv, *(out / f"{k}.png" for k in PLOTS)] if not p.exists()]
    return 1 if missing else 0
