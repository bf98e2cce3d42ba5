"""A muxs server with what operating it needs: health, reflection, call hooks (access log,
metrics, auth, deadlines) and a drain.

grpclib does not drain: ``Server.close()`` cancels every call in flight, and on Python
3.12+ ``wait_closed()`` waits for clients to hang up. ``Lifecycle.stop`` drains instead:

1. health turns NOT_SERVING, new calls are refused (UNAVAILABLE) and the listener
   stops accepting connections; each connection is retired as soon as the calls open on
   it have ended (grpc-go's graceful GOAWAYs, ``_LimitedProtocol.drain``): its client
   sends its later calls elsewhere, and it closes once its last call has ended;
2. the calls in flight get up to the grace period to finish (health watches excepted:
   they last as long as their client wants), or less if ``hurry()`` is called;
3. what still runs is cancelled, and the connections left are retired too, metrics stop.
   A connection still open ``CLOSE_SECONDS`` later (its peer does not read what was sent
   to it, or answer a PING) is aborted: since Python 3.12 the listener's ``wait_closed``
   waits for every connection, and would wait forever (uvloop does not wait, and would
   keep such a socket open after the stop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from grpclib.protocol import H2Protocol

from muxs._internals import accepted_protocol, start_without_listener, stop_listening
from muxs.server.access_log import AccessLog
from muxs.server.handshakes import TlsHandshake
from muxs.server.health import HealthState
from muxs.server.hooks import CallHooks, CallObserver
from muxs.server.interceptors import ServerInterceptor
from muxs.server.limits import LimitedServer
from muxs.server.reflection import reflection_services
from muxs.server.settings import ServerSettings
from muxs.server.verification.authenticator import Authenticator

if TYPE_CHECKING:
    from muxs._internals import IServable
    from muxs.server.storage import FileStore

log = logging.getLogger(__name__)

#: How long closed connections get to send what they hold before they are aborted.
CLOSE_SECONDS = 5.0


class DrainableServer(LimitedServer):
    """muxs's server with its limits, able to stop listening and close its connections.

    With ``tls``, it listens in plaintext and runs each connection's TLS handshake itself,
    logging a refused one (``muxs.server.handshakes``).
    """

    tls: ssl.SSLContext | None = None

    def connection_protocol(self, inner: H2Protocol) -> asyncio.Protocol:
        limited = super().connection_protocol(inner)
        if self.tls is None:
            return limited
        return TlsHandshake(limited, self.tls, self._settings.handshake_timeout)

    async def accept(self, sock: socket.socket) -> None:
        """Serve ``sock``, a connected socket (one end of a ``socketpair()``), as a connection
        this server accepted (plaintext)."""
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: accepted_protocol(self), sock=sock)

    def stop_accepting(self) -> None:
        """Close the listening socket; connections already open stay open."""
        stop_listening(self)

    def drain_connections(self) -> None:
        """Retire every client connection once the calls open on it have ended."""
        for protocol in list(self.sockets):
            protocol.drain()

    async def close_connections(self, within: float) -> None:
        """Wait for every client connection to close (its calls ended or cancelled: it is
        retired, ``drain_connections``); abort those still open ``within`` seconds later
        (their peer does not read, or answer a PING)."""
        self.drain_connections()  # also those opened since (``accept``)
        try:
            async with asyncio.timeout(within):
                await self.sockets.all_closed()
        except TimeoutError:
            log.warning(
                "aborted %d connection(s) whose peer did not read what it was sent",
                len(self.sockets),
            )
            for protocol in list(self.sockets):
                protocol.abort()


class Lifecycle:
    """Builds a muxs server around ``services``, starts it, and drains it.

    ``interceptors`` run around every call (after auth); ``scopes`` are the hosted services'
    (``muxs.server.hosting``), ``descriptor_sets`` what reflection describes besides muxs."""

    def __init__(
        self,
        settings: ServerSettings,
        services: Sequence[IServable],
        store: FileStore,
        *,
        interceptors: Sequence[ServerInterceptor] = (),
        scopes: Mapping[str, str | None] | None = None,
        descriptor_sets: Sequence[bytes] = (),
    ) -> None:
        self.settings = settings
        self.health = HealthState(services, store)
        hosted = [*services, self.health.service]
        if settings.reflection:
            hosted += reflection_services(hosted, descriptor_sets)
        self.access_log = AccessLog() if settings.access_log else None
        observers: list[CallObserver] = [self.access_log] if self.access_log else []
        self.metrics = None
        if settings.metrics_port is not None:
            from muxs.server.metrics import Metrics  # the optional prometheus-client is needed

            # A worker of `muxs serve --workers N`: the supervisor serves every worker's metrics.
            self.metrics = Metrics(worker=settings.workers > 1)
            observers.append(self.metrics)
        self.tracing = None
        if settings.otel:
            from muxs.server.tracing import Tracing  # the optional OpenTelemetry SDK is needed

            self.tracing = Tracing(os.environ)
        self.calls = CallHooks(
            observers,
            authenticator=Authenticator.from_settings(settings, scopes),
            interceptors=interceptors,
            tracing=None if self.tracing is None else self.tracing.interceptor,
            max_call_seconds=settings.max_call_seconds,
        )
        self.server = DrainableServer(self.calls.wrap(hosted), settings)
        self.metrics_port: int | None = None
        self._hurry = asyncio.Event()

    async def start(self, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        """Serve metrics (when on), then gRPC on the bound ``sock`` (over TLS with ``tls``)."""
        await self.health.refresh()
        if self.metrics is not None and self.settings.workers == 1:
            assert self.settings.metrics_port is not None
            self.metrics_port = self.metrics.endpoint.serve(
                self.settings.host, self.settings.metrics_port
            )
        try:
            self.server.tls = tls
            await self.server.start(sock=sock)
        except BaseException:
            await self._stop_metrics()
            raise

    async def start_without_listener(self) -> None:
        """Serve only the connections handed to ``server.accept`` (``muxs.testing``): no
        listening socket, no metrics endpoint (the metrics are still recorded)."""
        await self.health.refresh()
        start_without_listener(self.server)

    def hurry(self) -> None:
        """Cut the drain short: cancel the calls still in flight now."""
        self._hurry.set()

    async def stop(self) -> None:
        """Drain (see the module's docstring) and stop."""
        grace = self.settings.shutdown_grace
        self.health.drain()
        self.calls.refuse_new_calls()
        self.server.stop_accepting()
        self.server.drain_connections()
        if self.calls.pending:
            log.info("draining: waiting up to %gs for %d call(s)", grace, self.calls.pending)
        waiters = [
            asyncio.ensure_future(self.calls.settled()),
            asyncio.ensure_future(self._hurry.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if self.calls.pending:
            log.warning("cancelling %d call(s) still in flight", self.calls.pending)
        self.calls.cancel_in_flight()
        await self.server.close_connections(within=CLOSE_SECONDS)
        self.server.close()
        await self.server.wait_closed()
        if self.access_log is not None:
            self.access_log.flush()  # the lines still waiting for their batch
        await self._stop_metrics()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.flush)

    async def _stop_metrics(self) -> None:
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.endpoint.close)
