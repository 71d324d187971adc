"""Adapters over real loopback sockets.

Two servers: ``ScriptedServer`` (a raw asyncio HTTP/1.1 server in the test's own loop, answering
each request with bytes the test wrote by hand, and recording the request it saw), and the
project's simulator (ground truth for text, tokens and cost).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import helpers
import pytest
from helpers import WEATHER

from llmroute_magic._config import ProviderRoutingConfig
from llmroute_magic._errors import ProviderError
from llmroute_magic._http import make_client
from llmroute_magic._providers import ChatRequest, ProviderResult, adapter_for
from llmroute_magic._providers._failures import AttemptContext
from llmroute_magic._providers._sse import ServerSentEvent, SSEDecoder
from llmroute_magic._providers.anthropic import SCHEMA_TOOL, AnthropicAdapter
from llmroute_magic._providers.openai import OpenAIAdapter
from llmroute_magic._request import build_request
from llmroute_magic._types import ProviderSpec, ToolCall

CANARY = "sk-canary-XYZ"


# -- a hand-scripted HTTP server --------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    """One scripted answer: bytes to write (with pauses), then keep the connection or drop it."""

    pieces: list[bytes | float] = field(default_factory=list)  # a float is a pause in seconds
    close: bool = False
    hang: bool = False


def http_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    head = http_head(status, {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})})
    return Reply([head + body])


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def sse_reply(events: list[str], *, finish: bool = True, pause: float = 0.0) -> Reply:
    """``events`` are raw SSE event texts (without the blank line). ``finish=False`` drops the
    connection after them without ending the chunked body."""
    pieces: list[bytes | float] = [
        http_head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
    ]
    for text in events:
        pieces.append(chunk((text + "\n\n").encode()))
        if pause:
            pieces.append(pause)
    if finish:
        pieces.append(b"0\r\n\r\n")
    return Reply(pieces, close=not finish)


class ScriptedServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self.open_connections = 0
        self.disconnected = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append(Seen(path, headers, json.loads(body) if body else None))
                reply = self.replies.pop(0)
                if reply.hang:
                    await reader.read()  # until the client gives up
                    return
                for piece in reply.pieces:
                    if isinstance(piece, float):
                        await writer.drain()
                        await asyncio.sleep(piece)
                    else:
                        writer.write(piece)
                await writer.drain()
                if reply.close:
                    writer.transport.abort()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            self.disconnected.set()
            writer.close()


@pytest.fixture
async def server():
    s = ScriptedServer()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def client():
    c = make_client(timeout=10.0)
    yield c
    await c.aclose()


def openai_spec(url: str, **kw: Any) -> ProviderSpec:
    return ProviderSpec("p-openai", "gpt-test", api="openai", base_url=f"{url}/v1", **kw)


def anthropic_spec(url: str, **kw: Any) -> ProviderSpec:
    return ProviderSpec("p-anthropic", "claude-test", api="anthropic", base_url=url, **kw)


async def collect(adapter, request: ChatRequest) -> tuple[list[str], ProviderResult]:
    deltas: list[str] = []
    final = None
    async for item in adapter.stream(request):
        if isinstance(item, str):
            assert final is None, "text after the final result"
            deltas.append(item)
        else:
            assert final is None, "two final results"
            final = item
    assert isinstance(final, ProviderResult)
    return deltas, final


HELLO = ChatRequest(messages=[{"role": "user", "content": "Hello"}])

OPENAI_OK = {
    "id": "c1",
    "object": "chat.completion",
    "model": "gpt-test-2024",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 2,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}
ANTHROPIC_OK = {
    "id": "m1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test-1",
    "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 9, "output_tokens": 2, "cache_read_input_tokens": 3},
}


def openai_chunks(words: list[str], usage: bool = True, done: bool = True) -> list[str]:
    events = [
        f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': w}, 'finish_reason': None}]})}"
        for w in words
    ]
    events.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}')
    if usage:
        events.append('data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":%d}}' % len(words))  # noqa: UP031
    if done:
        events.append("data: [DONE]")
    return events


def anthropic_events(words: list[str], stop: bool = True) -> list[str]:
    def ev(name: str, payload: dict) -> str:
        return f"event: {name}\ndata: {json.dumps(payload)}"

    events = [
        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {"model": "claude-test-1", "usage": {"input_tokens": 7, "output_tokens": 1}},
            },
        ),
        ev(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ev("ping", {"type": "ping"}),
    ]
    events += [
        ev(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
        )
        for w in words
    ]
    events += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": len(words)}},
        ),
    ]
    if stop:
        events.append(ev("message_stop", {"type": "message_stop"}))
    return events


# -- request building -------------------------------------------------------------------------


def test_openai_body_and_headers():
    spec = openai_spec("https://api.example.invalid", api_key=CANARY)
    adapter = OpenAIAdapter(spec, client=None)  # building needs no client
    req = ChatRequest(
        messages=[{"role": "user", "content": "Q"}],
        system="Be brief",
        max_tokens=5,
        temperature=0.2,
        params={"top_p": 0.9, "stream_options": {"x": 1}},
    )
    body = adapter.build_body(req, stream=False)
    assert body == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Q"}],
        "max_tokens": 5,
        "temperature": 0.2,
        "top_p": 0.9,
        "stream_options": {"x": 1},
    }
    streamed = adapter.build_body(req, stream=True)
    assert streamed["stream"] is True and streamed["stream_options"] == {"x": 1, "include_usage": True}
    bare = adapter.build_body(ChatRequest(messages=[{"role": "user", "content": "Q"}]), stream=False)
    assert bare == {"model": "gpt-test", "messages": [{"role": "user", "content": "Q"}]}
    assert adapter.headers_for(CANARY)["authorization"] == f"Bearer {CANARY}"
    assert "authorization" not in adapter.headers_for(None)
    assert CANARY not in repr(adapter) and CANARY not in repr(vars(adapter))


def test_openai_itself_gets_max_completion_tokens_compatible_servers_max_tokens():
    req = ChatRequest(messages=[{"role": "user", "content": "Q"}], max_tokens=7)
    official = OpenAIAdapter(ProviderSpec("openai", "o3-mini", api_key=CANARY), client=None)
    assert official.build_body(req, stream=False)["max_completion_tokens"] == 7
    assert "max_tokens" not in official.build_body(req, stream=False)
    local = OpenAIAdapter(ProviderSpec("vllm", "llama-3.1-8b"), client=None)
    assert local.build_body(req, stream=False)["max_tokens"] == 7
    explicit = ChatRequest(messages=[{"role": "user", "content": "Q"}], max_tokens=7, params={"max_tokens": 9})
    assert official.build_body(explicit, stream=False)["max_tokens"] == 9  # the caller's spelling wins
    assert "max_completion_tokens" not in official.build_body(explicit, stream=False)


def test_anthropic_body_moves_system_messages_and_defaults_max_tokens():
    adapter = AnthropicAdapter(anthropic_spec("https://api.example.invalid"), client=None)
    req = ChatRequest(
        messages=[{"role": "system", "content": "Rule 2"}, {"role": "user", "content": "Q"}],
        system="Rule 1",
        temperature=0.0,
        params={"top_k": 3},
    )
    body = adapter.build_body(req, stream=True)
    assert body == {
        "model": "claude-test",
        "messages": [{"role": "user", "content": "Q"}],
        "system": "Rule 1\n\nRule 2",
        "max_tokens": 1024,
        "temperature": 0.0,
        "top_k": 3,
        "stream": True,
    }
    assert adapter.build_body(ChatRequest(messages=[], max_tokens=7), stream=False) == {
        "model": "claude-test",
        "messages": [],
        "max_tokens": 7,
    }
    headers = adapter.headers_for(CANARY)
    assert headers["x-api-key"] == CANARY and headers["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in adapter.headers_for(None)


def test_adapter_for_picks_the_wire_format():
    assert adapter_for("openai") is OpenAIAdapter and adapter_for("anthropic") is AnthropicAdapter


# -- SSE parsing ------------------------------------------------------------------------------


def test_sse_decoder_handles_any_chunking_and_line_ending():
    text = "event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: keep-alive\n\ndata:x\rdata: é\r\rdata: [DONE]\n\n"
    raw = text.encode()
    expected = [ServerSentEvent("a", "1\n2"), ServerSentEvent("message", "x\né"), ServerSentEvent("message", "[DONE]")]
    for size in (1, 2, 3, 5, 7, len(raw)):
        decoder = SSEDecoder()
        out = []
        for i in range(0, len(raw), size):
            out += decoder.feed(raw[i : i + size])
        out += decoder.close()
        assert out == expected, size


def test_sse_decoder_drops_an_unfinished_line_at_the_end():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": 1}\n\ndata: {"cut') == [ServerSentEvent("message", '{"a": 1}')]
    assert decoder.close() == []
    decoder = SSEDecoder()
    decoder.feed(b"data: [DONE]\n")  # no closing blank line: still delivered at the end
    assert decoder.close() == [ServerSentEvent("message", "[DONE]")]


async def test_sse_over_httpx_keeps_unicode_line_separators_inside_data():
    """U+2028 inside a JSON string is not a line end for SSE (httpx's aiter_lines would split there)."""
    import httpx

    from llmroute_magic._providers._sse import iter_sse

    text = 'data: {"t": "a\u2028b\u0085c"}\n\ndata: [DONE]\n'
    response = httpx.Response(200, content=text.encode())
    events = [e async for e in iter_sse(response.aiter_bytes())]
    assert [json.loads(e.data)["t"] for e in events[:1]] == ["a\u2028b\u0085c"]
    assert events[1] == ServerSentEvent("message", "[DONE]")


# -- plain and streamed answers over a socket -------------------------------------------------


async def test_openai_complete_parses_answer_and_sends_key(server, client):
    server.replies.append(json_reply(200, OPENAI_OK))
    adapter = OpenAIAdapter(openai_spec(server.url, api_key=CANARY), client)
    req = ChatRequest(messages=[{"role": "user", "content": "Hello"}], system="S", max_tokens=3)
    result = await adapter.complete(req)
    assert result == ProviderResult(
        text="Hi there",
        model="gpt-test-2024",
        input_tokens=9,
        output_tokens=2,
        cache_read_tokens=4,
        finish_reason="stop",
        http_status=200,
    )
    seen = server.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {CANARY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body["messages"][0] == {"role": "system", "content": "S"} and seen.body["max_tokens"] == 3


async def test_anthropic_complete_parses_answer_and_sends_key(server, client):
    server.replies.append(json_reply(200, ANTHROPIC_OK))
    adapter = AnthropicAdapter(anthropic_spec(server.url, api_key=CANARY), client)
    result = await adapter.complete(HELLO)
    assert (
        result.text,
        result.input_tokens,
        result.output_tokens,
        result.cache_read_tokens,
        result.finish_reason,
        result.model,
    ) == ("Hi there", 12, 2, 3, "end_turn", "claude-test-1")
    # Anthropic's input_tokens (9) leaves out the 3 cache reads; the result counts all 12, as OpenAI does
    seen = server.seen[0]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == CANARY and seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body["max_tokens"] == 1024


async def test_local_server_needs_no_key_and_gets_no_auth_header(server, client, monkeypatch):
    monkeypatch.delenv("P_OPENAI_API_KEY", raising=False)
    server.replies.append(json_reply(200, OPENAI_OK))
    await OpenAIAdapter(openai_spec(server.url), client).complete(HELLO)
    assert "authorization" not in server.seen[0].headers


async def test_key_from_environment_is_read_per_call(server, client, monkeypatch):
    adapter = OpenAIAdapter(openai_spec(server.url), client)
    server.replies += [json_reply(200, OPENAI_OK), json_reply(200, OPENAI_OK)]
    monkeypatch.setenv("P_OPENAI_API_KEY", "sk-first")
    await adapter.complete(HELLO)
    monkeypatch.setenv("P_OPENAI_API_KEY", "sk-second")
    await adapter.complete(HELLO)
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer sk-first", "Bearer sk-second"]


async def test_openai_stream_yields_text_then_one_result(server, client):
    server.replies.append(sse_reply(openai_chunks(["Hel", "lo", " you"]), pause=0.01))
    adapter = OpenAIAdapter(openai_spec(server.url), client)
    deltas, result = await collect(adapter, HELLO)
    assert deltas == ["Hel", "lo", " you"]
    assert (result.text, result.input_tokens, result.output_tokens, result.finish_reason) == (
        "Hello you",
        7,
        3,
        "length",
    )
    assert 0 < result.ttft_s < 1.0
    assert server.seen[0].body["stream"] is True
    assert server.seen[0].body["stream_options"] == {"include_usage": True}


async def test_anthropic_stream_yields_text_then_one_result(server, client):
    server.replies.append(sse_reply(anthropic_events(["Hel", "lo"])))
    deltas, result = await collect(AnthropicAdapter(anthropic_spec(server.url), client), HELLO)
    assert deltas == ["Hel", "lo"]
    assert (result.text, result.input_tokens, result.output_tokens, result.finish_reason, result.model) == (
        "Hello",
        7,
        2,
        "max_tokens",
        "claude-test-1",
    )
    assert result.ttft_s is not None


ANTHROPIC_CACHED_USAGE = {
    "input_tokens": 20,
    "output_tokens": 4,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 300,
}


async def test_anthropic_reports_cache_reads_and_writes_apart(server, client):
    """input_tokens counts every prompt token (20 + 1000 read + 300 written); reads and writes are
    reported apart, each priced at its own rate."""
    server.replies.append(json_reply(200, {**ANTHROPIC_OK, "usage": ANTHROPIC_CACHED_USAGE}))
    result = await AnthropicAdapter(anthropic_spec(server.url), client).complete(HELLO)
    assert (result.input_tokens, result.output_tokens, result.cache_read_tokens, result.cache_write_tokens) == (
        1320,
        4,
        1000,
        300,
    )


async def test_anthropic_stream_reports_cache_reads_and_writes_apart(server, client):
    events = anthropic_events(["Hi"])
    start = json.loads(events[0].split("data: ", 1)[1])
    start["message"]["usage"] = {**ANTHROPIC_CACHED_USAGE, "output_tokens": 1}
    events[0] = f"event: message_start\ndata: {json.dumps(start)}"
    server.replies.append(sse_reply(events))
    _, result = await collect(AnthropicAdapter(anthropic_spec(server.url), client), HELLO)
    assert (result.input_tokens, result.output_tokens, result.cache_read_tokens, result.cache_write_tokens) == (
        1320,
        1,
        1000,
        300,
    )


async def test_a_cancelled_anthropic_stream_keeps_its_cache_shares_in_the_context(server, client):
    """Cancelled after the first text: the context holds what message_start reported (all prompt
    tokens and the cache read/write shares), which is what the cancelled attempt is billed from."""
    events = anthropic_events([f"w{i} " for i in range(20)])
    start = json.loads(events[0].split("data: ", 1)[1])
    start["message"]["usage"] = {**ANTHROPIC_CACHED_USAGE, "output_tokens": 1}
    events[0] = f"event: message_start\ndata: {json.dumps(start)}"
    server.replies.append(sse_reply(events, pause=0.05))
    spec = anthropic_spec(server.url)
    ctx = AttemptContext(spec.name, spec.model)
    await helpers.cancel_after_first_item(AnthropicAdapter(spec, client).stream(HELLO, ctx))
    assert (ctx.input_tokens, ctx.output_tokens, ctx.cache_read_tokens, ctx.cache_write_tokens) == (1320, 1, 1000, 300)


async def test_openai_answer_without_usage_has_unknown_tokens(server, client):
    body = {k: v for k, v in OPENAI_OK.items() if k != "usage"}
    server.replies += [json_reply(200, body), sse_reply(openai_chunks(["a", "b"], usage=False))]
    adapter = OpenAIAdapter(openai_spec(server.url), client)
    plain = await adapter.complete(HELLO)
    _, streamed = await collect(adapter, HELLO)
    assert (plain.text, plain.input_tokens, plain.output_tokens) == ("Hi there", None, None)
    assert (streamed.text, streamed.input_tokens, streamed.output_tokens) == ("ab", None, None)


async def test_openai_usage_of_zero_stays_zero(server, client):
    body = {**OPENAI_OK, "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    server.replies.append(json_reply(200, body))
    result = await OpenAIAdapter(openai_spec(server.url), client).complete(HELLO)
    assert (result.input_tokens, result.output_tokens) == (0, 0)


# -- failures over a socket -------------------------------------------------------------------


async def test_missing_key_fails_before_any_network(client, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = ProviderSpec("openai", "gpt-4o", base_url="https://api.example.invalid/v1")
    adapter = OpenAIAdapter(spec, client)
    with pytest.raises(ProviderError) as info:
        await adapter.complete(HELLO)
    assert info.value.error_type == "missing_api_key" and "OPENAI_API_KEY" in str(info.value)
    with pytest.raises(ProviderError) as info:
        await collect(adapter, HELLO)
    assert info.value.error_type == "missing_api_key"


async def test_error_status_maps_with_retry_after_and_never_shows_key(server, client):
    server.replies.append(
        json_reply(
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": f"slow down {CANARY}"}},
            {"retry-after": "3", "retry-after-ms": "2500"},
        )
    )
    adapter = AnthropicAdapter(anthropic_spec(server.url, api_key=CANARY), client)
    with pytest.raises(ProviderError) as info:
        await adapter.complete(HELLO)
    err = info.value
    assert (err.error_type, err.status_code, err.retry_after, err.provider) == ("rate_limit", 429, 2.5, "p-anthropic")
    assert "slow down" in err.message
    assert CANARY not in str(err) and CANARY not in repr(err) and CANARY not in err.message


async def test_error_status_in_stream_mode(server, client):
    server.replies.append(
        json_reply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    )
    with pytest.raises(ProviderError) as info:
        await collect(AnthropicAdapter(anthropic_spec(server.url), client), HELLO)
    assert (info.value.error_type, info.value.status_code) == ("overloaded", 529)


@pytest.mark.parametrize("body", [b"not json", b'{"choices": []}', b'{"choices": [{"message": 5}]}', b"[1]"])
async def test_unusable_body_is_malformed(server, client, body):
    server.replies.append(json_reply(200, body))
    with pytest.raises(ProviderError) as info:
        await OpenAIAdapter(openai_spec(server.url), client).complete(HELLO)
    assert (info.value.error_type, info.value.status_code) == ("malformed_response", 200)


# What Python servers (vLLM, SGLang, hand-rolled ones) write with json.dumps: a -inf logprob as
# -Infinity; a UTF-8 byte-order mark; a tool argument beyond 64 bits. Each is read as the standard
# library reads it, never refused and never rounded.
PYTHONIC_ANSWER = (
    b'\xef\xbb\xbf{"model":"m","choices":[{"message":{"role":"assistant","content":"hi","tool_calls":'
    b'[{"id":"c1","type":"function","function":{"name":"transfer","arguments":"{}"}}]},"finish_reason":"stop",'
    b'"logprobs":{"content":[{"token":"hi","logprob":-Infinity}]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}'
)


async def test_an_answer_as_python_servers_write_it_is_read(server, client):
    server.replies.append(json_reply(200, PYTHONIC_ANSWER))
    result = await OpenAIAdapter(openai_spec(server.url), client).complete(HELLO)
    assert (result.text, result.input_tokens, result.output_tokens) == ("hi", 3, 1)


async def test_a_stream_event_with_infinity_is_read(server, client):
    chunks = openai_chunks(["a", "b"])
    chunks[0] = chunks[0].replace('"index": 0', '"index": 0, "logprobs": {"content": [{"logprob": -Infinity}]}', 1)
    assert "Infinity" in chunks[0]
    server.replies.append(sse_reply(chunks))
    texts, result = await collect(OpenAIAdapter(openai_spec(server.url), client), HELLO)
    assert "".join(texts) == "ab" and result.output_tokens == 2


async def test_a_tool_argument_beyond_64_bits_stays_exact(server, client):
    answer = {
        "model": "claude-test-1",
        "content": [{"type": "tool_use", "id": "t1", "name": "transfer", "input": {"account": 2**97 + 1}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    server.replies.append(json_reply(200, json.dumps(answer).encode()))
    result = await AnthropicAdapter(anthropic_spec(server.url), client).complete(HELLO)
    assert result.tool_calls[0].arguments == {"account": 2**97 + 1}


async def test_stream_ending_early_is_malformed_and_keeps_what_arrived(server, client):
    server.replies.append(sse_reply(openai_chunks(["a", "b"], done=False)))
    with pytest.raises(ProviderError) as info:
        await collect(OpenAIAdapter(openai_spec(server.url), client), HELLO)
    err = info.value
    assert (err.error_type, err.partial_text, err.input_tokens, err.output_tokens) == ("malformed_response", "ab", 7, 2)


@pytest.mark.parametrize(
    "event",
    [
        'data: {"choices": [5]}',
        'data: {"choices": [{"delta": "x"}]}',
        "data: [1, 2]",
        'data: {"usage": {"prompt_tokens": "many"}}',
    ],
)
async def test_stream_chunk_of_the_wrong_shape_is_malformed(server, client, event):
    server.replies.append(sse_reply(openai_chunks(["a"], usage=False, done=False) + [event]))
    with pytest.raises(ProviderError) as info:
        await collect(OpenAIAdapter(openai_spec(server.url), client), HELLO)
    assert (info.value.error_type, info.value.partial_text) == ("malformed_response", "a")


async def test_anthropic_stream_without_message_stop_is_malformed(server, client):
    server.replies.append(sse_reply(anthropic_events(["x"], stop=False)))
    with pytest.raises(ProviderError) as info:
        await collect(AnthropicAdapter(anthropic_spec(server.url), client), HELLO)
    assert info.value.error_type == "malformed_response" and info.value.partial_text == "x"


async def test_stream_cut_mid_body_is_connection_reset_with_partial_text(server, client):
    server.replies.append(sse_reply(openai_chunks(["a", "b"], usage=False, done=False), finish=False))
    with pytest.raises(ProviderError) as info:
        await collect(OpenAIAdapter(openai_spec(server.url), client), HELLO)
    assert info.value.error_type == "connection_reset" and info.value.partial_text == "ab"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_error_event_mid_stream(server, client, api):
    if api == "openai":
        events = openai_chunks(["a"], usage=False, done=False)[:1] + [
            'data: {"error": {"message": "The server had an error", "type": "server_error"}}'
        ]
        adapter = OpenAIAdapter(openai_spec(server.url), client)
        expected = "stream_error"
    else:
        events = anthropic_events(["a"])[:4] + [
            'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
        ]
        adapter = AnthropicAdapter(anthropic_spec(server.url), client)
        expected = "overloaded"
    server.replies.append(sse_reply(events))
    with pytest.raises(ProviderError) as info:
        await collect(adapter, HELLO)
    assert (info.value.error_type, info.value.partial_text) == (expected, "a")


async def test_reset_before_answer_is_connection_reset(server, client):
    server.replies.append(Reply([], close=True))
    with pytest.raises(ProviderError) as info:
        await OpenAIAdapter(openai_spec(server.url), client).complete(HELLO)
    assert info.value.error_type == "connection_reset"


async def test_a_trickling_plain_answer_is_cut_at_the_timeout(server, client):
    # Every read arrives within the timeout, but the whole answer would take ~1.6 s.
    body = json.dumps(OPENAI_OK).encode()
    head = http_head(200, {"content-type": "application/json", "content-length": str(len(body))})
    step = len(body) // 8 + 1
    pieces: list[bytes | float] = [head]
    for i in range(0, len(body), step):
        pieces += [0.2, body[i : i + step]]
    server.replies.append(Reply(pieces))
    adapter = OpenAIAdapter(openai_spec(server.url, timeout=0.5), client)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ProviderError) as info:
        await adapter.complete(HELLO)
    assert info.value.error_type == "timeout" and "within 0.5 s" in info.value.message
    assert 0.45 < loop.time() - start < 1.2


async def test_hang_with_spec_timeout_is_timeout(server, client):
    server.replies.append(Reply(hang=True))
    adapter = OpenAIAdapter(openai_spec(server.url, timeout=0.3), client)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ProviderError) as info:
        await adapter.complete(HELLO)
    assert info.value.error_type == "timeout"
    assert 0.25 < loop.time() - start < 3.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("streamed", [False, True])
async def test_refused_connection_is_connect_error(client, streamed):
    adapter = OpenAIAdapter(openai_spec(f"http://127.0.0.1:{closed_port()}"), client)
    with pytest.raises(ProviderError) as info:
        if streamed:
            await collect(adapter, HELLO)
        else:
            await adapter.complete(HELLO)
    assert info.value.error_type == "connect_error" and info.value.status_code is None


async def test_cancelling_a_stream_closes_its_connection(server, client):
    server.replies.append(sse_reply(openai_chunks([f"w{i} " for i in range(50)]), pause=0.05))
    adapter = OpenAIAdapter(openai_spec(server.url), client)
    await helpers.cancel_after_first_item(adapter.stream(HELLO))
    await asyncio.wait_for(server.disconnected.wait(), 5)
    assert server.open_connections == 0


async def test_abandoning_a_stream_closes_its_connection(server, client):
    server.replies.append(sse_reply(openai_chunks([f"w{i} " for i in range(50)]), pause=0.05))
    gen = OpenAIAdapter(openai_spec(server.url), client).stream(HELLO)
    assert isinstance(await gen.__anext__(), str)
    await gen.aclose()
    await asyncio.wait_for(server.disconnected.wait(), 5)
    assert server.open_connections == 0


async def test_connection_is_reused_after_a_full_stream(server, client):
    server.replies += [sse_reply(openai_chunks(["a"])), json_reply(200, OPENAI_OK)]
    adapter = OpenAIAdapter(openai_spec(server.url), client)
    await collect(adapter, HELLO)
    await adapter.complete(HELLO)
    assert len(server.seen) == 2 and not server.disconnected.is_set()


# -- any httpx client works, not only make_client's --------------------------------------------


async def test_a_plain_httpx_client_works_too(server):
    import httpx

    async with httpx.AsyncClient() as plain:  # httpx's own transport: no direct path
        server.replies += [
            json_reply(200, OPENAI_OK),
            sse_reply(openai_chunks(["a", "b"])),
            json_reply(503, {"error": {"message": "busy", "type": "server_error"}}, {"retry-after": "1"}),
        ]
        adapter = OpenAIAdapter(openai_spec(server.url, api_key=CANARY), plain)
        assert (await adapter.complete(HELLO)).text == "Hi there"
        assert (await collect(adapter, HELLO))[1].text == "ab"
        with pytest.raises(ProviderError) as info:
            await adapter.complete(HELLO)
        assert (info.value.error_type, info.value.retry_after) == ("server_error", 1.0)
        assert server.seen[0].headers["authorization"] == f"Bearer {CANARY}"
        refused = OpenAIAdapter(openai_spec(f"http://127.0.0.1:{closed_port()}"), plain)
        with pytest.raises(ProviderError) as info:
            await refused.complete(HELLO)
        assert info.value.error_type == "connect_error"


# -- against the simulator (ground truth for text, tokens, cost and faults) -------------------

sim_module = pytest.importorskip("llmroute_magic.sim")

SIM_NAMES = {"openai": "t-openai", "anthropic": "t-anthropic"}


sim, fresh_sim = helpers.simulator_fixtures(
    [
        sim_module.ProviderProfile(
            "t-openai", api="openai", model="gpt-4o-mini", input_price=0.15, output_price=0.6, retry_after_s=2.5, seed=1
        ),
        sim_module.ProviderProfile(
            "t-anthropic",
            api="anthropic",
            model="claude-3-5-haiku-latest",
            input_price=0.8,
            output_price=4.0,
            retry_after_s=2.5,
            seed=2,
        ),
        sim_module.ProviderProfile("t-keyed", api="openai", require_api_key=CANARY),
        sim_module.ProviderProfile("t-slow", api="openai", tokens_per_s=40.0),
    ]
)


def sim_adapter(sim, api: str, client, **changes: Any):
    spec = next(s for s in sim.provider_specs() if s.name == SIM_NAMES[api])
    if changes:
        spec = spec._copy(**changes)
    return adapter_for(api)(spec, client)


PROMPT = ChatRequest(
    messages=[{"role": "user", "content": "Explain the CAP theorem in one line, please."}], system="You are terse."
)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_sim_text_tokens_and_cost_equal_its_stats(fresh_sim, client, api, streamed):
    adapter = sim_adapter(fresh_sim, api, client)
    results = []
    for max_tokens in (None, 5):
        req = ChatRequest(PROMPT.messages, system=PROMPT.system, max_tokens=max_tokens)
        if streamed:
            deltas, result = await collect(adapter, req)
            assert "".join(deltas) == result.text and len(deltas) == result.output_tokens
            assert result.ttft_s is not None and result.ttft_s > 0
        else:
            result = await adapter.complete(req)
        assert result.text and result.http_status == 200 and result.model == adapter.spec.model
        results.append(result)
    assert results[1].output_tokens == 5
    stats = fresh_sim.stats()["providers"][SIM_NAMES[api]]
    assert stats["requests"] == 2 and stats["statuses"] == {"200": 2}
    assert sum(r.input_tokens for r in results) == stats["input_tokens"]
    assert sum(r.output_tokens for r in results) == stats["output_tokens"]
    spec = adapter.spec
    cost = sum(r.input_tokens * spec.input_price / 1e6 + r.output_tokens * spec.output_price / 1e6 for r in results)
    assert cost == pytest.approx(stats["cost"], rel=1e-12) and cost > 0


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_sim_plain_and_streamed_answers_agree(fresh_sim, client, api):
    adapter = sim_adapter(fresh_sim, api, client)
    plain = await adapter.complete(PROMPT)
    _, streamed = await collect(adapter, PROMPT)
    assert (plain.text, plain.input_tokens, plain.output_tokens) == (
        streamed.text,
        streamed.input_tokens,
        streamed.output_tokens,
    )


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_sim_answer_without_usage_gives_unknown_tokens_not_zero(fresh_sim, client, api, streamed):
    """A server that reports no usage (an OpenAI-compatible one ignoring include_usage): the answer is
    whole, its tokens are None (unknown), and the simulator billed nothing it did not report."""
    adapter = sim_adapter(fresh_sim, api, client)
    reported = await adapter.complete(PROMPT)
    fresh_sim.update(SIM_NAMES[api], no_usage=True)
    ctx = AttemptContext(adapter.spec.name, adapter.spec.model)
    if streamed:
        deltas = []
        async for item in adapter.stream(PROMPT, ctx):
            deltas.append(item)
        result = deltas.pop()
        assert "".join(deltas) == result.text
    else:
        result = await adapter.complete(PROMPT, ctx)
    assert result.text == reported.text and result.http_status == 200
    assert (result.input_tokens, result.output_tokens) == (None, None)
    assert (ctx.input_tokens, ctx.output_tokens) == (None, None)
    assert reported.input_tokens > 0 and reported.output_tokens > 0
    assert fresh_sim.stats()["providers"][SIM_NAMES[api]]["input_tokens"] == reported.input_tokens


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_attempt_context_starts_unknown_and_a_cancelled_stream_keeps_what_was_reported(fresh_sim, client, api):
    """Cancelled after the first text: OpenAI has reported nothing yet (None, not 0); Anthropic has
    reported its input tokens in message_start (and 0 output tokens so far)."""
    spec = next(s for s in fresh_sim.provider_specs() if s.name == SIM_NAMES[api])
    fresh_sim.update(SIM_NAMES[api], tokens_per_s=40.0)
    adapter = adapter_for(api)(spec, client)
    ctx = AttemptContext(spec.name, spec.model)
    assert (ctx.input_tokens, ctx.output_tokens) == (None, None)
    await helpers.cancel_after_first_item(adapter.stream(ChatRequest(PROMPT.messages, max_tokens=200), ctx))
    assert ctx.parts
    if api == "openai":
        assert (ctx.input_tokens, ctx.output_tokens) == (None, None)
    else:
        assert ctx.input_tokens > 0 and ctx.output_tokens == 0


def expected_fault(api: str, fault: str, streamed: bool) -> tuple[str, int | None]:
    return helpers.expected_fault(fault, api, streamed)


def test_every_sim_fault_kind_is_covered():
    assert set(sim_module.FAULT_KINDS) == set(helpers.FAULT_OUTCOMES) - set(helpers.NETWORK_FAULTS)


@pytest.mark.parametrize("fault", sim_module.FAULT_KINDS)
@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_sim_fault_maps_to_error_type(fresh_sim, client, api, fault, streamed):
    # Only a hung server needs a short timeout; a tight one for every fault fails on a busy machine.
    adapter = sim_adapter(fresh_sim, api, client, timeout=0.3 if fault == "hang" else 10.0)
    fresh_sim.inject(SIM_NAMES[api], [fault])
    with pytest.raises(ProviderError) as info:
        if streamed:
            await collect(adapter, PROMPT)
        else:
            await adapter.complete(PROMPT)
    err = info.value
    assert (err.error_type, err.status_code) == expected_fault(api, fault, streamed)
    assert err.provider == SIM_NAMES[api] and err.model == adapter.spec.model and err.message
    if fault == "rate_limit":
        assert err.retry_after == 2.5  # retry-after-ms (2500) wins over retry-after (3)
    else:
        assert err.retry_after is None
    if streamed and fault in ("stream_error", "truncated_stream"):
        assert err.partial_text  # the text shown before the failure travels with the error
    stats = fresh_sim.stats()["providers"][SIM_NAMES[api]]
    assert stats["requests"] == 1
    # What the error says was reported is exactly what the simulator billed.
    assert (err.input_tokens, err.output_tokens) == (stats["input_tokens"], stats["output_tokens"])


async def test_sim_missing_key_never_reaches_the_network(fresh_sim, client, monkeypatch):
    monkeypatch.delenv("T_OPENAI_API_KEY", raising=False)
    adapter = sim_adapter(fresh_sim, "openai", client, base_url="https://api.example.invalid/v1", api_key=None)
    for call in (adapter.complete(PROMPT), collect(adapter, PROMPT)):
        with pytest.raises(ProviderError) as info:
            await call
        assert info.value.error_type == "missing_api_key" and "T_OPENAI_API_KEY" in str(info.value)
    assert all(p["requests"] == 0 for p in fresh_sim.stats()["providers"].values())


async def test_sim_key_is_sent_and_never_shown(fresh_sim, client):
    spec = next(s for s in fresh_sim.provider_specs() if s.name == "t-keyed")
    keyed = OpenAIAdapter(spec.with_api_key(CANARY), client)
    assert (await keyed.complete(PROMPT)).text
    wrong = OpenAIAdapter(spec.with_api_key("sk-wrong-key"), client)
    with pytest.raises(ProviderError) as info:
        await wrong.complete(PROMPT)
    assert info.value.error_type == "authentication"
    fresh_sim.inject("t-keyed", ["server_error"])
    with pytest.raises(ProviderError) as info:
        await keyed.complete(PROMPT)
    for text in (str(info.value), repr(info.value), info.value.message, repr(keyed)):
        assert CANARY not in text


async def test_sim_cancelled_stream_disconnects(fresh_sim, client):
    spec = next(s for s in fresh_sim.provider_specs() if s.name == "t-slow")
    adapter = OpenAIAdapter(spec, client)
    await helpers.cancel_after_first_item(adapter.stream(ChatRequest(PROMPT.messages, max_tokens=200)))
    for _ in range(100):
        if fresh_sim.stats()["providers"]["t-slow"]["statuses"].get("disconnected"):
            break
        await asyncio.sleep(0.05)
    assert fresh_sim.stats()["providers"]["t-slow"]["statuses"] == {"disconnected": 1}


async def test_server_ignoring_stream_flag_still_gives_a_stream(server, client):
    server.replies.append(json_reply(200, ANTHROPIC_OK))
    deltas, result = await collect(AnthropicAdapter(anthropic_spec(server.url), client), HELLO)
    assert deltas == ["Hi there"] and (result.text, result.output_tokens) == ("Hi there", 2)
    assert result.ttft_s is not None


def test_make_client_verifies_tls_and_follows_no_redirects():
    import ssl

    c = make_client(timeout=5.0, max_connections=7)
    assert c.ssl_context.verify_mode == ssl.CERT_REQUIRED and c.ssl_context.check_hostname
    assert c.ssl_context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert c.timeout.read == 5.0 and not c.follow_redirects


async def test_make_client_honours_the_pool_size(server):
    """At most ``max_connections`` connections at once: the rest wait for one to come back."""
    c = make_client(timeout=10.0, max_connections=2)
    try:
        server.replies += [Reply([0.2, json_reply(200, OPENAI_OK).pieces[0]]) for _ in range(5)]
        adapter = OpenAIAdapter(openai_spec(server.url), c)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, server.open_connections)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(adapter.complete(HELLO) for _ in range(5)))
        watcher.cancel()
        assert [r.text for r in results] == ["Hi there"] * 5
        assert peak == 2
    finally:
        await c.aclose()


def test_http_layer_imports_no_httpx_until_used():
    import subprocess
    import sys

    code = (
        "import sys, llmroute_magic._http, llmroute_magic._providers.openai, "
        "llmroute_magic._providers.anthropic; print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- images, tools, tool results, response schemas, per-request models ------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
PNG_B64 = base64.b64encode(PNG).decode()
CITY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}


def chat(prompt, **options) -> ChatRequest:
    spec = ProviderSpec("p", "m", base_url="http://127.0.0.1:9/v1")
    return build_request(prompt, options, config=ProviderRoutingConfig([spec]), request_id="r", streamed=False).chat


IMAGE_PROMPT = [
    {
        "role": "user",
        "content": [
            "What is this?",
            {"type": "image", "data": PNG},
            {"type": "image", "url": "https://example.com/cat.png"},
        ],
    }
]
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            ToolCall("c1", "get_weather", {"city": "Paris"}),
            {"id": "c2", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
    {"role": "tool", "tool_call_id": "c2", "content": "9 C"},
]


def openai_adapter(url="http://127.0.0.1:9", client=None):
    return OpenAIAdapter(ProviderSpec("p-openai", "gpt-test", api="openai", base_url=f"{url}/v1"), client)


def anthropic_adapter(url="http://127.0.0.1:9", client=None):
    return AnthropicAdapter(ProviderSpec("p-anthropic", "claude-test", api="anthropic", base_url=url), client)


# -- request bodies -------------------------------------------------------------------------------------


def test_openai_body_carries_images_tools_tool_results_schema_and_model():
    body = openai_adapter().build_body(chat(IMAGE_PROMPT, model="gpt-other"), stream=False)
    assert body["model"] == "gpt-other"
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    body = openai_adapter().build_body(chat(TOOL_TURNS, tools=[WEATHER], tool_choice="get_weather"), stream=False)
    assert body["tools"] == [{"type": "function", "function": WEATHER}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assistant, result = body["messages"][1], body["messages"][2]
    assert assistant["content"] is None and [c["function"]["arguments"] for c in assistant["tool_calls"]] == [
        '{"city": "Paris"}',
        '{"city": "Oslo"}',
    ]
    assert result == {"role": "tool", "tool_call_id": "c1", "content": "18 C"}
    body = openai_adapter().build_body(chat("Biggest city?", response_format=CITY), stream=False)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": CITY, "strict": False},
    }


def test_anthropic_body_carries_images_tools_tool_results_schema_and_model():
    body = anthropic_adapter().build_body(chat(IMAGE_PROMPT, model="claude-other"), stream=False)
    assert body["model"] == "claude-other"
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    body = anthropic_adapter().build_body(chat(TOOL_TURNS, tools=[WEATHER], tool_choice="required"), stream=False)
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER["parameters"]}
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "c2", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [  # both results in one user turn
            {"type": "tool_result", "tool_use_id": "c1", "content": "18 C"},
            {"type": "tool_result", "tool_use_id": "c2", "content": "9 C"},
        ],
    }
    body = anthropic_adapter().build_body(chat("Biggest city?", response_format=CITY), stream=False)
    assert body["tools"][0]["name"] == SCHEMA_TOOL and body["tools"][0]["input_schema"] == CITY
    assert body["tool_choice"] == {"type": "tool", "name": SCHEMA_TOOL}


# -- answers ---------------------------------------------------------------------------------------------

OPENAI_TOOL_ANSWER = {
    "model": "gpt-test",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 7},
}


