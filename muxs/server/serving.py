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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from grpclib.server import Server

from muxs.errors import ConfigError
from muxs.server.hosting import Hosting, ServiceLike, load_services
from muxs.server.interceptors import ServerInterceptor
from muxs.server.open_files import raise_open_files_limit
from muxs.server.services import FileControllerService, GreeterService
from muxs.server.settings import ServerSettings
from muxs.server.storage import SWEEP_SECONDS, FileStore, LocalRoot, open_store
from muxs.server.unix_socket import UnixListener, bind_unix, socket_path
from muxs.tls import server_context

if TYPE_CHECKING:
    from muxs._internals import IServable
    from muxs.server.lifecycle import Lifecycle

log = logging.getLogger(__name__)


def build_services(settings: ServerSettings, storage: FileStore) -> Sequence[IServable]:
    """Every service muxs hosts on its one port."""
    return [
        GreeterService(
            max_stream_replies=settings.max_stream_replies,
            max_message_bytes=settings.max_message_bytes,
            stream_idle_timeout=settings.stream_idle_timeout,
        ),
        FileControllerService(storage, settings),
    ]


@dataclass(frozen=True)
class Embedding:
    """What an embedding application adds to the server (``serve``'s and ``build_server``'s
    keyword arguments of the same names)."""

    services: Sequence[ServiceLike] = ()
    builtin_services: bool = True
    interceptors: Sequence[ServerInterceptor] = ()


def assemble(settings: ServerSettings, storage: FileStore, embedding: Embedding) -> Lifecycle:
    """The server with every service ``embedding`` asks for, and what runs and drains it."""
    # Imported here, not by `import muxs`: grpclib's health and reflection messages
    # register in protobuf's default pool, as grpcio-health-checking's and
    # grpcio-reflection's do, and a process can hold only one of each.
    from muxs.server.lifecycle import Lifecycle

    builtin = build_services(settings, storage) if embedding.builtin_services else []
    own = [*embedding.services]
    if settings.services is not None:
        own += load_services(settings.services)
    hosting = Hosting.of(builtin, own)
    if not hosting.services:
        raise ConfigError("services", "nothing to serve: builtin_services=False and none given")
    return Lifecycle(
        settings,
        hosting.services,
        storage,
        interceptors=embedding.interceptors,
        scopes=hosting.scopes,
        descriptor_sets=hosting.descriptor_sets,
    )


def build_server(
    settings: ServerSettings,
    storage: FileStore,
    *,
    services: Sequence[ServiceLike] = (),
    builtin_services: bool = True,
    interceptors: Sequence[ServerInterceptor] = (),
) -> Server:
    """A grpclib ``Server`` hosting muxs's services (unless ``builtin_services`` is False) and
    ``services``, with health, reflection (unless turned off), auth, ``interceptors``, access
    logs and metrics; not yet listening."""
    embedding = Embedding(services, builtin_services, interceptors)
    return assemble(settings, storage, embedding).server


def tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The server's TLS context when ``tls_cert`` is set (``ConfigError`` if it is unusable)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    mutual = " with client certificates required" if settings.tls_client_ca else ""
    log.info("TLS only%s", mutual)
    return context


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: an ephemeral port), ready to listen.

    ``reuse_port`` sets SO_REUSEPORT: sockets that all set it share the port, and the kernel
    spreads new connections over those listening (``muxs serve --workers``).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{host}:{port}: {exc.strerror}") from None
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
    lifecycle: Lifecycle = field(repr=False)
    path: Path | None = None

    @property
    def target(self) -> str:
        """``host:port``, or ``unix:///abs/path`` on a Unix socket (``host`` is then empty and
        ``port`` 0), for ``muxs.Client`` and grpcio."""
        if self.path is not None:
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def metrics_port(self) -> int | None:
        """The port serving ``/metrics`` (None when metrics are off)."""
        return self.lifecycle.metrics_port


