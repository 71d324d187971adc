"""API keys are secrets: a canary key is looked for everywhere a user (or a log collector, or a
shared notebook) could see it, and on the wire: it must reach only its own provider, over TLS
that is verified."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import ssl
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import simulator_fixture

from llmroute_magic import AllProvidersFailed, LLMRouteError, ModelClientRouter, ProviderRoutingConfig, ProviderSpec
from llmroute_magic.sim import ProviderProfile

CANARY = "sk-canary-" + os.urandom(12).hex()
CANARY_B = "sk-canary-b-" + os.urandom(12).hex()
CANARY_ENV = "sk-canary-env-" + os.urandom(12).hex()


def assert_clean(*texts) -> None:
    for text in texts:
        text = text if isinstance(text, str) else repr(text)
        for canary in (CANARY, CANARY_B, CANARY_ENV):
            assert canary not in text
            assert canary[10:] not in text  # not even the tail of it


# -- a provider that shows us exactly what it received ------------------------------------------


class Recorder(ThreadingHTTPServer):
    """Answers like an OpenAI or Anthropic server; remembers every request's headers.

    Behaviour by path: ``/redirect/...`` answers 307 to ``redirect_to``; ``/echo/...`` answers a 400
    whose message repeats the headers it got (a careless server); anything else a normal answer.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.redirect_to = ""
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path.startswith("/redirect"):
            return self._send(307, b"", {"location": self.server.redirect_to + self.path[len("/redirect") :]})
        if self.path.startswith("/echo"):
            echoed = json.dumps(dict(self.headers.items()))
            return self._send(
                400,
                json.dumps(
                    {"error": {"message": f"bad request, you sent {echoed}", "type": "invalid_request_error"}}
                ).encode(),
            )
        if self.path.endswith("/messages"):
            out = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 1},
            }
        else:
            out = {
                "id": "c1",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        assert json.loads(body)["messages"]
        self._send(200, json.dumps(out).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def servers():
    a, b = Recorder(), Recorder()
    yield a, b
    a.shutdown(), b.shutdown()
    a.server_close(), b.server_close()


def key_headers(headers: dict[str, str]) -> str:
    return " ".join(v for k, v in headers.items() if k in ("authorization", "x-api-key"))


def test_each_key_goes_only_to_its_own_provider(servers, monkeypatch):
    a, b = servers
    monkeypatch.setenv("ENVPROV_API_KEY", CANARY_ENV)
    specs = [
        ProviderSpec(
            "prov-a", "m", api="openai", base_url=a.url + "/v1", api_key=CANARY, input_price=0, output_price=0
        ),
        ProviderSpec("prov-b", "m", api="anthropic", base_url=b.url, api_key=CANARY_B, input_price=0, output_price=0),
        ProviderSpec("envprov", "m", api="openai", base_url=b.url + "/env/v1", input_price=0, output_price=0),
    ]
    with ModelClientRouter(ProviderRoutingConfig(specs, strategy="round_robin")) as r:
        for _ in range(2):
            for name in ("prov-a", "prov-b", "envprov"):
                assert r.complete("hi", provider=name).text == "hello"
    assert a.seen and b.seen
    for _, h in a.seen:
        assert key_headers(h) == f"Bearer {CANARY}"
    for path, h in b.seen:
        if path.startswith("/env/"):
            assert key_headers(h) == f"Bearer {CANARY_ENV}"
        else:
            assert h["x-api-key"] == CANARY_B and "authorization" not in h  # Anthropic's header only
    for _, h in a.seen + b.seen:  # never in any other header, nor in the URL
        others = " ".join(v for k, v in h.items() if k not in ("authorization", "x-api-key"))
        assert_clean(others)
    assert_clean(*(p for p, _ in a.seen + b.seen))


def test_a_redirect_never_carries_the_key_to_another_host(servers):
    a, b = servers
    a.redirect_to = b.url
    spec = ProviderSpec("prov-a", "m", api="openai", base_url=a.url + "/redirect/v1", api_key=CANARY)
    with ModelClientRouter(ProviderRoutingConfig([spec], max_retries=0)) as r:
        with pytest.raises(LLMRouteError) as info:
            r.complete("hi")
    assert b.seen == []  # not followed at all: the base_url is wrong, and the error says so
    assert "307" in str(info.value)
    assert_clean(str(info.value))


def test_a_server_that_echoes_the_key_does_not_get_it_shown(servers):
    a, _ = servers
    spec = ProviderSpec("prov-a", "m", api="openai", base_url=a.url + "/echo/v1", api_key=CANARY)
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:
        with pytest.raises(LLMRouteError) as info:
            r.complete("hi")
        df = r.usage_df()
    err = info.value
    assert "Bearer" in str(err)  # the echo is there ...
    assert_clean(str(err), repr(err), err.message, getattr(err, "attempts", ""), df.to_csv())  # ... the key is not


# -- nowhere a user can see it --------------------------------------------------------------------


sim = simulator_fixture(
    [
        ProviderProfile("keyed", require_api_key=CANARY_B, input_price=1, output_price=2),
        ProviderProfile("keyed-a", api="anthropic", require_api_key=CANARY_B, input_price=1, output_price=2),
        ProviderProfile("open", input_price=1, output_price=2),
    ]
)


def canary_router(sim, **cfg) -> ModelClientRouter:
    """Every provider carries the canary; the keyed ones expect another key, so they answer 401."""
    specs = [s.with_api_key(CANARY) for s in sim.provider_specs()]
    return ModelClientRouter(ProviderRoutingConfig(specs, strategy="priority", **cfg))


def test_the_key_is_in_no_repr_error_warning_log_frame_export_or_plot(sim, tmp_path, caplog):
    import matplotlib

    matplotlib.use("Agg")
    from llmroute_magic._plots import PLOT_KINDS

    caplog.set_level(logging.DEBUG)  # every logger, every level: httpx, aiohttp, asyncio, ours
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = canary_router(sim, ledger_path=tmp_path / "usage.sqlite")
        with r:
            seen += [
                repr(r),
                str(r),
                repr(r.config),
                str(r.config.to_dict()),
                repr(r.providers),
                str([p.to_dict() for p in r.providers]),
                repr(r.providers[0].api_key),
                str(r.providers[0].api_key),
            ]
            c = r.complete("hi")  # keyed (401) -> keyed-a (401) -> open
            seen += [repr(c), str(c), c.footer(), c._repr_markdown_(), str(c.to_dict())]
            for name in ("keyed", "keyed-a"):
                for call in (
                    lambda name=name: r.complete("hi", provider=name),
                    lambda name=name: "".join(r.stream("hi", provider=name)),
                ):
                    with pytest.raises(AllProvidersFailed) as info:
                        call()
                    e = info.value
                    seen += [str(e), repr(e), e.hint] + [str(a) + repr(a) + a.message for a in e.attempts]
            s = r.stream("story", provider="open", max_tokens=16)
            seen.append("".join(s))
            df = r.usage_df()
            stats = r.get_usage_stats()
            seen += [df.to_string(), df.to_csv(), df.to_json(), stats.by_provider.to_csv(), repr(stats)]
            df.to_csv(tmp_path / "u.csv")
            df.to_parquet(tmp_path / "u.parquet")
            seen += [(tmp_path / "u.csv").read_text(), (tmp_path / "u.parquet").read_bytes().decode("latin-1")]
            cmp = r.compare("hi", max_tokens=4)
            seen.append(cmp.to_csv())
            for kind in PLOT_KINDS:
                buf = io.StringIO()
                fig = r.plot(kind)
                fig.savefig(buf, format="svg")
                seen.append(buf.getvalue())
                import matplotlib.pyplot as plt

                plt.close(fig)
        seen.append((tmp_path / "usage.sqlite").read_bytes().decode("latin-1"))
    seen += [str(w.message) for w in caught]
    seen += [rec.getMessage() + str(rec.args) + str(rec.exc_text) for rec in caplog.records]
    assert len(df) == 8 and (df["error_type"] == "authentication").sum() == 6  # the 401s did happen
    assert_clean(*seen)


def test_the_key_is_in_no_widget_state(sim):
    pytest.importorskip("ipywidgets")
    from llmroute_magic._ipython.widgets import RouterPanel

    with canary_router(sim) as r:
        r.complete("hi")
        panel = RouterPanel(r, show_plot=True)
        try:
            panel.refresh() if hasattr(panel, "refresh") else None
            states, todo = [], [panel]
            while todo:
                wdg = todo.pop()
                states.append(json.dumps(wdg.get_state(), default=repr))
                todo += [c for c in getattr(wdg, "children", ())]
                todo += [v for v in vars(wdg).values() if hasattr(v, "get_state") and v not in todo]
        finally:
            panel.close()
    assert len(states) > 5
    assert_clean(*states)


def test_the_key_is_in_no_notebook_output(sim):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    with capture_output():
        ip.run_line_magic("load_ext", "llmroute_magic")
    before = ip.user_ns.get("llm")
    outputs = []
    with canary_router(sim) as r:
        ip.user_ns["llm"] = r
        try:
            for cell in (
                "%llm status",
                "%llm providers",
                "%llm stats",
                "%llm usage",
                "%%llm\nhello there",
                "%%llm -p keyed\nhello",
                "%%llm --compare\nhello",
                "%%llm -p keyed-a --no-stream\nhi",
            ):
                with capture_output() as out:
                    result = ip.run_cell(cell)
                outputs += [out.stdout, out.stderr, repr(result.result), str(result.error_in_exec)]
                outputs += [
                    json.dumps(o.data, default=repr) + json.dumps(o.metadata, default=repr) for o in out.outputs
                ]
        finally:
            ip.user_ns["llm"] = before
    assert any("authentication" in o for o in outputs)  # the failing cells did fail
    assert_clean(*outputs)


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_verification_is_on_for_remote_providers():
    spec = ProviderSpec("openai", "gpt-4o-mini", api_key=CANARY)  # https://api.openai.com/v1: never called
    with ModelClientRouter(ProviderRoutingConfig([spec])) as r:

        async def client_of_this_loop():
            r._clients.adapters()
            return r._clients.client_for(asyncio.get_running_loop())

        client = asyncio.run(client_of_this_loop())
        ctx = client.ssl_context  # what the client verifies servers with
        assert isinstance(ctx, ssl.SSLContext)
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert not client.follow_redirects
