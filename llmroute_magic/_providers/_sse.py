"""Incremental server-sent-events parser (the subset of the WHATWG rules LLM APIs use).

Bytes arrive in arbitrary chunks: a line, an event, or a UTF-8 character may be split across
them, and line ends may be LF, CRLF or a lone CR (a CRLF may itself be split). The parser keeps
the unfinished tail between chunks and emits an event at each blank line. ``id`` and ``retry``
fields are ignored: nothing here reconnects.
"""

from __future__ import annotations

import re
from typing import AsyncIterable, AsyncIterator, NamedTuple

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
