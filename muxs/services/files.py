"""The FileController service: text files under the server's root."""

from __future__ import annotations

import asyncio

from grpclib.const import Status as GrpcStatus
from grpclib.exceptions import GRPCError

from muxs.api import Content, FileControllerBase, Files, Status
from muxs.hooks import count_bytes_written
from muxs.storage import Root, shown


class FileControllerService(FileControllerBase):
    """Reads and atomically writes files confined to ``root``; disk work runs off the loop."""

    def __init__(self, root: Root, *, max_message_bytes: int) -> None:
        self._root = root
        self._max_message_bytes = max_message_bytes

    async def read(self, files: Files) -> Content:
        data = await asyncio.to_thread(
            self._root.read_bytes, files.filename, self._max_message_bytes
        )
        try:
            return Content(text=data.decode("utf-8"))
        except UnicodeDecodeError:
            raise GRPCError(
                GrpcStatus.FAILED_PRECONDITION, f"{shown(files.filename)} is not UTF-8 text"
            ) from None

    async def write(self, files: Files) -> Status:
        data = files.text.encode("utf-8")
        if len(data) > self._max_message_bytes:
            raise GRPCError(
                GrpcStatus.RESOURCE_EXHAUSTED,
                f"text is larger than the {self._max_message_bytes}-byte message limit",
            )
        await asyncio.to_thread(self._root.write_bytes, files.filename, data)
        count_bytes_written(len(data))
        return Status(code=0)
