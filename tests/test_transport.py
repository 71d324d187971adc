"""Proxies and TLS as httpx users know them, over real loopback servers.

Three helpers, each an asyncio server on its own thread (so sync and async calls both reach it):

- ``ForwardingProxy``: an HTTP proxy that tunnels ``CONNECT host:port`` and forwards absolute-URI
  requests, counting what passes through it, optionally requiring Basic credentials (407 otherwise);
- ``TLSFront``: the simulator behind a TLS server whose certificate a test CA (trustme) issued;
- the session simulator (``conftest.sim``) as the ground truth that requests arrived.

Environment variables are set only through monkeypatch; the ``clean_env`` fixture removes every
proxy and CA variable the machine may have, so each test states the whole environment it needs.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import shutil
import ssl
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from llmroute_magic import (
    AllProvidersFailed,
    ConfigError,
    ModelClientRouter,
    ProviderError,
    ProviderRoutingConfig,
    ProviderSpec,
)
from llmroute_magic._http import ClientSet, close_client_without_loop, make_client, make_clients
from llmroute_magic._providers import ChatRequest, adapter_for

trustme = pytest.importorskip("trustme")

PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
TLS_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")
HELLO = ChatRequest(messages=[{"role": "user", "content": "Say hello"}], max_tokens=8)
PASSWORD = "s3cret-Pw9"


# -- servers on their own threads ------------------------------------------------------------


class _ThreadServer:
    """An asyncio server on a private loop in a daemon thread."""

    ssl_context: ssl.SSLContext | None = None

    def start(self) -> _ThreadServer:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_quiet_about_cancelled)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
            )
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="test-server", daemon=True)
        self.thread.start()
        assert ready.wait(5)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


def _quiet_about_cancelled(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Connections still open when a test server stops are cancelled: not worth a log line."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, RuntimeError):
            pass


async def _splice(a: tuple, b: tuple) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


class ForwardingProxy(_ThreadServer):
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.tunnels: list[str] = []  # CONNECT targets, one per tunnel
        self.forwarded: list[str] = []  # "METHOD absolute-uri" of each forwarded connection's first request
        self.auth_seen: list[str | None] = []
        self.refused = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def seen(self) -> int:
        return len(self.tunnels) + len(self.forwarded)

    async def _serve(self, reader, writer) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
        auth = headers.get("proxy-authorization")
        self.auth_seen.append(auth)
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if auth != expected:
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'proxy-authenticate: Basic realm="test"\r\ncontent-length: 0\r\n'
                    b"connection: close\r\n\r\n"
                )
                await writer.drain()
                writer.close()
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host, int(port))
            self.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _splice((reader, writer), upstream)
            return
        url = urlsplit(target)
        upstream = await asyncio.open_connection(url.hostname, url.port or 80)
        self.forwarded.append(f"{method} {target}")
        # Origin form for the server; the proxy's own header stays here.
        origin = url.path + (f"?{url.query}" if url.query else "")
        kept = [ln for ln in lines if not ln.lower().startswith("proxy-")]
        upstream[1].write("\r\n".join([f"{method} {origin} HTTP/1.1", *kept]).encode("latin-1"))
        await _splice((reader, writer), upstream)


class TLSFront(_ThreadServer):
    """TLS on the outside, the plain simulator on the inside."""

    def __init__(self, backend_port: int, context: ssl.SSLContext) -> None:
        self.backend_port = backend_port
        self.ssl_context = context
        self.handshakes = 0

    def base_url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}/v1"

    async def _serve(self, reader, writer) -> None:
        self.handshakes += 1
        upstream = await asyncio.open_connection("127.0.0.1", self.backend_port)
        await _splice((reader, writer), upstream)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROXY_ENV + TLS_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    authority = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    authority.path = folder / "ca.pem"
    return authority


@pytest.fixture
def proxy():
    p = ForwardingProxy().start()
    yield p
    p.stop()


@pytest.fixture
def tls_sim(fresh_sim, ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    front = TLSFront(fresh_sim.port, context).start()
    yield front
    front.stop()


def sim_spec(base_url: str, name: str = "sim-openai", **kw) -> ProviderSpec:
    return ProviderSpec(name, "gpt-4o-mini", api="openai", base_url=base_url, **kw).with_prices(input=0, output=0)


def requests_seen(sim, name: str = "sim-openai") -> int:
    return sim.stats()["providers"][name]["requests"]


def router_for(*specs: ProviderSpec, **kw) -> ModelClientRouter:
    return ModelClientRouter(ProviderRoutingConfig(list(specs), **kw))


async def ask(spec: ProviderSpec, client=None, *, streamed: bool = False):
    """One request through the spec's adapter over ``client`` (default: make_clients for that spec)."""
    clients = make_clients([spec], timeout=10.0) if client is None else None
    adapter = adapter_for(spec.api)(spec, client or clients[spec.name])
    try:
        if streamed:
            items = [item async for item in adapter.stream(HELLO)]
            return items[-1]
        return await adapter.complete(HELLO)
    finally:
        if clients is not None:
            await clients.aclose()