async def test_openai_tool_calls_plain_and_streamed(server, client):
    adapter = openai_adapter(server.url, client)
    server.replies.append(json_reply(200, OPENAI_TOOL_ANSWER))
    result = await adapter.complete(chat("Weather in Paris?", tools=[WEATHER]))
    assert result.tool_calls == (ToolCall("call_1", "get_weather", {"city": "Paris"}),)
    assert result.finish_reason == "tool_calls" and result.text == ""

    def chunk(delta, finish=None):
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    server.replies.append(
        sse_reply(
            [
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ],
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]}),
                chunk({}, "tool_calls"),
                'data: {"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":9}}',
                "data: [DONE]",
            ]
        )
    )
    deltas, final = await collect(adapter, chat("Weather in Oslo?", tools=[WEATHER]))
    assert deltas == [] and final.tool_calls == (ToolCall("call_9", "get_weather", {"city": "Oslo"}),)
    assert (final.input_tokens, final.output_tokens) == (20, 9)


def anthropic_tool_use_answer(*content: dict) -> Reply:
    """A plain Anthropic answer that stopped for tool use, with these content blocks."""
    return json_reply(
        200,
        {
            "model": "claude-test",
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 30, "output_tokens": 12},
            "content": list(content),
        },
    )


def anthropic_tool_use_stream(call_id: str, name: str, input_pieces: list[str]) -> Reply:
    """An Anthropic stream whose one content block is a tool_use, its input JSON sent in ``input_pieces``."""

    def ev(event: str, payload: dict) -> str:
        return f"event: {event}\ndata: {json.dumps({'type': event, **payload})}"

    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    start = {"model": "claude-test", "usage": {"input_tokens": 30, "output_tokens": 1}}
    return sse_reply(
        [
            ev("message_start", {"message": start}),
            ev("content_block_start", {"index": 0, "content_block": block}),
            *(
                ev("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}})
                for piece in input_pieces
            ),
            ev("content_block_stop", {"index": 0}),
            ev("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 15}}),
            ev("message_stop", {}),
        ]
    )


async def test_anthropic_tool_calls_plain_and_streamed(server, client):
    adapter = anthropic_adapter(server.url, client)
    server.replies.append(
        anthropic_tool_use_answer(
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        )
    )
    result = await adapter.complete(chat("Weather in Paris?", tools=[WEATHER]))
    assert result.text == "Let me check." and result.tool_calls == (
        ToolCall("toolu_1", "get_weather", {"city": "Paris"}),
    )
    server.replies.append(anthropic_tool_use_stream("toolu_2", "get_weather", ['{"city": ', '"Oslo"}']))
    deltas, final = await collect(adapter, chat("Weather in Oslo?", tools=[WEATHER]))
    assert deltas == [] and final.tool_calls == (ToolCall("toolu_2", "get_weather", {"city": "Oslo"}),)
    assert final.finish_reason == "tool_use" and final.output_tokens == 15


async def test_anthropic_schema_answer_is_the_schema_tools_input_as_text(server, client):
    adapter = anthropic_adapter(server.url, client)
    server.replies.append(
        anthropic_tool_use_answer(
            {"type": "tool_use", "id": "t", "name": SCHEMA_TOOL, "input": {"name": "Tokyo", "population": 37000000}}
        )
    )
    result = await adapter.complete(chat("Biggest city?", response_format=CITY))
    assert json.loads(result.text) == {"name": "Tokyo", "population": 37000000} and result.tool_calls == ()
    server.replies.append(anthropic_tool_use_stream("t", SCHEMA_TOOL, ['{"name": "Oslo", ', '"population": 7}']))
    deltas, final = await collect(adapter, chat("Smallest?", response_format=CITY))
    assert "".join(deltas) == final.text and json.loads(final.text) == {"name": "Oslo", "population": 7}
    assert final.tool_calls == ()


@pytest.mark.parametrize("arguments", ['{"city": ', '"just a string"'])
async def test_tool_arguments_that_are_not_a_json_object_are_malformed(server, client, arguments):
    answer = json.loads(json.dumps(OPENAI_TOOL_ANSWER))
    answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    server.replies.append(json_reply(200, answer))
    with pytest.raises(ProviderError) as info:
        await openai_adapter(server.url, client).complete(chat("Weather?", tools=[WEATHER]))
    assert info.value.error_type == "malformed_response"
