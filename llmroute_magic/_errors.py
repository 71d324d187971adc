"""The error tree.

    LLMRouteError
    ├── ConfigError          (also a ValueError) a setting is wrong; names the field and what is allowed
    ├── ProviderError        one failed attempt at one provider
    └── AllProvidersFailed   every attempt of a request failed; ``.attempts`` holds them all

Warnings (``warnings.warn``, never raised): ``UnknownPriceWarning`` (a cost shows as NaN) and
``LedgerPersistenceWarning`` (the ledger file cannot be used; usage is kept in memory).

Every ``ProviderError`` carries an ``error_type`` from ``ERROR_POLICY``; the router decides what
to do next from that type alone, so adapters only have to classify, never to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any


class Policy(Enum):
    RETRY = "retry"  # transient: try again (next candidate, or same after backoff)
    DROP_PROVIDER = "drop_provider"  # this provider cannot serve: skip it for this request and cool it down
    LARGER_CONTEXT = "larger_context"  # fall back only to a provider with a larger context window
    FAIL_FAST = "fail_fast"  # the request itself is wrong; retrying cannot help
    SURFACE = "surface"  # not retried: the user already saw part of the answer
    RESEND = "resend"  # the router's own addition was refused and is now left out: the same provider again


ERROR_POLICY: dict[str, Policy] = {
    "rate_limit": Policy.RETRY,  # 429
    "timeout": Policy.RETRY,  # 408, connect/read timeout, a hung server
    "conflict": Policy.RETRY,  # 409
    "server_error": Policy.RETRY,  # 500, 502, 503, 504
    "overloaded": Policy.RETRY,  # 529, Anthropic overloaded_error
    "connect_error": Policy.RETRY,  # refused, DNS
    "connection_reset": Policy.RETRY,  # peer closed mid-response
    "malformed_response": Policy.RETRY,  # unparsable or truncated body / stream
    "stream_error": Policy.RETRY,  # error event in a stream before any text was shown
    "insufficient_quota": Policy.DROP_PROVIDER,  # 429 insufficient_quota, 402
    "authentication": Policy.DROP_PROVIDER,  # 401
    "permission": Policy.DROP_PROVIDER,  # 403
    "not_found": Policy.DROP_PROVIDER,  # 404 (model or endpoint)
    "missing_api_key": Policy.DROP_PROVIDER,  # never reached the network
    "tls_error": Policy.DROP_PROVIDER,  # certificate or handshake refused: no retry makes it trusted
    "context_length": Policy.LARGER_CONTEXT,  # 400 prompt too long
    "invalid_request": Policy.FAIL_FAST,  # 400, 422
    # 400 or 422 naming a field the adapter adds on its own (OpenAI's stream_options): the request
    # was the router's mistake, not the caller's; the provider never gets that field again.
    "unsupported_parameter": Policy.RESEND,
    "cancelled": Policy.FAIL_FAST,
}


def policy_for(error_type: str) -> Policy:
    return ERROR_POLICY.get(error_type, Policy.RETRY)


class LLMRouteError(Exception):
    """Base of every error llmroute_magic raises on purpose: catch it to catch them all.

    Examples:
        >>> try:
        ...     ProviderSpec("nowhere", "some-model")      # unknown name, no base_url
        ... except LLMRouteError as e:
        ...     type(e).__name__
        'ConfigError'
    """


class ConfigError(LLMRouteError, ValueError):
    """A setting is invalid. The message names the field and the allowed values; ``field`` holds
    the field's name. Also a ``ValueError``.

    Examples:
        >>> try:
        ...     ProviderSpec("openai", "gpt-4o", input_price=2.5)    # prices come in pairs
        ... except ConfigError as e:
        ...     e.field
        'output_price'
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProviderError(LLMRouteError):
    """One failed attempt at one provider.

    ``error_type`` says what failed (``rate_limit``, ``authentication``, ``context_length``...: the
    error policy decides from it alone), ``status_code`` the HTTP status if there was one,
    ``retry_after`` the seconds the provider asked to wait. ``input_tokens``/``output_tokens`` are
    what the provider reported before failing (usually 0), ``partial_text`` what it streamed before
    failing. Raised as is when a request fails fast (an invalid request); else collected in
    ``AllProvidersFailed.attempts``.

    Examples:
        >>> e = ProviderError("slow down", provider="openai", error_type="rate_limit", status_code=429, retry_after=2.0)
        >>> str(e)
        'openai: rate_limit 429: slow down'
        >>> e.policy.value
        'retry'
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        error_type: str,
        status_code: int | None = None,
        retry_after: float | None = None,
        model: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.error_type = error_type
        self.status_code = status_code
        self.retry_after = retry_after
        self.model = model
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.partial_text = partial_text

    @property
    def policy(self) -> Policy:
        """What the router does after this failure: retry, drop the provider, fall back to a larger
        context window, fail fast, or surface a partial answer.

        Examples:
            >>> ProviderError("bad key", provider="openai", error_type="authentication", status_code=401).policy.value
            'drop_provider'
        """
        return policy_for(self.error_type)

    def __str__(self) -> str:
        status = f" {self.status_code}" if self.status_code is not None else ""
        return f"{self.provider}: {self.error_type}{status}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"ProviderError(provider={self.provider!r}, error_type={self.error_type!r}, "
            f"status_code={self.status_code!r}, retry_after={self.retry_after!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # keep keyword-only state through pickling (multiprocessing, nbclient)
        return (_rebuild_provider_error, (self.message, self.__dict__.copy()))


def _rebuild_provider_error(message: str, state: dict[str, Any]) -> ProviderError:
    err = ProviderError.__new__(ProviderError)
    LLMRouteError.__init__(err, message)
    err.__dict__.update(state)
    return err


class AllProvidersFailed(LLMRouteError):
    """Every attempt of one request failed. ``attempts`` lists them in order; the message lists
    each (provider, error type, status, the provider's message) and ends with what to do.

    Examples:
        >>> e = AllProvidersFailed([ProviderError("no key", provider="openai", error_type="missing_api_key")])
        >>> [a.error_type for a in e.attempts]
        ['missing_api_key']
        >>> print(e)
        all providers failed after 1 attempt:
          1. openai: missing_api_key: no key
        What to do: set the API key named above (or pass api_key= / api_key_env= on the ProviderSpec).
    """

    def __init__(self, attempts: Sequence[ProviderError], *, hint: str | None = None) -> None:
        self.attempts = list(attempts)
        self.hint: str | None = hint or advice_for(self.attempts)
        super().__init__(self._render())

    @property
    def partial_text(self) -> str:
        """What the last attempt streamed before it failed ('' when nothing was shown).

        Examples:
            >>> cut = ProviderError("cut", provider="p", error_type="stream_error", partial_text="Hel")
            >>> AllProvidersFailed([cut]).partial_text
            'Hel'
        """
        return self.attempts[-1].partial_text if self.attempts else ""

    def _render(self) -> str:
        n = len(self.attempts)
        lines = [f"all providers failed after {n} attempt{'s' if n != 1 else ''}:"]
        for i, a in enumerate(self.attempts, 1):
            status = f" (HTTP {a.status_code})" if a.status_code is not None else ""
            lines.append(f"  {i}. {a.provider}: {a.error_type}{status}: {a.message}")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)

    def __reduce__(self) -> tuple[Any, ...]:
        return (AllProvidersFailed, (self.attempts,), {"hint": self.hint})

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        self.hint = state.get("hint") if state else None


def advice_for(attempts: Sequence[ProviderError]) -> str:
    """What the user should do, judged from the kinds of failure seen."""
    kinds = {a.error_type for a in attempts}
    tips: list[str] = []
    if "missing_api_key" in kinds or "authentication" in kinds:
        tips.append("set the API key named above (or pass api_key= / api_key_env= on the ProviderSpec)")
    if "permission" in kinds:
        tips.append(
            "the key is valid but not allowed to use this model or endpoint: check the key's "
            "project, organisation or model access"
        )
    if "insufficient_quota" in kinds:
        tips.append("check the provider's billing or quota")
    if "not_found" in kinds:
        tips.append("check the model name and base_url")
    if "tls_error" in kinds:
        tips.append(
            "the server's certificate is not trusted: give its CA bundle with ProviderSpec(verify='ca.pem') "
            "or SSL_CERT_FILE"
        )
    if "context_length" in kinds:
        tips.append("shorten the prompt or add a provider with a larger context_window")
    if kinds & {
        "rate_limit",
        "overloaded",
        "server_error",
        "timeout",
        "connect_error",
        "connection_reset",
        "malformed_response",
        "stream_error",
    }:
        tips.append(
            "the providers were failing or busy: raise max_retries, add a fallback provider, or try again later"
        )
    if not tips:
        return "What to do: check the errors above."
    return "What to do: " + "; ".join(tips) + "."


class UnknownPriceWarning(UserWarning):
    """A provider's price is unknown: its cost shows as NaN (never 0) until one is given. Warned
    once per provider, before its first attempt.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", UnknownPriceWarning)   # make an unknown price an error
        ...     pass
    """


class LedgerPersistenceWarning(UserWarning):
    """The ledger file cannot be used; usage is kept in memory for this session.

    Examples:
        >>> import warnings
        >>> warnings.simplefilter("ignore", LedgerPersistenceWarning)   # doctest: +SKIP
    """
