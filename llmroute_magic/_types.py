"""Value types shared by every layer: strategies, provider specs, completions, attempt records.

Nothing here imports httpx, pandas or IPython, so ``import llmroute_magic`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ._capabilities import check_capabilities, default_capabilities
from ._errors import ConfigError


class RoutingStrategy(str, enum.Enum):
    """How a router orders its candidate providers for each request; the head serves, the rest
    is the fallback order (see the strategies guide).

    Examples:
        >>> RoutingStrategy.parse("LeastLatency")
        <RoutingStrategy.LEAST_LATENCY: 'least_latency'>
        >>> RoutingStrategy.ROUND_ROBIN.value
        'round_robin'
    """

    ROUND_ROBIN = "round_robin"
    LEAST_LATENCY = "least_latency"
    LOWEST_COST = "lowest_cost"
    RANDOM = "random"
    PRIORITY = "priority"
    LEAST_BUSY = "least_busy"

    @classmethod
    def parse(cls, value: RoutingStrategy | str) -> RoutingStrategy:
        """Accept the member, its value (``"least_latency"``) or the seed's spelling (``"LeastLatency"``).

        Examples:
            >>> RoutingStrategy.parse("lowest_cost") is RoutingStrategy.LOWEST_COST
            True
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value.strip()).replace("-", "_").replace(" ", "_").lower()
            for member in cls:
                if member.value == key:
                    return member
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"strategy: unknown strategy {value!r}; allowed: {allowed}", field="strategy")

    def __str__(self) -> str:
        return self.value


# Wire formats. "openai" is chat completions (and every OpenAI-compatible server); the others are
# each vendor's native API.
APIS = ("openai", "anthropic", "gemini", "azure", "ollama", "openai-responses")

# Public endpoints of well-known providers. OpenAI-style base URLs end in /v1 like the official SDK's;
# Anthropic's does not (the SDK appends /v1/messages), nor do Gemini's and Ollama's native APIs.
KNOWN_BASE_URLS: dict[str, str] = {
    "gemini": "https://generativelanguage.googleapis.com",
    "google": "https://generativelanguage.googleapis.com",
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "claude": "https://api.anthropic.com",
    "groq": "https://api.groq.com/openai/v1",
    "together": "https://api.together.xyz/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "vllm": "http://127.0.0.1:8000/v1",
}


# Where a known name's native API lives when it differs from its OpenAI-compatible endpoint.
NATIVE_BASE_URLS: dict[tuple[str, str], str] = {
    ("ollama", "ollama"): "http://127.0.0.1:11434",
}

# Azure OpenAI's endpoint and key as its official SDK reads them from the environment.
AZURE_ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
AZURE_KEY_ENV = "AZURE_OPENAI_API_KEY"

# The key variables an API's official SDK reads, tried after the provider's own <NAME>_API_KEY so a
# key set for the SDK works here too (google-genai: GOOGLE_API_KEY, then GEMINI_API_KEY).
SDK_KEY_ENVS: dict[str, tuple[str, ...]] = {
    "gemini": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "azure": (AZURE_KEY_ENV,),
}
# Google's SDK variables hold keys for Google's own endpoint only, never for a proxy in front of it.
SDK_KEY_HOSTS = {"gemini": "generativelanguage.googleapis.com"}

# Servers that run models on the user's own machine: no key, and no public price list applies.
LOCAL_SERVERS = frozenset({"ollama", "lmstudio", "vllm"})


def default_api(name: str) -> str:
    """The wire format a provider's name implies when ``api`` is not given."""
    n = name.lower()
    if n.startswith(("anthropic", "claude")):
        return "anthropic"
    if n.startswith(("gemini", "google")):
        return "gemini"
    if n.startswith("azure"):
        return "azure"
    if n.startswith("ollama"):
        return "ollama"  # its OpenAI-compatible endpoint ignores num_ctx and truncates long prompts
    return "openai"


def known_base_url(name: str, api: str) -> str | None:
    n = name.lower()
    return NATIVE_BASE_URLS.get((n, api)) or KNOWN_BASE_URLS.get(n)


