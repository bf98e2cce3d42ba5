"""The FileController service: files under the server's root, whole or in chunks.

Every name goes to a ``FileStore`` (``muxs.server.storage``: a local root or an S3 bucket),
whose refusals become statuses in ``storage_refusals``. With ``error_style`` "seed", Read and
Write answer failures as the seed server did; the other calls always use status codes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from grpclib.exceptions import GRPCError

from muxs._internals import ClosingServerStreams
from muxs.api import Chunk, Content, FileControllerBase, FileInfo, Files, ListRequest, Status
from muxs.errors import StatusCode
from muxs.server.deadlines import IdleLimit
from muxs.server.hooks import count_bytes_written, send_window
from muxs.server.refusals import over_limit
from muxs.server.services.sizes import text_reply_length
from muxs.server.services.storage_errors import storage_refusals
from muxs.server.settings import ServerSettings
from muxs.server.storage import Entry, FileStore, shown

log = logging.getLogger(__name__)

SEED_READ_FAILED = Content(text="Error: read failed")
SEED_WRITE_FAILED = Status(code=1)
Reply = TypeVar("Reply")


def file_info(name: str, entry: Entry) -> FileInfo:
    return FileInfo(name=name, size=entry.size, mtime=entry.mtime, is_dir=entry.is_dir)


class FileControllerService(ClosingServerStreams, FileControllerBase):
    """Files of ``storage``: unary text, chunked bytes, listing, stat and delete."""

    def __init__(self, storage: FileStore, settings: ServerSettings) -> None:
        self._storage = storage
        self._settings = settings

    async def read(self, files: Files) -> Content:
        return await self._seed_style(self._read(files.filename), SEED_READ_FAILED, "Read")

    async def write(self, files: Files) -> Status:
        return await self._seed_style(self._write(files), SEED_WRITE_FAILED, "Write")

    async def read_stream(self, files: Files) -> AsyncIterator[Chunk]:
        name = files.filename
        with storage_refusals():
            reader = await self._storage.open_reader(name)
            try:
                self._check_read_size(name, reader.size)
                sent = 0
                async for data in reader.chunks(self._settings.chunk_bytes, send_window):
                    sent += len(data)
                    self._check_read_size(name, sent)  # the file may grow while it is read
                    yield Chunk(data=data)
            finally:
                await reader.aclose()

    async def write_stream(self, chunk_iterator: AsyncIterator[Chunk]) -> Status:
        chunks = IdleLimit(chunk_iterator, self._settings.stream_idle_timeout)
        first = await chunks.next()
        if first is None or not first.filename:
            raise GRPCError(
                StatusCode.INVALID_ARGUMENT, "the first chunk of a WriteStream must name the file"
            )
        name = first.filename
        with storage_refusals():
            new = await self._storage.open_replacement(name, create_dirs=self._settings.create_dirs)
            try:
                chunk: Chunk | None = first
                while chunk is not None:
                    if chunk is not first and chunk.filename:
                        raise GRPCError(
                            StatusCode.INVALID_ARGUMENT,
                            "only the first chunk of a WriteStream may name the file",
                        )
                    data = chunk.data
                    self._check_write_size(name, new.size + len(data))
                    await new.write(data)
                    chunk = await chunks.next()
                await new.commit()
                count_bytes_written(new.size)
                return Status(code=0, sha256=new.sha256)
            finally:
                await new.aclose()

    async def list(self, list_request: ListRequest) -> AsyncIterator[FileInfo]:
        with storage_refusals(field="path"):
            batches = self._storage.list_dir(list_request.path or ".")
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    for name, entry in batch:
                        yield file_info(name, entry)

    async def stat(self, files: Files) -> FileInfo:
        with storage_refusals():
            return file_info(files.filename, await self._storage.stat(files.filename))

    async def delete(self, files: Files) -> Status:
        with storage_refusals():
            await self._storage.delete(files.filename)
        return Status(code=0)

    async def _read(self, name: str) -> Content:
        data = await self._read_small(name)
        try:
            return Content(text=data.decode("utf-8"))
        except UnicodeDecodeError:
            raise GRPCError(
                StatusCode.FAILED_PRECONDITION,
                f"{shown(name)} is not UTF-8 text; ReadStream reads any bytes",
            ) from None

    async def _read_small(self, name: str) -> bytes:
        """A file's bytes if they fit in one message."""
        limit = self._settings.max_message_bytes
        with storage_refusals():
            reader = await self._storage.open_reader(name)
            try:
                self._check_read_size(name, reader.size)
                fits = text_reply_length(reader.size) <= limit
                data = await reader.read(limit + 1) if fits else b""
            finally:
                await reader.aclose()
        if not fits or text_reply_length(len(data)) > limit:
            # The reply, not only the text, must fit: clients receive at most the same 4 MiB
            # by default (grpc-go's and grpcio's limit), framing included.
            raise GRPCError(
                StatusCode.FAILED_PRECONDITION,
                f"{shown(name)} does not fit in one {limit}-byte message (the message limit); "
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
        with storage_refusals():
            sha256 = await self._storage.write_bytes(
                files.filename, data, create_dirs=self._settings.create_dirs
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
