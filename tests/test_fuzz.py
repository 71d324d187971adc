"""Bad input, generated: the config loader (dict and TOML file), ``%%llm`` / ``%llm`` argument
parsing, and the request API. Every bad input must end in ConfigError / UsageError with a message
that names what to fix, never an exception from deep inside."""

from __future__ import annotations

import math
import string

import pytest
from helpers import simulator_fixture
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmroute_magic import (
    Completion,
    ConfigError,
    LLMRouteError,
    ModelClientRouter,
    ProviderError,
    ProviderRoutingConfig,
)
from llmroute_magic._types import APIS
from llmroute_magic.sim import ProviderProfile

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# -- values of every shape a hand-written config (or a typo in one) can hold ------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "openai",
            "anthropic",
            "round_robin",
            "LeastLatency",
            "priority",
            "http://127.0.0.1:9/v1",
            "https://api.example.com/v1",
            "ftp://x",
            "http://",
            "gpt-4o",
            "",
            " ",
            "\x00",
            "-1",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
# base_url text without '[': a bracket makes urlsplit raise a bare ValueError inside ProviderSpec
# (_types.py), tracked by test_base_url_with_a_broken_ipv6_host_is_a_config_error below.
url_text = st.text(alphabet=string.ascii_letters + string.digits + ":/.-_?#@%", max_size=30).map(
    lambda t: "http://" + t
)
spec_field_values = {
    "name": st.one_of(st.text(max_size=12), values),
    "model": st.one_of(st.text(max_size=12), values),
    "api": st.one_of(st.sampled_from(["openai", "anthropic", "gemini", "azure", "OpenAI", "bard"]), values),
    "base_url": st.one_of(url_text, st.sampled_from(["http://127.0.0.1:8000/v1", "localhost:8000", ""]), scalars),
    "priority": values,
    "weight": values,
    "input_price": values,
    "output_price": values,
    "context_window": values,
    "max_concurrency": values,
    "timeout": values,
    "api_key": st.one_of(st.text(max_size=12), values),
    "api_key_env": values,
}
provider_tables = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["a", "b", "openai", "local"]), spec_field_values["name"]),
        "model": st.one_of(st.just("m"), spec_field_values["model"]),
        "base_url": st.one_of(st.just("http://127.0.0.1:8000/v1"), spec_field_values["base_url"]),
    },
    optional={k: v for k, v in spec_field_values.items() if k not in ("name", "model", "base_url")}
    | {"bogus_field": values, "": values, 7: values},
)
config_dicts = st.fixed_dictionaries(
    {"providers": st.one_of(st.lists(provider_tables, max_size=3), values)},
    optional={
        "strategy": st.one_of(st.sampled_from(["round_robin", "LowestCost", "fastest"]), values),
        "fallback_enabled": values,
        "max_retries": values,
        "timeout": values,
        "cooldown_s": values,
        "ledger_path": st.one_of(st.sampled_from(["", "\x00", "usage.sqlite"]), values),
        "unknown_setting": values,
        "": values,
        3: values,
    },
)


def assert_names_what_to_fix(e: ConfigError) -> None:
    msg = str(e)
    assert msg and e.field, msg
    if e.field == "path":  # the file itself cannot be read or parsed: the message names the file
        assert msg.startswith("config file ") and ("TOML" in msg or "read" in msg or "UTF-8" in msg), msg
    else:
        name = e.field.split("[")[0].split(".")[-1]
        assert name in msg or repr(name)[1:-1] in msg, (e.field, msg)  # the field is in the message
    assert "Traceback" not in msg


def check_loaded(cfg: ProviderRoutingConfig) -> None:
    """A config that loads is a usable one: what a router needs is there and well-formed."""
    assert cfg.providers and len({p.name for p in cfg.providers}) == len(cfg.providers)
    assert 0 <= cfg.max_retries <= 100 and cfg.timeout > 0 and cfg.cooldown_s >= 0
    for p in cfg.providers:
        assert p.api in APIS and p.base_url.startswith(("http://", "https://"))
        assert p.weight > 0 and math.isfinite(p.weight)


@FUZZ
@given(config_dicts)
def test_from_dict_accepts_or_names_the_field(data):
    try:
        cfg = ProviderRoutingConfig.from_dict(data)
    except ConfigError as e:
        assert_names_what_to_fix(e)
    else:
        check_loaded(cfg)


# -- TOML files -------------------------------------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items() if x is not None) + "}"
    return '""'


