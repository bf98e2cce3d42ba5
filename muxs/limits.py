"""The server's limits, enforced in one place between grpclib and the network.

``LimitedServer`` is grpclib's ``Server`` with these additions (each a ``ServerSettings``
field, documented in docs/RELIABILITY.md):

- ``max_message_bytes``: a request message's 5-byte prefix is checked before its body
  is read; a larger one is refused with RESOURCE_EXHAUSTED (grpclib alone buffers
  whatever length a prefix claims). A prefix with the compressed flag set, a stream
  that ends inside a message, a unary call without its request and a message that does
  not decode (``muxs.codec``) are refused with INTERNAL (UNIMPLEMENTED for a compression
  muxs lacks), as gRPC's protocol says; grpclib alone would answer UNKNOWN and log a
  traceback.
- ``max_concurrent_streams``: advertised in the connection's HTTP/2 SETTINGS.
- ``max_connections``: a connection over the limit gets GOAWAY and is closed.
- ``idle_timeout``: a connection with no call open for that long gets GOAWAY.
- ``keepalive_time`` and ``keepalive_timeout``: grpclib's keepalive pings.

It also fixes three HTTP/2 faults of grpclib (see ``_LimitedProtocol._feed``), and
bounds what one connection's peer can make the server do (``muxs.budgets``: over
``reset_budget`` or ``control_frame_budget`` it gets GOAWAY ENHANCE_YOUR_CALM), how long
its backlog may hold the event loop (``TURN_BYTES`` a turn), and what its unread replies
may hold (reading stops while its socket cannot take more).

It releases every stream when its handler's task ends, even a task cancelled (its
stream reset) before its first step, whose body, and so grpclib's release in its
``finally``, never runs (see ``_LimitedHandler.accept``).

The hooks into grpclib 0.4 are ``Server._protocol_factory``, the ``AbstractHandler``
between a connection and its request handler, the handler's task per stream
(``Handler._tasks``), the connection's ``h2`` object (``Connection._connection``) and
the per-stream ``recv_data`` that grpclib's ``recv_message`` reads a message with;
the tests in tests/server/test_wire_limits.py fail if any of them changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import cast

import h2.events
import h2.exceptions
from grpclib import protocol
from grpclib._typing import IServable
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Handler, Server
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from muxs.budgets import FloodGuard
from muxs.codec import Codec
from muxs.hooks import format_peer
from muxs.settings import ServerSettings
from muxs.transport import CoalescingTransport

log = logging.getLogger(__name__)

_Headers = list[tuple[str, str]]
_TRUNCATED = "the request ended in the middle of a message"
#: Most bytes of one connection fed to h2 in one turn of the event loop (about a
#: millisecond of frames); the rest waits for the next turn, reading paused.
TURN_BYTES = 16 * 1024
#: How long a connection sent GOAWAY for abuse still reads (and drops) what its peer sends
#: before it closes, so that the peer gets to read the GOAWAY (see ``CoalescingTransport``).
LINGER_SECONDS = 2.0


class RequestReader:
    """A stream's ``recv_data`` that checks every request message before grpclib reads it.

    grpclib's ``recv_message`` reads a message as ``recv_data(5)`` (the prefix: a
    compressed flag and a big-endian length), then ``recv_data(length)``; reads alternate,
    except that an empty prefix read means the client ended the stream.
    """

    def __init__(
        self,
        recv_data: Callable[[int], Awaitable[bytes]],
        *,
        max_message_bytes: int,
        client_streaming: bool,
        encoding: str | None,
    ) -> None:
        self._recv_data = recv_data
        self._limit = max_message_bytes
        self._client_streaming = client_streaming
        self._encoding = encoding
        self._in_body = False
        self._messages = 0

    async def __call__(self, size: int) -> bytes:
        if self._in_body:
            self._in_body = False
            data = await self._read(size)
            if len(data) != size:
                raise GRPCError(Status.INTERNAL, _TRUNCATED)
            self._messages += 1
            return data
        prefix = await self._read(size)
        if not prefix:
            if not self._client_streaming and not self._messages:
                raise GRPCError(Status.INTERNAL, "the request ended before its message")
            return prefix
        self._check_prefix(prefix)
        self._in_body = True
        return prefix

    def _check_prefix(self, prefix: bytes) -> None:
        if prefix[0]:
            if self._encoding not in (None, "identity"):
                raise GRPCError(
                    Status.UNIMPLEMENTED,
                    f"grpc-encoding {self._encoding!r} is not supported; send uncompressed",
                )
            raise GRPCError(
                Status.INTERNAL, "a message is flagged compressed but the call has no grpc-encoding"
            )
        length = int.from_bytes(prefix[1:5], "big")
        if length > self._limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"a {length}-byte message is over this server's {self._limit}-byte limit",
            )

    async def _read(self, size: int) -> bytes:
        try:
            return await self._recv_data(size)
        except AssertionError:  # grpclib's Buffer: the stream ended inside this read
            raise GRPCError(Status.INTERNAL, _TRUNCATED) from None


class _LimitedHandler(protocol.AbstractHandler):
    """grpclib's handler of one connection's calls, with each stream's reads checked."""

    def __init__(self, inner: Handler, connection: _LimitedProtocol) -> None:
        self._inner = inner
        self._connection = connection

    def accept(
        self,
        stream: protocol.Stream,
        headers: _Headers,
        release_stream: Callable[[], None],
    ) -> None:
        fields = dict(headers)
        method = self._inner.mapping.get(fields.get(":path", ""))
        stream.recv_data = RequestReader(  # type: ignore[method-assign]
            stream.recv_data,
            max_message_bytes=self._connection.settings.max_message_bytes,
            client_streaming=method is not None and method.cardinality.client_streaming,
            encoding=fields.get("grpc-encoding"),
        )
        self._connection.call_started()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                release_stream()
                self._connection.call_ended()

        self._inner.accept(stream, headers, release)
        # grpclib's Handler keeps each stream's task in ``_tasks``; the task's ``finally``
        # releases the stream, but a task cancelled (stream reset) before its first step
        # never runs its body: release when the task ends, whether or not it ran.
        self._inner._tasks[stream].add_done_callback(lambda _: release())

    def cancel(self, stream: protocol.Stream) -> None:
        self._inner.cancel(stream)

    def close(self) -> None:
        self._inner.close()


