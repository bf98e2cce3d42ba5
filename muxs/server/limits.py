"""The server's limits, enforced in one place between grpclib and the network.

``LimitedServer`` is grpclib's ``Server`` with these additions (each a ``ServerSettings``
field, documented in docs/RELIABILITY.md):

- ``max_message_bytes``: a request message's 5-byte prefix is checked before its body
  is read; a larger one is refused with RESOURCE_EXHAUSTED (grpclib alone buffers
  whatever length a prefix claims). A message compressed with ``gzip`` or ``deflate``
  (``muxs.compression``) is inflated within that limit before grpclib reads it, all its
  gzip members together (a gzip bomb, or more than ``MAX_GZIP_MEMBERS`` members, is
  RESOURCE_EXHAUSTED, memory flat). A compressed message in an encoding muxs lacks is
  refused with UNIMPLEMENTED; a compressed flag without ``grpc-encoding``, a compressed
  message that does not inflate (truncated, corrupt, bytes after its last gzip member), a
  stream that ends inside a message, a unary call without its request and a message that
  does not decode (``muxs.server.codec``) with INTERNAL, as gRPC's protocol says; grpclib
  alone would answer UNKNOWN and log a traceback. Every response advertises
  ``grpc-accept-encoding``; with ``compression``, replies are compressed for a client that
  accepts it (``muxs.server.reply_compression``).
- request headers grpclib cannot take (``muxs.server.request_headers``) are answered before it
  sees them: trailers-only with the status gRPC's protocol names, or a stream reset.
- ``max_concurrent_streams``: advertised in the connection's HTTP/2 SETTINGS.
- ``max_connections``: a connection over the limit gets GOAWAY and is closed, unless an
  open one has had no call open for ``handshake_timeout``: the one idle the longest goes
  instead (GOAWAY NO_ERROR; a connection with a call open never does).
- ``idle_timeout``: a connection with no call open for that long gets GOAWAY.
- ``handshake_timeout``: a connection whose HTTP/2 preface (the magic and its SETTINGS)
  has not come that long after it started (after its TLS handshake) gets GOAWAY.
- ``request_header_timeout``: a connection whose peer has begun a frame, or a request's
  header block, and not finished it for that long gets GOAWAY (slowloris).
- ``stream_idle_timeout`` (for what the server sends): a call whose client grants no
  flow-control window for that long ends with DEADLINE_EXCEEDED (``WindowWait``); a
  connection whose socket takes too little of what is written for that long is aborted.
- ``keepalive_time`` and ``keepalive_timeout``: grpclib's keepalive pings.
- ``max_connection_age`` (give or take a tenth, at random, so that connections opened
  together do not all close together) and ``max_connection_age_grace``: an old connection
  gets grpc-go's graceful GOAWAY NO_ERROR ``max_age``: one with last-stream-id 2^31-1,
  then, after a PING round trip (the streams the client opened before it read the first
  have come), one with the real last-stream-id; streams opened later are refused
  (REFUSED_STREAM, which clients retry). The calls open may finish within the grace,
  then its client closes it (the server does ``HANG_UP_SECONDS`` later if it does not).
  h2 cannot send a GOAWAY and go on serving the streams below it (its connection is
  closed once one is sent), so these two are written past it.
- a drain (``muxs.server.lifecycle``): the same GOAWAYs, ``server stopping``, once the
  calls open when it began have ended, a PING round trip after the last one's trailers
  (``_LimitedProtocol.drain``: a grpclib client fails every call it holds at a GOAWAY).
- ``min_ping_interval`` and ``keepalive_permit_without_calls``: the ping policy
  (``muxs.server.pings``): too many pings get GOAWAY ENHANCE_YOUR_CALM ``too_many_pings``.

A client stream's end reaches its handler only once a PING round trip has settled it
(``_LimitedProtocol.settle``): an upload reset right after its end is never committed.

It also fixes three HTTP/2 faults of grpclib (see ``_LimitedProtocol._feed``), and
bounds what one connection's peer can make the server do (``muxs.server.budgets``: over
``reset_budget`` or ``control_frame_budget`` it gets GOAWAY ENHANCE_YOUR_CALM), how long
its backlog may hold the event loop (``TURN_BYTES`` of work a turn), and what its unread replies
may hold (reading stops while its socket cannot take more).

It releases every stream when its handler's task ends, even a task cancelled (its
stream reset) before its first step, whose body, and so grpclib's release in its
``finally``, never runs (see ``_LimitedHandler.accept``).

Where this needs grpclib's or h2's internals (how a server makes its connections, its h2
configuration, the handler's task per stream, let go of as soon as it ends, the connection's
``h2`` object, its table of event handlers, the per-stream ``recv_data``; and, for speed, the
response header blocks and DATA frames it frames itself, the request header blocks it
decodes once and the request data it acknowledges once a turn, the request frames it
parses directly, each request's stream made with a ``DirectBuffer`` and its call run in
fewer steps than grpclib's request handler takes (``start_call``): issue 18 in
docs/PERFORMANCE.md), it goes through ``muxs._internals``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Literal, cast

import h2.events
import h2.exceptions
from grpclib import protocol
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_grpc_message
from grpclib.server import Handler, Server
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from muxs._internals import (
    CLOSED_STREAMS_KEPT,
    SHORT_READ,
    StatelessHeaders,
    acknowledge_once_a_turn,
    acknowledging_once_a_turn,
    buffer_reads,
    decode_headers_as_latin1,
    decode_headers_once,
    forget_task,
    h2_connection,
    keep_closed_streams,
    keepalive_config,
    let_go_of_stream,
    make_direct_streams,
    make_protocols_with,
    parse_frames_directly,
    process_events,
    read_requests_with,
    receive_data_directly,
    receive_data_runs,
    receive_known_headers,
    refuse_overlong_frame,
    replace_event_handler,
    send_data_directly,
    send_headers_statelessly,
    send_replies_with,
    settle_configuration,
    start_call,
    wait_for_window_with,
)
from muxs.coalescing import CoalescingTransport
from muxs.compression import (
    ACCEPT_ENCODING,
    CompressingWriter,
    Corrupt,
    TooLarge,
    TooManyMembers,
    inflate,
    supports,
)
from muxs.errors import StatusCode
from muxs.server.budgets import MAX_HEADER_BLOCK_BYTES, FloodGuard, Frame
from muxs.server.codec import Codec
from muxs.server.hooks import OPEN_ENDED, format_peer
from muxs.server.pings import TOO_MANY_PINGS, PingPolicy
from muxs.server.refusals import over_limit
from muxs.server.reply_compression import RESPONSE_HEADERS, reply_encoding
from muxs.server.request_headers import Refusal, refusal, unknown_method
from muxs.server.settings import ServerSettings
from muxs.tls import is_tls_record

if TYPE_CHECKING:
    from muxs._internals import IServable

log = logging.getLogger(__name__)

_Headers = list[tuple[str, str]]
_TRUNCATED = "the request ended in the middle of a message"
#: Most work of one connection fed to h2 in one turn of the event loop (about a
#: millisecond of frames): bytes, except that DATA payload counts a 64th
#: (``FrameScanner.take_turn``); the rest waits for the next turn, reading paused.
TURN_BYTES = 16 * 1024
#: The largest frame a client may send (SETTINGS_MAX_FRAME_SIZE; HTTP/2's default is 16 KiB):
#: uploads in fewer, larger DATA frames, each still within the flow-control window.
MAX_FRAME_BYTES = 1 << 20
#: Response header blocks, encoded once for the whole server (``StatelessHeaders``).
_HEADER_BLOCKS = StatelessHeaders()
#: How long a connection sent GOAWAY for abuse still reads (and drops) what its peer sends
#: before it closes, so that the peer gets to read the GOAWAY (see ``CoalescingTransport``).
LINGER_SECONDS = 2.0
#: How long a retired connection with no call open waits for its client to close it.
HANG_UP_SECONDS = 1.0
#: The highest stream id: a GOAWAY with it refuses no stream (RFC 9113 section 6.8).
_ANY_STREAM = 2**31 - 1
#: The debug data of the GOAWAY a connection gets at its ``max_connection_age``.
_MAX_AGE = b"max_age"
#: The debug data of the GOAWAY a connection gets when the server drains.
_STOPPING = b"server stopping"


class RequestReader:
    """A stream's ``recv_data`` that checks every request message before grpclib reads it.

    grpclib's ``recv_message`` reads a message as ``recv_data(5)`` (the prefix: a
    compressed flag and a big-endian length), then ``recv_data(length)``; reads alternate,
    except that an empty prefix read means the client ended the stream.

    It keeps the request's headers (``request_headers``): their ``grpc-encoding`` is read
    when a compressed message comes, their ``grpc-accept-encoding`` when the call chooses
    its replies' compression (``muxs.server.reply_compression.compress_replies``).

    ``settle``, when given, is awaited before a client stream's end is reported (see
    ``_LimitedProtocol.settle``): a handler that commits on the end of its request stream
    (WriteStream) never commits an upload whose client reset it right after ending it.
    """

    def __init__(
        self,
        recv_data: Callable[[int], Awaitable[bytes]],
        *,
        max_message_bytes: int,
        client_streaming: bool,
        request_headers: Sequence[tuple[str, str]],
        settle: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_ended: bool = False,
    ) -> None:
        self._recv_data = recv_data
        self._clock = clock
        #: A health watch: it lasts as long as its client wants (``_LimitedProtocol._quiet_since``).
        self.open_ended = open_ended
        #: Since when the call has waited for a request message still not whole (None: not).
        self.waiting_since: float | None = None
        self._settle = settle
        self._limit = max_message_bytes
        self._client_streaming = client_streaming
        #: The request's headers, as the client sent them.
        self.request_headers = request_headers
        self._in_body = False
        self._inflated_message: bytes | None = None
        self._messages = 0

    async def __call__(self, size: int) -> bytes:
        if self._inflated_message is not None:  # the body after an inflated message's prefix
            self._in_body = False
            data, self._inflated_message = self._inflated_message, None
            self._messages += 1
            return data
        if not self._in_body:
            self.waiting_since = self._clock()
        try:
            data = await self._recv_data(size)
        except SHORT_READ:  # the stream ended inside this read
            raise GRPCError(StatusCode.INTERNAL, _TRUNCATED) from None
        if self._in_body:
            self._in_body = False
            self.waiting_since = None
            if len(data) != size:
                raise GRPCError(StatusCode.INTERNAL, _TRUNCATED)
            self._messages += 1
            return data
        prefix = data
        if not prefix or prefix[0]:  # the end, or a compressed message read whole below
            self.waiting_since = None
        if not prefix:
            if not self._client_streaming and not self._messages:
                raise GRPCError(StatusCode.INTERNAL, "the request ended before its message")
            if self._client_streaming and self._settle is not None:
                await self._settle()
            return prefix
        encoding = self._request_encoding() if prefix[0] else None
        length = self._check_prefix(prefix, encoding)
        self._in_body = True
        if encoding is None:
            return prefix
        # grpclib reads no compressed message: it is given the message inflated, with a
        # prefix saying so (uncompressed, its inflated length).
        self._inflated_message = await self._inflated(length, encoding)
        return b"\x00" + len(self._inflated_message).to_bytes(4, "big")

    def _request_encoding(self) -> str:
        """The request's ``grpc-encoding`` (its last, as a dict of the headers keeps it), or
        ``""`` when it has none."""
        encodings = [value for name, value in self.request_headers if name == "grpc-encoding"]
        return encodings[-1] if encodings else ""

    def _check_prefix(self, prefix: bytes, encoding: str | None) -> int:
        """The message's length, checked against the limit; refuses a compression muxs lacks
        (``encoding``: the request's, for a compressed message; None for a plain one)."""
        if encoding is not None and not supports(encoding):
            if encoding in ("", "identity"):
                named = "no grpc-encoding" if not encoding else "grpc-encoding identity"
                raise GRPCError(
                    StatusCode.INTERNAL, f"a message is flagged compressed but the call has {named}"
                )
            raise GRPCError(
                StatusCode.UNIMPLEMENTED,
                f"grpc-encoding {encoding!r} is not supported; use one of "
                f"{ACCEPT_ENCODING} (grpc-accept-encoding)",
            )
        length = int.from_bytes(prefix[1:5], "big")
        if length > self._limit:
            raise over_limit(
                "max_message_bytes",
                f"a {length}-byte message is over this server's {self._limit}-byte limit",
            )
        return length

    async def _inflated(self, length: int, encoding: str) -> bytes:
        """The compressed message of ``length`` bytes that follows, decompressed from
        ``encoding`` within the limit (a gzip bomb is refused before its output passes it)."""
        data = await self._read(length)
        if len(data) != length:
            raise GRPCError(StatusCode.INTERNAL, _TRUNCATED)
        try:
            return await inflate(data, encoding, self._limit)
        except TooLarge as exc:
            raise over_limit("max_message_bytes", f"{exc}, this server's limit") from None
        except TooManyMembers as exc:
            raise GRPCError(StatusCode.RESOURCE_EXHAUSTED, f"{exc}, this server's limit") from None
        except Corrupt as exc:
            raise GRPCError(StatusCode.INTERNAL, str(exc)) from None

    async def _read(self, size: int) -> bytes:
        try:
            return await self._recv_data(size)
        except SHORT_READ:  # the stream ended inside this read
            raise GRPCError(StatusCode.INTERNAL, _TRUNCATED) from None


class WindowWait(asyncio.Event):
    """A stream's ``window_updated`` (what grpclib's ``send_data`` waits on while the peer's
    flow-control window, the stream's or the connection's, is closed) that gives up after
    ``timeout``: a client that never grants window (CVE-2019-9517) holds its call, its
    buffers and its stream slot no longer. The call ends with DEADLINE_EXCEEDED: trailers
    are not flow-controlled, so the client hears why."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        #: Since when a reply has waited for window (None: not waiting).
        self.waiting_since: float | None = None

    async def wait(self) -> Literal[True]:
        self.waiting_since = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._timeout):
                return await super().wait()
        except TimeoutError:
            raise GRPCError(
                StatusCode.DEADLINE_EXCEEDED,
                f"the client granted no flow-control window for {self._timeout:g}s "
                "(the server's stream_idle_timeout); read the replies as they come",
            ) from None
        finally:
            self.waiting_since = None


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
        assert stream.id is not None
        stream_id = stream.id
        if self._connection.refuses_stream(stream_id):  # opened after its final GOAWAY
            h2_connection(self._connection).reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            release_stream()
            return
        fields = dict(headers)
        refused = refusal(headers) or unknown_method(fields, self._inner.mapping)
        if refused is not None:
            self._refuse(stream, refused)
            release_stream()
            return
        method = self._inner.mapping.get(fields.get(":path", ""))
        acknowledge_once_a_turn(stream, self._connection.acknowledge)
        open_ended = fields.get(":path") in OPEN_ENDED
        read_requests_with(
            stream,
            lambda _: RequestReader(
                buffer_reads(stream),  # grpclib's recv_data, without its coroutine
                max_message_bytes=self._connection.settings.max_message_bytes,
                client_streaming=method is not None and method.cardinality.client_streaming,
                request_headers=headers,
                settle=self._connection.settle,
                clock=self._connection.clock,
                open_ended=open_ended,
            ),
        )
        wait_for_window_with(stream, WindowWait(self._connection.settings.stream_idle_timeout))
        send_data_directly(stream, self._connection.cut_short)
        encoding = reply_encoding(self._connection.settings.compression, headers)
        if encoding is not None:
            send_replies_with(stream, lambda send_data: CompressingWriter(send_data, encoding))
        send_headers_statelessly(stream, RESPONSE_HEADERS[encoding], _HEADER_BLOCKS)
        self._connection.call_started()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                release_stream()
                self._connection.call_ended(stream_id, open_ended=open_ended)

        task = start_call(self._inner, stream, headers, fields, release)
        # The task's ``finally`` releases the stream, but a task cancelled (stream reset)
        # before its first step never runs its body: release when it ends, run or not.

        def ended(_: asyncio.Task[None]) -> None:
            release()
            # grpclib lets go of ended tasks (their streams, buffers and cancellations) only
            # every tenth call, and of a closed connection's only every tenth connection.
            forget_task(self._inner, stream, task)
            let_go_of_stream(stream)

        task.add_done_callback(ended)

    def _refuse(self, stream: protocol.Stream, refused: Refusal) -> None:
        """Answer ``stream`` at once: trailers-only with the refusal's status (then a reset
        with NO_ERROR if the client is still sending, as grpclib does), or a reset."""
        peer = format_peer(self._connection.connection.get_peer())
        log.info("refused a request from %s: %s", peer, refused.message)
        h2 = h2_connection(self._connection)
        assert stream.id is not None  # for mypy: checked in accept
        if refused.status is None:
            h2.reset_stream(stream.id, ErrorCodes.PROTOCOL_ERROR)
            self._connection.reset_by_server()
            return
        trailers = [
            (":status", "200"),
            ("content-type", "application/grpc+proto"),
            ("grpc-status", str(refused.status.value)),
            ("grpc-message", encode_grpc_message(refused.message)),
            ("grpc-accept-encoding", ACCEPT_ENCODING),
        ]
        h2.send_headers(stream.id, trailers, end_stream=True)
        if not h2.streams[stream.id].closed:
            h2.reset_stream(stream.id, ErrorCodes.NO_ERROR)

    def cancel(self, stream: protocol.Stream) -> None:
        self._inner.cancel(stream)

    def close(self) -> None:
        self._inner.close()


class _LimitedProtocol(protocol.H2Protocol):
    """One client connection: counted, given muxs's HTTP/2 settings, closed when idle."""

    def __init__(
        self,
        inner: protocol.H2Protocol,
        settings: ServerSettings,
        open_: set[_LimitedProtocol],
        live: OpenSockets,
    ) -> None:
        assert isinstance(inner.handler, Handler)
        super().__init__(_LimitedHandler(inner.handler, self), inner.config, inner.h2_config)
        self.settings = settings
        self._open = open_
        self._live = live
        self._calls = 0
        self._loop = asyncio.get_running_loop()
        #: The event loop's clock, which the calls' waits are timed by.
        self.clock = self._loop.time
        self._idle_since = self._loop.time()
        #: When a call that is not open-ended last ended (or the connection started).
        self._settled_since = self._idle_since
        self._idle_check: asyncio.TimerHandle | None = None
        self._pings = itertools.count()
        self._settling: dict[bytes, asyncio.Future[None]] = {}
        #: A budget the peer went over while this turn's events were processed.
        self._over_budget: str | None = None
        self._guard = FloodGuard(
            resets=settings.reset_budget,
            control_frames=settings.control_frame_budget,
            window=settings.budget_window,
            clock=self._loop.time,
        )
        self._backlog = memoryview(b"")
        #: Whether nothing the peer sent was fed yet (a TLS handshake is told from its start).
        self._first_feed = True
        self._paused_for: set[str] = set()
        self._write_stall: asyncio.TimerHandle | None = None
        self._unfinished_since: float | None = None
        self._frames_seen = 0
        self._unfinished_check: asyncio.TimerHandle | None = None
        self.ping_policy = PingPolicy(
            settings.min_ping_interval,
            self._loop.time,
            permit_without_calls=settings.keepalive_permit_without_calls,
        )
        self._age_check: asyncio.TimerHandle | None = None
        self._grace_check: asyncio.TimerHandle | None = None
        self._retiring: asyncio.Task[None] | None = None
        #: The last stream id of the final GOAWAY sent at ``max_connection_age`` or in a drain.
        self._last_stream_id: int | None = None
        #: Why the connection is retired (the GOAWAYs' debug data), once it is.
        self._retired_for = _MAX_AGE
        #: In a drain: the streams open when it began that have not ended (see ``drain``).
        self._drained: set[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.Transport, transport)
        self._transport = CoalescingTransport(self._socket)
        #: What the calls read, acknowledged as the turn's writes go out.
        self.acknowledge = acknowledging_once_a_turn(self._transport.before_flush)
        super().connection_made(self._transport)  # type: ignore[arg-type]
        self._live.add(self)
        if len(self._open) >= self.settings.max_connections and not self._make_room():
            log.warning("refused a connection: %d are open", len(self._open))
            self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, b"too many connections")
            return
        self._open.add(self)
        self._hear_ping_acks()
        self._refuse_malformed_trailers()
        self._count_resets_by_server()
        self._await_preface()
        decode_headers_once(h2_connection(self))
        parse_frames_directly(h2_connection(self))
        settle_configuration(h2_connection(self))
        keep_closed_streams(h2_connection(self), closed_streams_kept(self.settings))
        receive_known_headers(h2_connection(self))
        receive_data_runs(self)
        make_direct_streams(self)
        h2_connection(self).update_settings(
            {
                SettingCodes.MAX_CONCURRENT_STREAMS: self.settings.max_concurrent_streams,
                SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_BYTES,
            }
        )
        self.connection.flush()
        if self.settings.idle_timeout:
            self._check_idle()
        if self.settings.max_connection_age:
            age = jittered_age(self.settings.max_connection_age)
            self._age_check = self._loop.call_later(age, self._reached_max_age)

    def data_received(self, data: bytes) -> None:
        """Feed what the peer sent to h2 at most ``TURN_BYTES`` of work a turn of the event
        loop: with more, reading pauses and the rest waits for the next turn, so one flooding
        connection cannot hold the loop while others wait (uvloop passes a whole backlog).
        An upload's DATA payload counts a 64th of its bytes: h2 copies it, it does not parse
        it (up to ~1 MiB of file data a turn instead of one 16 KiB frame)."""
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
        backlog = self._backlog
        span, frames = self._guard.scanner.take_turn(backlog, TURN_BYTES)
        self._backlog = backlog[span:]
        read = backlog.obj  # a whole read fed in one turn is fed as it is, not copied
        self._feed(
            read if isinstance(read, bytes) and len(read) == span else bytes(backlog[:span]),
            frames,
        )
        if self._backlog and not self.connection.is_closing():
            self._pause_reading("backlog")
            self._loop.call_soon(self._next_turn)
        else:
            self._backlog = memoryview(b"")
            self._resume_reading("backlog")

    def _feed(self, data: bytes, frames: list[Frame]) -> None:
        """grpclib's ``data_received``, with the flood budgets and three HTTP/2 fixes: a
        protocol error is answered with the GOAWAY h2 prepared before the connection
        closes; frames of unknown types are ignored (grpclib raises on them, killing the
        connection), as RFC 9113 section 5.5 says; an empty DATA frame that does not end
        its stream is not passed on (grpclib would end the request there). ``frames`` are
        the headers of the frames in ``data``, as the guard's scanner read them."""
        if self._first_feed:
            self._first_feed = False
            if is_tls_record(data):  # before its bytes are read as frames: they are not
                log.info(
                    "refused a TLS handshake from %s: this server is plaintext (likely a "
                    "client with --tls or --ca; or serve TLS with --tls-cert and --tls-key)",
                    format_peer(self.connection.get_peer()),
                )
                self.processor.close("a TLS handshake")
                return
        self._guard.wrote(self._transport.bytes_written, self._transport.writes)
        over = self._guard.over_budget(frames)
        if over is not None:
            self._calm_down(over)
            return
        if self._guard.scanner.header_block_bytes > MAX_HEADER_BLOCK_BYTES:
            log.warning(
                "GOAWAY ENHANCE_YOUR_CALM to %s: a header block over %d bytes",
                format_peer(self.connection.get_peer()),
                MAX_HEADER_BLOCK_BYTES,
            )
            self._enhance_your_calm(b"header block too large")
            return
        self._watch_unfinished()
        try:
            events = receive_data_directly(h2_connection(self), data)
            refuse_overlong_frame(h2_connection(self))  # not buffered whole to be refused
        except h2.exceptions.ProtocolError as exc:
            log.info("closing a connection on an HTTP/2 protocol error: %s", exc)
            self.connection.flush()
            self.processor.close("Protocol error")
            return
        replies = h2_connection(self).data_to_send()
        self._transport.write(replies)  # grpclib's first flush, with h2's replies looked at
        over = self._guard.answered(replies)
        if over is not None:
            self._calm_down(over)
            return
        if self._too_many_pings(events):
            return  # as over a budget: nothing of this piece goes on
        kept = []
        for event in events:
            if isinstance(event, h2.events.DataReceived) and _carries_nothing(event):
                # grpclib would take an empty read for the end of the request.
                self.connection.ack(event.stream_id, event.flow_controlled_length)
            elif not isinstance(event, h2.events.UnknownFrameReceived):
                kept.append(event)
        process_events(self, kept)
        if self._over_budget is not None:
            self._calm_down(self._over_budget)

    def _watch_unfinished(self) -> None:
        """Time what the peer has begun and not finished: a frame (the clock restarts
        whenever one is finished), or a request's header block (HEADERS and CONTINUATION
        frames: from its start, as nothing else may come on the connection until it ends).
        """
        scanner = self._guard.scanner
        if not (scanner.in_header_block or scanner.mid_frame):
            self._unfinished_since = None
            return
        progressed = scanner.frames_completed != self._frames_seen
        self._frames_seen = scanner.frames_completed
        if self._unfinished_since is None or (progressed and not scanner.in_header_block):
            self._unfinished_since = self._loop.time()
        if self._unfinished_check is None:
            self._unfinished_check = self._loop.call_later(
                self.settings.request_header_timeout, self._check_unfinished
            )

    def _check_unfinished(self) -> None:
        """GOAWAY if what the peer began has stayed unfinished ``request_header_timeout``
        (a slowloris: a request trickled, or a frame cut short); else look again then."""
        self._unfinished_check = None
        if self._unfinished_since is None or self.connection.is_closing():
            return
        timeout = self.settings.request_header_timeout
        waited = self._loop.time() - self._unfinished_since
        if waited < timeout:
            self._unfinished_check = self._loop.call_later(timeout - waited, self._check_unfinished)
            return
        log.info(
            "closed a connection from %s: a frame or request headers unfinished for %gs",
            format_peer(self.connection.get_peer()),
            timeout,
        )
        self.goaway(ErrorCodes.NO_ERROR, b"request header timeout")

    def pause_writing(self) -> None:
        """The socket's write buffer is full: stop reading too, so that a peer that does not
        read its replies (PING and SETTINGS acknowledgements) cannot make them pile up."""
        super().pause_writing()
        self._pause_reading("writes")
        log.debug(
            "stopped reading %s: its replies cannot be written",
            format_peer(self.connection.get_peer()),
        )
        if self._write_stall is None:
            self._write_stall = self._loop.call_later(
                self.settings.stream_idle_timeout, self._stalled_writes
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._resume_reading("writes")
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def _stalled_writes(self) -> None:
        """Its peer has taken too little of what was written for ``stream_idle_timeout``
        (its socket's buffer stayed over the high-water mark): abort the connection, as
        nothing more (not even a GOAWAY) can reach it."""
        log.info(
            "closed a connection from %s: it read too little of its replies in %gs",
            format_peer(self.connection.get_peer()),
            self.settings.stream_idle_timeout,
        )
        self.abort()

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
        self._enhance_your_calm(budget.encode())

    def _too_many_pings(self, events: list[h2.events.Event]) -> bool:
        """Hold the client's PINGs in ``events`` to the ping policy (``muxs.server.pings``);
        True (and GOAWAY ENHANCE_YOUR_CALM) at one too many."""
        opened = 0  # the requests read with the PING count as open calls
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                opened += 1
            # grpclib's connection stamps ``last_data_sent`` whenever it sends DATA.
            elif isinstance(event, h2.events.PingReceived) and self.ping_policy.ping_received(
                self.connection.last_data_sent, calls_open=bool(self._calls + opened)
            ):
                log.warning(
                    "GOAWAY ENHANCE_YOUR_CALM to %s: pings more often than every %gs%s",
                    format_peer(self.connection.get_peer()),
                    self.ping_policy.allowed_interval(bool(self._calls + opened)),
                    "" if self._calls + opened else " with no call open",
                )
                self._enhance_your_calm(TOO_MANY_PINGS)
                return True
        return False

    def _enhance_your_calm(self, debug_data: bytes) -> None:
        """GOAWAY ENHANCE_YOUR_CALM with ``debug_data``, cancel the calls, linger, close."""
        h2_connection(self).close_connection(
            ErrorCodes.ENHANCE_YOUR_CALM, additional_data=debug_data
        )
        self.connection.flush()
        self._transport.linger(LINGER_SECONDS)
        self._paused_for.clear()
        self._socket.resume_reading()  # to drop what the peer still sends (see ``linger``)
        self.handler.close()  # cancels every call of the connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._open.discard(self)
        self._live.discard(self)
        timers = (
            self._idle_check,
            self._write_stall,
            self._unfinished_check,
            self._age_check,
            self._grace_check,
        )
        for timer in timers:
            if timer is not None:
                timer.cancel()
        if self._retiring is not None:
            self._retiring.cancel()
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

    async def settle(self) -> None:
        """Return once the client has answered a PING sent now (UNAVAILABLE if it does not
        within ``keepalive_timeout``).

        HTTP/2 frames on a connection arrive in order: every frame the client sent before
        it read the PING, a RST_STREAM included, has been processed (its stream's handler
        cancelled) when the ACK comes. grpc-js cancels an upload with an empty END_STREAM
        DATA frame and then, a moment later, a RST_STREAM: the end of its stream is not
        the end of its upload until this returns.
        """
        payload = next(self._pings).to_bytes(8, "big")
        try:
            h2_connection(self).ping(payload)
        except h2.exceptions.ProtocolError:  # the connection is closing
            raise GRPCError(StatusCode.UNAVAILABLE, "the connection closed") from None
        acked = self._settling[payload] = self._loop.create_future()
        self.connection.flush()
        try:
            async with asyncio.timeout(self.settings.keepalive_timeout):
                await acked
        except TimeoutError:
            raise GRPCError(
                StatusCode.UNAVAILABLE,
                "the client did not answer a PING confirming its request's end",
            ) from None
        finally:
            del self._settling[payload]

    def _hear_ping_acks(self) -> None:
        """Resolve ``settle``'s waits as their PING ACKs come, after grpclib's own handling."""

        def ping_acked(event: h2.events.PingAckReceived) -> None:
            grpclib_ack(event)
            acked = self._settling.get(event.ping_data or b"")
            if acked is not None and not acked.done():
                acked.set_result(None)

        grpclib_ack = replace_event_handler(self, h2.events.PingAckReceived, ping_acked)

    def cut_short(self, writes: int) -> None:
        """A DATA frame the peer's flow-control window cut short was written in ``writes``
        writes: they earn the peer no control frames (``FloodGuard.cut_short``)."""
        self._guard.cut_short(writes)

    def reset_by_server(self) -> None:
        """The server reset a stream for a frame of the peer's that made it malformed: a
        reset token spent (``FloodGuard.reset_by_server``); over budget, the connection gets
        GOAWAY once the frames read this turn have been processed (``_feed``)."""
        if self._over_budget is None:
            self._over_budget = self._guard.reset_by_server()

    def _count_resets_by_server(self) -> None:
        """Have every stream h2 or muxs resets for the peer's error (a ``StreamReset`` event
        not of the peer's) spend the peer's reset budget (MadeYouReset, CVE-2025-8671)."""

        def stream_reset(event: h2.events.StreamReset) -> None:
            if not event.remote_reset:
                self.reset_by_server()
            grpclib_reset(event)

        grpclib_reset = replace_event_handler(self, h2.events.StreamReset, stream_reset)

    def _refuse_malformed_trailers(self) -> None:
        """Reset a stream whose request trailers carry a pseudo-header with PROTOCOL_ERROR
        (RFC 9113 section 8.1: a malformed request, a stream error); well-formed ones are
        ignored, as grpc-go does (h2 resets trailers without END_STREAM itself,
        ``muxs._internals.receive_data_directly``)."""

        def trailers_received(event: h2.events.TrailersReceived) -> None:
            if not any(name[:1] in (":", b":") for name, _ in event.headers or ()):
                grpclib_trailers(event)
                return
            log.info(
                "reset a stream of %s: its trailers carry a pseudo-header",
                format_peer(self.connection.get_peer()),
            )
            h2_connection(self).reset_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
            self.connection.flush()
            reset = h2.events.StreamReset(
                stream_id=event.stream_id, error_code=ErrorCodes.PROTOCOL_ERROR, remote_reset=False
            )
            process_events(self, [reset])

        grpclib_trailers = replace_event_handler(
            self, h2.events.TrailersReceived, trailers_received
        )

    def _make_room(self) -> bool:
        """GOAWAY the open connection idle the longest, if it has been idle for
        ``handshake_timeout`` or longer, to make room for this one; False if there is none.
        Idle: every call open on it (if any) is a health watch or waits on its client, for
        its next request message or for flow-control window to send a reply
        (``_quiet_since``). A connection with a call the server is working on is never
        closed for another.

        Peers that connect and do nothing, that made a call and now keep their connection,
        that hold a health watch on each connection (it lasts as long as they want; its
        client watches again on a new connection), or that keep a call open by sending (or
        reading) a little just before each ``stream_idle_timeout``, cannot lock out
        everyone else for longer than ``handshake_timeout``.
        """
        now = self._loop.time()
        quiet = [(since, other) for other in self._open if (since := other._quiet_since())]
        idle = [
            (since, other)
            for since, other in quiet
            if now - since >= self.settings.handshake_timeout
        ]
        if not idle:
            return False
        since, oldest = min(idle, key=lambda pair: pair[0])
        log.warning(
            "closed a connection from %s idle for %.0fs, to make room: %d are open",
            format_peer(oldest.connection.get_peer()),
            now - since,
            len(self._open),
        )
        self._open.discard(oldest)
        oldest.goaway(ErrorCodes.NO_ERROR, b"idle, closed to make room")
        return True

    def _quiet_since(self) -> float | None:
        """Since when this connection has been idle for ``_make_room``: the last end of a
        call, or the latest start of a wait on the client (a call's request message, or
        window for its reply); None while a call that is not a health watch is not waiting."""
        since = self._settled_since
        for stream in self.processor.streams.values():
            reader = stream.recv_data
            if not isinstance(reader, RequestReader):
                return None  # not a call of this server's: not known to wait
            if reader.open_ended:
                continue
            window = stream.window_updated
            waiting = reader.waiting_since
            if waiting is None and isinstance(window, WindowWait):
                waiting = window.waiting_since
            if waiting is None:
                return None
            since = max(since, waiting)
        return since

    def _await_preface(self) -> None:
        """GOAWAY unless the client's preface (its first SETTINGS) comes within
        ``handshake_timeout``: a peer that connects and sends nothing, or a slowloris that
        holds part of the preface, keeps its connection slot no longer."""

        def overdue() -> None:
            if not self.connection.is_closing():
                log.info(
                    "closed a connection from %s: no HTTP/2 preface within %gs",
                    format_peer(self.connection.get_peer()),
                    self.settings.handshake_timeout,
                )
                self.goaway(ErrorCodes.NO_ERROR, b"no preface in time")

        timer = self._loop.call_later(self.settings.handshake_timeout, overdue)

        def settings_received(event: h2.events.RemoteSettingsChanged) -> None:
            timer.cancel()
            replace_event_handler(self, h2.events.RemoteSettingsChanged, grpclib_settings)
            grpclib_settings(event)

        grpclib_settings = replace_event_handler(
            self, h2.events.RemoteSettingsChanged, settings_received
        )

    def call_started(self) -> None:
        self._calls += 1

    def call_ended(self, stream_id: int, *, open_ended: bool = False) -> None:
        self._calls -= 1
        if not open_ended:
            self._settled_since = self._loop.time()
        if self._drained:
            self._drained.discard(stream_id)
            if not self._drained:
                self._retire_for_drain()
        if not self._calls:
            self._idle_since = self._loop.time()
            if self._last_stream_id is not None:  # retired (past its age, or drained): done
                self._retiring = asyncio.ensure_future(self._close_once_left())

    def refuses_stream(self, stream_id: int) -> bool:
        """Whether ``stream_id`` came after the final GOAWAY (of ``max_connection_age`` or a
        drain)."""
        return self._last_stream_id is not None and stream_id > self._last_stream_id

    def _reached_max_age(self) -> None:
        self._age_check = None
        if not self.connection.is_closing() and self._retiring is None:
            log.info(
                "GOAWAY to %s: it reached its max_connection_age with %d call(s) open",
                format_peer(self.connection.get_peer()),
                self._calls,
            )
            self._retiring = asyncio.ensure_future(self._retire())

    def drain(self) -> None:
        """The server is stopping: once the calls open now have ended (those the client
        opens later are refused unstarted, ``muxs.server.hooks``), retire the connection
        (``_retire``): its client sends no more calls to it, and the connection closes
        after its last call, so no request can reach it as it closes.

        A grpclib client fails every call it holds at any GOAWAY, even one whose reply and
        trailers it has read (its task has not let go of the stream yet), so the GOAWAYs
        wait until no call that the server runs is open, and a PING round trip after the
        last one's trailers (``_retire_for_drain``). A connection already retiring by age
        goes on as it is."""
        if self._retiring is not None or self._drained is not None:
            return
        self._drained = set(self.processor.streams)
        if not self._drained:
            self._retire_for_drain()

    def _retire_for_drain(self) -> None:
        if not self.connection.is_closing() and self._retiring is None:
            self._retired_for = _STOPPING
            self._retiring = asyncio.ensure_future(self._retire(settle_first=True))

    async def _retire(self, *, settle_first: bool = False) -> None:
        """grpc-go's graceful GOAWAY: streams the client opens before it reads the first one
        are still served; after a PING round trip, the second one names the last of them.
        Then the calls open get ``max_connection_age_grace`` to end (at its age; in a drain,
        the server's ``shutdown_grace`` applies). With ``settle_first``, a PING round trip
        comes first: the client has read every reply sent so far before the first GOAWAY."""
        if settle_first:
            with contextlib.suppress(GRPCError):  # no PING answer in keepalive_timeout: go on
                await self.settle()
            if self.connection.is_closing():
                return
        self._send_goaway_frame(_ANY_STREAM)
        with contextlib.suppress(GRPCError):
            await self.settle()
        if self.connection.is_closing():
            return
        self._last_stream_id = h2_connection(self).highest_inbound_stream_id
        self._send_goaway_frame(self._last_stream_id)
        if not self._calls:
            await self._close_once_left()
        elif self.settings.max_connection_age_grace and self._retired_for is _MAX_AGE:
            self._grace_check = self._loop.call_later(
                self.settings.max_connection_age_grace, self._grace_over
            )

    async def _close_once_left(self) -> None:
        """Give the client ``HANG_UP_SECONDS`` to close the retired connection, as gRPC
        clients do once their calls on it have ended, then close it. Closed at once, a call
        whose reply the client has read but not yet let go of would fail: at the end of its
        connection a grpclib client fails every call it holds ("Connection lost")."""
        await asyncio.sleep(HANG_UP_SECONDS)
        self.goaway(ErrorCodes.NO_ERROR, self._retired_for)

    def _send_goaway_frame(self, last_stream_id: int) -> None:
        """A GOAWAY NO_ERROR written past h2, which would stop serving every stream."""
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, additional_data=self._retired_for)
        self.connection.flush()  # what h2 holds goes first
        self._transport.write(frame.serialize())

    def _grace_over(self) -> None:
        """Close the connection, cancelling the calls still open past the grace."""
        self._grace_check = None
        log.info(
            "closed a connection from %s past its max_connection_age_grace: %d call(s) cancelled",
            format_peer(self.connection.get_peer()),
            self._calls,
        )
        self.goaway(ErrorCodes.NO_ERROR, _MAX_AGE)

    def goaway(self, code: ErrorCodes, reason: bytes) -> None:
        """Tell the client why with a GOAWAY frame, then close the connection."""
        if self.connection.is_closing():
            self.connection.close()  # it may be lingering after an earlier GOAWAY: no more
            return
        h2_connection(self).close_connection(code, additional_data=reason)
        self.connection.flush()
        if "writes" in self._paused_for:
            self._socket.abort()  # its peer reads nothing: a graceful close would wait forever
        self.connection.close()

    def abort(self) -> None:
        """Close the socket at once, dropping what its peer has not taken (a TCP reset)."""
        self._socket.abort()

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


