"""MkDocs hooks of the llmroute_magic site (``hooks:`` in mkdocs.yml).

- The example notebooks become pages: each is executed in a fresh kernel on the built-in simulator
  (``llmroute_magic._demo.execute_notebook``: ``LLMROUTE_SIMULATE=1``, no keys, loopback only) and
  converted to Markdown with its outputs by nbconvert, so the pages use the site's theme, search
  and code highlighting. ``LLMROUTE_DOCS_EXECUTE=0`` renders them without running them (faster
  while writing; the pages then say so).
- The magics page gets its tables from ``llmroute_magic._ipython.reference``, the table that
  also builds the ``%%llm`` parser and the ``%llm?`` help.
- The build fails when a name in ``llmroute_magic.__all__`` or ``llmroute_magic.sim.__all__`` has
  no ``::: name`` block in the API reference, or when a built page loads anything from another
  host (a font, a script, a stylesheet): the site must work offline.
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("quickstart", "ab_comparison", "cost_analysis")
PUBLIC_MODULES = ("llmroute_magic", "llmroute_magic.sim")
REFERENCE_PAGES = ("reference/llmroute_magic.md", "reference/sim.md")

_IDENTIFIER = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
_REMOTE_ASSET = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.IGNORECASE
)
_REMOTE_CSS = re.compile(r"(?:@import\s+|url\()\s*[\"']?(?:https?:)?//", re.IGNORECASE)


# -- the API reference lists every public name ---------------------------------------------------------


def documented_names(docs_dir: Path) -> set[str]:
    """Every ``::: dotted.name`` identifier in the reference pages."""
    names: set[str] = set()
    for page in REFERENCE_PAGES:
        names.update(_IDENTIFIER.findall((docs_dir / page).read_text(encoding="utf-8")))
    return names


def public_names() -> set[str]:
    """``module.name`` for every name in the ``__all__`` of the public modules."""
    return {f"{module}.{name}" for module in PUBLIC_MODULES for name in importlib.import_module(module).__all__}


def missing_from_reference(docs_dir: Path) -> list[str]:
    return sorted(public_names() - documented_names(docs_dir))


# -- the magics' tables ----------------------------------------------------------------------------------


def magic_tables() -> dict[str, str]:
    """Marker -> Markdown table, from the same table that builds the parser and the ``%llm?`` help."""
    from llmroute_magic._ipython import magics, reference

    return {
        "<!-- llmroute:cell-options -->": reference.options_markdown(reference.CELL_OPTIONS),
        "<!-- llmroute:subcommands -->": reference.subcommands_markdown(),
        "<!-- llmroute:explain-options -->": reference.options_markdown(reference.EXPLAIN_OPTIONS),
        "<!-- llmroute:settings -->": reference.settings_markdown(magics.settings()),
    }


_POLICY_TEXT = {
    "RETRY": "retried: the next candidate at once, or the same provider after backoff",
    "DROP_PROVIDER": "this provider leaves the request and cools down; the others go on",
    "LARGER_CONTEXT": "falls back only to a provider with a larger context window",
    "FAIL_FAST": "raised at once as a ProviderError: retrying cannot help",
    "SURFACE": "not retried: the user already saw part of the answer",
    "RESEND": "sent again at once to the same provider without the field it refused (not counted as a retry)",
}


def error_policy_markdown() -> str:
    """``error_type`` values by what the router does with them, from ``_errors.ERROR_POLICY``."""
    from llmroute_magic._errors import ERROR_POLICY

    rows = ["| what the router does | error types |", "|---|---|"]
    for policy in dict.fromkeys(ERROR_POLICY.values()):
        types = ", ".join(f"`{t}`" for t, p in ERROR_POLICY.items() if p is policy)
        rows.append(f"| {_POLICY_TEXT.get(policy.name, policy.value)} | {types} |")
    return "\n".join(rows)


def fill_markers(markdown: str) -> str:
    markdown = markdown.replace("<!-- llmroute:error-policy -->", error_policy_markdown())
    for marker, table in magic_tables().items():
        markdown = markdown.replace(marker, table)
    return markdown


# -- notebooks ----------------------------------------------------------------------------------------------


def _execute() -> bool:
    return os.environ.get("LLMROUTE_DOCS_EXECUTE", "1").strip().lower() not in ("0", "false", "no")


def render_notebook(name: str, *, execute: bool) -> tuple[str, dict[str, bytes]]:
    """The notebook as Markdown with its outputs, and the output files (plots) it refers to."""
    import nbformat
    from nbconvert import MarkdownExporter

    from llmroute_magic._demo import execute_notebook

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    if execute:
        with tempfile.TemporaryDirectory(prefix="llmroute-docs-") as cwd:
            try:
                execute_notebook(nb, cwd=cwd)
            except Exception as exc:  # a cell failed: the site must not show a half-run notebook
                raise PluginError(f"notebooks/{name}.ipynb failed while building the docs: {exc}") from exc
    # Live widgets need a kernel and JavaScript; the static snapshot each widget carries shows instead.
    nb.metadata.pop("widgets", None)
    body, resources = MarkdownExporter().from_notebook_node(
        nb, resources={"output_files_dir": f"{name}_files", "unique_key": name}
    )
    if execute:
        note = (
            '!!! note "Executed when this site was built"\n'
            f"    This page is `notebooks/{name}.ipynb` run top to bottom on the built-in simulator: "
            "no keys, no network, simulated answers and prices. Run it yourself with "
            "`jupyter lab notebooks/` (or `llmroute demo` for the quickstart).\n\n"
        )
    else:
        note = (
            '!!! warning "Not executed"\n'
            "    This build skipped running the notebooks (`LLMROUTE_DOCS_EXECUTE=0`): the outputs are "
            "missing.\n\n"
        )
    # The note goes under the notebook's title (its first heading), which is the page's title.
    outputs = dict(resources.get("outputs", {}))
    if body.lstrip().startswith("# "):
        title, _, rest = body.lstrip().partition("\n")
        return f"{title}\n\n{note}{rest}", outputs
    return note + body, outputs


# -- MkDocs events ------------------------------------------------------------------------------------------


def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config["docs_dir"])
    missing = missing_from_reference(docs_dir)
    if missing:
        raise PluginError(
            "the API reference has no '::: NAME' block for: "
            + ", ".join(missing)
            + f" (add them to {' or '.join(REFERENCE_PAGES)})"
        )
    execute = _execute()
    for name in NOTEBOOKS:
        markdown, outputs = render_notebook(name, execute=execute)
        files.append(File.generated(config, f"notebooks/{name}.md", content=markdown))
        for path, data in outputs.items():
            files.append(File.generated(config, f"notebooks/{path}", content=data))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if "<!-- llmroute:" in markdown:
        markdown = fill_markers(markdown)
        left = re.findall(r"<!-- llmroute:[\w-]+ -->", markdown)
        if left:
            raise PluginError(f"{page.file.src_uri}: unknown marker(s) {', '.join(left)}")
    return markdown


def on_post_build(config: Any) -> None:
    """Fail when a built page or stylesheet reaches for another host (the site must work offline)."""
    site = Path(config["site_dir"])
    found = []
    for path in site.rglob("*"):
        if path.suffix == ".html":
            if _REMOTE_ASSET.search(path.read_text(encoding="utf-8", errors="replace")):
                found.append(str(path.relative_to(site)))
        elif path.suffix == ".css":
            if _REMOTE_CSS.search(path.read_text(encoding="utf-8", errors="replace")):
                found.append(str(path.relative_to(site)))
    if found:
        raise PluginError(
            "these built files load assets from another host (the site must work offline): "
            + ", ".join(sorted(found)[:10])
        )
