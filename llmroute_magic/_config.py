"""``ProviderRoutingConfig``: which providers, which strategy, how hard to try. Validated on construction."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._types import ProviderSpec, RoutingStrategy

_SPEC_FIELDS = {f.name for f in dataclasses.fields(ProviderSpec)}
_CONFIG_KEYS = ("providers", "strategy", "fallback_enabled", "max_retries", "timeout", "ledger_path", "cooldown_s")


@dataclass(frozen=True, slots=True)
class ProviderRoutingConfig:
    providers: tuple[ProviderSpec, ...]
    strategy: RoutingStrategy = RoutingStrategy.PRIORITY
    fallback_enabled: bool = True
    max_retries: int = 2
    timeout: float = 60.0
    ledger_path: str | None = None
    cooldown_s: float = 30.0

    def __init__(self, providers: Iterable[ProviderSpec], *, strategy: RoutingStrategy | str = RoutingStrategy.PRIORITY,
                 fallback_enabled: bool = True, max_retries: int = 2, timeout: float = 60.0,
                 ledger_path: str | os.PathLike | None = None, cooldown_s: float = 30.0) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen
        if isinstance(providers, ProviderSpec):
            providers = [providers]
        try:
            provs = tuple(providers)
        except TypeError:
            raise ConfigError(f"providers: expected a list of ProviderSpec, got {type(providers).__name__}",
                              field="providers") from None
        if not provs:
            raise ConfigError("providers: at least one provider is required", field="providers")
        seen: set[str] = set()
        for p in provs:
            if not isinstance(p, ProviderSpec):
                raise ConfigError(f"providers: expected ProviderSpec items, got {type(p).__name__}", field="providers")
            if p.name in seen:
                raise ConfigError(f"providers: duplicate provider name {p.name!r}; names must be unique "
                                  "(give each a distinct name=)", field="providers")
            seen.add(p.name)
        set_("providers", provs)
        set_("strategy", RoutingStrategy.parse(strategy))
        if not isinstance(fallback_enabled, bool):
            raise ConfigError(f"fallback_enabled: expected true or false, got {fallback_enabled!r}",
                              field="fallback_enabled")
        set_("fallback_enabled", fallback_enabled)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 100:
            raise ConfigError(f"max_retries: expected a whole number from 0 to 100, got {max_retries!r}",
                              field="max_retries")
        set_("max_retries", max_retries)
        for name, value in (("timeout", timeout), ("cooldown_s", cooldown_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (name == "timeout" and value == 0):
                raise ConfigError(f"{name}: expected a positive number of seconds, got {value!r}", field=name)
            set_(name, float(value))
        if ledger_path is not None and not isinstance(ledger_path, (str, os.PathLike)):
            raise ConfigError(f"ledger_path: expected a file path, got {ledger_path!r}", field="ledger_path")
        path = None if ledger_path is None else os.fspath(ledger_path)
        # sqlite3 raises a bare ValueError for a NUL, and silently keeps "" in a temporary file
        if path is not None and (not isinstance(path, str) or not path.strip() or "\x00" in path):
            raise ConfigError(f"ledger_path: expected a file path (non-empty, no NUL character), got {path!r}",
                              field="ledger_path")
        set_("ledger_path", path)

    # -- builders (the seed's API) --------------------------------------------------------------
    @classmethod
    def new(cls, primary: ProviderSpec, fallbacks: Iterable[ProviderSpec] = ()) -> ProviderRoutingConfig:
        return cls([primary, *fallbacks])

    def _replace(self, **changes: Any) -> ProviderRoutingConfig:
        values = {k: getattr(self, k) for k in _CONFIG_KEYS}
        values.update(changes)
        providers = values.pop("providers")
        return ProviderRoutingConfig(providers, **values)

    def with_strategy(self, strategy: RoutingStrategy | str) -> ProviderRoutingConfig:
        return self._replace(strategy=strategy)

    def with_fallback(self, enabled: bool = True) -> ProviderRoutingConfig:
        return self._replace(fallback_enabled=enabled)

    def with_max_retries(self, max_retries: int) -> ProviderRoutingConfig:
        return self._replace(max_retries=max_retries)

    def with_timeout(self, timeout: float) -> ProviderRoutingConfig:
        return self._replace(timeout=timeout)

    def with_cooldown(self, cooldown_s: float) -> ProviderRoutingConfig:
        return self._replace(cooldown_s=cooldown_s)

    def with_ledger(self, path: str | os.PathLike | None) -> ProviderRoutingConfig:
        return self._replace(ledger_path=path)

    def with_providers(self, providers: Iterable[ProviderSpec]) -> ProviderRoutingConfig:
        return self._replace(providers=tuple(providers))

    def provider(self, name: str) -> ProviderSpec:
        for p in self.providers:
            if p.name == name:
                return p
        raise ConfigError(f"provider: unknown provider {name!r}; configured: {', '.join(self.names)}",
                          field="provider")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderRoutingConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a table of settings, got {type(data).__name__}", field="config")
        unknown = sorted(set(data) - set(_CONFIG_KEYS), key=str)  # keys may be of mixed types
        if unknown:
            raise ConfigError(f"config: unknown setting {unknown[0]!r}; allowed: {', '.join(_CONFIG_KEYS)}",
                              field=str(unknown[0]) or "config")
        raw = data.get("providers")
        if raw is None:
            raise ConfigError("providers: missing; add at least one [[providers]] table with name and model",
                              field="providers")
        if isinstance(raw, Mapping) or isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise ConfigError("providers: expected a list of provider tables ([[providers]] in TOML)",
                              field="providers")
        specs = [_spec_from_dict(i, item) for i, item in enumerate(raw)]
        kwargs = {k: data[k] for k in _CONFIG_KEYS if k != "providers" and k in data}
        return cls(specs, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ProviderRoutingConfig:
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
        out: dict[str, Any] = {"providers": [p.to_dict() for p in self.providers]}
        for k in _CONFIG_KEYS[1:]:
            v = getattr(self, k)
            if v is not None:
                out[k] = v.value if isinstance(v, RoutingStrategy) else v
        return out


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
        raise ConfigError(f"{label}: unknown field; allowed: {', '.join(sorted(_SPEC_FIELDS))}",
                          field=str(bad) or "providers")
    for required in ("name", "model"):
        if required not in item:
            raise ConfigError(f"{where}.{required}: missing; every provider needs name and model", field=required)
    try:
        return ProviderSpec(**item)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}", field=e.field) from None
    except ValueError as e:  # urllib's own parse error on a malformed base_url, e.g. "http://[::1"
        raise ConfigError(f"{where}.base_url: not a usable http(s) URL ({e}): {item.get('base_url')!r}",
                          field="base_url") from None
