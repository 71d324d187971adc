"""The documentation stays true to the code: the API reference lists every public name, the magics'
help and the magics page list the same options and subcommands, every public name and method has a
docstring with an example, and the guides name every ledger column, fault kind and profile field.

The site itself is built (``mkdocs build --strict``) by .ci/run; these checks need no MkDocs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest
from ipython_fixtures import shell  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks():
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') is not installed")
    spec = importlib.util.spec_from_file_location("llmroute_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- the API reference -----------------------------------------------------------------------------------


def test_the_api_reference_lists_every_name_in_both_public_all():
    hooks = _hooks()
    documented = hooks.documented_names(DOCS)
    for module in ("llmroute_magic", "llmroute_magic.sim"):
        for name in importlib.import_module(module).__all__:
            assert f"{module}.{name}" in documented, f"{module}.{name} has no '::: ' block in docs/reference/"
    assert hooks.missing_from_reference(DOCS) == []


def test_the_reference_check_notices_a_missing_name(tmp_path):
    hooks = _hooks()
    for page in hooks.REFERENCE_PAGES:
        text = (DOCS / page).read_text(encoding="utf-8").replace("::: llmroute_magic.sim.FAULT_KINDS\n", "")
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text(text, encoding="utf-8")
    assert hooks.missing_from_reference(tmp_path) == ["llmroute_magic.sim.FAULT_KINDS"]


# -- %llm? and the magics page -----------------------------------------------------------------------------

_FLAG = re.compile(r"(?<![\w-])--?[a-z][a-z-]*")


def _subcommands(text: str) -> set[str]:
    return set(re.findall(r"%llm ([a-z]+(?: (?:show|reset))?)", text))


def test_help_and_the_docs_page_list_the_same_options_and_subcommands(shell):
    from llmroute_magic._ipython import reference

    help_text = shell.find_line_magic("llm").__doc__
    assert help_text == shell.find_cell_magic("llm").__doc__  # %llm? and %%llm? show the same
    page = _hooks().fill_markers((DOCS / "guides" / "magics.md").read_text(encoding="utf-8"))
    assert "<!-- llmroute:" not in page

    options = {flag for o in reference.CELL_OPTIONS + reference.EXPLAIN_OPTIONS for flag in o.flags}
    subcommands = {
        " ".join(s.usage.split()[:2]) if s.usage.startswith("chat ") else s.name for s in reference.SUBCOMMANDS
    }
    for text, where in ((help_text, "%llm?"), (page, "docs/guides/magics.md")):
        assert options <= set(_FLAG.findall(text)), f"{where} misses {options - set(_FLAG.findall(text))}"
        assert subcommands <= _subcommands(text), f"{where} misses {subcommands - _subcommands(text)}"
    from llmroute_magic._ipython.magics import settings

    for name, _, _ in settings():
        assert name in help_text and f"`{name}`" in page


def test_the_parsers_take_exactly_the_options_of_the_table(shell):
    from llmroute_magic._ipython import reference

    magics = shell.find_cell_magic("llm").__self__
    parser_flags = {s for a in magics._cell_args.parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert parser_flags == {flag for o in reference.CELL_OPTIONS for flag in o.flags}
    handlers = {name.removeprefix("_cmd_") for name in dir(magics) if name.startswith("_cmd_")}
    assert handlers == {s.name for s in reference.SUBCOMMANDS}


# -- docstrings --------------------------------------------------------------------------------------------


def _public_objects():
    for module_name in ("llmroute_magic", "llmroute_magic.sim"):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if name == "__version__" or not (inspect.isclass(obj) or callable(obj)):
                continue
            yield f"{module_name}.{name}", obj
            if inspect.isclass(obj):
                for attr in sorted(dir(obj)):
                    owner = next((c for c in obj.__mro__ if attr in vars(c)), None)
                    if attr.startswith("_") or owner is None or not owner.__module__.startswith("llmroute_magic"):
                        continue  # private, or inherited from str, Enum, Exception...
                    member = vars(owner)[attr]
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    if callable(member) or isinstance(member, property):
                        yield f"{module_name}.{name}.{attr}", member


def _has_example(doc: str) -> bool:
    return ">>>" in doc or "Example" in doc


def test_every_public_name_and_method_has_a_docstring_with_an_example():
    from llmroute_magic import RoutingStrategy

    missing, no_example = [], []
    for qualname, obj in _public_objects():
        if isinstance(obj, RoutingStrategy):
            continue
        doc = inspect.getdoc(obj) or ""
        if not doc.strip():
            missing.append(qualname)
        elif not _has_example(doc):
            no_example.append(qualname)
    assert not missing, f"no docstring: {missing}"
    assert not no_example, f"docstring without an example: {no_example}"


# -- guides name what the code has ----------------------------------------------------------------------------


def test_the_ledger_guide_describes_every_column():
    from llmroute_magic._types import LEDGER_COLUMNS

    text = (DOCS / "guides" / "ledger.md").read_text(encoding="utf-8")
    assert [c for c in LEDGER_COLUMNS if f"| `{c}` |" not in text] == []


def test_the_simulator_guide_describes_every_fault_kind_and_profile_field():
    from llmroute_magic.sim import ANSWER_FAULTS, FAULT_KINDS
    from llmroute_magic.sim._profiles import PROFILE_FIELDS

    text = (DOCS / "guides" / "simulator.md").read_text(encoding="utf-8")
    assert [k for k in FAULT_KINDS + ANSWER_FAULTS if f"| `{k}` |" not in text] == []
    assert [f for f in PROFILE_FIELDS if f"| `{f}` |" not in text] == []


def test_the_providers_guide_describes_every_api_and_known_name():
    from llmroute_magic._types import APIS, KNOWN_BASE_URLS

    text = (DOCS / "guides" / "providers.md").read_text(encoding="utf-8")
    assert [a for a in APIS if f"| `{a}` |" not in text] == []
    assert [n for n in KNOWN_BASE_URLS if f"`{n}`" not in text] == []


# -- one version ------------------------------------------------------------------------------------------------


def test_the_version_has_one_source():
    import tomllib

    import llmroute_magic

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "llmroute_magic.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", llmroute_magic.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{llmroute_magic.__version__}]" in changelog


def test_the_package_ships_py_typed():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert (ROOT / "llmroute_magic" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["llmroute_magic"]


# -- the examples in the docstrings run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc_namespace():
    """What the examples may assume: every public name, ``router`` (over a simulator of its own),
    ``sim`` (a running simulator), ``config`` (real providers: building a router over it sends nothing)."""
    import llmroute_magic
    import llmroute_magic.sim as sim_module
    from llmroute_magic.sim._bound import release

    namespace = {name: getattr(llmroute_magic, name) for name in llmroute_magic.__all__}
    namespace.update({name: getattr(sim_module, name) for name in sim_module.__all__})
    router = sim_module.simulated_router()
    sim = sim_module.Simulator().start()
    config = llmroute_magic.ProviderRoutingConfig.new(
        llmroute_magic.ProviderSpec("openai", "gpt-4o-mini"),
        [llmroute_magic.ProviderSpec("anthropic", "claude-3-5-haiku-latest")],
    )
    namespace.update(router=router, sim=sim, config=config)
    yield namespace
    release(router)
    sim.stop()


def _documented_objects():
    from llmroute_magic._streams import AsyncStream, SyncStream
    from llmroute_magic._types import ToolCall

    yield from _public_objects()
    yield "llmroute_magic._types.ToolCall", ToolCall
    yield "llmroute_magic._streams.AsyncStream", AsyncStream
    yield "llmroute_magic._streams.SyncStream", SyncStream


def test_the_examples_in_the_docstrings_run(doc_namespace, monkeypatch):
    import doctest

    for key in ("OPENAI_BASE_URL", "GROQ_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    ran, seen = 0, set()
    for qualname, obj in _documented_objects():
        target = obj.fget if isinstance(obj, property) else obj
        if id(target) in seen:
            continue
        seen.add(id(target))
        for test in finder.find(target, qualname, module=False, globs=dict(doc_namespace)):
            runner.run(test)
            ran += len(test.examples)
    assert ran > 100
    assert runner.failures == 0, f"{runner.failures} failing docstring examples (see the output above)"
