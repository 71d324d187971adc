"""``Reply``: what every layer of the request path returns, plain and streamed alike.

A layer returns its Reply at the commit point: for a plain request when the answer is complete,
for a streamed one when its first text has arrived (or the answer ended without text). Before
that point a layer may still fail over, retry or hedge; after it, text has reached the caller,
so an error surfaces with the partial text instead of moving on.

    reply = await layer.handle(request)
    async for chunk in reply: ...          # the text, if the caller wants it piece by piece
    completion = await reply.result()     # the finished Completion (reads what is left)
    await reply.aclose()                  # stop early: the attempt is recorded 'cancelled'
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

from ._types import Completion

DoneCallback = Callable[["Completion | None", "BaseException | None"], None]


class Reply:
    """Base of replies. Subclasses produce text through ``_chunks`` and set ``completion``."""

    def __init__(self) -> None:
        self.completion: Completion | None = None
        self._gen: AsyncIterator[str] | None = None
        self._callbacks: list[DoneCallback] = []
        self._done = False

    def add_done_callback(self, fn: DoneCallback) -> None:
        """``fn(completion, error)`` once, when the reply ends: finished, failed or closed early."""
        if self._done:
            fn(self.completion, None)
        else:
            self._callbacks.append(fn)

    def _chunks(self) -> AsyncIterator[str]:
        raise NotImplementedError

    def __aiter__(self) -> Reply:
        return self

    async def __anext__(self) -> str:
        if self._gen is None:
            self._gen = self._chunks()
        try:
            return await self._gen.__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as e:
            self._end(e)
            raise

    def finished(self) -> Completion | None:
        """The completion at once when the answer is already whole and was never read piece by
        piece (a plain request's reply); None otherwise. Ends the reply like reading it would."""
        return None

    async def result(self) -> Completion:
        async for _ in self:
            pass
        assert self.completion is not None, "a reply that ended without error has a completion"
        return self.completion

    async def aclose(self) -> None:
        if self._gen is None:
            self._gen = self._chunks()
        try:
            await self._gen.aclose()  # type: ignore[attr-defined]
        finally:
            self._end(None)

    def _end(self, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self.completion, error)


class CompletedReply(Reply):
    """An answer that is already complete (a plain request); ``chunks`` replays it when streamed."""

    def __init__(self, completion: Completion, chunks: Iterable[str] | None = None) -> None:
        super().__init__()
        self.completion = completion
        self._replay = list(chunks) if chunks is not None else ([completion.text] if completion.text else [])

    def finished(self) -> Completion | None:
        if self._gen is not None:
            return None
        self._end(None)
        return self.completion

    async def _chunks(self) -> AsyncIterator[str]:
        for chunk in self._replay:
            yield chunk
