"""Blocking work in worker threads, never racing the cleanup of what it uses.

``asyncio.to_thread`` leaves a thread running when its caller is cancelled: a caller that
then closes the file the thread still reads (or unlinks the temp file it still writes)
races it, and a closed descriptor's number can be reused by another file meanwhile.
Here a cancelled caller first waits for its thread, and what a cancelled ``open_blocking``
opened is closed, not leaked.

A trip to a thread costs the event loop more than copying 64 KiB, so files are read and
written ``BATCH_BYTES`` per trip (``read_chunks``, ``WriteBatch``), whatever the chunk size.
A read batch is held until its last chunk is sent: ``read_chunks`` reads ahead no more than
its caller says it can send (a stalled reader's stream holds one chunk, not a batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO, ParamSpec, Protocol, TypeVar

BATCH_BYTES = 1024 * 1024
P = ParamSpec("P")
T = TypeVar("T")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


async def run_blocking(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in a worker thread; if cancelled, once it has returned."""
    return await _finish(_in_thread(func, *args, **kwargs))


async def open_blocking(func: Callable[P, C], /, *args: P.args, **kwargs: P.kwargs) -> C:
    """``run_blocking`` for a call that opens something: if cancelled, what it opened is closed."""
    return await _finish(_in_thread(func, *args, **kwargs), on_cancel=lambda opened: opened.close())


def _in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
    """``func(*args, **kwargs)`` in the loop's default executor, in a copy of the current
    context: ``asyncio.to_thread`` without its task, which costs a trip two more turns of the
    loop (one to start it, one to learn of its end)."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return asyncio.get_running_loop().run_in_executor(None, call)


async def _finish(
    call: asyncio.Future[T], *, on_cancel: Callable[[T], None] = lambda result: None
) -> T:
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({call})
        if not call.cancelled() and call.exception() is None:
            on_cancel(call.result())
        raise


#: What a chunk costs in flow control beyond its bytes: gRPC's 5-byte prefix and the field's
#: tag and length in a ``Chunk`` message.
CHUNK_FRAMING = 16


async def read_chunks(
    file: BinaryIO,
    size: int,
    sendable: Callable[[], int | None] = lambda: None,
    *,
    seen: Callable[[bytes], object] | None = None,
    first: bytes = b"",
) -> AsyncIterator[bytes]:
    """``first`` (bytes of ``file`` read already), then the rest of ``file``, in chunks of
    ``size`` bytes, read up to ``BATCH_BYTES`` per thread trip: as many chunks as
    ``sendable()`` bytes hold (at least one; None: no limit).

    ``seen(batch)`` (an upload's hash) runs in the thread on each batch (``first`` too), in
    the trip that reads the next one (the last batch's in the trip that finds the end): a
    batch's chunks are yielded before it is seen, so the peer gets the first chunk without
    waiting for a batch's hash, and the last batch is seen while the peer takes in what was
    sent.
    """
    most = max(1, BATCH_BYTES // size)
    data = unseen = first
    while True:
        for start in range(0, len(data), size):
            yield data[start : start + size]
        window = sendable()
        chunks = most if window is None else min(most, max(1, window // (size + CHUNK_FRAMING)))
        if seen is None:
            data = await run_blocking(file.read, chunks * size)
        else:
            data = await run_blocking(_see_and_read, file, chunks * size, seen, unseen)
            unseen = data
        if not data:
            return


def _see_and_read(
    file: BinaryIO, size: int, seen: Callable[[bytes], object], unseen: bytes
) -> bytes:
    if unseen:
        seen(unseen)
    return file.read(size)


class WriteBatch:
    """Chunks gathered to be written ``BATCH_BYTES`` per trip to a worker thread.

    ``write(*chunks)`` runs in the thread; ``flush`` writes what is left.
    """

    def __init__(self, write: Callable[..., object]) -> None:
        self._write = write
        self._chunks: list[bytes] = []
        self.size = 0
        """Bytes gathered and not yet written."""

    async def add(self, data: bytes) -> None:
        self._chunks.append(data)
        self.size += len(data)
        if self.size >= BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        chunks, self._chunks, self.size = self._chunks, [], 0
        if chunks:
            await run_blocking(self._write, *chunks)
