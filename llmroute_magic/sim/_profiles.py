"""What one simulated provider is like: wire format, speed, prices, limits and how it fails.

Profiles are immutable; the simulator swaps in a validated copy when one changes at run time,
so a request always sees one consistent profile.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from ._wire import FORMATS  # the wire formats a profile may speak: those registered in sim/_wire

FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",  # 429 with retry-after / retry-after-ms
    "rate_limit_no_retry_after",  # 429 without them
    "insufficient_quota",  # OpenAI 429 insufficient_quota; Anthropic 400 "credit balance is too low"
    "server_error",  # 500
    "bad_gateway",  # 502
    "unavailable",  # 503
    "gateway_timeout",  # 504
    "overloaded",  # 529 (Gemini and Ollama: their 503 "overloaded" / "server busy")
    "invalid_request",  # 400
    "context_length",  # 400, prompt too long
    "unauthorized",  # 401
    "forbidden",  # 403
    "model_not_found",  # 404
    "hang",  # never answers until the client goes away
    "reset",  # TCP reset, no response at all
    "malformed_json",  # 200 whose body is not JSON
    "truncated_stream",  # stream stops before usage / [DONE] / message_stop; plain: half a body
    "stream_error",  # stream: text then an error event; plain: 500
)
"""The faults a simulated provider can answer with: drawn at random (a profile's ``faults``) or
queued with ``Simulator.inject``. Each is one error shape of the wire format, as the real API sends it.

Examples:
    >>> "rate_limit" in FAULT_KINDS and "reset" in FAULT_KINDS
    True
"""

# Faults inside a complete, billed 200 answer that depend on what the request asked for. They are
# injected and drawn like FAULT_KINDS, and counted in ``statuses`` under their own name when they
# changed the answer ("200" when the request gave them nothing to change).
ANSWER_FAULTS: tuple[str, ...] = (
    "ignore_schema",  # a request that demands structure (a response schema, JSON mode or a forced tool) gets prose
)
"""Faults inside a complete, billed 200 answer, injected and drawn like ``FAULT_KINDS``.

Examples:
    >>> ANSWER_FAULTS
    ('ignore_schema',)
"""

INJECTABLE: tuple[str, ...] = FAULT_KINDS + ANSWER_FAULTS

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _where(name: Any, field_name: str) -> str:
    label = name if isinstance(name, str) and name else "?"
    return f"profiles.{label}.{field_name}"


def _number(name: str, field_name: str, value: Any, *, minimum: float = 0.0, strictly_positive: bool = False) -> float:
    where = _where(name, field_name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}", field=where)
    if value < minimum or (strictly_positive and value <= 0):
        bound = f"> {minimum:g}" if strictly_positive else f">= {minimum:g}"
        raise ConfigError(f"{where}: must be {bound}, got {value!r}", field=where)
    return float(value)


def _whole(name: str, field_name: str, value: Any, *, strictly_positive: bool) -> int:
    where = _where(name, field_name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}", field=where)
    if strictly_positive and value <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}", field=where)
    return value


def _faults(name: str, value: Any) -> dict[str, float]:
    where = _where(name, "faults")
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table of fault kind -> probability (0..1), got {value!r}", field=where)
    out: dict[str, float] = {}
    for kind, p in value.items():
        if kind not in INJECTABLE:
            raise ConfigError(
                f"{where}.{kind}: unknown fault kind {kind!r}; allowed: {', '.join(INJECTABLE)}",
                field=f"{where}.{kind}",
            )
        p = _number(name, f"faults.{kind}", p)
        if p > 1:
            raise ConfigError(
                f"{where}.{kind}: a probability must be between 0 and 1, got {p!r}", field=f"{where}.{kind}"
            )
        out[kind] = p
    if sum(out.values()) > 1 + 1e-9:
        raise ConfigError(
            f"{where}: probabilities add up to {sum(out.values()):g}; they must add up to at most 1", field=where
        )
    return out


@dataclass(frozen=True)
class ProviderProfile:
    """One simulated provider: its wire format, speed, prices, limits and how it fails.

    Prices are USD per 1M tokens; ``faults`` maps a fault kind (``FAULT_KINDS``, ``ANSWER_FAULTS``)
    to its probability. Immutable and validated: a wrong field raises ``ConfigError`` naming it.

    Examples:
        >>> fast = ProviderProfile("fast", api="openai", model="gpt-4o-mini", latency_s=0.05,
        ...                        input_price=0.15, output_price=0.60, faults={"rate_limit": 0.05}, seed=7)
        >>> fast.replace(latency_s=0.5).latency_s
        0.5
    """

    name: str
    api: str = "openai"
    model: str = "sim-model"
    latency_s: float = 0.0  # before a plain answer's first byte
    jitter_s: float = 0.0  # uniform extra delay in [0, jitter_s), drawn from the seeded RNG
    ttft_s: float = 0.0  # before a stream's first byte; 0 means use latency_s
    tokens_per_s: float = 0.0  # stream pacing; 0 = no pacing
    input_price: float = 0.0
    output_price: float = 0.0
    context_window: int = 128_000
    rate_limit_rpm: int | None = None
    retry_after_s: float = 1.0
    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    require_api_key: str | None = field(default=None, repr=False)
    no_usage: bool = False  # answers carry no usage block (OpenAI-compatible servers that ignore include_usage)
    vision: bool = True  # False: a request with an image gets a 400 "this model does not accept images"

    def __post_init__(self) -> None:
        set_: Callable[[str, Any], None] = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(
                f"profiles.name: expected a name of letters, digits, '.', '_' or '-' (usable in a URL path), "
                f"got {name!r}",
                field="profiles.name",
            )
        if not isinstance(self.api, str) or self.api not in FORMATS:
            from .._types import APIS as ROUTER_APIS

            why = (
                "has no simulated wire format yet (no module registered in sim/_wire)"
                if self.api in ROUTER_APIS
                else "is unknown"
            )
            raise ConfigError(
                f"{_where(name, 'api')}: api {self.api!r} {why}; allowed: {', '.join(FORMATS)}",
                field=_where(name, "api"),
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(
                f"{_where(name, 'model')}: expected a non-empty model name, got {self.model!r}",
                field=_where(name, "model"),
            )
        for f in ("latency_s", "jitter_s", "ttft_s", "tokens_per_s", "input_price", "output_price", "retry_after_s"):
            set_(f, _number(name, f, getattr(self, f)))
        set_("context_window", _whole(name, "context_window", self.context_window, strictly_positive=True))
        if self.rate_limit_rpm is not None:
            _whole(name, "rate_limit_rpm", self.rate_limit_rpm, strictly_positive=True)
        set_("seed", _whole(name, "seed", self.seed, strictly_positive=False))
        set_("faults", _faults(name, self.faults))
        for flag in ("no_usage", "vision"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(
                    f"{_where(name, flag)}: expected true or false, got {getattr(self, flag)!r}",
                    field=_where(name, flag),
                )
        key = self.require_api_key
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigError(
                f"{_where(name, 'require_api_key')}: expected a non-empty string or nothing",
                field=_where(name, "require_api_key"),
            )

    def replace(self, **changes: Any) -> ProviderProfile:
        """A validated copy with some fields changed; unknown field names are an error.

        Examples:
            >>> ProviderProfile("p").replace(context_window=8192).context_window
            8192
        """
        unknown = sorted(set(changes) - set(PROFILE_FIELDS))
        if unknown:
            where = _where(self.name, unknown[0])
            raise ConfigError(
                f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(PROFILE_FIELDS)}", field=where
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-friendly values; the expected API key is never included.

        Examples:
            >>> ProviderProfile("p", require_api_key="secret").to_dict()["requires_api_key"]
            True
        """
        out = {f: getattr(self, f) for f in PROFILE_FIELDS if f != "require_api_key"}
        out["faults"] = dict(self.faults)
        out["requires_api_key"] = self.require_api_key is not None
        return out


PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ProviderProfile))

