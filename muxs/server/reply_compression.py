"""Reply messages compressed (``ServerSettings.compression``) for clients that accept it.

A call's replies are compressed when the server is configured with an encoding and the
client lists it in ``grpc-accept-encoding`` (grpcio and grpc-js list gzip and deflate; a
client that sends no such header gets plain replies). Each message is compressed on its own
when that gains (``muxs.compression.frame``); the response headers say ``grpc-encoding``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from muxs.compression import MIN_COMPRESSED_BYTES, frame

_SendData = Callable[..., Awaitable[None]]


def reply_encoding(configured: str, headers: Collection[tuple[str, str]]) -> str | None:
    """The encoding of a call's replies: ``configured`` if its client accepts it, else none."""
    if configured == "none":
        return None
    accepted = {
        encoding.strip()
        for name, value in headers
        if name == "grpc-accept-encoding"
        for encoding in value.split(",")
    }
    return configured if configured in accepted else None


class ReplyWriter:
    """A stream's ``send_data`` that compresses each reply message with ``encoding``.

    grpclib's ``send_message`` writes a message as one ``send_data(prefix + body)``.
    """

    def __init__(self, send_data: _SendData, encoding: str) -> None:
        self._send_data = send_data
        self._encoding = encoding

    async def __call__(self, data: bytes, end_stream: bool = False) -> None:
        if data[:1] == b"\x00" and len(data) >= 5 + MIN_COMPRESSED_BYTES:
            data = frame(memoryview(data)[5:], self._encoding)
        await self._send_data(data, end_stream=end_stream)
