"""An abusive HTTP/2 peer: one connection that floods the server with the frames of an attack.

Frames are built with hyperframe (and h2's client for requests) and written in batches as
fast as the socket takes them; what the server sends back is scanned for its GOAWAY, or
not read at all (a peer that never reads its replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sys
from collections.abc import Callable

import h2.config
import h2.connection
import pytest
from grpclib.protocol import Stream
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from muxs import RunningServer
from tests.polling import until
from tests.rawh2 import request_headers
from tests.reliability.test_misbehaving import Usage, assert_back_to, assert_others_served

WAIT = 60.0  # a hang guard: the machine is shared
_FRAME_HEADER = 9


class Attacker:
    """One connection to ``server`` that floods it; ``goaway`` is the server's, once read."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, read_replies: bool
    ) -> None:
        self._reader = reader
        self._writer = writer
        #: What the attacker writes back to each whole frame of the server's (None: nothing).
        self.answer: Callable[[Frame], bytes] | None = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self._writer.write(self.h2.data_to_send())
        self.goaway: GoAwayFrame | None = None
        #: This end's address, as the server sees its peer.
        self.address: tuple[str, int] = writer.get_extra_info("sockname")[:2]
        self.closed = asyncio.Event()
        self._reading = asyncio.create_task(self._read()) if read_replies else None

    @classmethod
    async def open(cls, server: RunningServer, *, read_replies: bool = True) -> Attacker:
        """Connect to ``server`` (see ``connect``)."""
        return await cls.connect(server.host, server.port, read_replies=read_replies)

    @classmethod
    async def connect(cls, host: str, port: int, *, read_replies: bool = True) -> Attacker:
        """Connect; a peer that does not read gets a small receive buffer, so that what the
        server sends it fills the socket soon."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if not read_replies:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer, read_replies=read_replies)

    async def flood(self, batch: Callable[[], bytes]) -> None:
        """Write ``batch()`` again and again until the server closes the connection."""
        with contextlib.suppress(ConnectionError):
            while not self.closed.is_set():
                self._writer.write(batch())
                await self._writer.drain()
                await asyncio.sleep(0)  # the server shares this loop (drain may not yield)
        self.closed.set()

    def write(self, data: bytes) -> None:
        """Queue ``data`` to be sent as fast as the server takes it."""
        self._writer.write(data)

    def open_stream(self, path: str) -> int:
        """Open a call to ``path`` (headers only, the stream left open); return its id."""
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, request_headers(path))
        self._writer.write(self.h2.data_to_send())
        return stream_id

    def send_pending(self) -> None:
        """Write what the attacker's h2 has prepared."""
        self._writer.write(self.h2.data_to_send())

    def reset_streams(self, path: str, count: int) -> bytes:
        """``count`` calls to ``path``, each reset as soon as it is opened (Rapid Reset)."""
        for _ in range(count):
            stream_id = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream_id, request_headers(path))
            self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        data: bytes = self.h2.data_to_send()
        return data

    async def wait_goaway(self) -> GoAwayFrame:
        """The server's GOAWAY, once it has closed the connection."""
        assert self._reading is not None, "this attacker does not read"
        await asyncio.wait_for(self._reading, WAIT)
        assert self.goaway is not None, "the server closed the connection without GOAWAY"
        return self.goaway

    async def aclose(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        self._writer.transport.abort()  # what it could not send yet is dropped, not waited for
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read(self) -> None:
        """Scan the server's frames (whatever they are) for its GOAWAY, until it closes."""
        buffer = b""
        try:
            while data := await self._reader.read(65536):
                buffer += data
                while len(buffer) >= _FRAME_HEADER:
                    frame, length = Frame.parse_frame_header(memoryview(buffer[:_FRAME_HEADER]))
                    if len(buffer) < _FRAME_HEADER + length:
                        break
                    body = buffer[_FRAME_HEADER : _FRAME_HEADER + length]
                    buffer = buffer[_FRAME_HEADER + length :]
                    if isinstance(frame, GoAwayFrame):
                        frame.parse_body(memoryview(body))
                        self.goaway = frame
                    elif self.answer is not None:
                        frame.parse_body(memoryview(body))
                        self._writer.write(self.answer(frame))
        except ConnectionError:
            pass
        finally:
            self.closed.set()


PING = PingFrame(0, opaque_data=b"flooding").serialize()
SETTINGS = SettingsFrame(0).serialize()
WINDOW_UPDATE = WindowUpdateFrame(0, window_increment=1).serialize()
PRIORITY = PriorityFrame(1, depends_on=0, stream_weight=16).serialize()
#: A frame of type 0xFA, unknown to HTTP/2 (to be ignored), with an 8-byte body.
UNKNOWN = (8).to_bytes(3, "big") + bytes([0xFA, 0]) + (0).to_bytes(4, "big") + b"flooding"


def repeated(frame: bytes, count: int) -> Callable[[], bytes]:
    """A batch of ``count`` copies of ``frame``."""
    data = frame * count
    return lambda: data


def empty_data(stream_id: int) -> bytes:
    """A DATA frame with no data that does not end its stream (CVE-2019-9518)."""
    return DataFrame(stream_id, b"").serialize()


def data_on_a_reset_stream(attacker: Attacker) -> bytes:
    """A DATA frame of one byte on a stream the attacker opened and reset: each is answered
    with RST_STREAM (and the connection's window given back), so it can be sent forever."""
    stream_id = attacker.open_stream("/muxs.Greeter/LotsOfGreetings")
    attacker.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
    attacker.send_pending()
    return DataFrame(stream_id, b"x").serialize()


def endless_headers(stream_id: int, continuations: int) -> bytes:
    """A HEADERS frame that does not end its header block, then ``continuations`` empty
    CONTINUATION frames that never do either (CVE-2024-27316)."""
    return (
        HeadersFrame(stream_id, b"").serialize()
        + ContinuationFrame(stream_id, b"").serialize() * continuations
    )


def live_streams() -> int:
    """grpclib streams alive in this process (server's and clients'), after a collection."""
    gc.collect()
    return sum(isinstance(thing, Stream) for thing in gc.get_objects())


def allocated_blocks() -> int:
    """The memory blocks Python holds for live objects in this process (the server's, the
    attacker's and the clients'), once the garbage collector has run: what a leak grows,
    whatever the allocator keeps of a busier round's peak."""
    gc.collect()
    return sys.getallocatedblocks()


async def assert_calmed_down(
    server: RunningServer,
    caplog: pytest.LogCaptureFixture,
    batch: Callable[[Attacker], Callable[[], bytes]],
    budget: str,
    size: int,
    window: float = 10.0,
) -> None:
    """An attacker flooding ``batch`` while others call: they are all served, it gets
    GOAWAY ENHANCE_YOUR_CALM naming ``budget`` (``size`` per ``window`` seconds; logged
    once, with its peer), and the
    server's tasks, descriptors, connections and streams are back to where they were."""
    caplog.clear()
    baseline, streams = Usage.now(), live_streams()
    attacker = await Attacker.open(server)
    flooding = asyncio.create_task(attacker.flood(batch(attacker)))
    await assert_others_served(server)
    goaway = await attacker.wait_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert goaway.additional_data == budget.encode()
    await flooding
    host, port = attacker.address
    await attacker.aclose()
    await assert_back_to(baseline, server)
    await until(lambda: live_streams() <= streams)  # what the attack's streams held is freed
    warnings = [r.getMessage() for r in caplog.records if "ENHANCE_YOUR_CALM" in r.getMessage()]
    over = f"over its {budget} of {size} per {window:g} s"
    assert warnings == [f"GOAWAY ENHANCE_YOUR_CALM to {host}:{port}: {over}"]
