"""A minimal, fast loopback LLM server for the overhead benchmark, run in its own process.

Client and server in one process on two cores would measure each other; the simulator is built
for realism, not speed. This answers every POST with canned bytes in the OpenAI format:

    POST /<anything>/chat/completions                 a chat completion (usage included), at once
    same with "stream":true in the body               SSE: three text chunks, a usage chunk, [DONE]
    POST /fail429/...  /fail500/...                   that status with an OpenAI error body, every time
    POST /chunks<N>/... (streamed)                    N one-word text chunks sent back to back
    POST /gap<MS>/... (streamed)                      the three chunks MS milliseconds apart (chunked
                                                      encoding; the first at once), so the time to the
                                                      first token differs from the whole answer's
    GET  /_stats                                      {"<first path segment>": requests answered, ...}

Run ``python -m benchmarks._server``: it prints ``PORT <n>`` once listening, and serves until killed.
``LoopbackServer`` starts and stops it from the benchmark and reads its counts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Consistency, availability, partition tolerance: pick two.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    },
    separators=(",", ":"),
).encode()


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


_STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": "Consistency, "}),
        _chunk({"content": "availability, "}),
        _chunk({"content": "partition tolerance."}, finish="stop"),
        _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}),
        b"data: [DONE]\n\n",
    ]
)


def _stream_body(n: int) -> bytes:
    return b"".join(
        [_chunk({"role": "assistant", "content": ""})]
        + [_chunk({"content": "word "}) for _ in range(n)]
        + [
            _chunk({}, finish="stop"),
            _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}),
            b"data: [DONE]\n\n",
        ]
    )


_STREAM_EVENTS = [
    _chunk({"role": "assistant", "content": "Consistency, "}),
    _chunk({"content": "availability, "}),
    _chunk({"content": "partition tolerance."}, finish="stop")
    + _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18})
    + b"data: [DONE]\n\n",
]

_ERRORS = {
    b"/fail429/": (
        b"429 Too Many Requests",
        json.dumps(
            {
                "error": {
                    "message": "Rate limit reached (benchmark)",
                    "type": "rate_limit_error",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
        ).encode(),
    ),
    b"/fail500/": (
        b"500 Internal Server Error",
        json.dumps(
            {
                "error": {
                    "message": "The server had an error (benchmark)",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        ).encode(),
    ),
}


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: keep-alive\r\n\r\n"
        + body
    )


_PLAIN = _response(b"200 OK", b"application/json", _COMPLETION)
_SSE = _response(b"200 OK", b"text/event-stream", _STREAM)
_FAILS = {prefix: _response(status, b"application/json", body) for prefix, (status, body) in _ERRORS.items()}


_SSE_CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"connection: keep-alive\r\n\r\n"
)
_COUNTS: dict[str, int] = {}
_CHUNKS_CACHE: dict[int, bytes] = {}


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy_until = 0.0  # a paced answer is still being written: later answers queue behind it

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                    break
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            method, path = head.split(b" ", 2)[:2]
            segment = path.split(b"/", 2)[1].decode()
            if method == b"GET" and segment == "_stats":
                self.transport.write(
                    _response(
                        b"200 OK",
                        b"application/json",  # type: ignore[union-attr]
                        json.dumps(_COUNTS).encode(),
                    )
                )
                continue
            _COUNTS[segment] = _COUNTS.get(segment, 0) + 1
            out = None
            for prefix, canned in _FAILS.items():
                if path.startswith(prefix):
                    out = canned
                    break
            streamed = b'"stream":true' in body or b'"stream": true' in body
            if out is None and streamed and segment.startswith("gap"):
                self._paced(int(segment[3:]) / 1000.0)
                continue
            if out is None and streamed and segment.startswith("chunks"):
                n = int(segment[6:])
                if n not in _CHUNKS_CACHE:
                    _CHUNKS_CACHE[n] = _response(b"200 OK", b"text/event-stream", _stream_body(n))
                out = _CHUNKS_CACHE[n]
            if out is None:
                out = _SSE if streamed else _PLAIN
            self.transport.write(out)  # type: ignore[union-attr]

    def _paced(self, gap_s: float) -> None:
        """The head and first event now, each later event ``gap_s`` after the one before."""
        loop = asyncio.get_running_loop()
        transport = self.transport
        start = max(loop.time(), self.busy_until)
        pieces = [_SSE_CHUNKED_HEAD + _http_chunk(_STREAM_EVENTS[0])]
        pieces += [_http_chunk(e) for e in _STREAM_EVENTS[1:]]
        pieces[-1] += b"0\r\n\r\n"
        for i, piece in enumerate(pieces):
            loop.call_at(start + i * gap_s, _write_if_open, transport, piece)
        self.busy_until = start + (len(pieces) - 1) * gap_s


def _write_if_open(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class LoopbackServer:
    """The server above in a child process: ``with LoopbackServer() as s: s.url``."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> LoopbackServer:
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks._server"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        """Requests answered so far, by the first segment of their path (``fail429``, ``v1``, ...)."""
        import httpx

        return httpx.get(f"{self.url}/_stats", timeout=5.0).json()

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


if __name__ == "__main__":
    try:
        asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass


class SimulatorProcess:
    """``llmroute sim`` in a child process, serving the given profiles; changed at run time over HTTP."""

    def __init__(self, profiles: list[dict]) -> None:
        self.profiles = profiles
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._tmp: str | None = None

    def __enter__(self) -> SimulatorProcess:
        import os
        import tempfile

        fd, self._tmp = tempfile.mkstemp(suffix=".toml", prefix="llmroute-bench-")
        with os.fdopen(fd, "w") as f:
            f.write(_toml(self.profiles))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmroute_magic._cli", "sim", "--port", "0", "--profiles", self._tmp],
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if "http://127.0.0.1:" in line:
                self.url = "http://127.0.0.1:" + line.split("http://127.0.0.1:")[1].split()[0].rstrip("/")
                break
        if not self.url:
            self.__exit__()
            raise RuntimeError("the simulator did not start")
        return self

    def base_url(self, name: str) -> str:
        return f"{self.url}/{name}/v1"

    def update(self, name: str, **changes: object) -> None:
        import httpx

        httpx.post(f"{self.url}/_sim/profiles/{name}", json=changes).raise_for_status()

    def stats(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/_sim/stats").json()

    def __exit__(self, *exc: object) -> None:
        import os

        _stop(self.proc)
        if self._tmp:
            os.unlink(self._tmp)


def _stop(proc: subprocess.Popen | None) -> None:
    """Terminate a server process, killing it if it does not stop within 5 s."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _toml(profiles: list[dict]) -> str:
    out = []
    for p in profiles:
        out.append("[[providers]]")
        for k, v in p.items():
            if k == "faults":
                continue
            out.append(f"{k} = {json.dumps(v)}")
        if p.get("faults"):
            out.append("[providers.faults]")
            out.extend(f"{k} = {json.dumps(v)}" for k, v in p["faults"].items())
        out.append("")
    return "\n".join(out)
