"""The local backend: files under a confined root directory (``muxs.server.storage.root``).

The root's calls block; here they run in worker threads (``muxs.threads``), so the event
loop never waits for the disk, and writes are batched per thread trip.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path

from muxs.server.storage.interface import Entry
from muxs.server.storage.root import AtomicFile, Root
from muxs.threads import WriteBatch, open_blocking, read_chunks, run_blocking

#: Directory entries read per trip to a worker thread.
LIST_BATCH = 256


def entry(st: os.stat_result) -> Entry:
    """An ``Entry`` from a stat (a directory's size is 0)."""
    is_dir = stat.S_ISDIR(st.st_mode)
    return Entry(size=0 if is_dir else st.st_size, mtime=st.st_mtime, is_dir=is_dir)


class LocalReader:
    """A regular file of the root, open for reading."""

    def __init__(self, file: io.BufferedReader) -> None:
        self._file = file
        st = os.fstat(file.fileno())
        self.size = st.st_size
        self.mtime = st.st_mtime

    async def read(self, limit: int) -> bytes:
        return await run_blocking(self._file.read, limit)

    def chunks(self, size: int, sendable: Callable[[], int | None]) -> AsyncIterator[bytes]:
        return read_chunks(self._file, size, sendable)

    async def aclose(self) -> None:
        self._file.close()


class LocalReplacement:
    """An ``AtomicFile``, written a batch per thread trip."""

    def __init__(self, new: AtomicFile) -> None:
        self._new = new
        self._batch = WriteBatch(new.write)

    @property
    def size(self) -> int:
        return self._new.size + self._batch.size

    @property
    def sha256(self) -> str:
        return self._new.sha256

    async def write(self, data: bytes) -> None:
        await self._batch.add(data)

    async def commit(self) -> None:
        await self._batch.flush()
        await run_blocking(self._new.commit)

    async def aclose(self) -> None:
        await run_blocking(self._new.close)


class LocalRoot:
    """The ``FileStore`` of a ``Root``; closing it closes the root."""

    def __init__(self, root: Root) -> None:
        self.root = root

    @property
    def path(self) -> Path:
        return self.root.path

    @property
    def description(self) -> str:
        return f"root {self.root.path}"

    async def open_reader(self, name: str) -> LocalReader:
        file = await open_blocking(self.root.open_reader, name)
        try:
            return LocalReader(file)
        except BaseException:
            file.close()
            raise

    async def open_replacement(self, name: str, *, create_dirs: bool) -> LocalReplacement:
        new = await open_blocking(self.root.open_for_replace, name, create_dirs=create_dirs)
        return LocalReplacement(new)

    async def write_bytes(self, name: str, data: bytes, *, create_dirs: bool) -> str:
        return await run_blocking(self.root.write_bytes, name, data, create_dirs=create_dirs)

    async def stat(self, name: str) -> Entry:
        return entry(await run_blocking(self.root.stat, name))

    async def list_dir(self, name: str) -> AsyncGenerator[list[tuple[str, Entry]], None]:
        listing = await open_blocking(self.root.list_dir, name)
        try:
            while batch := await run_blocking(listing.take, LIST_BATCH):
                yield [(entry_name, entry(st)) for entry_name, st in batch]
        finally:
            listing.close()

    async def delete(self, name: str) -> None:
        await run_blocking(self.root.delete, name)

    async def writable(self) -> bool:
        return await run_blocking(self.root.writable)

    async def aclose(self) -> None:
        self.root.close()