# -- environment proxies -------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
async def test_environment_proxy_carries_plain_http_requests(clean_env, proxy, fresh_sim, var):
    clean_env.setenv(var, proxy.url)
    with router_for(sim_spec(fresh_sim.base_url("sim-openai"))) as r:
        plain = await r.acomplete("hello through the proxy", max_tokens=8)
        chunks = [c async for c in r.astream("and streamed", max_tokens=8)]
    assert plain.text and "".join(chunks)
    assert proxy.forwarded and all(
        f"127.0.0.1:{fresh_sim.port}/sim-openai/v1/chat/completions" in f for f in proxy.forwarded
    )
    assert requests_seen(fresh_sim) == 2


def test_environment_proxy_serves_the_sync_api_too(clean_env, proxy, fresh_sim):
    clean_env.setenv("HTTP_PROXY", proxy.url)
    with router_for(sim_spec(fresh_sim.base_url("sim-openai"))) as r:
        assert r.complete("hello", max_tokens=8).text
        assert "".join(r.stream("streamed", max_tokens=8))
    assert proxy.seen >= 1 and requests_seen(fresh_sim) == 2


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "example.com, 127.0.0.1"])
@pytest.mark.parametrize("case", [str.upper, str.lower])
async def test_no_proxy_keeps_loopback_direct(clean_env, proxy, fresh_sim, no_proxy, case):
    clean_env.setenv(case("HTTP_PROXY"), proxy.url)
    clean_env.setenv(case("NO_PROXY"), no_proxy)
    with router_for(sim_spec(fresh_sim.base_url("sim-openai"))) as r:
        assert (await r.acomplete("direct", max_tokens=8)).text
    assert proxy.seen == 0 and requests_seen(fresh_sim) == 1


async def test_https_proxy_tunnels_tls_with_connect(clean_env, proxy, tls_sim, ca, fresh_sim):
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    clean_env.setenv("SSL_CERT_FILE", str(ca.path))
    with router_for(sim_spec(tls_sim.base_url("sim-openai"))) as r:
        assert (await r.acomplete("tunnelled", max_tokens=8)).text
    assert proxy.tunnels == [f"127.0.0.1:{tls_sim.port}"] and proxy.forwarded == []
    assert requests_seen(fresh_sim) == 1


async def test_https_proxy_leaves_plain_http_alone(clean_env, proxy, fresh_sim):
    clean_env.setenv("HTTPS_PROXY", proxy.url)  # only https:// URLs go through it, as with httpx
    with router_for(sim_spec(fresh_sim.base_url("sim-openai"))) as r:
        assert (await r.acomplete("direct", max_tokens=8)).text
    assert proxy.seen == 0


async def test_direct_requests_share_one_pool_beside_a_proxy_route(clean_env, proxy, fresh_sim):
    """NO_PROXY for one host, the proxy for another: each route works, and the direct one reuses its
    connection (pooling is not lost by mounting proxy transports)."""
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    direct = sim_spec(fresh_sim.base_url("sim-openai"))
    proxied = sim_spec(f"http://localhost:{fresh_sim.port}/sim-local/v1", name="sim-local")
    client = make_client(timeout=10.0)
    try:
        for _ in range(3):
            await ask(direct, client)
        await ask(proxied, client)
    finally:
        await client.aclose()
    assert [f.split()[1].split("/")[2] for f in proxy.forwarded] == [f"localhost:{fresh_sim.port}"]
    assert requests_seen(fresh_sim, "sim-openai") == 3 and requests_seen(fresh_sim, "sim-local") == 1


# -- per-provider proxy ----------------------------------------------------------------------------


