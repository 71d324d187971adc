"""The README stays true: its Python examples run as pasted, its config examples load, and the
simulator's profile format it documents is the one the code reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from llmroute_magic import ProviderRoutingConfig
from llmroute_magic.sim._profiles import FAULT_KINDS, PROFILE_FIELDS, profiles_from_data

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


def offline_env() -> dict[str, str]:
    """No keys, no config, no proxy: an example that reached for the network would fail, not hang."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("LLMROUTE_CONFIG", "LLMROUTE_SIMULATE") and "proxy" not in k.lower()
    }
    env.update(
        {
            "NO_PROXY": "127.0.0.1,localhost",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


PYTHON_BLOCKS = blocks("python")


def test_the_readme_has_python_examples_and_notebook_magics_are_not_marked_as_python():
    assert len(PYTHON_BLOCKS) >= 2
    for body in PYTHON_BLOCKS:
        assert not re.search(r"^\s*%", body, re.M), f"IPython magics in a ```python block:\n{body}"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_example_runs_as_pasted(index, tmp_path):
    """Each block on its own, in a fresh interpreter, in an empty directory, with no keys."""
    script = tmp_path / f"readme_{index}.py"
    script.write_text(PYTHON_BLOCKS[index], encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=150, env=offline_env(), cwd=tmp_path
    )
    assert proc.returncode == 0, f"README block {index} failed:\n{PYTHON_BLOCKS[index]}\n{proc.stderr[-3000:]}"


def test_from_python_example_routes_streams_compares_and_counts():
    """The first example does what its comments say (it ran above; here its output is read)."""
    body = PYTHON_BLOCKS[0]
    assert "prompts = [" in body and "Simulator()" in body
    for call in (
        "router.complete(",
        "router.stream(",
        "router.compare(",
        "router.map(prompts",
        "get_usage_stats()",
        "router.usage_df()",
    ):
        assert call in body


def test_config_file_example_loads():
    configs = [tomllib.loads(b) for b in blocks("toml") if "[[providers]]" in b and "strategy" in b]
    assert configs, "no llmroute.toml example in the README"
    for data in configs:
        ProviderRoutingConfig.from_dict(data)


def test_profile_file_example_loads_and_every_field_is_documented():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Profile file") :]
    section = section[: section.index("\n## ")]
    examples = [b for b in blocks("toml") if b in section]
    assert examples, "no profile file example in the README"
    for body in examples:
        assert profiles_from_data(tomllib.loads(body))
    table = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", section, re.M)}
    assert table == set(PROFILE_FIELDS), (set(PROFILE_FIELDS) - table, table - set(PROFILE_FIELDS))
    for kind in FAULT_KINDS:
        assert f"`{kind}`" in section, kind
