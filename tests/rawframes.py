"""A raw HTTP/2 peer that keeps no HTTP/2 state: it writes exactly the frames a test builds
and records every frame the other end sends.

``tests/rawh2.py``'s client runs h2's state machines, which refuse to send a malformed frame
and close the connection on a frame they do not expect (a reset of a stream they closed); this
one sends anything (pseudo-headers out of order, a header block replayed after the HPACK table
changed, DATA after trailers, window overflows) and sees each answer exactly: the status on a
stream, its RST_STREAM code, the GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import hpack

from muxs.frame_layout import FRAME_HEADER
from tests.rawh2 import WAIT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(kind: int, flags: int, stream_id: int, body: bytes = b"") -> bytes:
    """One frame's bytes, as they go on the wire."""
    size = len(body)
    return FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + body


def reset(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def literal_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """An HPACK block of literals never indexed, in this order, as they are (it leaves the
    receiver's table as it is, and no encoder fixes a name's case or drops a field)."""
    block = b""
    for name, value in headers:
        block += b"\x10" + _string(name.encode()) + _string(value.encode())
    return block


def _string(text: bytes) -> bytes:
    assert len(text) < 127
    return bytes([len(text)]) + text


@dataclass
class Answer:
    """What the other end sent on one stream."""

    #: Each header block, decoded (the headers, then the trailers).
    blocks: list[dict[str, str]] = field(default_factory=list)
    data: bytes = b""
    #: The code of each RST_STREAM, in order.
    resets: list[int] = field(default_factory=list)
    ended: bool = False

    @property
    def reset(self) -> int | None:
        """The code of the first RST_STREAM (the one that ended the stream)."""
        return self.resets[0] if self.resets else None

    @property
    def status(self) -> int | None:
        """``grpc-status`` of the last block (a trailers-only answer's, or the trailers')."""
        value = self.blocks[-1].get("grpc-status") if self.blocks else None
        return None if value is None else int(value)

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class FramePeer:
    """One connection: the client's side (``open``), or a server's (made with the reader and
    writer of a connection it accepted; it sends its own SETTINGS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        #: The encoder of the blocks ``block`` makes (its table is this peer's).
        self.encoder = hpack.Encoder()
        #: Every byte this peer wrote.
        self.sent = bytearray()
        self.decoder = hpack.Decoder()
        self.answers: dict[int, Answer] = {}
        #: The GOAWAY's error code, once one came.
        self.goaway: int | None = None
        self.goaway_data = b""
        #: Every frame received, as (type, flags, stream id, payload).
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.closed = asyncio.Event()
        #: False: the other end's SETTINGS are never acknowledged (so never in force).
        self.acknowledges_settings = True
        self._changed = asyncio.Event()
        self._block = b""
        self._ended_block = False
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, host: str, port: int, settings: bytes = b"") -> FramePeer:
        """A client connection, its preface and SETTINGS (``settings``: their payload) sent."""
        reader, writer = await asyncio.open_connection(host, port)
        peer = cls(reader, writer)
        peer.write(PREFACE + frame(SETTINGS, 0, 0, settings))
        return peer

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        await asyncio.gather(self._task, return_exceptions=True)

    def write(self, data: bytes) -> None:
        self.sent += data
        self._writer.write(data)

    def block(self, headers: Sequence[tuple[str, str]]) -> bytes:
        """``headers`` as hpack's encoder makes them (indexing them in this peer's table)."""
        return bytes(self.encoder.encode(list(headers)))

    def headers(
        self, stream_id: int, block: bytes, *, end: bool = False, flags: int = END_HEADERS
    ) -> None:
        """A HEADERS frame carrying ``block``."""
        self.write(frame(HEADERS, flags | (END_STREAM if end else 0), stream_id, block))

    def data(self, stream_id: int, body: bytes, *, end: bool = False) -> None:
        self.write(frame(DATA, END_STREAM if end else 0, stream_id, body))

    async def answer(self, stream_id: int) -> Answer:
        """What came on ``stream_id`` once it ended or was reset (or a GOAWAY came)."""
        await self.until(
            lambda: self.answers.get(stream_id, Answer()).done or self.goaway is not None
        )
        return self.answers.setdefault(stream_id, Answer())

    async def until(self, condition: object) -> None:
        """Wait until ``condition()`` holds or the connection closes (``WAIT`` at most)."""
        assert callable(condition)
        async with asyncio.timeout(WAIT):
            while not condition() and not self.closed.is_set():
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.closed.wait()

    async def _read_loop(self) -> None:
        buffer = b""
        try:
            while chunk := await self._reader.read(65536):
                buffer += chunk
                if buffer.startswith(PREFACE):  # a client's, when this peer is a server
                    buffer = buffer[len(PREFACE) :]
                while len(buffer) >= 9:
                    high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(buffer)
                    end = 9 + (high << 8 | low)
                    if len(buffer) < end:
                        break
                    self._received(kind, flags, stream_id & 0x7FFFFFFF, buffer[9:end])
                    buffer = buffer[end:]
                self._changed.set()
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    def _received(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        self.frames.append((kind, flags, stream_id, payload))
        answer = self.answers.setdefault(stream_id, Answer()) if stream_id else None
        if kind == SETTINGS and not flags & ACK and self.acknowledges_settings:
            self.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            self.write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self.goaway = int.from_bytes(payload[4:8], "big")
            self.goaway_data = payload[8:]
        elif kind == RST_STREAM and answer is not None:
            answer.resets.append(int.from_bytes(payload, "big"))
        elif kind == DATA and answer is not None:
            padding = payload[0] if flags & PADDED else None
            body = payload[1 : len(payload) - (padding or 0)] if padding is not None else payload
            answer.data += body
            if payload:
                self.write(window_update(0, len(payload)) + window_update(stream_id, len(payload)))
            answer.ended |= bool(flags & END_STREAM)
        elif kind in (HEADERS, CONTINUATION) and answer is not None:
            if kind == HEADERS:
                self._ended_block = bool(flags & END_STREAM)
                self._block = _headers_payload(flags, payload)
            else:
                self._block += payload
            if flags & END_HEADERS:
                decoded = self.decoder.decode(self._block)
                answer.blocks.append({str(name): str(value) for name, value in decoded})
                answer.ended |= self._ended_block


def _headers_payload(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's block fragment, its padding and priority taken off."""
    start, padding = 0, 0
    if flags & PADDED:
        padding, start = payload[0], 1
    if flags & PRIORITY_FLAG:
        start += 5
    return payload[start : len(payload) - padding]
