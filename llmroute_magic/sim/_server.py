"""``Simulator``: the simulated providers served by uvicorn on 127.0.0.1 from a background thread."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._profiles import DEFAULT_PROFILES, ProviderProfile
from ._state import SimState
from ._wire import FORMATS

if TYPE_CHECKING:
    from .._types import ProviderSpec

_READY_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
# Longer than any client pool keeps an idle connection (httpx 5 s, aiohttp 15 s), so the server
# never closes a connection the client is about to reuse (a race that looks like a reset).
_KEEP_ALIVE_S = 75


def _as_profiles(profiles: Iterable[ProviderProfile] | Mapping[str, ProviderProfile] | None) -> list[ProviderProfile]:
    if profiles is None:
        return list(DEFAULT_PROFILES)
    if isinstance(profiles, Mapping):
        out = []
        for key, p in profiles.items():
            if isinstance(p, ProviderProfile) and p.name != key:
                p = p.replace(name=key)
            out.append(p)
        return out
    if isinstance(profiles, ProviderProfile):
        return [profiles]
    return list(profiles)


class Simulator:
    """Simulated LLM providers on one loopback port. Use as a context manager or with start()/stop().

    ``profiles``: None for ``DEFAULT_PROFILES`` (one provider per wire format, and sim-local), or a list /
    dict of ``ProviderProfile``. ``port``: 0 picks a free ephemeral port. ``clock`` drives the
    rate-limit window (tests pass a fake one). What it served is in ``stats()`` (and
    ``GET /_sim/stats``): the router's ledger must equal it.

    Examples:
        >>> with Simulator() as sim:
        ...     config = ProviderRoutingConfig(sim.provider_specs())
        ...     with ModelClientRouter(config) as r:
        ...         c = r.complete("hello")
        ...     served = sim.stats()["providers"]["sim-openai"]
        >>> served["requests"], served["output_tokens"] == c.output_tokens
        (1, True)
    """

    def __init__(
        self,
        profiles: Iterable[ProviderProfile] | Mapping[str, ProviderProfile] | None = None,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port: expected a whole number 0..65535, got {port!r}", field="port")
        from ._app import SimApp  # starlette is only needed once a simulator is built

        self._state = SimState(_as_profiles(profiles), clock=clock)
        self._app = SimApp(self._state)
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Start serving (in a background thread); returns the simulator. Starting twice is harmless.

        Examples:
            >>> s = Simulator().start()
            >>> s.running
            True
            >>> s.stop()
        """
        with self._lock:
            if self._thread is not None:
                return self
            import uvicorn

            sock = self._listening_socket()
            self._port = sock.getsockname()[1]
            config = self._server_config(uvicorn)
            server = uvicorn.Server(config)
            errors: list[BaseException] = []

            def serve() -> None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                try:
                    loop.run_until_complete(server.serve(sockets=[sock]))
                except BaseException as exc:  # surfaced by start() if it happens before readiness
                    errors.append(exc)
                finally:
                    sock.close()
                    loop.close()

            thread = threading.Thread(target=serve, name=f"llmroute-sim:{self._port}", daemon=True)
            thread.start()
            deadline = time.monotonic() + _READY_TIMEOUT_S
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    thread.join(_STOP_TIMEOUT_S)
                    reason = repr(errors[0]) if errors else "it did not start in time"
                    raise RuntimeError(f"the simulator could not start on {self._host}:{self._port}: {reason}")
                time.sleep(0.002)
            self._server, self._thread = server, thread
            return self

    def _listening_socket(self) -> socket.socket:
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
        # TCP, and without it Nagle + delayed ACK add ~40 ms to every answer.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self._host, self._requested_port))
        except OSError:
            sock.close()
            raise
        return sock

    def _server_config(self, uvicorn: Any) -> Any:
        return uvicorn.Config(
            self._app,
            host=self._host,
            port=self._port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=_KEEP_ALIVE_S,
            timeout_graceful_shutdown=2,
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            ws="none",
            server_header=False,
        )

    def stop(self) -> None:
        """Stop serving; requests still waiting are answered or dropped. Stopping twice is harmless.

        Examples:
            >>> s = Simulator().start()
            >>> s.stop()
            >>> s.running
            False
        """
        with self._lock:
            server, thread, loop = self._server, self._thread, self._loop
            if thread is None:
                return
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._app.stop_waiting)
                except RuntimeError:  # the loop closed in between
                    pass
            server.should_exit = True
            thread.join(_STOP_TIMEOUT_S)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_S)
            self._server = self._thread = self._loop = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving.

        Examples:
            >>> sim.running
            True
        """
        return self._thread is not None

    # -- addresses ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on (after start()).

        Examples:
            >>> 0 < sim.port < 65536
            True
        """
        if self._port is None:
            raise RuntimeError("the simulator has not been started; use `with Simulator() as sim:` or sim.start()")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the server's root (the ``/_sim`` routes live under it).

        Examples:
            >>> sim.url == f"http://127.0.0.1:{sim.port}"
            True
        """
        return f"http://{self._host}:{self.port}"

    def base_url(self, name: str) -> str:
        """The base URL the official SDK of the provider's format takes: ``.../<name>/v1`` for OpenAI chat
        completions and Responses, ``.../<name>`` for Anthropic, Gemini, Azure and Ollama.

        Examples:
            >>> sim.base_url("sim-openai") == sim.url + "/sim-openai/v1"
            True
            >>> sim.base_url("sim-anthropic") == sim.url + "/sim-anthropic"
            True
        """
        profile = self._profile(name)
        return FORMATS[profile.api].base_url(self.url, name)

    def provider_specs(self, names: Iterable[str] | None = None) -> list[ProviderSpec]:
        """ProviderSpecs pointing at this server, with the profiles' api, model, prices and context window.

        They come in the order asked for (profile order by default), which is the order the
        PRIORITY strategy tries them in. They carry the profile's required key, or a placeholder
        key when none is required, so clients that insist on a key work unchanged. Their
        capabilities are what the simulator does: everything, except "vision" for a profile with
        ``vision=False`` (so routers keep images away from it), whatever the model's name suggests.

        Examples:
            >>> [(s.name, s.api, s.model) for s in sim.provider_specs(["sim-openai", "sim-anthropic"])]
            [('sim-openai', 'openai', 'gpt-4o-mini'), ('sim-anthropic', 'anthropic', 'claude-3-5-haiku-latest')]
        """
        from .._capabilities import CAPABILITIES
        from .._types import ProviderSpec

        profiles = self._state.profiles()
        chosen = list(profiles) if names is None else list(names)
        specs = []
        for n in chosen:
            p = self._profile(n)
            fmt = FORMATS[p.api]
            extra = {
                "capabilities": frozenset(CAPABILITIES) - (set() if p.vision else {"vision"}),
                **fmt.spec_fields(p),
            }
            specs.append(
                ProviderSpec(
                    name=n,
                    model=p.model,
                    api=p.api,
                    base_url=fmt.base_url(self.url, n),
                    api_key=p.require_api_key or "sim",
                    input_price=p.input_price,
                    output_price=p.output_price,
                    context_window=p.context_window,
                    **extra,
                )
            )
        return specs

    # -- profiles and faults --------------------------------------------------------------------
    def _profile(self, name: str) -> ProviderProfile:
        return self._state.known(name)

    @property
    def profiles(self) -> dict[str, ProviderProfile]:
        """The current profile of each simulated provider, by name.

        Examples:
            >>> list(sim.profiles)
            ['sim-openai', 'sim-anthropic', 'sim-local', 'sim-gemini', 'sim-azure', 'sim-ollama', 'sim-responses']
        """
        return self._state.profiles()

    def add_profile(self, profile: ProviderProfile) -> None:
        """Serve one more simulated provider (a ``ProviderProfile``) from now on.

        Examples:
            >>> s = Simulator().start()
            >>> s.add_profile(ProviderProfile("extra", api="anthropic", model="claude-3-5-haiku-latest"))
            >>> "extra" in s.profiles
            True
            >>> s.stop()
        """
        self._state.add(profile)

    def update(self, name: str, **changes: Any) -> ProviderProfile:
        """Change a profile live (validated); requests already in flight keep the old one.

        Examples:
            >>> sim.update("sim-local", latency_s=0.0).latency_s
            0.0
        """
        return self._state.update(name, **changes)

    def inject(self, name: str, faults: Iterable[str | None]) -> None:
        """The next requests to ``name`` get these faults in order (None = a normal answer), before random ones.

        Examples:
            >>> sim.inject("sim-openai", ["server_error", None])   # a 500, then a normal answer
            >>> sim.reset()
        """
        self._state.inject(name, faults)

    # -- counters -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """What was served, per provider: requests, statuses (by code or fault name), input and output
        tokens, billed cost, the most requests in flight at once.

        Examples:
            >>> sorted(sim.stats()["providers"]["sim-openai"])
            ['cost', 'input_tokens', 'max_in_flight', 'output_tokens', 'requests', 'statuses']
        """
        return self._state.stats()

    def reset_stats(self) -> None:
        """Zero the counters (profiles, queues and RNGs stay).

        Examples:
            >>> sim.reset_stats()
            >>> sim.stats()["providers"]["sim-openai"]["requests"]
            0
        """
        self._state.reset_stats()

    def reset(self) -> None:
        """Everything back to the start: profiles, RNGs, injected faults, rate windows and counters.

        Examples:
            >>> sim.reset()
        """
        self._state.reset_all()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"Simulator({where}, providers={self._state.names()!r})"