def to_toml(data: dict) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if k != "providers" and v is not None]
    providers = data.get("providers")
    if isinstance(providers, list) and all(isinstance(p, dict) for p in providers):
        for p in providers:
            lines.append("[[providers]]")
            lines += [f'"{k}" = {toml_value(v)}' for k, v in p.items() if v is not None]
    elif providers is not None:
        lines.insert(0, f"providers = {toml_value(providers)}")
    return "\n".join(lines) + "\n"


noise = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"\xff\xfe[[providers]]",
            b"[[providers]]\nname = 'a'\nmodel = ",
            b"= = =",
            b"providers = 3",
            b"[providers]\nname='a'",
        ]
    ),
)


@FUZZ
@given(st.one_of(config_dicts.map(lambda d: to_toml(d).encode("utf-8", "surrogatepass")), noise))
def test_from_file_accepts_or_names_the_field(tmp_path_factory, content):
    path = tmp_path_factory.getbasetemp() / "fuzz.toml"
    path.write_bytes(content)
    try:
        cfg = ProviderRoutingConfig.from_file(path)
    except ConfigError as e:
        assert_names_what_to_fix(e)
    else:
        check_loaded(cfg)


def test_from_file_that_does_not_exist_or_is_a_directory(tmp_path):
    for p in (tmp_path / "missing.toml", tmp_path):
        with pytest.raises(ConfigError, match="cannot read"):
            ProviderRoutingConfig.from_file(p)


def test_base_url_with_a_broken_ipv6_host_is_a_config_error():
    with pytest.raises(ConfigError, match="base_url"):
        ProviderRoutingConfig.from_dict({"providers": [{"name": "x", "model": "m", "base_url": "http://[::1"}]})


def test_ledger_path_that_sqlite_cannot_take_is_a_config_error():
    for bad in ("", "a\x00b"):
        with pytest.raises(ConfigError, match="ledger_path"):
            ProviderRoutingConfig.from_dict(
                {"providers": [{"name": "x", "model": "m", "base_url": "http://127.0.0.1:1/v1"}], "ledger_path": bad}
            )


# -- requests -----------------------------------------------------------------------------------------


sim = simulator_fixture(
    [
        ProviderProfile("small", context_window=1000, input_price=1, output_price=1),
        ProviderProfile("big", api="anthropic", context_window=1_000_000, input_price=1, output_price=1),
    ]
)


@pytest.fixture(scope="module")
def router(sim):
    with ModelClientRouter(ProviderRoutingConfig(sim.provider_specs(), strategy="priority")) as r:
        yield r


any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=60)  # surrogates and NULs too


@FUZZ
@given(prompt=any_text, system=st.one_of(st.none(), any_text))
def test_any_prompt_is_answered_or_refused_clearly(router, prompt, system):
    try:
        c = router.complete(prompt, system=system, max_tokens=4)
    except ConfigError as e:
        assert_names_what_to_fix(e)
        assert e.field in ("prompt", "system")
        if prompt.strip():
            assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in prompt + (system or ""))
    else:
        assert isinstance(c, Completion) and c.text


def test_messages_with_lone_surrogates_or_wrong_shapes_are_refused_clearly(router):
    for bad, field in (
        ([{"role": "user", "content": "ok \udcff"}], "prompt[0].content"),
        ([{"role": "robot", "content": "hi"}], "prompt[0].role"),
        ([{"role": "user"}], "prompt[0]"),
        (b"bytes are not text", "prompt"),
        ("   \n\t", "prompt: empty"),
    ):
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
            router.complete(bad)


def test_a_huge_prompt_goes_to_the_provider_with_room_for_it(router, sim):
    huge = "lorem ipsum dolor sit amet " * 40_000  # ~1 MB, ~270k tokens
    assert len(huge.encode()) > 1_000_000
    c = router.complete(huge, max_tokens=4)
    assert c.provider == "big" and c.input_tokens > 200_000
    with pytest.raises(ProviderError) as info:
        router.complete(huge, provider="small", max_tokens=4)
    assert info.value.error_type == "context_length" and "context" in str(info.value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kw=st.fixed_dictionaries(
        {},
        optional={
            "max_tokens": st.one_of(st.integers(-5, 5), st.sampled_from([10**12, 1.5, "8", True, None])),
            "temperature": st.one_of(
                st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["hot", -1, 3, True])
            ),
            "provider": st.one_of(st.sampled_from(["small", "big", "nope", "", "SMALL"]), st.integers()),
            "strategy": st.one_of(st.sampled_from(["priority", "LowestCost", "fastest", ""]), st.integers()),
        },
    )
)
def test_absurd_request_settings_are_refused_clearly(router, kw):
    try:
        c = router.complete("hello", **kw)
    except ConfigError as e:
        assert_names_what_to_fix(e)
    except TypeError as e:  # pragma: no cover - reported with the inputs that caused it
        raise AssertionError(f"{kw!r} raised TypeError from inside: {e}") from e
    else:
        assert isinstance(c, Completion)