DEFAULT_PROFILES: tuple[ProviderProfile, ...] = (
    ProviderProfile(
        "sim-openai",
        api="openai",
        model="gpt-4o-mini",
        latency_s=0.04,
        jitter_s=0.02,
        ttft_s=0.03,
        tokens_per_s=1000.0,
        input_price=0.15,
        output_price=0.60,
        seed=1,
    ),
    ProviderProfile(
        "sim-anthropic",
        api="anthropic",
        model="claude-3-5-haiku-latest",
        latency_s=0.12,
        jitter_s=0.04,
        ttft_s=0.08,
        tokens_per_s=500.0,
        input_price=0.80,
        output_price=4.00,
        context_window=200_000,
        seed=2,
    ),
    ProviderProfile(
        "sim-local",
        api="openai",
        model="llama-3.1-8b",
        latency_s=0.3,
        jitter_s=0.1,
        ttft_s=0.2,
        tokens_per_s=200.0,
        context_window=8_192,
        seed=3,
    ),
    # One of each native format (DESIGN 12), priced as their vendors price these models.
    ProviderProfile(
        "sim-gemini",
        api="gemini",
        model="gemini-2.5-flash",
        latency_s=0.06,
        jitter_s=0.02,
        ttft_s=0.04,
        tokens_per_s=800.0,
        input_price=0.30,
        output_price=2.50,
        context_window=1_048_576,
        seed=4,
    ),
    ProviderProfile(
        "sim-azure",
        api="azure",
        model="gpt-4o-mini",
        latency_s=0.05,
        jitter_s=0.02,
        ttft_s=0.04,
        tokens_per_s=800.0,
        input_price=0.15,
        output_price=0.60,
        seed=5,
    ),
    ProviderProfile(
        "sim-ollama",
        api="ollama",
        model="gemma3:4b",
        latency_s=0.15,
        jitter_s=0.05,
        ttft_s=0.1,
        tokens_per_s=300.0,
        context_window=32_768,
        seed=6,
    ),
    ProviderProfile(
        "sim-responses",
        api="openai-responses",
        model="gpt-4o-mini",
        latency_s=0.04,
        jitter_s=0.02,
        ttft_s=0.03,
        tokens_per_s=1000.0,
        input_price=0.15,
        output_price=0.60,
        seed=7,
    ),
)
"""The providers a ``Simulator()`` serves when given no profiles (and ``llmroute sim`` without
``--profiles``): one per wire format — sim-openai (fast, cheap), sim-anthropic (slower, dearer,
200k context), sim-gemini, sim-azure, sim-ollama (free, local), sim-responses — and sim-local
(slow, free, 8k context), an OpenAI-compatible server on this machine.

Examples:
    >>> [(p.name, p.api) for p in DEFAULT_PROFILES]  # doctest: +NORMALIZE_WHITESPACE
    [('sim-openai', 'openai'), ('sim-anthropic', 'anthropic'), ('sim-local', 'openai'),
     ('sim-gemini', 'gemini'), ('sim-azure', 'azure'), ('sim-ollama', 'ollama'),
     ('sim-responses', 'openai-responses')]
"""


