"""The typed async SDK: one channel, every muxs method, errors as ``RpcError``."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import closing
from types import TracebackType
from typing import Any, Self, cast

from grpclib.client import Channel
from grpclib.events import SendRequest, listen

from muxs import transfers
from muxs.api import (
    Chunk,
    Content,
    FileInfo,
    Files,
    HelloReply,
    HelloRequest,
    ListRequest,
    Number,
    Status,
)
from muxs.auth.bearer import TokenProvider, bearer_listener, check_token_transport
from muxs.balancing import RoundRobin
from muxs.call_compression import USE_CLIENT_DEFAULT, checked_compression
from muxs.calls import Caller, Compression, ReplyStream, Requests, iterate
from muxs.channel import AnsweringChannel
from muxs.errors import ConfigError, RpcError, StatusCode
from muxs.interceptors import Interceptor
from muxs.metadata import CallInfo, MetadataLike
from muxs.retries import RetryPolicy
from muxs.threads import open_blocking
from muxs.tls import PathLike, tls_client_context
from muxs.transfers import Progress

DEFAULT_TARGET = "127.0.0.1:50051"
# grpcurl's default: long enough for a TLS handshake over a slow link, short enough that a
# server that accepts and never answers is reported while someone still waits.
DEFAULT_CONNECT_TIMEOUT = 10.0
GREETER = "/muxs.Greeter/"
FILE_CONTROLLER = "/muxs.FileController/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
MAX_COUNT = 2**32 - 1  # HelloRequest.count is a uint32


def parse_target(target: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into its parts; raise ``ValueError`` if malformed."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def unix_socket_path(target: str) -> str | None:
    """The socket path of a ``unix:PATH`` or ``unix:///ABS/PATH`` target (grpc's syntax), or
    None for ``host:port``; raise ``ValueError`` if malformed."""
    if not target.startswith("unix:"):
        return None
    path = target.removeprefix("unix:")
    if path.startswith("//"):
        authority, slash, rest = path[2:].partition("/")
        if authority or not slash:
            raise ValueError(
                f"target {target!r} is not unix:///ABSOLUTE/PATH or unix:RELATIVE/PATH"
            )
        path = "/" + rest
    if path.strip("/") == "":
        raise ValueError(f"target {target!r} names no socket path")
    return path


def _dns_name(target: str) -> tuple[str, int] | None:
    """The name and port of a ``dns:///name:port`` target (None: another kind); raise
    ``ValueError`` if malformed."""
    if not target.startswith("dns:"):
        return None
    rest = target.removeprefix("dns:")
    if not rest.startswith("///"):
        raise ValueError(f"target {target!r} is not dns:///NAME:PORT")
    return parse_target(rest[3:])


def check_target(target: str) -> None:
    """Raise ``ValueError`` unless ``target`` is ``host:port`` or a ``unix:`` path."""
    if unix_socket_path(target) is None:
        parse_target(target)


async def _hello_requests(names: Requests[str]) -> AsyncIterator[HelloRequest]:
    async for name in iterate(names):
        yield HelloRequest(name=name)


class Client:
    """A connection to a muxs server, for use as ``async with Client(target) as client``.

    Every method takes ``timeout`` (seconds; the call's gRPC deadline), defaulting to the
    client's ``timeout``, ``metadata`` (sent with the call, beside the client's) and
    ``call_info`` (a ``muxs.CallInfo`` that receives the server's headers, trailers and
    status) and ``compression`` (``"gzip"``, ``"deflate"``, or None or ``"identity"`` for
    none: the call's requests, uploads included, instead of the client's ``compression``).
    A failed call raises ``muxs.RpcError`` with its gRPC status.
    Streaming methods return a ``ReplyStream``: iterate it with ``async for``; leaving
    ``async with`` on it early cancels the call.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        channel: Channel | None = None,
        tls: bool | PathLike | ssl.SSLContext | None = None,
        cert: PathLike | None = None,
        key: PathLike | None = None,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        allow_insecure_token: bool = False,
        metadata: MetadataLike | None = None,
        interceptors: Sequence[Interceptor] = (),
        compression: str | None = None,
        retry_policy: RetryPolicy | None = None,
        method_retry_policies: Mapping[str, RetryPolicy | None] | None = None,
        wait_for_ready: bool = False,
        keepalive_time: float | None = None,
        keepalive_timeout: float = 20.0,
        keepalive_permit_without_calls: bool = False,
    ) -> None:
        """Connect to ``target`` (``host:port``, or a Unix socket: ``unix:///abs/path`` or
        ``unix:relative/path``), or use an existing grpclib ``channel``. Several servers:
        a list of ``host:port``, or ``dns:///name:port`` (every address of ``name``,
        resolved again when a connection fails): each call goes to the next healthy one in
        turn (``muxs.balancing``).

        ``connect_timeout``: seconds a call may wait for a connection (TCP, TLS handshake
        and the server's first HTTP/2 frame) before it fails with UNAVAILABLE (None: no
        limit, or a number > 0); a connection once made is never cut by it, and it does
        not apply to a ``channel`` given. ``timeout`` is each call's deadline (None: none).
        ``tls``: True (the system's CAs), a CA file, or an ``ssl.SSLContext``; ``cert`` and
        ``key`` (PEM files) present a client certificate (mutual TLS) and imply TLS.
        ``token`` or ``token_provider`` (a sync or async callable, e.g.
        ``muxs.auth.ClientCredentials``) is sent as ``authorization: Bearer`` with every
        call; never in plaintext to a non-loopback host unless ``allow_insecure_token``.
        ``metadata`` is sent with every call (a call's own ``metadata=`` replaces a key it
        gives); ``interceptors`` (``muxs.Interceptor``) run around every call, the first
        outermost. ``compression`` (``"gzip"``, ``"deflate"``, None or ``"identity"``)
        compresses request messages of 1 KiB or more when that gains (a call's own
        ``compression=`` overrides it); compressed replies are read either way (not with a
        ``channel`` given). A call the server never processed (refused by a GOAWAY or a
        drain, or no connection) is sent again once, transparently; ``retry_policy``
        (``muxs.RetryPolicy``, None: no other retries) retries a call ended with a
        retryable status, and ``method_retry_policies`` overrides it per method
        (``/muxs.Greeter/SayHello``: a policy, or None for none). A call of any kind is
        retried only until it is committed: once the server's response headers arrive
        (with its first reply), or once the requests it streams outgrow the 256 KiB kept to
        send them again. ``wait_for_ready``: a call waits for a connection (trying again with grpc's
        connection backoff) until its deadline instead of failing UNAVAILABLE at once (an
        interceptor may set ``call.wait_for_ready`` per call). ``keepalive_time``: seconds
        between HTTP/2 pings while a call is open (None: none, grpcio's default); a ping not
        answered within ``keepalive_timeout`` seconds closes the connection, its calls
        failing UNAVAILABLE (a dead peer behind a NAT is noticed);
        ``keepalive_permit_without_calls``: ping while no call is open too (keeping an idle
        connection alive: the server must permit it, or it answers GOAWAY ENHANCE_YOUR_CALM).
        Unusable options raise
        ``muxs.ConfigError``.
        """
        compression = checked_compression(compression)
        if connect_timeout is not None and not connect_timeout > 0:
            raise ConfigError("connect_timeout", f"{connect_timeout} is not a number > 0")
        if keepalive_time is not None and not keepalive_time > 0:
            raise ConfigError("keepalive_time", f"{keepalive_time} is not a number > 0")
        if not keepalive_timeout > 0:
            raise ConfigError("keepalive_timeout", f"{keepalive_timeout} is not a number > 0")
        add_token = bearer_listener(token, token_provider)
        targets = [target] if isinstance(target, str) else list(target)
        if not targets:
            raise ConfigError("target", "give one target or more")
        self.target = ",".join(targets)
        if channel is None:
            context = tls_client_context(tls, cert, key)
            dns_name = _dns_name(targets[0]) if len(targets) == 1 else None
            balancer: RoundRobin | None = None

            def connect_failed() -> None:
                if balancer is not None:
                    balancer.connect_failed()

            def channel_to(host: str | None, port: int | None, path: str | None) -> Any:
                if add_token is not None and host is not None:  # a Unix socket is local
                    check_token_transport(
                        host, tls=context is not None, allow_insecure_token=allow_insecure_token
                    )
                made = AnsweringChannel(
                    host,
                    port,
                    path=path,
                    ssl=context,
                    connect_timeout=connect_timeout,
                    client_cert=None if isinstance(tls, ssl.SSLContext) else cert is not None,
                    on_failure=connect_failed,
                    keepalive_time=keepalive_time,
                    keepalive_timeout=keepalive_timeout,
                    keepalive_permit_without_calls=keepalive_permit_without_calls,
                    compression=compression,
                )
                if add_token is not None:
                    listen(made, SendRequest, add_token)
                return made

            if dns_name is None and len(targets) == 1:
                path = unix_socket_path(targets[0])
                host, port = (None, None) if path else parse_target(targets[0])
                channel = channel_to(host, port, path)
            else:
                if dns_name is None and any(t.startswith(("dns:", "unix:")) for t in targets):
                    raise ValueError("each of several targets is HOST:PORT (not dns: or unix:)")
                addresses = [dns_name] if dns_name else [parse_target(t) for t in targets]
                balancer = RoundRobin(
                    lambda host, port: channel_to(host, port, None), addresses, dns_name=dns_name
                )
                channel = cast(Channel, balancer)
        elif add_token is not None:
            listen(channel, SendRequest, add_token)
        self._caller = Caller(
            channel,
            self.target,
            timeout,
            metadata=metadata,
            interceptors=interceptors,
            retry_policy=retry_policy,
            method_retry_policies=method_retry_policies,
            wait_for_ready=wait_for_ready,
        )

    @property
    def timeout(self) -> float | None:
        """The default deadline of every call, in seconds (None: no deadline)."""
        return self._caller.timeout

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; calls in flight fail with UNAVAILABLE."""
        self._caller.channel.close()

    async def check_health(
        self,
        service: str = "",
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> str:
        """The health of ``service`` (``""``: the whole server): ``SERVING``, ``NOT_SERVING``...

        Asks the standard ``grpc.health.v1.Health`` service; an unknown ``service`` raises
        ``RpcError`` with NOT_FOUND.
        """
        # Imported on use: these messages register grpc.health.v1 in protobuf's default
        # pool, as grpcio-health-checking's do, and a process can hold only one of them.
        from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

        reply = await self._caller.unary_unary(
            HEALTH_CHECK,
            HealthCheckRequest(service=service),
            HealthCheckResponse,
            timeout,
            metadata,
            call_info,
            compression,
        )
        return HealthCheckResponse.ServingStatus.Name(reply.status)

    async def say_hello(
        self,
        name: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> HelloReply:
        """``Hello, {name}!``."""
        return await self._caller.unary_unary(
            GREETER + "SayHello",
            HelloRequest(name=name),
            HelloReply,
            timeout,
            metadata,
            call_info,
            compression,
        )

    async def square(
        self,
        value: float,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Number:
        """The square root of ``value`` (the reference's behaviour); negative or NaN is refused."""
        return await self._caller.unary_unary(
            GREETER + "Square",
            Number(value=value),
            Number,
            timeout,
            metadata,
            call_info,
            compression,
        )

    def lots_of_replies(
        self,
        name: str,
        count: int = 0,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> ReplyStream[HelloReply]:
        """``count`` greetings (0: the server's default of 10), each with its 1-based ``index``."""
        if not 0 <= count <= MAX_COUNT:
            raise ValueError(f"count {count} is not between 0 and {MAX_COUNT}")
        request = HelloRequest(name=name, count=count)
        return self._caller.unary_stream(
            GREETER + "LotsOfReplies",
            request,
            HelloReply,
            timeout,
            metadata,
            call_info,
            compression,
        )

    async def lots_of_greetings(
        self,
        names: Requests[str],
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> HelloReply:
        """One greeting for every name sent (``Hello, a, b and c!``)."""
        return await self._caller.stream_unary(
            GREETER + "LotsOfGreetings",
            _hello_requests(names),
            HelloRequest,
            HelloReply,
            timeout,
            metadata,
            call_info,
            compression,
        )

    def bidi_hello(
        self,
        names: Requests[str],
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> ReplyStream[HelloReply]:
        """A greeting for each name, sent as soon as the server reads it."""
        return self._caller.stream_stream(
            GREETER + "BidiHello",
            _hello_requests(names),
            HelloRequest,
            HelloReply,
            timeout,
            metadata,
            call_info,
            compression,
        )

    async def read(
        self,
        filename: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Content:
        """The text of ``filename`` under the server's root."""
        return await self._caller.unary_unary(
            FILE_CONTROLLER + "Read",
            Files(filename=filename),
            Content,
            timeout,
            metadata,
            call_info,
            compression,
        )

    async def write(
        self,
        filename: str,
        text: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Status:
        """Atomically replace ``filename`` with ``text``; ``code`` 0 once it is on disk."""
        return await self._caller.unary_unary(
            FILE_CONTROLLER + "Write",
            Files(filename=filename, text=text),
            Status,
            timeout,
            metadata,
            call_info,
            compression,
        )

    def read_chunks(
        self,
        filename: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> ReplyStream[bytes]:
        """The bytes of ``filename``, of any size, in chunks as they arrive (ReadStream)."""
        request = Files(filename=filename)
        chunks = self._caller.unary_stream(
            FILE_CONTROLLER + "ReadStream",
            request,
            Chunk,
            timeout,
            metadata,
            call_info,
            compression,
        )
        return ReplyStream(transfers.chunk_data(chunks))

    async def write_chunks(
        self,
        filename: str,
        chunks: Requests[bytes],
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Status:
        """Atomically replace ``filename`` with the chunks' bytes, of any size (WriteStream).

        ``sha256`` of the reply is checked against what was sent (``DATA_LOSS`` if it
        differs). If ``chunks`` raises, the call is cancelled, the file is left as it was
        and the error surfaces unchanged.
        """
        digest = hashlib.sha256()
        return await self._write_stream(
            filename, chunks, digest, True, timeout, metadata, call_info, compression
        )

    async def _write_stream(
        self,
        filename: str,
        chunks: Requests[bytes],
        digest: hashlib._Hash,
        hash_chunks: bool,
        timeout: float | None,
        metadata: MetadataLike | None,
        call_info: CallInfo | None,
        compression: Compression,
    ) -> Status:
        """WriteStream of ``chunks``, checked against ``digest`` (fed here if ``hash_chunks``,
        else by whoever produces them)."""
        status = await self._caller.stream_unary(
            FILE_CONTROLLER + "WriteStream",
            transfers.chunk_requests(filename, chunks, digest if hash_chunks else None),
            Chunk,
            Status,
            timeout,
            metadata,
            call_info,
            compression,
        )
        if status.sha256 and status.sha256 != digest.hexdigest():
            raise RpcError(
                StatusCode.DATA_LOSS, f"the server stored other bytes than were sent to {filename}"
            )
        return status

    async def read_bytes(
        self,
        filename: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> bytes:
        """The bytes of ``filename``, of any size (streamed)."""
        return b"".join(
            [
                data
                async for data in self.read_chunks(
                    filename,
                    timeout=timeout,
                    metadata=metadata,
                    call_info=call_info,
                    compression=compression,
                )
            ]
        )

    async def write_bytes(
        self,
        filename: str,
        data: bytes,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Status:
        """Atomically replace ``filename`` with ``data``, of any size (streamed)."""
        return await self.write_chunks(
            filename,
            transfers.split(data),
            timeout=timeout,
            metadata=metadata,
            call_info=call_info,
            compression=compression,
        )

    async def upload(
        self,
        local_path: str | os.PathLike[str],
        remote: str,
        *,
        progress: Progress = transfers.no_progress,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Status:
        """Atomically replace ``remote`` with the content of the local file ``local_path``.

        ``progress(sent, total)`` is called at 0 and after each chunk.
        """
        digest = hashlib.sha256()
        with closing(await open_blocking(transfers.open_local, local_path)) as local:
            return await self._write_stream(
                remote,
                transfers.read_local(local, progress, digest),
                digest,
                False,
                timeout,
                metadata,
                call_info,
                compression,
            )

    async def download(
        self,
        remote: str,
        local_path: str | os.PathLike[str],
        *,
        progress: Progress = transfers.no_progress,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> int:
        """Save ``remote`` as the local file ``local_path``; return the bytes received.

        ``local_path`` is replaced only once the whole file has arrived. With ``progress``,
        a Stat call first learns the total; ``progress(received, total)`` is called at 0
        and after each chunk.
        """
        total = 0
        if progress is not transfers.no_progress:
            total = (
                await self.stat(remote, timeout=timeout, metadata=metadata, compression=compression)
            ).size
        chunks = self.read_chunks(
            remote, timeout=timeout, metadata=metadata, call_info=call_info, compression=compression
        )
        return await transfers.save_local(chunks, local_path, progress, total)

    def list(
        self,
        path: str = "",
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> ReplyStream[FileInfo]:
        """The entries of a directory under the root ("" is the root), in no set order."""
        request = ListRequest(path=path)
        return self._caller.unary_stream(
            FILE_CONTROLLER + "List", request, FileInfo, timeout, metadata, call_info, compression
        )

    async def stat(
        self,
        filename: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> FileInfo:
        """Size, modification time and kind of a file or directory (``.`` is the root)."""
        return await self._caller.unary_unary(
            FILE_CONTROLLER + "Stat",
            Files(filename=filename),
            FileInfo,
            timeout,
            metadata,
            call_info,
            compression,
        )

    async def delete(
        self,
        filename: str,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        call_info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Status:
        """Delete a file; ``code`` 0 once it is gone."""
        return await self._caller.unary_unary(
            FILE_CONTROLLER + "Delete",
            Files(filename=filename),
            Status,
            timeout,
            metadata,
            call_info,
            compression,
        )
