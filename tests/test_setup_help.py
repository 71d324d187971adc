"""Setup help in the notebook: ``%llm providers`` (what is configured, whether each key is there —
never the key), the ``%env`` line a missing key's error names, and ``%llm explain`` (the last
error's traceback, never variables' values or keys, sent to the routed provider and recorded)."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ipython_fixtures import bind, magics, ok, router, run, shell, sim, usage_error  # noqa: F401

from llmroute_magic import ModelClientRouter, ProviderRoutingConfig, ProviderSpec
from llmroute_magic._ipython import explain

CANARY = "sk-canary-" + os.urandom(12).hex()
CANARY_ENV = "canary-env-" + os.urandom(12).hex()  # not shaped like a key: only its variable's name gives it away
CANARY_SPEC = "spec-canary-" + os.urandom(12).hex()


def assert_clean(*texts: str) -> None:
    for text in texts:
        for canary in (CANARY, CANARY_ENV, CANARY_SPEC):
            assert canary not in text and canary[-12:] not in text


class Recorder(ThreadingHTTPServer):
    """An OpenAI-compatible server that keeps every request body it gets and answers "Explained."."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.server.bodies.append(body)
        if body.get("stream"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"content": "Explained."}}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 2}},
            ]
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._send(data.encode(), "text/event-stream")
        else:
            out = {
                "id": "c1",
                "object": "chat.completion",
                "model": body.get("model", "m"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "Explained."}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 2},
            }
            self._send(json.dumps(out).encode(), "application/json")

    def _send(self, data: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


def forget_last_error() -> None:
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


# -- %llm providers ------------------------------------------------------------------------------


def test_providers_shows_api_model_host_key_state_price_source_and_never_a_key(shell, sim, magics, monkeypatch):
    monkeypatch.setenv("LOCALISH_API_KEY", CANARY_ENV)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    url = sim.base_url("sim-openai")
    specs = [
        ProviderSpec("openai", "gpt-4o-mini", base_url="https://user:pw@proxy.example:8443/v1"),  # key from the env
        ProviderSpec("groq", "llama-3.1-8b-instant"),  # no key anywhere
        ProviderSpec(
            "keyed", "m", base_url="https://api.example.com/v1", api_key=CANARY_SPEC, input_price=1, output_price=2
        ),
        ProviderSpec("localish", "house-model", base_url=url),  # loopback: no key needed, no price known
    ]
    r = ModelClientRouter(ProviderRoutingConfig(specs))
    restore = bind(shell, r)
    try:
        r.disable("localish")
        out = ok(shell, "%llm providers")
    finally:
        restore()
        r.close()
    text = out.stdout + out.stderr
    assert_clean(text)
    lines = {x.split()[0]: x for x in out.stdout.splitlines() if x and not x.startswith("name")}
    assert "openai" in lines["openai"] and "proxy.example:8443" in lines["openai"]
    assert "user" not in lines["openai"] and "pw" not in lines["openai"].split()  # the host only
    assert "OPENAI_API_KEY set" in lines["openai"] and "genai-prices" in lines["openai"]
    assert "GROQ_API_KEY missing" in lines["groq"] and "api.groq.com" in lines["groq"]
    assert "given in the config" in lines["keyed"] and "$1.0000 / $2.0000" in lines["keyed"]
    assert "spec" in lines["keyed"]
    assert "LOCALISH_API_KEY set" in lines["localish"] and "unknown" in lines["localish"]
    assert "disabled" in lines["localish"] and "enabled" in lines["openai"]
    assert "%env GROQ_API_KEY=..." in out.stdout
    assert "unknown price" in out.stdout


def test_providers_counts_a_key_set_under_the_official_sdk_s_name(shell, magics, monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_API_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    specs = [
        ProviderSpec("gemini", "gemini-2.0-flash"),
        ProviderSpec("azure", "prod-chat", api="azure", base_url="https://res.openai.azure.com"),
    ]
    r = ModelClientRouter(ProviderRoutingConfig(specs))
    restore = bind(shell, r)
    try:
        before = ok(shell, "%llm providers").stdout
        monkeypatch.setenv("GOOGLE_API_KEY", CANARY)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", CANARY + "x")
        after = ok(shell, "%llm providers").stdout
    finally:
        restore()
        r.close()
    assert_clean(before + after)
    assert "GEMINI_API_KEY or GOOGLE_API_KEY missing" in before
    assert "AZURE_API_KEY or AZURE_OPENAI_API_KEY missing" in before
    assert "GOOGLE_API_KEY set" in after and "AZURE_OPENAI_API_KEY set" in after
    # a deployment name is priced by the model each answer names: not "unknown"
    azure_row = next(x for x in after.splitlines() if x.startswith("azure "))
    assert "answer's model" in azure_row and "unknown" not in azure_row and "unknown price" not in after
    assert "missing" not in after.split("name", 1)[1].split("\n\n", 1)[0]


def test_a_missing_keys_error_names_the_env_line_to_run(shell, magics, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    r = ModelClientRouter(
        ProviderRoutingConfig(
            [ProviderSpec("openai", "gpt-4o-mini"), ProviderSpec("anthropic", "claude-3-5-haiku-latest")]
        )
    )
    restore = bind(shell, r)
    try:
        message = usage_error(shell, "%%llm\nhello")
        assert len(r.usage_df()) == 2 and set(r.usage_df()["error_type"]) == {"missing_api_key"}
    finally:
        restore()
        r.close()
    assert "%env OPENAI_API_KEY=..." in message and "%env ANTHROPIC_API_KEY=..." in message
    assert "run the cell again" in message


# -- %llm explain ----------------------------------------------------------------------------------


def test_explain_with_no_previous_error_says_so_and_sends_nothing(shell, router):
    forget_last_error()
    out = ok(shell, "%llm explain")
    assert "no error to explain" in out.stdout
    assert len(router.usage_df()) == 0


def test_explain_sends_the_traceback_without_values_or_keys_and_records_it(shell, magics, recorder, monkeypatch):
    monkeypatch.setenv("SERVICE_TOKEN", CANARY_ENV)
    spec = ProviderSpec(
        "helper", "helper-model", base_url=recorder.url, api_key=CANARY_SPEC, input_price=1, output_price=1
    )
    r = ModelClientRouter(ProviderRoutingConfig([spec]))
    restore = bind(shell, r)
    try:
        shell.user_ns["secret_value"] = "value-" + CANARY[-12:]
        source = (
            "def load(rows):\n"
            "    total = len(secret_value) + len(rows)\n"
            f"    raise KeyError('column missing; token was {CANARY_ENV} and key {CANARY}')\n"
            "load([1, 2, 3])\n"
        )
        result, _ = run(shell, source)
        assert isinstance(result.error_in_exec, KeyError)
        out = ok(shell, "%llm explain")
        rows = r.usage_df()
    finally:
        restore()
        r.close()
    (body,) = recorder.bodies
    sent = json.dumps(body)
    assert_clean(sent, out.stdout, out.stderr)
    user = body["messages"][-1]["content"]
    assert "KeyError" in user and "load([1, 2, 3])" in user
    assert "raise KeyError(" in user and user.count('File "') == 2  # the cell's frame and load's, as Python prints them
    assert "interactiveshell.py" not in user  # IPython's own frames left out
    assert explain.SYSTEM == body["messages"][0]["content"]
    assert "Explained." in out.stdout and "explained: KeyError" in out.stdout
    assert len(rows) == 1 and rows["status"].iloc[0] == "ok"  # recorded like any request
    shell.user_ns.pop("secret_value", None)


def test_explain_takes_a_provider_and_a_model(shell, router):
    run(shell, "1/0")
    ok(shell, "%llm explain -p sim-local -m explainer --no-stream")
    df = router.usage_df()
    assert list(df["provider"]) == ["sim-local"] and list(df["model"]) == ["explainer"]
    assert not bool(df["streamed"].iloc[0])
    assert "unrecognized arguments" in usage_error(shell, "%llm explain --frob")


def test_error_text_leaves_out_the_values_of_variables():
    def load(rows, payload):
        raise RuntimeError("bottom")

    value = "PAY" + "LOAD-" + "x" * 50
    try:
        load([1, 2], value)
    except RuntimeError as e:
        text = explain.error_text(e)
    assert "PAYLOAD" not in text and "load([1, 2], value)" in text  # the line as written, not what it held
    assert text.rstrip().endswith("RuntimeError: bottom")


def test_a_long_traceback_keeps_its_end():
    try:
        raise ValueError("start " + "y" * 20_000 + " end")
    except ValueError as e:
        text = explain.error_text(e)
    assert len(text) <= explain.MAX_CHARS + 100 and text.startswith("… (start of the traceback left out)")
    assert text.rstrip().endswith(" end")


def test_mask_secrets_masks_env_values_given_keys_and_key_shapes():
    env = {"MY_API_KEY": "abcdefgh12345678", "HOME": "/root", "DB_PASSWORD": "hunter2hunter2"}
    text = (
        "key abcdefgh12345678 home /root pw hunter2hunter2 openai sk-proj-abcdefghijklmnopqrstu "
        "bearer Bearer abcdefghijklmnopqrstuvwxyz given given-key-123456"
    )
    masked = explain.mask_secrets(text, explain.secret_values(env, extra=["given-key-123456", "short"]))
    for gone in (
        "abcdefgh12345678",
        "hunter2hunter2",
        "sk-proj-abcdefghijklmnopqrstu",
        "abcdefghijklmnopqrstuvwxyz",
        "given-key-123456",
    ):
        assert gone not in masked
    assert "/root" in masked  # not a secret's name


def test_a_failed_explain_leaves_the_original_error_to_explain(shell, router, sim):
    run(shell, "int('not a number')")
    for name in ("sim-openai", "sim-anthropic", "sim-local"):
        sim.inject(name, ["unauthorized"])
    assert "request failed" in usage_error(shell, "%llm explain")  # now IPython's last error is this one
    _, out = run(shell, "%llm explain")
    assert "explaining ValueError: invalid literal for int()" in out.stderr
    assert list(router.usage_df()["status"])[-1] == "ok"