def env_var_for(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_API_KEY"


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_http_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:  # urlsplit and .port raise ValueError on a bad bracketed host or an out-of-range port
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and (port is None or 0 < port)


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***`` (proxy URLs may carry credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL, not shown>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, "***@" + parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def _check_proxy(name: str, proxy: Any) -> str:
    if not isinstance(proxy, str) or not _is_http_url(proxy) or urlsplit(proxy).path not in ("", "/"):
        shown = redact_url(proxy) if isinstance(proxy, str) else type(proxy).__name__
        raise ConfigError(
            f"providers.proxy ({name}): expected an http:// or https:// proxy URL with a host and "
            f"no path, e.g. 'http://user:password@proxy.example:3128', got {shown!r}",
            field="proxy",
        )
    return proxy


def _check_verify_and_proxy(name: str, verify: Any, proxy: Any) -> bool | str | None:
    """Validates both; returns ``verify`` as stored (a CA bundle path with ``~`` expanded)."""
    if proxy is not None:
        _check_proxy(name, proxy)
    if verify is None or isinstance(verify, bool):
        return verify
    if isinstance(verify, str) and verify.strip():
        path = os.path.expanduser(verify)
        if os.path.exists(path):
            return path
        raise ConfigError(
            f"providers.verify ({name}): no CA bundle at {verify!r}; give the path of a PEM file "
            "or of a directory of CA certificates, True (default verification) or False",
            field="verify",
        )
    raise ConfigError(
        f"providers.verify ({name}): expected True, False, None or a CA bundle path, got {verify!r}", field="verify"
    )


def _check_number(
    field_name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    allow_none: bool = True,
    integer: bool = False,
    strictly_positive: bool = False,
) -> Any:
    if value is None and allow_none:
        return None
    field = field_name.split(" ")[0].rsplit(".", 1)[-1]  # "providers.weight (x)" -> "weight"
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise ConfigError(f"{field_name}: expected {kind}, got {value!r}", field=field)
    if value < minimum or (strictly_positive and value <= 0):
        bound = f"> {minimum}" if strictly_positive else f">= {minimum}"
        raise ConfigError(f"{field_name}: must be {bound}, got {value!r}", field=field)
    return value


class Secret:
    """An API key kept inside a spec. Not a ``str``: ``key + ""``, ``f"{key}"``, ``json.dumps(key)``
    and every repr show ``***`` or fail; only ``reveal()`` gives the value, and only the provider's
    own adapter calls it, where the request headers are built."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:  # pickling keeps the key, still wrapped
        return (Secret, (self._value,))


@dataclass(frozen=True, slots=True, eq=False)
class ProviderSpec:
    """One provider: where to send requests, with which model, and how to price and weigh it.

    Immutable; the ``with_*`` methods return changed copies. ``api`` defaults from the name
    (``anthropic``/``claude`` -> anthropic, ``gemini``/``google`` -> gemini, ``azure`` -> azure,
    ``ollama`` -> ollama, else openai); a known name gets its public base URL, any other needs
    ``base_url``. The key comes from ``api_key``, else the variable ``api_key_env``, else
    ``<NAME>_API_KEY``; it appears in no repr, error or output. Prices are USD per 1M tokens, both
    or neither (``None``: genai-prices' catalogue). Invalid values raise ``ConfigError``.

    Examples:
        >>> spec = ProviderSpec("groq", "llama-3.1-8b-instant").with_priority(1)
        >>> spec.api, spec.base_url, spec.key_env_var
        ('openai', 'https://api.groq.com/openai/v1', 'GROQ_API_KEY')
        >>> local = ProviderSpec("vllm", "llama-3.1-8b").with_prices(input=0, output=0)
        >>> local.is_local, local.input_price
        (True, 0.0)
    """

    name: str
    model: str
    api: str | None = None
    base_url: str | None = None
    api_key: Secret | str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    priority: int | None = None
    weight: float = 1.0
    input_price: float | None = None
    output_price: float | None = None
    context_window: int | None = None
    max_concurrency: int | None = None
    timeout: float | None = None
    capabilities: frozenset[str] | None = None  # None: the default for the api and model (_capabilities.py)
    api_version: str | None = None  # Azure: the legacy deployments URL with ?api-version=; None: the v1 API
    verify: bool | str | None = None  # None: default verification (SSL_CERT_FILE/DIR honoured); str: CA bundle path
    proxy: str | None = field(default=None, repr=False)  # may hold credentials: never shown

    def __post_init__(self) -> None:
        set_: Callable[[str, Any], None] = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"providers.name: a non-empty string is required, got {self.name!r}", field="name")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(
                f"providers.model ({self.name}): a non-empty model name is required, got {self.model!r}", field="model"
            )
        api = self.api if self.api is not None else default_api(self.name)
        if api not in APIS:
            raise ConfigError(
                f"providers.api ({self.name}): unknown api {api!r}; allowed: {', '.join(APIS)}", field="api"
            )
        set_("api", api)
        set_("base_url", self._checked_base_url(api))
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            if not isinstance(self.api_key, str):
                raise ConfigError(f"providers.api_key ({self.name}): expected a string", field="api_key")
            set_("api_key", Secret(self.api_key))
        if self.priority is not None and (not isinstance(self.priority, int) or isinstance(self.priority, bool)):
            raise ConfigError(
                f"providers.priority ({self.name}): expected a whole number or None, got {self.priority!r}",
                field="priority",
            )
        self._check_numbers(set_)
        if self.capabilities is not None:
            set_("capabilities", check_capabilities(self.name, self.capabilities))
        if self.api_version is not None and (not isinstance(self.api_version, str) or not self.api_version.strip()):
            raise ConfigError(
                f"providers.api_version ({self.name}): expected a version string such as "
                f"'2024-10-21', got {self.api_version!r}",
                field="api_version",
            )
        set_("verify", _check_verify_and_proxy(self.name, self.verify, self.proxy))

    def _checked_base_url(self, api: str) -> str:
        base_url = self.base_url
        if base_url is None:
            # Like the official SDKs (OPENAI_BASE_URL, ANTHROPIC_BASE_URL): a proxy or gateway
            # can stand in for a known provider without touching the code.
            base_url = (
                os.environ.get(self.name.upper().replace("-", "_") + "_BASE_URL")
                or known_base_url(self.name, api)
                or self._base_url_otherwise(api)
            )
        if not _is_http_url(base_url):
            raise ConfigError(
                f"providers.base_url ({self.name}): expected an http(s) URL with a host "
                f"(and a port from 1 to 65535), got {base_url!r}",
                field="base_url",
            )
        return base_url.rstrip("/")

    def _check_numbers(self, set_: Callable[[str, Any], None]) -> None:
        """Weight, prices (in pairs), context window, concurrency and timeout."""
        _check_number(f"providers.weight ({self.name})", self.weight, allow_none=False, strictly_positive=True)
        set_("weight", float(self.weight))
        for f in ("input_price", "output_price"):
            v = _check_number(f"providers.{f} ({self.name})", getattr(self, f))
            set_(f, None if v is None else float(v))
        if (self.input_price is None) != (self.output_price is None):
            given, missing = (
                ("input_price", "output_price") if self.output_price is None else ("output_price", "input_price")
            )
            raise ConfigError(
                f"providers.{missing} ({self.name}): {given} is set but {missing} is not; prices come in pairs "
                "(a missing half would bill as $0). Give both, e.g. with_prices(input=2.5, output=10), "
                "with_prices(input=0, output=0) for a free model, or neither to use genai-prices",
                field=missing,
            )
        for f in ("context_window", "max_concurrency"):
            _check_number(f"providers.{f} ({self.name})", getattr(self, f), integer=True, strictly_positive=True)
        _check_number(f"providers.timeout ({self.name})", self.timeout, strictly_positive=True)

    def _base_url_otherwise(self, api: str) -> str:
        """No base_url, no ``<NAME>_BASE_URL``, no known name: Azure's endpoint from the environment as its
        SDK reads it, else a ConfigError saying what to give."""
        if api == "azure":  # no public URL: every Azure OpenAI resource has its own endpoint
            endpoint = os.environ.get(AZURE_ENDPOINT_ENV)
            if endpoint:
                # The SDK pairs AZURE_OPENAI_ENDPOINT with AZURE_OPENAI_API_KEY: the key for this endpoint,
                # unless a key, a key variable or <NAME>_API_KEY was given for this provider.
                if self.api_key is None and self.api_key_env is None and not os.environ.get(env_var_for(self.name)):
                    object.__setattr__(self, "api_key_env", AZURE_KEY_ENV)
                return endpoint
            raise ConfigError(
                f"providers.base_url ({self.name}): Azure OpenAI has no public base URL (each resource "
                f"has its own); give base_url='https://RESOURCE.openai.azure.com' or set "
                f"{AZURE_ENDPOINT_ENV}",
                field="base_url",
            )
        known = ", ".join(sorted(KNOWN_BASE_URLS))
        raise ConfigError(
            f"providers.base_url ({self.name}): unknown provider name without base_url; "
            f"give base_url= (e.g. 'http://127.0.0.1:8000/v1') or use a known name: {known}",
            field="base_url",
        )

    # -- copies -------------------------------------------------------------------------------
    def _copy(self, **changes: Any) -> ProviderSpec:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        return ProviderSpec(**values)

    def with_priority(self, priority: int) -> ProviderSpec:
        """A copy with this priority: a lower number is tried earlier; no priority comes after every one
        that has one.

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_priority(1).priority
            1
        """
        return self._copy(priority=priority)

    def with_weight(self, weight: float) -> ProviderSpec:
        """A copy with this weight (> 0), used by round_robin, random and least_busy.

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_weight(2).weight
            2.0
        """
        return self._copy(weight=weight)

    def with_base_url(self, base_url: str) -> ProviderSpec:
        """A copy sending to this base URL (a trailing ``/`` is dropped).

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_base_url("http://127.0.0.1:8000/v1/").base_url
            'http://127.0.0.1:8000/v1'
        """
        return self._copy(base_url=base_url)

    def with_api_key(self, api_key: str) -> ProviderSpec:
        """A copy carrying this key (kept as a secret: never shown).

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_api_key("sk-test").api_key
            Secret('***')
        """
        return self._copy(api_key=api_key)

    def with_prices(self, input: float | None = None, output: float | None = None) -> ProviderSpec:  # noqa: A002
        """USD per 1M tokens, both or neither (``with_prices()`` returns to genai-prices' catalogue).

        Examples:
            >>> ProviderSpec("vllm", "llama-3.1-8b").with_prices(input=0, output=0).output_price
            0.0
        """
        return self._copy(input_price=input, output_price=output)

    def with_timeout(self, timeout: float) -> ProviderSpec:
        """A copy whose requests time out after this many seconds (instead of the config's).

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_timeout(10.0).timeout
            10.0
        """
        return self._copy(timeout=timeout)

    def with_context_window(self, context_window: int) -> ProviderSpec:
        """A copy with this context window in tokens (context-length fallbacks and ``--chat`` limits use it).

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_context_window(128_000).context_window
            128000
        """
        return self._copy(context_window=context_window)

    def with_max_concurrency(self, max_concurrency: int) -> ProviderSpec:
        """A copy allowing at most this many requests in flight to the provider, across the whole router.

        Examples:
            >>> ProviderSpec("openai", "gpt-4o").with_max_concurrency(4).max_concurrency
            4
        """
        return self._copy(max_concurrency=max_concurrency)

    def with_capabilities(self, *capabilities: str) -> ProviderSpec:
        """A copy with exactly these capabilities (from tools, vision, json_schema, streaming).

        Examples:
            >>> sorted(ProviderSpec("vllm", "llava").with_capabilities("vision", "streaming").capabilities)
            ['streaming', 'vision']
        """
        return self._copy(capabilities=frozenset(capabilities))

    @property
    def effective_capabilities(self) -> frozenset[str]:
        """``capabilities`` as given, else the default for this api and model.

        Examples:
            >>> sorted(ProviderSpec("openai", "gpt-3.5-turbo").effective_capabilities)
            ['json_schema', 'streaming', 'tools']
        """
        if self.capabilities is not None:
            return self.capabilities
        return default_capabilities(self.api or "openai", self.model)

    # -- keys ---------------------------------------------------------------------------------
    @property
    def key_env_var(self) -> str:
        """The environment variable the key is read from: ``api_key_env``, else ``<NAME>_API_KEY``.

        Examples:
            >>> ProviderSpec("my-groq", "m", base_url="https://api.groq.com/openai/v1").key_env_var
            'MY_GROQ_API_KEY'
        """
        return self.api_key_env or env_var_for(self.name)

    @property
    def key_env_vars(self) -> tuple[str, ...]:
        """Every variable the key may come from, in the order they are tried: ``key_env_var``, then
        (when no ``api_key_env`` was given) the ones the API's official SDK reads.

        Examples:
            >>> ProviderSpec("gemini", "gemini-2.0-flash").key_env_vars
            ('GEMINI_API_KEY', 'GOOGLE_API_KEY')
        """
        first = self.key_env_var
        sdk = SDK_KEY_ENVS.get(self.api or "", ())
        host = SDK_KEY_HOSTS.get(self.api or "")
        if self.api_key_env is not None or (host is not None and urlsplit(self.base_url or "").hostname != host):
            return (first,)
        return (first, *(v for v in sdk if v != first))

    @property
    def is_local(self) -> bool:
        """Whether the base URL is on this machine (loopback): such a provider needs no key.

        Examples:
            >>> ProviderSpec("vllm", "llama-3.1-8b").is_local
            True
        """
        return is_loopback_url(self.base_url or "")

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key to send, or None. Never logged; only the provider's own adapter calls this.

        Examples:
            >>> ProviderSpec("openai", "gpt-4o", api_key="sk-test").resolve_api_key()
            'sk-test'
            >>> ProviderSpec("openai", "gpt-4o").resolve_api_key(environ={}) is None
            True
        """
        if self.api_key is not None:
            return self.api_key.reveal() if isinstance(self.api_key, Secret) else self.api_key
        env = os.environ if environ is None else environ
        return next((key for var in self.key_env_vars if (key := env.get(var))), None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProviderSpec):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))

    def __hash__(self) -> int:
        return hash((self.name, self.model, self.base_url))

    def to_dict(self, *, include_key: bool = False) -> dict[str, Any]:
        """Plain dict of the settings (no key unless asked), the shape ``from_dict`` takes.

        Examples:
            >>> ProviderSpec("openai", "gpt-4o", api_key="sk-test").to_dict()
            {'name': 'openai', 'model': 'gpt-4o', 'api': 'openai',
             'base_url': 'https://api.openai.com/v1', 'weight': 1.0}
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if include_key and isinstance(self.api_key, Secret):
            out["api_key"] = self.api_key.reveal()
        else:
            out.pop("api_key")
            if out["proxy"] is not None:
                out["proxy"] = redact_url(out["proxy"])
        if out.get("capabilities") is not None:
            out["capabilities"] = sorted(out["capabilities"])
        return {k: v for k, v in out.items() if v is not None}


class ToolCall(NamedTuple):
    """A function call the model asked for: ``arguments`` parsed from its JSON.

    Examples:
        >>> c = router.complete("What is the weather in Paris?", tool_choice="get_weather", tools=[
        ...     {"name": "get_weather", "description": "Weather for a city",
        ...      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
        >>> call = c.tool_calls[0]
        >>> call.name, sorted(call.arguments)
        ('get_weather', ['city'])
    """

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished answer and what it cost; renders as Markdown (text and footer) in a notebook.

    ``input_tokens`` / ``output_tokens`` are None when the provider reported no usage, and ``cost``
    is NaN when the price or the usage is unknown (never 0). ``tool_calls`` holds the calls the
    model asked for (``tools=``), ``parsed`` the answer as an object (``response_format=``).

    Examples:
        >>> c = router.complete("Explain CAP in one line", max_tokens=16)
        >>> c.provider, c.model, c.attempts
        ('sim-openai', 'gpt-4o-mini', 1)
        >>> c.output_tokens <= 16 and c.cost > 0
        True
    """

    text: str
    provider: str
    model: str
    input_tokens: int | None = 0  # None: the provider reported no usage
    output_tokens: int | None = 0
    cost: float = 0.0  # NaN when the price or the usage is unknown
    latency_s: float = 0.0
    ttft_s: float | None = None
    request_id: str = ""
    finish_reason: str | None = None
    attempts: int = 1
    tool_calls: tuple[ToolCall, ...] = ()  # calls the model asked for (tools= given)
    parsed: Any = None  # the answer as an object, when response_format= was given

    def __str__(self) -> str:
        return self.text

    @property
    def tokens(self) -> int | None:
        """Input plus output tokens; None when the provider reported no usage.

        Examples:
            >>> c = router.complete("hello")
            >>> c.tokens == c.input_tokens + c.output_tokens
            True
        """
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def footer(self) -> str:
        """``provider · model · latency[, ttft] · in+out tokens · cost[, N attempts]``, as every footer reads.

        Examples:
            >>> router.complete("hello").footer()
            'sim-openai · gpt-4o-mini · ... tokens · $...'
        """
        from ._format import millis, money, tokens

        ttft = f", ttft {millis(self.ttft_s)}" if self.ttft_s is not None else ""
        retry = f", {self.attempts} attempts" if self.attempts > 1 else ""
        return (
            f"{self.provider} · {self.model} · {millis(self.latency_s)}{ttft} · "
            f"{tokens(self.input_tokens, self.output_tokens)} · {money(self.cost, unknown='unknown cost')}{retry}"
        )

    def _repr_markdown_(self) -> str:
        return f"{self.text}\n\n---\n*{self.footer()}*"

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (for a DataFrame row or JSON).

        Examples:
            >>> router.complete("hello").to_dict()["provider"]
            'sim-openai'
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class AttemptRecord(NamedTuple):
    """One attempt at one provider, as it ended: the unit of the usage ledger.

    A named tuple, not a dataclass: the ledger turns a batch of them into columns with one
    ``zip(*batch)``, which is most of what recording a million attempts costs.
    """

    request_id: str
    attempt: int
    timestamp: float  # epoch seconds (UTC) when the attempt started
    provider: str
    model: str
    strategy: str
    status: str  # "ok" | "error" | "cancelled"
    error_type: str | None
    http_status: int | None
    input_tokens: int | None  # None: the provider reported no usage (shown as NA, never 0)
    output_tokens: int | None
    cost: float  # NaN when the price or the usage is unknown
    latency_s: float  # the provider's time only: a streamed answer's consumer time is not in it
    ttft_s: float | None
    streamed: bool
    cache_read_tokens: int = 0  # the share of input_tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # the share of input_tokens written to it (Anthropic bills these higher)
    conversation: str | None = None  # the request's conversation label (``conversation=``; %%llm --chat NAME)


# How the router builds a record, once per attempt, from all eighteen fields in order: the
# named tuple's generated __new__ (keyword-aware, with defaults) costs twice what building the
# tuple does, and a million attempts are recorded in 2 s with record building included.
record_from_fields: Callable[[tuple[Any, ...]], AttemptRecord] = functools.partial(tuple.__new__, AttemptRecord)


LEDGER_COLUMNS: tuple[str, ...] = (
    "request_id",
    "attempt",
    "timestamp",
    "provider",
    "model",
    "strategy",
    "status",
    "error_type",
    "http_status",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency_s",
    "ttft_s",
    "streamed",
    "cache_read_tokens",
    "cache_write_tokens",
    "conversation",
)
