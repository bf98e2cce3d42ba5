"""Assemble the muxs server and run it: in someone else's event loop, or until a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from grpclib._typing import IServable
from grpclib.server import Server

from muxs.auth import server as auth
from muxs.services import FileControllerService, GreeterService
from muxs.settings import ServerSettings
from muxs.storage import Root
from muxs.tls import server_context

log = logging.getLogger(__name__)


def build_services(settings: ServerSettings, root: Root) -> Sequence[IServable]:
    """Every service muxs hosts on its one port."""
    return [
        GreeterService(max_stream_replies=settings.max_stream_replies),
        FileControllerService(root, max_message_bytes=settings.max_message_bytes),
    ]


def build_server(settings: ServerSettings, root: Root) -> Server:
    """A grpclib ``Server`` hosting every muxs service, with auth enforced, not yet listening."""
    server = Server(build_services(settings, root))
    auth.attach(server, settings)
    return server


def tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The server's TLS context when ``tls_cert`` is set (``ConfigError`` if it is unusable)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    mutual = " with client certificates required" if settings.tls_client_ca else ""
    log.info("TLS only%s", mutual)
    return context


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: an ephemeral port), ready to listen."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class RunningServer:
    """A started server: where it listens and what it serves."""

    settings: ServerSettings
    host: str
    port: int
    root: Path
    server: Server

    @property
    def target(self) -> str:
        """``host:port`` for ``muxs.Client``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@asynccontextmanager
async def serve(
    host: str | None = None,
    port: int | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    settings: ServerSettings | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve muxs in the running event loop until the block exits.

    ``settings`` gives every option; ``host``, ``port`` and ``root``, when given, override
    it. Port 0 binds a free ephemeral port: read the real one from ``.port``.
    """
    settings = settings or ServerSettings()
    settings = replace(
        settings,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        root=settings.root if root is None else Path(root),
    )
    storage = Root(settings.root)
    try:
        server = build_server(settings, storage)
        context = tls_context(settings)
        removed = storage.remove_stale_temp_files()
        if removed:
            log.info("removed %d temp file(s) left by an interrupted write", removed)
        sock = bind(settings.host, settings.port)
        await server.start(sock=sock, ssl=context)
        try:
            yield RunningServer(
                settings, settings.host, sock.getsockname()[1], storage.path, server
            )
        finally:
            server.close()
            await server.wait_closed()
    finally:
        storage.close()


async def run(settings: ServerSettings) -> None:
    """Serve until SIGINT or SIGTERM, logging where it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(settings=settings) as running:
        log.info("muxs listening on %s (root %s)", running.target, running.root)
        await stop.wait()
        log.info("muxs stopping")