def remove_stale_temp_files(store: FileStore) -> None:
    """Sweep a local root for temp files of interrupted writes; say what was done."""
    if not isinstance(store, LocalRoot):
        return
    sweep = store.root.remove_stale_temp_files(SWEEP_SECONDS)
    if not sweep.complete:
        log.warning(
            "removed %d temp file(s) left by an interrupted write, but did not search the "
            "whole root (a %g s limit, or a directory it could not open); the rest stay",
            sweep.removed,
            SWEEP_SECONDS,
        )
    elif sweep.removed:
        log.info("removed %d temp file(s) left by an interrupted write", sweep.removed)
    if sweep.kept:
        log.info("left %d temp file(s) that another process is writing", sweep.kept)


@asynccontextmanager
async def serve(
    host: str | None = None,
    port: int | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    settings: ServerSettings | None = None,
    sock: socket.socket | None = None,
    services: Sequence[ServiceLike] = (),
    builtin_services: bool = True,
    interceptors: Sequence[ServerInterceptor] = (),
    path: str | os.PathLike[str] | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve muxs in the running event loop until the block exits, then drain.

    ``services`` (yours: ``muxs.HostedService``, or any grpclib service) are hosted beside
    Greeter and FileController, or instead of them with ``builtin_services=False``;
    ``interceptors`` run around every call, in order (``muxs.server.interceptors``).

    ``settings`` gives every option; ``host``, ``port`` and ``root``, when given, override
    it. Port 0 binds a free ephemeral port: read the real one from ``.port``. ``sock``, a
    socket bound already (a worker's, from ``muxs.server.workers``), is served instead of binding.
    ``path`` (or ``settings.uds``) listens on that Unix domain socket instead of host and port,
    and removes its file on exit (a Unix socket given as ``sock`` stays the caller's to remove).
    On exit, new calls are refused and calls in flight get ``settings.shutdown_grace``
    seconds to finish before they are cancelled (``.lifecycle.hurry()`` cancels them at once).
    """
    settings = settings or ServerSettings()
    settings = replace(
        settings,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        root=settings.root if root is None else Path(root),
        uds=settings.uds if path is None else Path(path),
    )
    storage = open_store(settings)
    unix: UnixListener | None = None
    try:
        context = tls_context(settings)
        if settings.workers == 1:  # else the supervisor did, once: not a sibling's write
            remove_stale_temp_files(storage)
        embedding = Embedding(services, builtin_services, interceptors)
        lifecycle = assemble(settings, storage, embedding)
        if sock is None and settings.uds is not None:
            unix = bind_unix(settings.uds, settings.uds_access)
        sock = sock or (unix.sock if unix else bind(settings.host, settings.port))
        try:
            await lifecycle.start(sock, context)
        except BaseException:
            sock.close()
            raise
        path = unix.path if unix else socket_path(sock)
        try:
            yield RunningServer(
                settings,
                "" if path else settings.host,
                0 if path else sock.getsockname()[1],
                settings.root.resolve(),
                lifecycle.server,
                lifecycle,
                path,
            )
        finally:
            await lifecycle.stop()
    finally:
        if unix is not None:
            unix.remove()
        await storage.aclose()


async def run(settings: ServerSettings, sock: socket.socket | None = None) -> None:
    """Serve (on ``sock`` if given) until SIGINT or SIGTERM, then drain; a second signal
    cancels what still runs."""
    stop = asyncio.Event()
    started: list[RunningServer] = []

    def on_signal() -> None:
        if stop.is_set() and started:
            started[0].lifecycle.hurry()
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    open_files = raise_open_files_limit()
    async with serve(settings=settings, sock=sock) as running:
        started.append(running)
        log.info(
            "muxs listening on %s (%s, up to %d open files)",
            running.target,
            settings.storage or f"root {running.root}",
            open_files,
        )
        if running.metrics_port is not None:
            log.info("metrics on http://%s:%d/metrics", settings.host, running.metrics_port)
        await stop.wait()
        log.info("muxs stopping (a second signal cancels the calls in flight)")
