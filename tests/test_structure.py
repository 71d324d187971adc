"""The shape of the package, enforced: one curated public surface, a core that never reaches for
the edges, and functions short enough to read."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import llmroute_magic

PACKAGE = Path(llmroute_magic.__file__).parent

# Modules a user may import by name; everything else starts with "_" somewhere in its path.
PUBLIC_MODULES = {"llmroute_magic", "llmroute_magic.sim"}

# The edges: what people look at and keep (ledger, stats, plots, notebook layer, simulator, CLI).
# The facade (_router) composes them with the core, and the package __init__ exposes it.
EDGE = ("_router", "_ledger", "_stats", "_plots", "_ipython", "sim", "_cli", "_demo")
HEAVY = ("pandas", "numpy", "matplotlib", "IPython", "ipywidgets", "traitlets", "nbformat", "nbclient")
NOT_CORE = {*EDGE, "__init__", "__main__"}


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(["llmroute_magic", *parts]), path))
    return out


def imported_names(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, at top level or inside functions, resolved to absolute names."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{a.name}" for a in node.names)
    return names


def is_core(module: str) -> bool:
    parts = module.split(".")[1:]
    return bool(parts) and parts[0] not in NOT_CORE


def test_only_the_curated_modules_are_public():
    public = {m for m, _ in modules() if not any(p.startswith("_") for p in m.split("."))}
    assert public == PUBLIC_MODULES


def test_each_public_module_exports_exactly_its_all():
    for name in sorted(PUBLIC_MODULES):
        module = importlib.import_module(name)
        submodules = {m.name for m in pkgutil.iter_modules(module.__path__)} if hasattr(module, "__path__") else set()
        shown = {n for n in dir(module) if not n.startswith("_") and n not in submodules and n != "annotations"}
        assert shown == set(module.__all__) - {"__version__"}, name
        for n in module.__all__:
            getattr(module, n)  # every listed name resolves (the lazy ones too)


def test_the_design_names_are_exported():
    wanted = {
        "ProviderSpec",
        "ProviderRoutingConfig",
        "RoutingStrategy",
        "ModelClientRouter",
        "Completion",
        "UsageStats",
        "LLMRouteError",
        "ConfigError",
        "ProviderError",
        "AllProvidersFailed",
    }
    assert wanted <= set(llmroute_magic.__all__)


def test_the_core_imports_no_edge_module_not_even_lazily():
    offenders = []
    for module, path in modules():
        if not is_core(module):
            continue
        for name in imported_names(path, module):
            top = name.split(".")[0]
            inner = name.split(".")[1] if name.startswith("llmroute_magic.") else None
            if top in HEAVY or inner in EDGE:
                offenders.append(f"{module} imports {name}")
    assert offenders == []


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{module}:{node.name} ({length} lines)")
    assert long == []
