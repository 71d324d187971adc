"""Incremental server-sent-events parser (the subset of the WHATWG rules LLM APIs use).

Bytes arrive in arbitrary chunks: a line, an event, or a UTF-8 character may be split across
them, and line ends may be LF, CRLF or a lone CR (a CRLF may itself be split). The parser keeps
the unfinished tail between chunks and emits an event at each blank line. ``id`` and ``retry``
fields are ignored: nothing here reconnects. It reads ``httpx.Response.aiter_bytes()``.

Why not httpx-sse (0.4.3, tried over the same responses; the same events otherwise):

- it drops a last event whose closing blank line never came: some OpenAI-compatible servers end
  with ``data: [DONE]\n`` and close, and a complete answer would then read as truncated and be
  retried (and billed) again; the decoder's unfinished state is not reachable to recover it;
- it is 1.4-2.2x slower per event (6.6-7.1 us against 3.2-4.7 us on the 2-core machine, a 400-event
  stream in 16 KB or one-event chunks), which matters against a 0.03 ms budget per streamed chunk.

And not ``aiter_lines()`` under a small event loop of our own: httpx splits lines with
``str.splitlines``, which also breaks at U+2028/U+2029 and other separators that JSON strings may
carry raw, cutting a data line (and its JSON) in two.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import NamedTuple

_LINE_END = re.compile(rb"\r\n|\r|\n")


class ServerSentEvent(NamedTuple):
    event: str  # "message" when the server named none
    data: str


class SSEDecoder:
    """Feed it bytes, get back the events completed by them."""

    __slots__ = ("_tail", "_skip_lf", "_event", "_data")

    def __init__(self) -> None:
        self._tail = b""
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to that line end
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf = self._tail + chunk if self._tail else chunk
        if b"\r" in buf:
            lines = _LINE_END.split(buf)
            self._skip_lf = buf.endswith(b"\r")
        else:
            lines = buf.split(b"\n")
        self._tail = lines.pop()  # an unfinished line (b"" when the chunk ended at a line end)
        events: list[ServerSentEvent] = []
        for line in lines:
            if line:
                self._field(line)
            elif self._data:
                events.append(ServerSentEvent(self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
            else:
                self._event = ""
        return events

    def close(self) -> list[ServerSentEvent]:
        """The stream ended. An event whose lines all ended but that lacked the closing blank line
        is still delivered (some OpenAI-compatible servers omit it after ``[DONE]``); an unfinished
        line is dropped, since it may be cut in the middle."""
        self._tail = b""
        if not self._data:
            return []
        event = ServerSentEvent(self._event or "message", "\n".join(self._data))
        self._event, self._data = "", []
        return [event]

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":  # a comment, used as keep-alive
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Events from a byte stream, yielded as soon as each one is complete."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
