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

It also remembers the last stream id of each GOAWAY a server sent (``refused_by_goaway``):
grpclib fails every stream of the connection alike, and only those above it were never
seen by the server (``muxs.retries`` sends them again).

Its connections write through ``muxs.coalescing.CoalescingTransport`` (the frames of one
loop turn in one system call; writes of ``LARGE_WRITE`` bytes or more at once) and advertise
a ``MAX_FRAME_SIZE`` of 1 MiB, so that a server sends a download in fewer, larger frames.

It hooks into grpclib through ``muxs._internals.ConnectingChannel`` (how a connection is
made) and ``H2Protocol`` with its ``connection`` and ``processor``; tests/client/test_connect.py
fails if they change.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, cast

from grpclib.config import Configuration
from grpclib.protocol import Connection, H2Protocol, Stream
from h2.events import ConnectionTerminated
from h2.settings import SettingCodes

from muxs._internals import (
    ConnectingChannel,
    h2_connection,
    keepalive_config,
    on_new_streams,
    replace_event_handler,
    sent_request_stream,
)
from muxs.call_compression import fit_stream
from muxs.coalescing import CoalescingTransport
from muxs.details import KeepStatusDetails
from muxs.encoding import MessageCodec
from muxs.errors import ConnectFailure, ConnectFailureReason
from muxs.retries import connect_backoff
from muxs.tls import is_tls_record

#: The largest frame the SDK accepts (RFC 9113's default is 16 KiB): a server that follows
#: it sends a 64 KiB file chunk as one DATA frame, not four.
MAX_FRAME_SIZE = 1024 * 1024
#: Writes this large (an upload's chunks) are not gathered with the turn's others.
LARGE_WRITE = 16 * 1024


class _AnsweringProtocol(H2Protocol):
    """grpclib's client connection, reporting on ``answered`` when the server first speaks
    HTTP/2, or why it never did."""

    def __init__(
        self,
        inner: H2Protocol,
        answered: asyncio.Future[None],
        failure: Callable[[ConnectFailureReason], ConnectFailure],
        fit_stream: Callable[[Stream], None],
        goaways: weakref.WeakKeyDictionary[Connection, int],
    ) -> None:
        super().__init__(inner.handler, inner.config, inner.h2_config)
        self._answered = answered
        self._failure = failure
        self._fit_stream = fit_stream
        self._goaways = goaways

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), bypass=LARGE_WRITE)
        super().connection_made(coalescing)  # type: ignore[arg-type]
        h2_connection(self).update_settings({SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE})
        self.connection.flush()
        on_new_streams(self, self._fit_stream)
        close = replace_event_handler(self, ConnectionTerminated, self._goaway_received)
        self._close_on_goaway = close

    def _goaway_received(self, event: ConnectionTerminated) -> None:
        # grpclib fails every stream of the connection alike: remember which ones the
        # server never saw (those above its last stream id), for a transparent retry.
        self._goaways[self.connection] = event.last_stream_id or 0
        self._close_on_goaway(event)

    def data_received(self, data: bytes) -> None:
        if not self._answered.done() and is_tls_record(data):
            self._fail(self._failure("tls_answer"))
            self.processor.close("the server answered in TLS")
            return
        super().data_received(data)
        if not self._answered.done() and not self.connection.is_closing():
            self._answered.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        failure = self._failure("closed")
        failure.__cause__ = exc
        self._fail(failure)
        super().connection_lost(exc)

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
    ``keepalive_time``: seconds between pings while a call is open (None: none); a ping not
    answered within ``keepalive_timeout`` closes the connection (its calls fail
    UNAVAILABLE). ``on_failure`` is called when a connection fails.
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
            protocol, self._answered, self.failure, self._fit_stream, self._goaways
        )

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
        except BaseException as exc:
            if protocol is not None:  # connected, but the server did not answer in time
                protocol.processor.close("no answer")
            if isinstance(exc, TimeoutError) and limit.expired():
                raise self.failure("timeout") from None
            raise
        finally:
            answered.cancel()  # a no-op once answered or failed
        return protocol
