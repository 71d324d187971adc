"""``ProviderRoutingConfig``: which providers, which strategy, how hard to try. Validated on construction."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._types import ProviderSpec, RoutingStrategy

_SPEC_FIELDS = {f.name for f in dataclasses.fields(ProviderSpec)}
_CONFIG_KEYS = ("providers", "strategy", "fallback_enabled", "max_retries", "timeout", "ledger_path", "cooldown_s")


@dataclass(frozen=True, slots=True)
class ProviderRoutingConfig:
    """The providers and how to route across them: strategy, fallback, retries, timeout, the
    ledger file and the cooldown.

    Immutable: the ``with_*`` methods return changed copies. ``from_dict`` and ``from_file`` take
    the same keys (TOML: one ``[[providers]]`` table per provider, with ``ProviderSpec``'s keys).
    Invalid input (an unknown strategy, duplicate names, no providers, negative retries, an unknown
    ``api``) raises ``ConfigError`` naming the field and the allowed values.

    Examples:
        >>> openai = ProviderSpec("openai", "gpt-4o-mini")
        >>> anthropic = ProviderSpec("anthropic", "claude-3-5-haiku-latest")
        >>> config = ProviderRoutingConfig([openai, anthropic], strategy="round_robin", max_retries=3)
        >>> config.names, config.strategy.value, config.cooldown_s
        (['openai', 'anthropic'], 'round_robin', 30.0)
    """

    providers: tuple[ProviderSpec, ...]
    strategy: RoutingStrategy = RoutingStrategy.PRIORITY
    fallback_enabled: bool = True
    max_retries: int = 2
    timeout: float = 60.0
    ledger_path: str | None = None
    cooldown_s: float = 30.0

    def __init__(
        self,
        providers: Iterable[ProviderSpec],
        *,
        strategy: RoutingStrategy | str = RoutingStrategy.PRIORITY,
        fallback_enabled: bool = True,
        max_retries: int = 2,
        timeout: float = 60.0,
        ledger_path: str | os.PathLike[str] | None = None,
        cooldown_s: float = 30.0,
    ) -> None:
        set_: Callable[[str, Any], None] = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen
        set_("providers", _checked_providers(providers))
        set_("strategy", RoutingStrategy.parse(strategy))
        if not isinstance(fallback_enabled, bool):
            raise ConfigError(
                f"fallback_enabled: expected true or false, got {fallback_enabled!r}", field="fallback_enabled"
            )
        set_("fallback_enabled", fallback_enabled)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 100:
            raise ConfigError(
                f"max_retries: expected a whole number from 0 to 100, got {max_retries!r}", field="max_retries"
            )
        set_("max_retries", max_retries)
        for name, value in (("timeout", timeout), ("cooldown_s", cooldown_s)):
            set_(name, _seconds(name, value))
        set_("ledger_path", _ledger_path(ledger_path))

    # -- builders (the seed's API) --------------------------------------------------------------
    @classmethod
    def new(cls, primary: ProviderSpec, fallbacks: Iterable[ProviderSpec] = ()) -> ProviderRoutingConfig:
        """The seed's constructor: ``primary`` first, then the fallbacks in list order.

        Examples:
            >>> primary, backup = ProviderSpec("openai", "gpt-4o"), ProviderSpec("anthropic", "claude-3-5-haiku-latest")
            >>> ProviderRoutingConfig.new(primary, [backup]).names
            ['openai', 'anthropic']
        """
        return cls([primary, *fallbacks])

    def _replace(self, **changes: Any) -> ProviderRoutingConfig:
        values = {k: getattr(self, k) for k in _CONFIG_KEYS}
        values.update(changes)
        providers = values.pop("providers")
        return ProviderRoutingConfig(providers, **values)

    def with_strategy(self, strategy: RoutingStrategy | str) -> ProviderRoutingConfig:
        """A copy routing with this strategy (a member, its value or the seed's spelling).

        Examples:
            >>> config.with_strategy("LeastLatency").strategy
            <RoutingStrategy.LEAST_LATENCY: 'least_latency'>
        """
        return self._replace(strategy=strategy)

    def with_fallback(self, enabled: bool = True) -> ProviderRoutingConfig:
        """A copy with fallback on or off (off: retries stay with the same provider, after backoff).

        Examples:
            >>> config.with_fallback(False).fallback_enabled
            False
        """
        return self._replace(fallback_enabled=enabled)

    def with_max_retries(self, max_retries: int) -> ProviderRoutingConfig:
        """A copy making at most ``1 + max_retries`` attempts per request.

        Examples:
            >>> config.with_max_retries(0).max_retries
            0
        """
        return self._replace(max_retries=max_retries)

    def with_timeout(self, timeout: float) -> ProviderRoutingConfig:
        """A copy with this request timeout in seconds (a spec's own ``timeout`` wins).

        Examples:
            >>> config.with_timeout(30).timeout
            30.0
        """
        return self._replace(timeout=timeout)

    def with_cooldown(self, cooldown_s: float) -> ProviderRoutingConfig:
        """A copy cooling a provider down this long after 3 failures in a row (0: never).

        Examples:
            >>> config.with_cooldown(0).cooldown_s
            0.0
        """
        return self._replace(cooldown_s=cooldown_s)

    def with_ledger(self, path: str | os.PathLike[str] | None) -> ProviderRoutingConfig:
        """A copy persisting the usage ledger to this SQLite file (None: in memory only).

        Examples:
            >>> config.with_ledger("usage.sqlite").ledger_path
            'usage.sqlite'
        """
        return self._replace(ledger_path=path)

    def with_providers(self, providers: Iterable[ProviderSpec]) -> ProviderRoutingConfig:
        """A copy with these providers instead (the other settings kept).

        Examples:
            >>> config.with_providers([ProviderSpec("groq", "llama-3.1-8b-instant")]).names
            ['groq']
        """
        return self._replace(providers=tuple(providers))

    def provider(self, name: str) -> ProviderSpec:
        """The spec named ``name``; ``ConfigError`` listing the configured names if there is none.

        Examples:
            >>> config.provider("openai").model
            'gpt-4o-mini'
        """
        for p in self.providers:
            if p.name == name:
                return p
        raise ConfigError(f"provider: unknown provider {name!r}; configured: {', '.join(self.names)}", field="provider")

    @property
    def names(self) -> list[str]:
        """The providers' names, in config order.

        Examples:
            >>> config.names
            ['openai', 'anthropic']
        """
        return [p.name for p in self.providers]

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderRoutingConfig:
        """A config from a mapping with the constructor's keys and a list of provider tables.

        Examples:
            >>> ProviderRoutingConfig.from_dict({"strategy": "lowest_cost",
            ...                                  "providers": [{"name": "openai", "model": "gpt-4o-mini"}]}).strategy
            <RoutingStrategy.LOWEST_COST: 'lowest_cost'>
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a table of settings, got {type(data).__name__}", field="config")
        unknown = sorted(set(data) - set(_CONFIG_KEYS), key=str)  # keys may be of mixed types
        if unknown:
            raise ConfigError(
                f"config: unknown setting {unknown[0]!r}; allowed: {', '.join(_CONFIG_KEYS)}",
                field=str(unknown[0]) or "config",
            )
        raw = data.get("providers")
        if raw is None:
            raise ConfigError(
                "providers: missing; add at least one [[providers]] table with name and model", field="providers"
            )
        if isinstance(raw, Mapping) or isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise ConfigError(
                "providers: expected a list of provider tables ([[providers]] in TOML)", field="providers"
            )
        specs = [_spec_from_dict(i, item) for i, item in enumerate(raw)]
        kwargs = {k: data[k] for k in _CONFIG_KEYS if k != "providers" and k in data}
        return cls(specs, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ProviderRoutingConfig:
        """A config from a TOML file (``from_dict``'s keys; ``[[providers]]`` tables). A relative
        ``ledger_path`` is taken relative to the file.

        Examples:
            >>> config = ProviderRoutingConfig.from_file("llmroute.toml")  # doctest: +SKIP
        """
        import tomllib

        p = Path(path)
        try:
            text = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"config file {str(p)!r}: cannot read it ({e.strerror or e})", field="path") from None
        try:
            data = tomllib.loads(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(p)!r}: not UTF-8 text", field="path") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r}: invalid TOML: {e}", field="path") from None
        if "ledger_path" in data and isinstance(data["ledger_path"], str):
            lp = Path(os.path.expanduser(data["ledger_path"]))
            data["ledger_path"] = str(lp if lp.is_absolute() else p.parent / lp)
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The settings as ``from_dict`` takes them (keys never included).

        Examples:
            >>> config.to_dict()["providers"][0]["name"]
            'openai'
        """
        out: dict[str, Any] = {"providers": [p.to_dict() for p in self.providers]}
        for k in _CONFIG_KEYS[1:]:
            v = getattr(self, k)
            if v is not None:
                out[k] = v.value if isinstance(v, RoutingStrategy) else v
        return out


def _checked_providers(providers: Iterable[ProviderSpec] | ProviderSpec) -> tuple[ProviderSpec, ...]:
    if isinstance(providers, ProviderSpec):
        providers = [providers]
    try:
        provs = tuple(providers)
    except TypeError:
        raise ConfigError(
            f"providers: expected a list of ProviderSpec, got {type(providers).__name__}", field="providers"
        ) from None
    if not provs:
        raise ConfigError("providers: at least one provider is required", field="providers")
    seen: set[str] = set()
    for p in provs:
        if not isinstance(p, ProviderSpec):
            raise ConfigError(f"providers: expected ProviderSpec items, got {type(p).__name__}", field="providers")
        if p.name in seen:
            raise ConfigError(
                f"providers: duplicate provider name {p.name!r}; names must be unique (give each a distinct name=)",
                field="providers",
            )
        seen.add(p.name)
    return provs


def _seconds(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (name == "timeout" and value == 0)
    ):
        raise ConfigError(f"{name}: expected a positive number of seconds, got {value!r}", field=name)
    return float(value)


def _ledger_path(ledger_path: Any) -> str | None:
    if ledger_path is not None and not isinstance(ledger_path, (str, os.PathLike)):
        raise ConfigError(f"ledger_path: expected a file path, got {ledger_path!r}", field="ledger_path")
    path = None if ledger_path is None else os.fspath(ledger_path)
    # sqlite3 raises a bare ValueError for a NUL, and silently keeps "" in a temporary file
    if path is not None and (not isinstance(path, str) or not path.strip() or "\x00" in path):
        raise ConfigError(
            f"ledger_path: expected a file path (non-empty, no NUL character), got {path!r}", field="ledger_path"
        )
    return path


def _spec_from_dict(index: int, item: Any) -> ProviderSpec:
    where = f"providers[{index}]"
    if isinstance(item, ProviderSpec):
        return item
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a table with name and model, got {item!r}", field="providers")
    unknown = sorted(set(item) - _SPEC_FIELDS, key=str)  # keys may be of mixed types
    if unknown:
        bad = unknown[0]
        label = f"{where}.{bad}" if isinstance(bad, str) and bad.isidentifier() else f"{where}: {bad!r}"
        raise ConfigError(
            f"{label}: unknown field; allowed: {', '.join(sorted(_SPEC_FIELDS))}", field=str(bad) or "providers"
        )
    for required in ("name", "model"):
        if required not in item:
            raise ConfigError(f"{where}.{required}: missing; every provider needs name and model", field=required)
    try:
        return ProviderSpec(**item)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}", field=e.field) from None
    except ValueError as e:  # urllib's own parse error on a malformed base_url, e.g. "http://[::1"
        raise ConfigError(
            f"{where}.base_url: not a usable http(s) URL ({e}): {item.get('base_url')!r}", field="base_url"
        ) from None