def test_absurd_router_settings_are_refused_clearly(router):
    for attr, bad in (("max_retries", -1), ("max_retries", 10**6), ("max_retries", "2"), ("fallback_enabled", "yes")):
        with pytest.raises(ConfigError, match=attr):
            setattr(router, attr, bad)
    with pytest.raises(ConfigError, match="concurrency"):
        router.map(["a"], concurrency=0, progress=False)
    with pytest.raises(ConfigError, match="n:"):
        router.compare("a", n=0)
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        router.compare("a", providers="small,nope")
    for call in (lambda: router.enable("nope"), lambda: router.disable("nope")):
        with pytest.raises(ConfigError, match="nope"):
            call()


# -- %%llm and %llm ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def magics(router):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    with capture_output():
        ip.run_line_magic("load_ext", "llmroute_magic")
    m = ip._llmroute_magics
    saved = (ip.user_ns.get("llm"), m.display_mode, m.router_var)
    ip.user_ns["llm"], m.display_mode, m.router_var = router, "text", "llm"
    yield m
    ip.user_ns["llm"], m.display_mode, m.router_var = saved


OPTION_WORDS = [
    "-p",
    "--provider",
    "-s",
    "--strategy",
    "--compare",
    "-f",
    "--format",
    "-o",
    "--output",
    "--system",
    "-t",
    "--temperature",
    "--max-tokens",
    "--no-stream",
    "--no-interpolate",
    "-h",
    "--",
    "-x",
    "--bogus",
]
VALUE_WORDS = [
    "small",
    "big",
    "nope",
    "all",
    "small,big",
    "small,,",
    ",",
    "priority",
    "fastest",
    "markdown",
    "json",
    "html",
    "xml",
    "out",
    "1x",
    "class",
    "0",
    "-1",
    "0.5",
    "nan",
    "inf",
    "1e999",
    "3",
    "'quoted text'",
    '"unclosed',
    "'",
    "{x}",
    "\\",
    "ünïcödé",
    "\ud800",
]
cell_lines = st.lists(
    st.one_of(st.sampled_from(OPTION_WORDS), st.sampled_from(VALUE_WORDS), st.text(max_size=6)), max_size=6
).map(" ".join)
cells = st.one_of(
    st.sampled_from(["hello", "", "   \n", "{undefined} name", "{{literal}}", "x\ud800y"]), st.text(max_size=40)
)


@FUZZ
@given(line=cell_lines, cell=cells)
def test_cell_magic_options_run_or_raise_usage_error(magics, line, cell):
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    try:
        with capture_output():
            magics.llm(line, cell)
    except UsageError as e:
        assert str(e).strip()
    except LLMRouteError as e:  # pragma: no cover - must have been turned into a UsageError
        raise AssertionError(f"%%llm {line!r} leaked {type(e).__name__}: {e}") from e


SAFE_SUBCOMMANDS = [
    "status",
    "strategy",
    "providers",
    "enable",
    "disable",
    "usage",
    "stats",
    "reset",
    "help",
    "nonsense",
    "STATUS",
    "plot",
    "use",
]


@FUZZ
@given(
    words=st.lists(st.one_of(st.sampled_from(VALUE_WORDS), st.text(max_size=6)), max_size=3),
    sub=st.sampled_from(SAFE_SUBCOMMANDS),
)
def test_line_magic_runs_or_raises_usage_error(magics, router, sub, words):
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    if sub == "plot":
        assume(len(words) != 2)  # "plot KIND PATH" writes a file: not fuzzed
    line = " ".join([sub, *words])
    try:
        with capture_output():
            magics.llm(line)
    except UsageError as e:
        assert str(e).strip()
    finally:
        for name in ("small", "big"):
            router.enable(name)
        router.set_strategy("priority")
        magics.router_var = "llm"