async def test_provider_proxy_with_credentials_wins_over_the_environment(clean_env, fresh_sim):
    guarded = ForwardingProxy(credentials=("alice", PASSWORD)).start()
    try:
        clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: the provider's own proxy is used
        spec = sim_spec(fresh_sim.base_url("sim-openai"), proxy=f"http://alice:{PASSWORD}@127.0.0.1:{guarded.port}")
        assert (await ask(spec)).text
        assert (await ask(spec, streamed=True)).text
        expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        assert guarded.auth_seen == [expected] * len(guarded.auth_seen) and guarded.seen >= 1
        assert requests_seen(fresh_sim) == 2
    finally:
        guarded.stop()


async def test_a_refused_proxy_login_is_an_error_that_never_shows_the_password(clean_env, fresh_sim):
    guarded = ForwardingProxy(credentials=("alice", "the-right-one")).start()
    try:
        spec = sim_spec(fresh_sim.base_url("sim-openai"), proxy=f"http://alice:{PASSWORD}@127.0.0.1:{guarded.port}")
        for streamed in (False, True):
            with pytest.raises(ProviderError) as info:
                await ask(spec, streamed=streamed)
            err = info.value
            assert err.error_type == "authentication" and err.status_code == 407 and "proxy" in err.message
            for text in (str(err), repr(err), err.message):
                assert PASSWORD not in text
        assert guarded.refused == 2 and requests_seen(fresh_sim) == 0
        shown = [repr(spec), str(spec.to_dict()), repr(make_clients([spec])[spec.name])]
        assert all(PASSWORD not in s for s in shown), shown
        assert "***@127.0.0.1" in repr(make_clients([spec])[spec.name])
    finally:
        guarded.stop()


async def test_the_router_uses_each_providers_proxy_and_verify(clean_env, tls_sim, ca, fresh_sim):
    guarded = ForwardingProxy(credentials=("alice", "the-right-one")).start()
    try:
        wrong = sim_spec(
            fresh_sim.base_url("sim-openai"),
            proxy=f"http://alice:{PASSWORD}@127.0.0.1:{guarded.port}",
            name="wrong-login",
        )
        right = sim_spec(
            tls_sim.base_url("sim-openai"),
            verify=str(ca.path),
            proxy=f"http://alice:the-right-one@127.0.0.1:{guarded.port}",
        )
        with router_for(wrong.with_priority(1), right.with_priority(2), max_retries=1) as r:
            c = await r.acomplete("hello", max_tokens=8)
            df = r.usage_df()
        assert c.provider == "sim-openai" and guarded.tunnels == [f"127.0.0.1:{tls_sim.port}"]
        assert [e if isinstance(e, str) else "" for e in df["error_type"]] == ["authentication", ""]
        assert PASSWORD not in df.to_csv()
    finally:
        guarded.stop()


async def test_a_refused_proxy_tunnel_login_is_an_authentication_error(clean_env, tls_sim, ca, fresh_sim):
    guarded = ForwardingProxy(credentials=("alice", "the-right-one")).start()
    try:
        spec = sim_spec(
            tls_sim.base_url("sim-openai"),
            verify=str(ca.path),
            proxy=f"http://alice:{PASSWORD}@127.0.0.1:{guarded.port}",
        )
        with pytest.raises(ProviderError) as info:
            await ask(spec)
        assert info.value.error_type == "authentication" and "407" in info.value.message
        assert PASSWORD not in str(info.value) and guarded.refused == 1
        good = sim_spec(
            tls_sim.base_url("sim-openai"),
            verify=str(ca.path),
            proxy=f"http://alice:the-right-one@127.0.0.1:{guarded.port}",
        )
        assert (await ask(good)).text and guarded.tunnels == [f"127.0.0.1:{tls_sim.port}"]
    finally:
        guarded.stop()


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://proxy:21",
        "http://",
        "proxy.example:3128",
        "http://h:70000",
        f"socks5://bob:{PASSWORD}@h:1080",
        f"http://bob:{PASSWORD}@h:3128/path",
        3128,
    ],
)
def test_a_malformed_proxy_is_a_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError) as info:
        ProviderSpec("p", "m", base_url="http://127.0.0.1:1/v1", proxy=bad)
    assert info.value.field == "proxy" and "proxy" in str(info.value)
    assert PASSWORD not in str(info.value)
    with pytest.raises(ConfigError) as info:
        ProviderRoutingConfig.from_dict(
            {"providers": [{"name": "p", "model": "m", "base_url": "http://127.0.0.1:1/v1", "proxy": bad}]}
        )
    assert info.value.field == "proxy" and PASSWORD not in str(info.value)


