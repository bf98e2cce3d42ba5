"""A raw HTTP/2 client (the h2 library): it sends exactly the bytes a test asks for.

No gRPC library sits in between, so tests can send what gRPC clients never would:
lying length prefixes, compressed flags, truncated messages, odd headers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

WAIT = 10.0  # generous: the machine is shared


def grpc_frame(body: bytes, *, compressed: bool = False, length: int | None = None) -> bytes:
    """A gRPC message: flag byte, big-endian length (``length`` may lie), then ``body``."""
    size = len(body) if length is None else length
    return bytes([compressed]) + size.to_bytes(4, "big") + body


def framed(data: bytes) -> list[tuple[bool, bytes]]:
    """The messages of a reply body: (compressed flag, body as sent)."""
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 1 : pos + 5], "big")
        out.append((bool(data[pos]), data[pos + 5 : pos + 5 + size]))
        pos += 5 + size
    return out


def grpclib_h2_config(*, client_side: bool) -> h2.config.H2Configuration:
    """h2's configuration as grpclib's channels (``client_side``) and servers make theirs."""
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding="ascii",
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_inbound_headers=False,
        normalize_outbound_headers=False,
    )


def request_headers(path: str, **extra: str) -> list[tuple[str, str]]:
    """The headers of a gRPC call to ``path``; ``extra`` replaces or adds (``_`` is ``-``)."""
    headers = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": "127.0.0.1",
        "content-type": "application/grpc",
        "te": "trailers",
    }
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return list(headers.items())


@dataclass
class Reply:
    """What the server answered on one stream."""

    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def http_status(self) -> int:
        return int(self.headers[":status"])

    @property
    def grpc_status(self) -> int | None:
        """``grpc-status`` from the trailers (or the headers of a trailers-only reply)."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))

    def messages(self) -> list[bytes]:
        """The length-prefixed messages of the reply body."""
        out, pos = [], 0
        while pos < len(self.data):
            size = int.from_bytes(self.data[pos + 1 : pos + 5], "big")
            out.append(self.data[pos + 5 : pos + 5 + size])
            pos += 5 + size
        return out


class RawConnection:
    """One HTTP/2 connection to a server; use as ``async with await RawConnection.open(...)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        #: This end's address, as the server sees its peer.
        self.address: tuple[str, int] = writer.get_extra_info("sockname")[:2]
        config = h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        self.replies: dict[int, Reply] = {}
        #: False: what the server sends is never acknowledged, so its flow-control windows
        #: close once it has sent what they allow (a zero-window stall, CVE-2019-9517).
        self.grants_window = True
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = asyncio.Event()
        self._window = asyncio.Event()
        self._flush()
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        await asyncio.gather(self._task, return_exceptions=True)

    def start(self, headers: Sequence[tuple[str, str]], *, end: bool = False) -> int:
        """Open a stream with ``headers``; return its id."""
        stream_id: int = self.h2.get_next_available_stream_id()
        self.replies[stream_id] = Reply()
        self.h2.send_headers(stream_id, list(headers), end_stream=end)
        self._flush()
        return stream_id

    def open_and_reset(
        self, headers: Sequence[tuple[str, str]], count: int, code: int = ErrorCodes.CANCEL
    ) -> None:
        """Open ``count`` streams and reset each at once, all in one write: the server reads
        every stream's reset before any of their handlers can take a step."""
        for _ in range(count):
            stream_id = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream_id, list(headers))
            self.h2.reset_stream(stream_id, code)
        self._flush()

    async def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` on a stream as flow control allows; ``end`` closes our side."""
        view = memoryview(data)
        while True:
            window = min(self.h2.local_flow_control_window(stream_id), len(view))
            chunk = min(window, self.h2.max_outbound_frame_size)
            if chunk or not view:
                last = chunk == len(view)
                self.h2.send_data(stream_id, bytes(view[:chunk]), end_stream=end and last)
                self._flush()
                view = view[chunk:]
                if last:
                    return
                continue
            self._window.clear()
            await asyncio.wait_for(self._window.wait(), WAIT)

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the socket, past h2's framing."""
        self._writer.write(data)

    async def reply(self, stream_id: int) -> Reply:
        """The server's whole answer on a stream (until it ends or is reset)."""
        reply = self.replies[stream_id]
        await asyncio.wait_for(reply.done.wait(), WAIT)
        return reply

    async def call(self, path: str, body: bytes, **headers: str) -> Reply:
        """A whole call: headers, ``body`` (already framed), end of stream, the answer."""
        stream_id = self.start(request_headers(path, **headers))
        await self.send(stream_id, body, end=True)
        return await self.reply(stream_id)

    async def wait_closed(self) -> None:
        """Wait until the server closes the connection."""
        await asyncio.wait_for(self.closed.wait(), WAIT)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self._writer.write(data)

    async def _read_loop(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for event in self.h2.receive_data(data):
                    self._on_event(event)
                self._flush()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.closed.set()
            self._window.set()
            for reply in self.replies.values():
                reply.done.set()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self.replies[event.stream_id].headers = _decoded(event.headers)
        elif isinstance(event, h2.events.TrailersReceived):
            self.replies[event.stream_id].trailers = _decoded(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.replies[event.stream_id].data += event.data
            if self.grants_window:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.replies[event.stream_id].done.set()
        elif isinstance(event, h2.events.StreamReset):
            reply = self.replies[event.stream_id]
            reply.reset = event.error_code
            reply.done.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event


class HeldPings:
    """An HTTP/2 client that writes only when told, so it can hold back its PING ACKs;
    ``async with HeldPings.open(host, port) as client``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.reader, self.writer = reader, writer
        self.writer.write(self.h2.data_to_send())
        self.pings = 0
        self.ended = False
        #: The reply's headers and trailers.
        self.status: dict[bytes, bytes] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, host: str, port: int) -> AsyncIterator[HeldPings]:
        client = cls(*await asyncio.open_connection(host, port))
        try:
            yield client
        finally:
            client.writer.close()
            with contextlib.suppress(OSError):
                await client.writer.wait_closed()

    async def read_until(self, done: str) -> None:
        """Read and process frames until the server sent a PING (``done`` "ping") or ended
        the stream ("end"); what h2 would answer is not written."""
        while not (self.pings if done == "ping" else self.ended):
            data = await asyncio.wait_for(self.reader.read(65536), WAIT)
            assert data, "the server closed the connection"
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.PingReceived):
                    self.pings += 1
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    self.status.update(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended = True


def _decoded(headers: object) -> dict[str, str]:
    assert isinstance(headers, list)
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in headers
    }
