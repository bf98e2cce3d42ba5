"""A muxs server and its clients in one process, for tests: ``pair()``.

``pair()`` assembles the server as ``muxs.serve`` does (``muxs.server.serving.assemble``: the
same services, health, reflection, call hooks with the drain, auth, your interceptors,
deadlines, access log and metrics, and the wire limits of ``muxs.server.limits``) but listens
nowhere. Each connection is a ``socket.socketpair()``: one end handed to the server as an
accepted connection, the other the client channel's. No port, no path, no race with other
processes; the bytes still go through HTTP/2 and the kernel's socket buffers, so flow control
and the per-connection limits behave as in production. What needs a listener or TLS does not
apply: ``host`` and ``port``, the TLS options (refused here), ``workers``, and the metrics
endpoint (the metrics are recorded, not served).

``import muxs`` never imports this module (it imports the server): import it yourself.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from grpclib.client import Channel
from grpclib.protocol import H2Protocol

from muxs.channel import AnsweringChannel
from muxs.client import Client
from muxs.errors import ConfigError
from muxs.interceptors import Interceptor
from muxs.metadata import MetadataLike
from muxs.server.hosting import ServiceLike
from muxs.server.interceptors import ServerInterceptor
from muxs.server.lifecycle import DrainableServer, Lifecycle
from muxs.server.serving import Embedding, assemble
from muxs.server.settings import ServerSettings
from muxs.server.storage import open_store

__all__ = ["Pair", "pair"]

#: The target the pair's clients name in their errors.
TARGET = "in-process"


class _InProcessChannel(AnsweringChannel):
    """The SDK's channel, whose every connection is a socket pair to ``server``."""

    def __init__(self, server: DrainableServer) -> None:
        super().__init__(TARGET, 0, ssl=None, connect_timeout=None)
        self._server = server

    async def connect(self, connect: Callable[[], Awaitable[H2Protocol]]) -> H2Protocol:
        return await super().connect(self._connect_in_process)

    async def _connect_in_process(self) -> H2Protocol:
        server_end, client_end = socket.socketpair()
        try:
            await self._server.accept(server_end)
            _, protocol = await asyncio.get_running_loop().create_connection(
                self.make_protocol, sock=client_end
            )
        except BaseException:
            server_end.close()
            client_end.close()
            raise
        return protocol


class Pair:
    """A running in-process server and a client of it.

    ``client`` and ``channel`` (for your own generated stubs: ``OrdersStub(pair.channel)``)
    share one connection and the ``token``, ``metadata`` and ``client_interceptors`` given to
    ``pair()``. ``connect()`` and ``connect_channel()`` open other connections. ``lifecycle``
    is the server's (``lifecycle.calls``, ``lifecycle.metrics``, ``lifecycle.health``).
    """

    def __init__(
        self,
        settings: ServerSettings,
        lifecycle: Lifecycle,
        *,
        timeout: float | None = None,
        token: str | None = None,
        metadata: MetadataLike | None = None,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self._channels: list[Channel] = []
        self.channel: Channel = self.connect_channel()
        self.client: Client = Client(
            TARGET,
            channel=self.channel,
            timeout=timeout,
            token=token,
            metadata=metadata,
            interceptors=interceptors,
        )

    def connect_channel(self) -> Channel:
        """A grpclib channel on a connection of its own, for your own stubs (give a token as
        their ``metadata={"authorization": "Bearer ..."}``)."""
        channel = _InProcessChannel(self.lifecycle.server)
        self._channels.append(channel)
        return channel

    def connect(
        self,
        *,
        timeout: float | None = None,
        token: str | None = None,
        metadata: MetadataLike | None = None,
        interceptors: Sequence[Interceptor] = (),
    ) -> Client:
        """A ``muxs.Client`` on a connection of its own, with these options."""
        return Client(
            TARGET,
            channel=self.connect_channel(),
            timeout=timeout,
            token=token,
            metadata=metadata,
            interceptors=interceptors,
        )

    def close(self) -> None:
        """Close every connection the pair opened (calls in flight fail with UNAVAILABLE)."""
        for channel in self._channels:
            channel.close()


@asynccontextmanager
async def pair(
    services: Sequence[ServiceLike] = (),
    *,
    settings: ServerSettings | None = None,
    builtin_services: bool = True,
    interceptors: Sequence[ServerInterceptor] = (),
    timeout: float | None = None,
    token: str | None = None,
    metadata: MetadataLike | None = None,
    client_interceptors: Sequence[Interceptor] = (),
) -> AsyncIterator[Pair]:
    """Serve ``services`` (as ``muxs.serve`` takes them, with ``builtin_services`` and
    ``interceptors``) in this event loop without a listening socket, and give a client of it.

    ``settings`` gives every server option (its ``root``: without ``settings``, a temporary
    directory removed on exit); ``timeout``, ``token``, ``metadata`` and
    ``client_interceptors`` are ``pair.client``'s. On exit the connections close and the
    server drains as ``muxs.serve``'s does. TLS options raise ``muxs.ConfigError``.
    """
    async with AsyncExitStack() as stack:
        if settings is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="muxs-testing-"))
            settings = ServerSettings(root=Path(root))
        if settings.tls_cert is not None:
            raise ConfigError("tls_cert", "muxs.testing.pair serves plaintext only; leave it unset")
        storage = open_store(settings)
        stack.push_async_callback(storage.aclose)
        lifecycle = assemble(settings, storage, Embedding(services, builtin_services, interceptors))
        running = Pair(
            settings,
            lifecycle,
            timeout=timeout,
            token=token,
            metadata=metadata,
            interceptors=client_interceptors,
        )
        stack.callback(running.close)  # once the drain below is over
        await lifecycle.start_without_listener()
        stack.push_async_callback(lifecycle.stop)
        yield running
