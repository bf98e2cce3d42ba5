"""The SDK's grpclib ``Channel``: it connects within a time limit, and knows why it could not.

A connection counts as made once the server has answered: TCP connected, the TLS handshake
done (with TLS), and the server's first HTTP/2 bytes (its SETTINGS, which RFC 9113 makes
its first frame) received and parsed. A listener that accepts and never answers fails
after ``connect_timeout`` instead of holding every call until its deadline (or forever).
grpc-go waits for that frame the same way before it calls a connection ready (so grpcurl's
``-connect-timeout`` covers it too).

What went wrong is raised as ``ConnectFailure`` (``muxs.errors`` words it for the user):
no answer in time, the connection closed before the server answered, the server
answering in TLS to a plaintext client, or the TLS handshake refused.

A GOAWAY NO_ERROR (a server's max connection age, drain or idle close) retires its
connection, as grpc-go and grpcio do: new calls go on a new connection, the calls at or below
the GOAWAY's last stream id run to their end (then the connection closes), and those above it
fail at once, marked as never seen by the server (``refused_by_goaway``: ``muxs.retries``
sends them again). grpclib alone closes the connection on any GOAWAY, failing every call; any
other GOAWAY (an error) still does.

Its connections write through ``muxs.coalescing.CoalescingTransport`` (the frames of one
loop turn in one system call; writes of ``LARGE_WRITE`` bytes or more at once) and advertise
a ``MAX_FRAME_SIZE`` of 1 MiB, so that a server sends a download in fewer, larger frames.
They spare h2 the generic parts of each call, as the server's connections do
(``muxs._internals``, docs/PERFORMANCE.md): request headers go as stateless HPACK blocks
kept field by field (``StatelessFields``) and framed directly, DATA frames are framed
directly, and a received header block is decoded once per state of the HPACK table (and
taken without h2's generic steps when it is a plain one, ``receive_known_headers``). The
frames of a response are parsed without hyperframe's generic parse (``DirectFrameBuffer``),
a reply's data is kept in a ``DirectBuffer`` (no ``asyncio.Queue``), and h2 reads its
configuration without descriptors and logs to a logger whose no-ops are C
(``settle_configuration``).

What a server may send that grpclib's client mishandles is handled here (docs/RELIABILITY.md,
"Hostile frames against the fast paths"): frames of unknown types, ALTSVC and 1xx responses
are ignored, pushes refused (grpclib has no handler for them: a traceback, and the call waited
for its deadline), and a response that ends without trailers fails INTERNAL at once (grpclib
waited for them until the deadline, or forever).

It hooks into grpclib through ``muxs._internals.ConnectingChannel`` (how a connection is
made, and whether it is still used) and ``H2Protocol`` with its ``connection`` and
``processor``, and into h2's handling of GOAWAY (``serve_streams_after_goaway``);
tests/client/test_connect.py and tests/client/test_goaway.py fail if they change.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, cast

from grpclib.config import Configuration
from grpclib.protocol import Connection, H2Protocol
from h2.errors import ErrorCodes
from h2.events import (
    AlternativeServiceAvailable,
    ConnectionTerminated,
    InformationalResponseReceived,
    PushedStreamReceived,
    StreamEnded,
    StreamReset,
    UnknownFrameReceived,
)
from h2.settings import SettingCodes

from muxs._internals import (
    ClientStream,
    ConnectingChannel,
    StatelessFields,
    acknowledge_connection_once_a_turn,
    add_event_handler,
    decode_headers_once,
    fill_missing_trailers,
    h2_connection,
    keep_closed_streams,
    keepalive_config,
    on_new_streams,
    parse_frames_directly,
    receive,
    receive_known_headers,
    replace_event_handler,
    response_ended,
    send_requests_statelessly,
    sent_request_stream,
    serve_streams_after_goaway,
    settle_configuration,
    spare_ended_calls,
    streams_released,
    terminate_stream,
    wake_writers,
)
from muxs.call_compression import fit_stream
from muxs.coalescing import CoalescingTransport
from muxs.details import KeepStatusDetails
from muxs.encoding import MessageCodec
from muxs.errors import ConnectFailure, ConnectFailureReason
from muxs.retries import connect_backoff
from muxs.tls import is_tls_record

log = logging.getLogger(__name__)

#: The highest stream id: no GOAWAY yet.
_ANY = 2**31 - 1
_TOO_MANY_PINGS_HINT = (
    " (the client pings more often than the server allows: a longer keepalive_time, or "
    "keepalive_permit_without_calls off)"
)

#: The largest frame the SDK accepts (RFC 9113's default is 16 KiB): a server that follows
#: it sends a 64 KiB file chunk as one DATA frame, not four.
MAX_FRAME_SIZE = 1024 * 1024
#: Writes this large (an upload's chunks) are not gathered with the turn's others.
LARGE_WRITE = 16 * 1024
#: Request header blocks, encoded field by field once for every connection of the process.
_REQUEST_FIELDS = StatelessFields()


def _ignore(event: object) -> None:
    """An event the SDK has nothing to do with."""


class _AnsweringProtocol(H2Protocol):
    """grpclib's client connection, reporting on ``answered`` when the server first speaks
    HTTP/2, or why it never did; in ``retired`` from a GOAWAY NO_ERROR until it closes."""

    def __init__(
        self,
        inner: H2Protocol,
        answered: asyncio.Future[None],
        failure: Callable[[ConnectFailureReason], ConnectFailure],
        fit_stream: Callable[[ClientStream], None],
        goaways: weakref.WeakKeyDictionary[Connection, int],
        retired: set[H2Protocol],
    ) -> None:
        super().__init__(inner.handler, inner.config, inner.h2_config)
        self._answered = answered
        self._failure = failure
        self._fit_stream = fit_stream
        self._goaways = goaways
        self._retired = retired
        self._closing: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), bypass=LARGE_WRITE)
        super().connection_made(coalescing)  # type: ignore[arg-type]
        decode_headers_once(h2_connection(self))
        receive_known_headers(h2_connection(self))
        parse_frames_directly(h2_connection(self))
        settle_configuration(h2_connection(self))
        keep_closed_streams(h2_connection(self))
        send_requests_statelessly(self, _REQUEST_FIELDS)
        acknowledge_connection_once_a_turn(self)
        h2_connection(self).update_settings(
            {SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE, SettingCodes.ENABLE_PUSH: 0}
        )
        self.connection.flush()
        on_new_streams(self, self._fit_stream)
        serve_streams_after_goaway(self)
        close = replace_event_handler(self, ConnectionTerminated, self._goaway_received)
        self._close_on_goaway = close
        self._fail_reset_call = replace_event_handler(self, StreamReset, self._stream_reset)
        self._end_stream = replace_event_handler(self, StreamEnded, self._stream_ended)
        # What a server may send that grpclib has no handler for (its connection would die
        # with a traceback): frames of unknown types and ALTSVC are ignored (RFC 9113 section
        # 5.5, RFC 7838), so is a 1xx response before the final one (section 8.1); a push
        # promised before the server has our SETTINGS (no pushes) is refused (section 8.4).
        for ignored in (
            UnknownFrameReceived,
            AlternativeServiceAvailable,
            InformationalResponseReceived,
        ):
            add_event_handler(self, ignored, _ignore)
        add_event_handler(self, PushedStreamReceived, self._refuse_push)

    def _stream_ended(self, event: StreamEnded) -> None:
        self._end_stream(event)
        stream = self.processor.streams.get(event.stream_id) if event.stream_id else None
        if stream is not None:  # a response without trailers fails INTERNAL, not waits
            fill_missing_trailers(stream)

    def _refuse_push(self, event: PushedStreamReceived) -> None:
        assert event.pushed_stream_id is not None
        h2_connection(self).reset_stream(event.pushed_stream_id, ErrorCodes.REFUSED_STREAM)
        self.connection.flush()

    def _stream_reset(self, event: StreamReset) -> None:
        # RFC 9113 §8.1: a server that has sent its whole response may reset the stream
        # NO_ERROR to stop the rest of the request; its response is not to be discarded.
        if event.error_code == ErrorCodes.NO_ERROR and response_ended(self, event.stream_id):
            return
        self._fail_reset_call(event)

    def _goaway_received(self, event: ConnectionTerminated) -> None:
        # Those above its last stream id were never seen by the server: a transparent retry.
        last_stream_id = min(event.last_stream_id or 0, self._goaways.get(self.connection, _ANY))
        self._goaways[self.connection] = last_stream_id
        if event.error_code != ErrorCodes.NO_ERROR:
            log.warning(
                "the server at %s sent GOAWAY %s %r, closing the connection%s",
                self.connection.get_peer().addr(),
                getattr(event.error_code, "name", event.error_code),
                (event.additional_data or b"").decode("latin-1"),
                _TOO_MANY_PINGS_HINT if event.additional_data == b"too_many_pings" else "",
            )
            spare_ended_calls(self)
            self._close_on_goaway(event)  # h2 has closed the connection: grpclib's way
            return
        self._retired.add(self)
        for stream in list(self.processor.streams.values()):
            if stream.id is not None and stream.id > last_stream_id:
                terminate_stream(
                    stream, f"Received GOAWAY frame, last stream id {last_stream_id}: not served"
                )
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_when_done())

    async def _close_when_done(self) -> None:
        await streams_released(self)
        self.processor.close("Received GOAWAY frame, and every call on the connection ended")

    def data_received(self, data: bytes) -> None:
        if not self._answered.done() and is_tls_record(data):
            self._fail(self._failure("tls_answer"))
            self.processor.close("the server answered in TLS")
            return
        receive(self, data)  # grpclib's data_received
        if not self._answered.done() and not self.connection.is_closing():
            self._answered.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        failure = self._failure("closed")
        failure.__cause__ = exc
        self._fail(failure)
        self._retired.discard(self)
        if self._closing is not None:
            self._closing.cancel()
        spare_ended_calls(self)
        super().connection_lost(exc)
        wake_writers(self)

    def _fail(self, failure: ConnectFailure) -> None:
        if not self._answered.done():
            self._answered.set_exception(failure)
            self._answered.exception()  # retrieved here: nobody may be waiting any more


class AnsweringChannel(ConnectingChannel):
    """A grpclib ``Channel`` to ``host:port`` (or the Unix socket ``path``) whose connection
    is made only once the server has answered, within ``connect_timeout`` seconds (None: no limit).

    ``client_cert`` says whether the TLS context presents a client certificate (None: not
    known), for the explanation of a refused handshake. ``compression`` (gzip, deflate, None)
    compresses requests; compressed replies are read either way (``muxs.call_compression``).
    ``keepalive_time``: seconds between pings while a call is open (or always, with
    ``keepalive_permit_without_calls``; None: none); a ping not answered within
    ``keepalive_timeout`` closes the connection (its calls fail UNAVAILABLE). ``on_failure``
    is called when a connection fails.
    """

    def __init__(
        self,
        host: str | None,
        port: int | None,
        *,
        path: str | None = None,
        ssl: ssl.SSLContext | None,
        connect_timeout: float | None,
        client_cert: bool | None = None,
        compression: str | None = None,
        on_failure: Callable[[], None] | None = None,
        keepalive_time: float | None = None,
        keepalive_timeout: float = 20.0,
        keepalive_permit_without_calls: bool = False,
    ) -> None:
        super().__init__(
            host,
            port,
            path=path,
            ssl=ssl,
            config=keepalive_config(
                keepalive_time,
                keepalive_timeout,
                # A Unix socket has no host name: TLS verifies "localhost", as grpc's does.
                Configuration(ssl_target_name_override="localhost") if path else None,
                permit_without_calls=keepalive_permit_without_calls,
            ),
            codec=MessageCodec(),
            status_details_codec=KeepStatusDetails(),
        )
        self.connect_timeout = connect_timeout
        self._tls = ssl is not None
        self._client_cert = client_cert
        self._fit_stream = fit_stream(compression)
        self._answered: asyncio.Future[None] | None = None
        self._goaways: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()
        self._retired: set[H2Protocol] = set()
        self._on_failure = on_failure
        #: Connections that failed in a row, and when (``time.monotonic()``) another may be
        #: tried (None: the latest did not fail), after grpc's connection backoff.
        self.failures = 0
        self.retry_at: float | None = None

    def refused_by_goaway(self, stream: Any) -> bool:
        """Whether a GOAWAY refused grpclib's client ``stream`` before the server saw it
        (its id above the GOAWAY's last stream id)."""
        sent = sent_request_stream(stream)
        if sent is None or sent.id is None:
            return False
        last_stream_id = self._goaways.get(sent.connection)
        return last_stream_id is not None and sent.id > last_stream_id

    def failure(self, reason: ConnectFailureReason) -> ConnectFailure:
        """The error of a connection that failed for ``reason``."""
        return ConnectFailure(
            reason,
            tls=self._tls,
            client_cert=self._client_cert,
            connect_timeout=self.connect_timeout,
        )

    def protocol_made(self, protocol: H2Protocol) -> H2Protocol:
        assert self._answered is not None
        return _AnsweringProtocol(
            protocol, self._answered, self.failure, self._fit_stream, self._goaways, self._retired
        )

    def reusable(self, protocol: H2Protocol) -> bool:
        return protocol not in self._retired

    def close(self) -> None:
        """Close every connection: the one in use and those retired by a GOAWAY (their calls
        fail, as the current one's do)."""
        for retired in list(self._retired):
            retired.processor.close()
        super().close()

    async def connect(self, connect: Callable[[], Awaitable[H2Protocol]]) -> H2Protocol:
        try:
            protocol = await self._connect(connect)
        except Exception:
            self.failures += 1
            self.retry_at = time.monotonic() + connect_backoff(self.failures)
            if self._on_failure is not None:
                self._on_failure()
            raise
        self.failures, self.retry_at = 0, None
        return protocol

    async def _connect(self, connect: Callable[[], Awaitable[H2Protocol]]) -> H2Protocol:
        self._answered = answered = asyncio.get_running_loop().create_future()
        limit = asyncio.timeout(self.connect_timeout)
        protocol: H2Protocol | None = None
        try:
            async with limit:
                try:
                    protocol = await connect()
                except (ssl.SSLError, ConnectionResetError, ConnectionAbortedError) as exc:
                    if self._tls:
                        raise self.failure("tls_handshake") from exc
                    raise
                await answered
                if protocol.connection.is_closing() or not self.reusable(protocol):
                    # Closed, or retired by a GOAWAY, as soon as it answered (a server
                    # stopping): never used, so its call may go elsewhere.
                    raise ConnectionResetError("the server closed the connection as it answered")
        except BaseException as exc:
            if protocol is not None:  # connected, but the server did not answer in time
                protocol.processor.close("no answer")
            if isinstance(exc, TimeoutError) and limit.expired():
                raise self.failure("timeout") from None
            raise
        finally:
            answered.cancel()  # a no-op once answered or failed
        return protocol