def test_config_files_take_verify_and_proxy(tmp_path, ca):
    cfg = ProviderRoutingConfig.from_dict(
        {
            "providers": [
                {
                    "name": "a",
                    "model": "m",
                    "base_url": "https://127.0.0.1:1/v1",
                    "verify": str(ca.path),
                    "proxy": f"http://bob:{PASSWORD}@127.0.0.1:3128",
                },
                {"name": "b", "model": "m", "base_url": "https://127.0.0.1:2/v1", "verify": False},
            ]
        }
    )
    a, b = cfg.providers
    assert (a.verify, a.proxy, b.verify, b.proxy) == (
        str(ca.path),
        f"http://bob:{PASSWORD}@127.0.0.1:3128",
        False,
        None,
    )
    assert PASSWORD not in repr(a) and PASSWORD not in str(cfg.to_dict())


@pytest.mark.parametrize("bad", [3, "", "/no/such/ca.pem"])
def test_a_bad_verify_is_a_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError) as info:
        ProviderSpec("p", "m", base_url="https://127.0.0.1:1/v1", verify=bad)
    assert info.value.field == "verify"


# -- TLS ---------------------------------------------------------------------------------------------


async def test_ssl_cert_file_trusts_a_private_ca(clean_env, tls_sim, ca, fresh_sim):
    clean_env.setenv("SSL_CERT_FILE", str(ca.path))
    with router_for(sim_spec(tls_sim.base_url("sim-openai"))) as r:
        assert (await r.acomplete("over TLS", max_tokens=8)).text
        assert "".join([c async for c in r.astream("streamed over TLS", max_tokens=8)])
    assert requests_seen(fresh_sim) == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to name a CA directory's files")
async def test_ssl_cert_dir_trusts_a_private_ca(clean_env, tls_sim, ca, fresh_sim, tmp_path):
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca.path)], check=True, capture_output=True, text=True
    ).stdout.strip()
    ca.cert_pem.write_to_path(str(tmp_path / f"{subject_hash}.0"))
    clean_env.setenv("SSL_CERT_DIR", str(tmp_path))
    with router_for(sim_spec(tls_sim.base_url("sim-openai"))) as r:
        assert (await r.acomplete("over TLS", max_tokens=8)).text
    spec = sim_spec(tls_sim.base_url("sim-openai"), verify=str(tmp_path))  # a directory works as verify= too
    clean_env.delenv("SSL_CERT_DIR")
    assert (await ask(spec)).text


@pytest.mark.parametrize("streamed", [False, True])
async def test_provider_verify_takes_a_ca_bundle_or_false(clean_env, tls_sim, ca, fresh_sim, streamed):
    assert (await ask(sim_spec(tls_sim.base_url("sim-openai"), verify=str(ca.path)), streamed=streamed)).text
    assert (await ask(sim_spec(tls_sim.base_url("sim-openai"), verify=False), streamed=streamed)).text
    assert requests_seen(fresh_sim) == 2


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_untrusted_certificate_is_a_tls_error_that_says_what_to_do(clean_env, tls_sim, fresh_sim, streamed):
    with pytest.raises(ProviderError) as info:
        await ask(sim_spec(tls_sim.base_url("sim-openai")), streamed=streamed)
    err = info.value
    assert err.error_type == "tls_error" and err.status_code is None
    assert "certificate verify failed" in err.message.lower()
    assert "SSL_CERT_FILE" in err.message and "verify=" in err.message
    assert requests_seen(fresh_sim) == 0


async def test_an_untrusted_certificate_is_not_retried_forever(clean_env, tls_sim, fresh_sim):
    with router_for(sim_spec(tls_sim.base_url("sim-openai")), max_retries=2) as r:
        with pytest.raises(AllProvidersFailed) as info:
            await asyncio.wait_for(r.acomplete("hello", max_tokens=8), 30)
    attempts = info.value.attempts
    assert 1 <= len(attempts) <= 3 and {a.error_type for a in attempts} == {"tls_error"}
    assert "SSL_CERT_FILE" in str(info.value)
    assert requests_seen(fresh_sim) == 0


def test_tls_contexts_follow_the_environment_and_are_reused(clean_env, ca):
    from llmroute_magic._http import tls_context

    default = tls_context()
    assert tls_context(None) is default and tls_context(True) is default
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    clean_env.setenv("SSL_CERT_FILE", str(ca.path))
    private = tls_context()
    assert private is not default and private.get_ca_certs() and len(private.get_ca_certs()) == 1
    off = tls_context(False)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    assert tls_context(str(ca.path)).get_ca_certs() == private.get_ca_certs()


