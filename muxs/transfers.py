"""Bytes in chunks between memory, local files and the FileController's streaming calls.

The SDK's ``write_chunks``/``read_chunks`` speak WriteStream/ReadStream; what is here turns
bytes and local files into chunks and back. Local disk work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from muxs.api import Chunk
from muxs.calls import ReplyStream, Requests, iterate
from muxs.threads import WriteBatch, open_blocking, read_chunks, run_blocking

CHUNK_BYTES = 64 * 1024

Progress = Callable[[int, int], None]
"""Called with (bytes transferred so far, total bytes) after each chunk, and once at 0."""


def no_progress(done: int, total: int) -> None:
    """The default progress callback: report nothing."""


def split(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``data`` in chunks of ``size`` bytes (none for empty data)."""
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


async def chunk_requests(
    filename: str, chunks: Requests[bytes], digest: hashlib._Hash | None
) -> AsyncIterator[Chunk]:
    """WriteStream requests: the filename in the first chunk only; at least one chunk.
    Each chunk goes into ``digest`` (None: the caller hashes them, as ``read_local`` does)."""
    first = True
    async for data in iterate(chunks):
        if digest is not None:
            digest.update(data)
        yield Chunk(filename=filename if first else "", data=data)
        first = False
    if first:
        yield Chunk(filename=filename)


async def chunk_data(chunks: ReplyStream[Chunk]) -> AsyncIterator[bytes]:
    """The bytes of ReadStream replies; closing this cancels the call."""
    async with chunks:
        async for chunk in chunks:
            yield chunk.data


@dataclass(frozen=True)
class LocalFile:
    """A local file open for an upload, with its size and first chunk, learnt in the thread
    trip that opened it (``open_local``)."""

    file: BinaryIO
    size: int
    first: bytes

    def close(self) -> None:
        self.file.close()


def open_local(path: str | os.PathLike[str]) -> LocalFile:
    """Open ``path`` and read its size and first chunk: blocking, for one trip to a worker
    thread (``open_blocking``), after which the call's headers and first chunk go out without
    waiting for another."""
    with ExitStack() as closed_on_error:
        file = closed_on_error.enter_context(open(path, "rb"))
        local = LocalFile(file, os.fstat(file.fileno()).st_size, file.read(CHUNK_BYTES))
        closed_on_error.pop_all()
    return local


async def read_local(
    local: LocalFile, progress: Progress, digest: hashlib._Hash
) -> AsyncIterator[bytes]:
    """The content of an open local file in chunks, reporting progress; ``digest`` is fed in
    the worker threads that read, not on the event loop (hashlib releases the GIL), each batch
    once its chunks have been handed on (``read_chunks``)."""
    done = 0
    progress(done, local.size)
    async for data in read_chunks(local.file, CHUNK_BYTES, seen=digest.update, first=local.first):
        done += len(data)
        yield data
        progress(done, max(local.size, done))


async def save_local(
    chunks: AsyncIterator[bytes], path: str | os.PathLike[str], progress: Progress, total: int
) -> int:
    """Write ``chunks`` to ``path`` through a temp file beside it; return the byte count.

    ``path`` is replaced only once every chunk has arrived: a failed transfer leaves it
    as it was, and no temp file.
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        file = await open_blocking(open, temp, "xb")
    except asyncio.CancelledError:  # the open may have completed: remove what it created
        temp.unlink(missing_ok=True)
        raise
    try:
        done = 0
        progress(done, total)
        batch = WriteBatch(lambda *parts: file.writelines(parts))
        async for data in chunks:
            await batch.add(data)
            done += len(data)
            progress(done, max(total, done))
        await batch.flush()
        await run_blocking(file.close)
        await run_blocking(os.replace, temp, target)
    except BaseException:
        file.close()
        temp.unlink(missing_ok=True)
        raise
    return done