class _LimitedProtocol(protocol.H2Protocol):
    """One client connection: counted, given muxs's HTTP/2 settings, closed when idle."""

    def __init__(
        self, inner: protocol.H2Protocol, settings: ServerSettings, open_: set[_LimitedProtocol]
    ) -> None:
        assert isinstance(inner.handler, Handler)
        super().__init__(_LimitedHandler(inner.handler, self), inner.config, inner.h2_config)
        self.settings = settings
        self._open = open_
        self._calls = 0
        self._loop = asyncio.get_running_loop()
        self._idle_since = self._loop.time()
        self._idle_check: asyncio.TimerHandle | None = None
        self._guard = FloodGuard(
            resets=settings.reset_budget,
            control_frames=settings.control_frame_budget,
            window=settings.budget_window,
            clock=self._loop.time,
        )
        self._backlog = memoryview(b"")
        self._paused_for: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.Transport, transport)
        self._transport = CoalescingTransport(self._socket)
        super().connection_made(self._transport)  # type: ignore[arg-type]
        if len(self._open) >= self.settings.max_connections:
            log.warning("refused a connection: %d are open", len(self._open))
            self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, b"too many connections")
            return
        self._open.add(self)
        h2 = self.connection._connection
        h2.update_settings(
            {SettingCodes.MAX_CONCURRENT_STREAMS: self.settings.max_concurrent_streams}
        )
        self.connection.flush()
        if self.settings.idle_timeout:
            self._check_idle()

    def data_received(self, data: bytes) -> None:
        """Feed what the peer sent to h2 at most ``TURN_BYTES`` a turn of the event loop:
        with more, reading pauses and the rest waits for the next turn, so one flooding
        connection cannot hold the loop while others wait (uvloop passes a whole backlog)."""
        if self.connection.is_closing():
            return  # going away: what the peer still sends is read and dropped
        if self._backlog:  # not expected while reading is paused, but kept in order
            data = bytes(self._backlog) + data
        self._backlog = memoryview(data)
        self._next_turn()

    def _next_turn(self) -> None:
        if self.connection.is_closing():
            self._backlog = memoryview(b"")
            return
        chunk, self._backlog = self._backlog[:TURN_BYTES], self._backlog[TURN_BYTES:]
        self._feed(bytes(chunk))
        if self._backlog and not self.connection.is_closing():
            self._pause_reading("backlog")
            self._loop.call_soon(self._next_turn)
        else:
            self._backlog = memoryview(b"")
            self._resume_reading("backlog")

    def _feed(self, data: bytes) -> None:
        """grpclib's ``data_received``, with the flood budgets and three HTTP/2 fixes: a
        protocol error is answered with the GOAWAY h2 prepared before the connection
        closes; frames of unknown types are ignored (grpclib raises on them, killing the
        connection), as RFC 9113 section 5.5 says; an empty DATA frame that does not end
        its stream is not passed on (grpclib would end the request there)."""
        self._guard.wrote(self._transport.bytes_written)
        over = self._guard.over_budget(data)
        if over is not None:
            self._calm_down(over)
            return
        try:
            events = self.connection.feed(data)
        except h2.exceptions.ProtocolError as exc:
            log.info("closing a connection on an HTTP/2 protocol error: %s", exc)
            self.connection.flush()
            self.processor.close("Protocol error")
            return
        self.connection.flush()
        for event in events:
            if isinstance(event, h2.events.DataReceived) and _carries_nothing(event):
                # grpclib would take an empty read for the end of the request.
                self.connection.ack(event.stream_id, event.flow_controlled_length)
            elif not isinstance(event, h2.events.UnknownFrameReceived):
                self.processor.process(event)
        self.connection.flush()

    def pause_writing(self) -> None:
        """The socket's write buffer is full: stop reading too, so that a peer that does not
        read its replies (PING and SETTINGS acknowledgements) cannot make them pile up."""
        super().pause_writing()
        self._pause_reading("writes")

    def resume_writing(self) -> None:
        super().resume_writing()
        self._resume_reading("writes")

    def _pause_reading(self, reason: str) -> None:
        if not self._paused_for and not self._socket.is_closing():
            self._socket.pause_reading()
        self._paused_for.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason in self._paused_for:
            self._paused_for.discard(reason)
            if not self._paused_for and not self._socket.is_closing():
                self._socket.resume_reading()

    def _calm_down(self, budget: str) -> None:
        """GOAWAY ENHANCE_YOUR_CALM to a peer over ``budget`` (logged once: it is closed)."""
        size = self._guard.budgets[budget].size
        log.warning(
            "GOAWAY ENHANCE_YOUR_CALM to %s: over its %s of %d per %g s",
            format_peer(self.connection.get_peer()),
            budget,
            size,
            self.settings.budget_window,
        )
        self.connection._connection.close_connection(
            ErrorCodes.ENHANCE_YOUR_CALM, additional_data=budget.encode()
        )
        self.connection.flush()
        self._transport.linger(LINGER_SECONDS)
        self._paused_for.clear()
        self._socket.resume_reading()  # to drop what the peer still sends (see ``linger``)
        self.handler.close()  # cancels every call of the connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._open.discard(self)
        if self._idle_check is not None:
            self._idle_check.cancel()
        super().connection_lost(exc)

    @property
    def calls_open(self) -> int:
        """How many of this connection's calls have not ended (their streams not released)."""
        return self._calls

    @property
    def streams_held(self) -> int:
        """How many streams grpclib keeps for this connection (its ``processor.streams``)."""
        return len(self.processor.streams)

    def write_buffer_size(self) -> int:
        """Bytes written to this connection that its socket has not taken yet."""
        return self._transport.pending_bytes + self._socket.get_write_buffer_size()

    @property
    def reading_paused_for(self) -> frozenset[str]:
        """Why the server has stopped reading this connection for now: ``writes`` (its
        replies cannot be written), ``backlog`` (the rest waits for the next turn)."""
        return frozenset(self._paused_for)

    def call_started(self) -> None:
        self._calls += 1

    def call_ended(self) -> None:
        self._calls -= 1
        if not self._calls:
            self._idle_since = self._loop.time()

    def goaway(self, code: ErrorCodes, reason: bytes) -> None:
        """Tell the client why with a GOAWAY frame, then close the connection."""
        if self.connection.is_closing():
            self.connection.close()  # it may be lingering after an earlier GOAWAY: no more
            return
        self.connection._connection.close_connection(code, additional_data=reason)
        self.connection.flush()
        if "writes" in self._paused_for:
            self._socket.abort()  # its peer reads nothing: a graceful close would wait forever
        self.connection.close()

    def _check_idle(self) -> None:
        """GOAWAY if no call has been open for ``idle_timeout``; else check again when that
        could first be true (one timer per connection, not one per call)."""
        timeout = self.settings.idle_timeout
        wait = timeout
        if not self._calls:
            idle_for = self._loop.time() - self._idle_since
            if idle_for >= timeout:
                self.goaway(ErrorCodes.NO_ERROR, b"idle")
                return
            wait = timeout - idle_for
        if not self.connection.is_closing():
            self._idle_check = self._loop.call_later(wait, self._check_idle)


def _carries_nothing(event: h2.events.DataReceived) -> bool:
    """An empty DATA frame (or only padding) that does not end its stream."""
    return not event.data and event.stream_ended is None


class LimitedServer(Server):
    """A grpclib ``Server`` that enforces the limits of ``settings`` (see the module doc)."""

    def __init__(self, handlers: Collection[IServable], settings: ServerSettings) -> None:
        super().__init__(handlers, codec=Codec(), config=keepalive_config(settings))
        self._settings = settings
        self.connections: set[_LimitedProtocol] = set()

    def _protocol_factory(self) -> protocol.H2Protocol:
        return _LimitedProtocol(super()._protocol_factory(), self._settings, self.connections)

    async def wait_closed(self) -> None:
        """Wait for the calls to end, then close every connection (GOAWAY first)."""
        await super().wait_closed()
        for connection in list(self.connections):
            connection.goaway(ErrorCodes.NO_ERROR, b"server stopping")


def keepalive_config(settings: ServerSettings) -> Configuration:
    """grpclib's configuration with the keepalive of ``settings``."""
    return Configuration(
        _keepalive_time=settings.keepalive_time or None,
        _keepalive_timeout=settings.keepalive_timeout,
    )
