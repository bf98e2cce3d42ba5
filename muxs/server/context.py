"""The call being handled: ``CallContext``, and ``current()`` to reach it from any handler.

The call hooks (``muxs.server.hooks``) make one ``CallContext`` per call, before anything else
runs, and every party to the call shares it: the interceptors (``muxs.server.interceptors``),
the handler (muxs's or a hosted service's: ``muxs.server.current()``), and the observers that
read it once the call has ended (the access log, the metrics).

It tells who calls what (method, request metadata, peer, identity, deadline), lets the call
add response headers and trailers and choose how its replies are compressed, and, once the
call has ended, holds its outcome (status, duration, message counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from grpclib.server import Stream

from muxs.auth.identity import ANONYMOUS, Identity, current_identity
from muxs.errors import StatusCode
from muxs.server.reply_compression import ReplyCompression, compress_replies

if TYPE_CHECKING:
    from muxs.server.hooks import CallObserver

#: A metadata value: ``str``, or ``bytes`` for a key ending in ``-bin``.
MetadataValue = str | bytes
#: Which way a message went: ``received`` from the client, ``sent`` to it.
Direction = Literal["received", "sent"]
#: Told of every message of a call (``CallContext.watch_messages``).
MessageWatcher = Callable[["CallContext", Direction, Any], None]


@dataclass(eq=False)
class CallContext:
    """One call, from its request headers to its status.

    Read anywhere in the call: ``path`` (``/package.Service/Method``), ``service``,
    ``method``, ``kind``, ``peer``, ``metadata``, ``identity``, ``time_remaining()``.
    Once it has ended (in an interceptor, after ``await proceed()``; in an observer's
    ``finished``): ``status``, ``duration``, ``received``, ``sent``.
    """

    service: str
    method: str
    #: ``unary``, ``server_stream``, ``client_stream`` or ``bidi_stream``.
    kind: str
    #: The client's ``host:port`` (``[v6]:port``), or ``unknown``.
    peer: str
    started: float
    stream: Stream[Any, Any] = field(repr=False)
    received: int = 0
    sent: int = 0
    bytes_written: int = 0
    #: Who called, once authenticated (mTLS or token subject); None when anonymous.
    subject: str | None = None
    #: The final status; None while the call is in flight.
    status: StatusCode | None = None
    duration: float = 0.0
    #: Response headers not sent yet (``add_header``); None when there are none.
    pending_headers: list[tuple[str, MetadataValue]] | None = field(default=None, repr=False)
    #: Trailers to send with the status (``add_trailer``); None when there are none.
    trailers: list[tuple[str, MetadataValue]] | None = field(default=None, repr=False)
    #: Who sees each message (``watch_messages``); None when nobody does.
    watchers: list[MessageWatcher] | None = field(default=None, repr=False)
    #: The server's observers (``muxs.server.hooks``), told of bytes written.
    observers: tuple[CallObserver, ...] = field(default=(), repr=False)

    @property
    def path(self) -> str:
        """``/package.Service/Method``."""
        return f"/{self.service}/{self.method}"

    @property
    def metadata(self) -> Mapping[str, MetadataValue]:
        """The request metadata (grpclib's ``MultiDict``: ``.getall(key)`` for repeated keys).
        ``authorization`` is gone once muxs's auth has read it."""
        metadata: Mapping[str, MetadataValue] | None = self.stream.metadata
        return metadata if metadata is not None else {}

    @property
    def identity(self) -> Identity:
        """Who calls (``ANONYMOUS`` while auth and mutual TLS are off, or before auth ran;
        ``muxs.auth.current_identity()`` is the same)."""
        return current_identity() or ANONYMOUS

    def time_remaining(self) -> float | None:
        """Seconds until the client's deadline (None: it sent none)."""
        deadline = self.stream.deadline
        return None if deadline is None else max(deadline.time_remaining(), 0.0)

    def elapsed(self) -> float:
        """Seconds since the call's request headers arrived."""
        return time.monotonic() - self.started

    def add_header(self, key: str, value: MetadataValue) -> None:
        """Send ``key: value`` in the response headers (initial metadata): with the first
        reply message, or before the status when there is none. A ``-bin`` key takes bytes.
        Too late once the headers are sent (grpclib's ``ProtocolError`` when they go)."""
        if self.pending_headers is None:
            self.pending_headers = []
        self.pending_headers.append((key, value))

    async def send_headers(self) -> None:
        """Send the response headers now (with those ``add_header`` added), before any reply."""
        headers, self.pending_headers = self.pending_headers, None
        await self.stream.send_initial_metadata(metadata=headers)

    def add_trailer(self, key: str, value: MetadataValue) -> None:
        """Send ``key: value`` in the trailers (trailing metadata), with the call's status,
        whatever it is. A ``-bin`` key takes bytes."""
        if self.trailers is None:
            self.trailers = []
        self.trailers.append((key, value))

    def set_compression(self, compression: ReplyCompression) -> ReplyCompression:
        """Compress this call's replies with ``compression`` (``gzip`` or ``deflate``), or
        not (``identity``), whatever the server's ``--compression``; returns what they will
        be sent with. As with ``--compression``, an encoding the client does not accept
        (``grpc-accept-encoding``) means ``identity``, and a message under 1 KiB, or one
        compression would not make smaller, goes plain.

        Call it before the response headers are sent (before the first reply or
        ``send_headers()``): after, it raises ``RuntimeError``, as grpcio.aio's
        ``ServicerContext.set_compression`` does. ``ValueError`` for another name."""
        return compress_replies(self.stream, compression)

    def watch_messages(self, watcher: MessageWatcher) -> None:
        """Call ``watcher(context, direction, message)`` for every message of this call from
        now on, as it is received or sent. Only calls watched pay for it."""
        if self.watchers is None:
            self.watchers = []
        self.watchers.append(watcher)


_current: ContextVar[CallContext | None] = ContextVar("muxs_call", default=None)


def current() -> CallContext:
    """The call the running handler (or interceptor) serves; ``LookupError`` outside one."""
    call = _current.get()
    if call is None:
        raise LookupError("muxs.server.current() is only available inside a call")
    return call


def current_or_none() -> CallContext | None:
    """The call being handled by the running task, or None outside one."""
    return _current.get()


def enter(call: CallContext) -> None:
    """Make ``call`` the running task's call (each call runs in its own task)."""
    _current.set(call)
