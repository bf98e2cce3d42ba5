"""The FileController service: files under the server's root, whole or in chunks.

Every path goes through ``muxs.server.storage.Storage``; disk work runs in worker threads
(``muxs.threads``), so the event loop never waits for the disk. With ``error_style``
"seed", Read and Write answer failures as the seed server did; the other calls always
use status codes.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from grpclib.exceptions import GRPCError

from muxs._internals import ClosingServerStreams
from muxs.api import Chunk, Content, FileControllerBase, FileInfo, Files, ListRequest, Status
from muxs.errors import StatusCode
from muxs.server.deadlines import next_within
from muxs.server.hooks import count_bytes_written, send_window
from muxs.server.refusals import over_limit
from muxs.server.settings import ServerSettings
from muxs.server.storage import Storage, shown
from muxs.threads import WriteBatch, open_blocking, read_chunks, run_blocking

log = logging.getLogger(__name__)

SEED_READ_FAILED = Content(text="Error: read failed")
SEED_WRITE_FAILED = Status(code=1)
LIST_BATCH = 256

Reply = TypeVar("Reply")


def file_info(name: str, st: os.stat_result) -> FileInfo:
    """A ``FileInfo`` from a stat (a directory's size is 0)."""
    is_dir = stat.S_ISDIR(st.st_mode)
    return FileInfo(name=name, size=0 if is_dir else st.st_size, mtime=st.st_mtime, is_dir=is_dir)


class FileControllerService(ClosingServerStreams, FileControllerBase):
    """Files confined to ``storage``'s root: unary text, chunked bytes, listing, stat and delete."""

    def __init__(self, storage: Storage, settings: ServerSettings) -> None:
        self._storage = storage
        self._settings = settings

    async def read(self, files: Files) -> Content:
        return await self._seed_style(self._read(files.filename), SEED_READ_FAILED, "Read")

    async def write(self, files: Files) -> Status:
        return await self._seed_style(self._write(files), SEED_WRITE_FAILED, "Write")

    async def read_stream(self, files: Files) -> AsyncIterator[Chunk]:
        name = files.filename
        file = await open_blocking(self._storage.open_reader, name)
        try:
            self._check_read_size(name, os.fstat(file.fileno()).st_size)
            sent = 0
            async for data in read_chunks(file, self._settings.chunk_bytes, send_window):
                sent += len(data)
                self._check_read_size(name, sent)  # the file may grow while it is read
                yield Chunk(data=data)
        finally:
            file.close()

    async def write_stream(self, chunk_iterator: AsyncIterator[Chunk]) -> Status:
        idle = self._settings.stream_idle_timeout
        first = await next_within(chunk_iterator, idle)
        if first is None or not first.filename:
            raise GRPCError(
                StatusCode.INVALID_ARGUMENT, "the first chunk of a WriteStream must name the file"
            )
        name = first.filename
        new = await open_blocking(
            self._storage.open_for_replace, name, create_dirs=self._settings.create_dirs
        )
        try:
            batch = WriteBatch(new.write)
            chunk: Chunk | None = first
            while chunk is not None:
                if chunk is not first and chunk.filename:
                    raise GRPCError(
                        StatusCode.INVALID_ARGUMENT,
                        "only the first chunk of a WriteStream may name the file",
                    )
                data = chunk.data
                self._check_write_size(name, new.size + batch.size + len(data))
                await batch.add(data)
                chunk = await next_within(chunk_iterator, idle)
            await batch.flush()
            await run_blocking(new.commit)
            count_bytes_written(new.size)
            return Status(code=0, sha256=new.sha256)
        finally:
            await run_blocking(new.close)

    async def list(self, list_request: ListRequest) -> AsyncIterator[FileInfo]:
        listing = await open_blocking(self._storage.list_dir, list_request.path or ".")
        try:
            while batch := await run_blocking(listing.take, LIST_BATCH):
                for name, st in batch:
                    yield file_info(name, st)
        finally:
            listing.close()

    async def stat(self, files: Files) -> FileInfo:
        return file_info(files.filename, await run_blocking(self._storage.stat, files.filename))

    async def delete(self, files: Files) -> Status:
        await run_blocking(self._storage.delete, files.filename)
        return Status(code=0)

    async def _read(self, name: str) -> Content:
        data = await run_blocking(self._read_small, name)
        try:
            return Content(text=data.decode("utf-8"))
        except UnicodeDecodeError:
            raise GRPCError(
                StatusCode.FAILED_PRECONDITION,
                f"{shown(name)} is not UTF-8 text; ReadStream reads any bytes",
            ) from None

    def _read_small(self, name: str) -> bytes:
        """A file's bytes if they fit in one message (runs in a worker thread)."""
        limit = self._settings.max_message_bytes
        with self._storage.open_reader(name) as file:
            size = os.fstat(file.fileno()).st_size
            self._check_read_size(name, size)
            data = b"" if size > limit else file.read(limit + 1)
        if size > limit or len(data) > limit:
            raise GRPCError(
                StatusCode.FAILED_PRECONDITION,
                f"{shown(name)} is larger than the {limit}-byte message limit; "
                "ReadStream reads any size",
            )
        return data

    async def _write(self, files: Files) -> Status:
        data = files.text.encode("utf-8")
        limit = self._settings.max_message_bytes
        if len(data) > limit:
            raise over_limit(
                "max_message_bytes",
                f"text is larger than the {limit}-byte message limit; WriteStream takes any size",
            )
        self._check_write_size(files.filename, len(data))
        sha256 = await run_blocking(
            self._storage.write_bytes, files.filename, data, create_dirs=self._settings.create_dirs
        )
        count_bytes_written(len(data))
        return Status(code=0, sha256=sha256)

    def _check_read_size(self, name: str, size: int) -> None:
        if size > self._settings.max_file_bytes:
            raise GRPCError(
                StatusCode.FAILED_PRECONDITION,
                f"{shown(name)} is larger than this server's "
                f"{self._settings.max_file_bytes}-byte file limit",
            )

    def _check_write_size(self, name: str, size: int) -> None:
        if size > self._settings.max_file_bytes:
            raise over_limit(
                "max_file_bytes",
                f"{shown(name)} would be larger than this server's "
                f"{self._settings.max_file_bytes}-byte file limit",
            )

    async def _seed_style(self, reply: Awaitable[Reply], failed: Reply, method: str) -> Reply:
        """``reply``, or with error style "seed" ``failed`` instead of any refusal."""
        try:
            return await reply
        except (GRPCError, OSError) as exc:
            if self._settings.error_style != "seed":
                raise
            level = logging.INFO if isinstance(exc, GRPCError) else logging.WARNING
            log.log(level, "%s failed, answered as the seed did: %s", method, exc)
            return failed