def load_profiles(path: str | Path) -> list[ProviderProfile]:
    r"""Read ``[[providers]]`` tables from a TOML file; any mistake raises ConfigError naming the field.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "profiles.toml"
        >>> _ = path.write_text('[[providers]]\nname = "fast"\nlatency_s = 0.05\n')
        >>> [p.name for p in load_profiles(path)]
        ['fast']
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the profile file: {exc}", field="profiles") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", field="profiles") from None
    try:
        return profiles_from_data(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", field=exc.field) from None


def profiles_from_data(data: Mapping[str, Any]) -> list[ProviderProfile]:
    extra = sorted(set(data) - {"providers"})
    if extra:
        raise ConfigError(f"{extra[0]}: unknown top-level key; expected only [[providers]] tables", field=extra[0])
    tables = data.get("providers")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("providers: expected one or more [[providers]] tables", field="providers")
    profiles: list[ProviderProfile] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        name = table.get("name")
        if name is None:
            raise ConfigError(
                f"providers[{i}].name: every [[providers]] table needs a name", field=f"providers[{i}].name"
            )
        unknown = sorted(set(table) - set(PROFILE_FIELDS))
        if unknown:
            where = _where(name, unknown[0])
            raise ConfigError(
                f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(PROFILE_FIELDS)}", field=where
            )
        profile = ProviderProfile(**table)
        if profile.name in seen:
            raise ConfigError(f"{_where(name, 'name')}: duplicate provider name {name!r}", field=_where(name, "name"))
        seen.add(profile.name)
        profiles.append(profile)
    return profiles