# -- clients per (verify, proxy) and closing them ------------------------------------------------------


async def test_make_clients_gives_one_client_per_verify_and_proxy_pair(ca):
    specs = [
        ProviderSpec("a", "m", base_url="https://127.0.0.1:1/v1"),
        ProviderSpec("b", "m", base_url="https://127.0.0.1:2/v1"),
        ProviderSpec("c", "m", base_url="https://127.0.0.1:3/v1", verify=str(ca.path)),
        ProviderSpec("d", "m", base_url="https://127.0.0.1:4/v1", verify=str(ca.path)),
        ProviderSpec("e", "m", base_url="https://127.0.0.1:5/v1", proxy="http://127.0.0.1:3128"),
        ProviderSpec("f", "m", base_url="https://127.0.0.1:6/v1", verify=False),
    ]
    clients = make_clients(specs, timeout=7.0)
    assert isinstance(clients, ClientSet) and list(clients) == list("abcdef") and len(clients) == 6
    assert clients["a"] is clients["b"] and clients["c"] is clients["d"]
    assert len(clients.clients) == 4 and len({id(clients[n]) for n in "acef"}) == 4
    assert clients["e"].proxy_label == "http://127.0.0.1:3128" and clients["a"].proxy_label == "environment"
    assert all(c.timeout.read == 7.0 and not c.follow_redirects for c in clients.clients)
    await clients.aclose()
    await clients.aclose()  # twice is fine
    assert all(c.is_closed for c in clients.clients)


def _unclosed_reports(caplog) -> int:
    gc.collect()
    return sum("Unclosed client session" in r.getMessage() for r in caplog.records)


@pytest.fixture
def unclosed(caplog):
    """Counts aiohttp's "Unclosed client session" reports from here on (garbage of earlier tests is
    collected first, so it cannot be counted here)."""
    gc.collect()
    caplog.set_level(logging.ERROR, logger="asyncio")
    caplog.clear()
    return lambda: _unclosed_reports(caplog)


@pytest.mark.parametrize("from_a_running_loop", [False, True])
def test_close_client_without_loop_after_its_loop_is_gone(clean_env, fresh_sim, unclosed, from_a_running_loop):
    """A client whose loop closed without closing it: closing it with public API only silences
    aiohttp's "Unclosed client session" report (the control client, left alone, still reports)."""
    spec = sim_spec(fresh_sim.base_url("sim-openai"))
    loop = asyncio.new_event_loop()
    closed, control = make_client(timeout=5.0), make_client(timeout=5.0)
    for client in (closed, control):
        assert loop.run_until_complete(ask(spec, client)).text
    del client
    loop.close()
    if from_a_running_loop:

        async def inside(client=closed) -> None:
            close_client_without_loop(client)

        asyncio.run(inside())
    else:
        close_client_without_loop(closed)
    assert closed.is_closed and not control.is_closed
    del closed, loop  # the closed loop's timers hold the sessions too
    assert unclosed() == 0
    del control
    assert unclosed() == 1


def test_client_set_closes_without_loop(fresh_sim, unclosed):
    spec = sim_spec(fresh_sim.base_url("sim-openai"))
    loop = asyncio.new_event_loop()
    clients = loop.run_until_complete(_open_and_use(spec))
    loop.close()
    clients.close_without_loop()
    assert all(c.is_closed for c in clients.clients)
    del clients, loop
    assert unclosed() == 0


async def _open_and_use(spec: ProviderSpec) -> ClientSet:
    clients = make_clients([spec, spec.__class__("other", "m", base_url=spec.base_url, verify=False)])
    for name in clients:
        assert (await ask(spec, clients[name])).text
    return clients


def test_environment_is_read_when_a_client_is_made(clean_env, proxy, fresh_sim):
    """As with httpx: a client made before HTTP_PROXY was set keeps going direct; the next one uses it."""
    spec = sim_spec(fresh_sim.base_url("sim-openai"))
    before = make_client(timeout=5.0)
    clean_env.setenv("HTTP_PROXY", proxy.url)
    after = make_client(timeout=5.0)

    async def both() -> None:
        try:
            await ask(spec, before)
            assert proxy.seen == 0
            await ask(spec, after)
            assert proxy.seen == 1
        finally:
            await before.aclose()
            await after.aclose()

    asyncio.run(both())
    assert os.environ["HTTP_PROXY"] == proxy.url