def closed_streams_kept(settings: ServerSettings) -> int:
    """How many of a connection's closed streams it remembers: four times as many as it may
    have open, at least ``CLOSED_STREAMS_KEPT``, at most as many as h2 would (65,536, about
    7.5 MiB a connection)."""
    most = H2Connection.MAX_CLOSED_STREAMS
    return min(most, max(CLOSED_STREAMS_KEPT, 4 * settings.max_concurrent_streams))


def jittered_age(age: float) -> float:
    """``age`` give or take a tenth, at random (as grpc-go does): connections opened
    together do not all reach it together."""
    return age * random.uniform(0.9, 1.1)


def _carries_nothing(event: h2.events.DataReceived) -> bool:
    """An empty DATA frame (or only padding) that does not end its stream."""
    return not event.data and event.stream_ended is None


class LimitedServer(Server):
    """A grpclib ``Server`` that enforces the limits of ``settings`` (see the module doc)."""

    def __init__(self, handlers: Collection[IServable], settings: ServerSettings) -> None:
        super().__init__(
            handlers,
            codec=Codec(),
            # GRPCError.details -> google.rpc.Status in grpc-status-details-bin
            # (muxs.server.refusals); grpclib sets it only beside its own codec.
            status_details_codec=ProtoStatusDetailsCodec(),
            config=keepalive_config(settings.keepalive_time or None, settings.keepalive_timeout),
        )
        # grpclib's h2 decodes header values as ASCII, and a byte past it raises out of
        # data_received, killing the connection; as latin-1 every byte decodes, and
        # muxs.server.request_headers refuses the request that carries one.
        decode_headers_as_latin1(self)
        self._settings = settings
        #: The connections counted against ``max_connections``.
        self.connections: set[_LimitedProtocol] = set()
        #: Every connection whose socket is open: those counted, and those refused or made
        #: room for that are still closing.
        self.sockets = OpenSockets()
        make_protocols_with(self, self.connection_protocol)

    def connection_protocol(self, inner: protocol.H2Protocol) -> asyncio.Protocol:
        """The protocol serving a new connection, around grpclib's ``inner``."""
        return _LimitedProtocol(inner, self._settings, self.connections, self.sockets)

    async def wait_closed(self) -> None:
        """Wait for the calls to end, then close every connection (GOAWAY first)."""
        await super().wait_closed()
        for connection in list(self.connections):
            connection.goaway(ErrorCodes.NO_ERROR, b"server stopping")


class OpenSockets:
    """The connections whose sockets are open (until their ``connection_lost``)."""

    def __init__(self) -> None:
        self._members: set[_LimitedProtocol] = set()
        self._none = asyncio.Event()
        self._none.set()

    def add(self, connection: _LimitedProtocol) -> None:
        self._members.add(connection)
        self._none.clear()

    def discard(self, connection: _LimitedProtocol) -> None:
        self._members.discard(connection)
        if not self._members:
            self._none.set()

    def __iter__(self) -> Iterator[_LimitedProtocol]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    async def all_closed(self) -> None:
        """Return once no socket is open."""
        await self._none.wait()
