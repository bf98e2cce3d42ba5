"""The one place muxs hooks into the calls its server handles.

``CallHooks.wrap`` wraps each handler of the hosted services once, when the server is
built; for every call the wrapper:

- keeps one ``Call`` record (method, peer, duration, messages in and out, final status)
  that its observers share: the access log (``muxs.server.access_log``) and the metrics
  (``muxs.server.metrics``) read the same record instead of each keeping their own;
- refuses new calls with UNAVAILABLE once a drain begins (health checks excepted);
- authenticates the caller (``muxs.server.verification.authenticator``) when auth or
  mutual TLS is on;
- applies the deadline rules of ``muxs.server.deadlines`` (a server stream shares the event loop,
  ``max_call_seconds`` bounds the call);
- is the last-resort error handler: an unexpected exception in a handler is logged once
  with its traceback, and the client gets INTERNAL with a generic message.

It uses none of grpclib's event listeners, which cost an event object and a dispatch per
call and per message: a call's status follows from how its handler ended, and the handler
gets a ``CallStream``, grpclib's stream as seen through the wrapper, which counts the
messages it receives and sends (and paces a server stream). Only observers that ask for
them (``counts_messages``: the metrics) are told of each message as it goes.

The record travels in a ``ContextVar`` (each call runs in its own task): ``current_call()``
returns it inside a handler, and ``count_bytes_written`` adds to it; ``send_window()`` tells
a handler how much it can send before its client must read (ReadStream reads ahead no more).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from grpclib.const import Cardinality, Handler
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.protocol import Peer
from grpclib.server import Stream

from muxs import _internals
from muxs.auth.identity import Identity, current_identity, set_identity
from muxs.errors import StatusCode
from muxs.server.deadlines import DEADLINE_SLACK, Pacer, bounded
from muxs.server.refusals import retry_after
from muxs.server.unix_socket import describe_unix_peer

if TYPE_CHECKING:
    from muxs._internals import IServable
from muxs.server.verification.authenticator import Authenticator

# Named, not __name__: operators filter on it (tests/server/test_access_log.py pins it).
log = logging.getLogger("muxs.hooks")

HEALTH_SERVICE = "grpc.health.v1.Health"
#: The RetryInfo of a drain's refusal: another server (or this one, restarted) is likely
#: ready by then.
DRAIN_RETRY_SECONDS = 1.0
#: Calls that last as long as the client wants: a drain does not wait for them.
OPEN_ENDED = frozenset({f"/{HEALTH_SERVICE}/Watch"})

_KINDS = {
    Cardinality.UNARY_UNARY: "unary",
    Cardinality.UNARY_STREAM: "server_stream",
    Cardinality.STREAM_UNARY: "client_stream",
    Cardinality.STREAM_STREAM: "bidi_stream",
}


class Counted(enum.Enum):
    """What a call counts as it goes."""

    RECEIVED = "messages received"
    SENT = "messages sent"
    BYTES_WRITTEN = "bytes written to files"


@dataclass(eq=False)
class Call:
    """One call, from the request's headers to its status."""

    service: str
    method: str
    kind: str
    peer: str
    started: float
    received: int = 0
    sent: int = 0
    bytes_written: int = 0
    #: Who called, once authenticated (mTLS or token subject); None when anonymous.
    subject: str | None = None
    #: The final status; None while the call is in flight.
    status: StatusCode | None = None
    duration: float = 0.0

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


class CallObserver:
    """Told about every call; override what you need (every method does nothing here)."""

    #: Whether ``counted`` hears of each message as it is received or sent; otherwise it
    #: hears only of bytes written, and ``finished`` reads the totals from the ``Call``.
    counts_messages = False

    def started(self, call: Call) -> None:
        """The call's request headers arrived."""

    def counted(self, call: Call, what: Counted, amount: int) -> None:
        """The call wrote bytes to a file, or (``counts_messages``) received or sent a message."""

    def finished(self, call: Call) -> None:
        """The call ended: ``status``, ``duration`` and the message counts are set."""


_current: ContextVar[tuple[Call, Sequence[CallObserver]] | None] = ContextVar(
    "muxs_call", default=None
)
_stream: ContextVar[Stream[Any, Any] | None] = ContextVar("muxs_stream", default=None)


def current_call() -> Call | None:
    """The call being handled by the running task (None outside a muxs handler)."""
    current = _current.get()
    return current[0] if current else None


def count_bytes_written(amount: int) -> None:
    """Count ``amount`` bytes a FileController handler wrote to a file for this call."""
    current = _current.get()
    if current is None:
        return
    call, observers = current
    call.bytes_written += amount
    for observer in observers:
        observer.counted(call, Counted.BYTES_WRITTEN, amount)


def send_window() -> int | None:
    """Bytes the running call can send now without waiting for its client: its HTTP/2
    flow-control window (the smaller of its stream's and its connection's), 0 while the
    connection's socket is not taking writes; None outside a muxs handler."""
    stream = _stream.get()
    return None if stream is None else _internals.send_window(stream)


def format_peer(peer: Peer) -> str:
    """``host:port`` (``[v6]:port``) of a connection's peer, ``unix:pid=…,uid=…`` on a Unix
    socket, or ``unknown``."""
    address = peer.addr()
    if isinstance(address, str):  # a Unix socket's peer: its (unbound) path, ""
        return describe_unix_peer(_internals.peer_socket(peer))
    if not address:
        return "unknown"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Wrapped:
    """A hosted service whose handlers are wrapped (grpclib reads only ``__mapping__``)."""

    def __init__(self, mapping: Mapping[str, Handler]) -> None:
        self._mapping = mapping

    def __mapping__(self) -> Mapping[str, Handler]:
        return self._mapping


class CallHooks:
    """Wraps the handlers of the services a server hosts; tells ``observers`` about each call.

    ``authenticator``, when given, checks every call before its handler runs;
    ``max_call_seconds``, when given, bounds every call.
    """

    def __init__(
        self,
        observers: Sequence[CallObserver] = (),
        *,
        authenticator: Authenticator | None = None,
        max_call_seconds: float | None = None,
    ) -> None:
        self._observers = tuple(observers)
        self._counting = tuple(o for o in self._observers if o.counts_messages)
        self._authenticator = authenticator
        self._max_call_seconds = max_call_seconds
        self._in_flight: set[Call] = set()
        self._ended = asyncio.Event()
        self._refusing = False

    def wrap(self, services: Iterable[IServable]) -> list[IServable]:
        """``services``, each handler wrapped; host these instead of the originals."""
        return [
            _Wrapped({path: self._wrap(path, handler) for path, handler in s.__mapping__().items()})
            for s in services
        ]

    @property
    def pending(self) -> int:
        """How many calls in flight a drain waits for (all but the open-ended ones)."""
        return sum(call.path not in OPEN_ENDED for call in self._in_flight)

    def refuse_new_calls(self) -> None:
        """Answer every new call (health checks excepted) with UNAVAILABLE from now on."""
        self._refusing = True

    async def settled(self) -> None:
        """Return once no call is pending."""
        while self.pending:
            self._ended.clear()
            await self._ended.wait()

    def _wrap(self, path: str, handler: Handler) -> Handler:
        _, service, method = path.split("/", 2)
        kind = _KINDS[handler.cardinality]
        paced = handler.cardinality.server_streaming
        counting = self._counting
        func = handler.func
        if self._max_call_seconds is not None:
            func = bounded(func, path, self._max_call_seconds)

        async def handle(stream: Stream[Any, Any]) -> None:
            call = Call(service, method, kind, format_peer(stream.peer), time.monotonic())
            self._start(call, stream)
            status = StatusCode.UNKNOWN
            try:
                if self._refusing and service != HEALTH_SERVICE:
                    raise retry_after(
                        DRAIN_RETRY_SECONDS,
                        StatusCode.UNAVAILABLE,
                        "the server is shutting down; retry on another server",
                    )
                if self._authenticator is not None:
                    set_identity(self._authenticator.identify(path, stream))
                await func(cast(Stream[Any, Any], CallStream(stream, call, counting, paced)))
                status = StatusCode.OK
            except GRPCError as exc:
                status = exc.status
                raise
            except (asyncio.CancelledError, StreamTerminatedError):
                status = (
                    StatusCode.DEADLINE_EXCEEDED
                    if _deadline_passed(stream)
                    else StatusCode.CANCELLED
                )
                raise
            except Exception:
                log.exception("unexpected error in %s", path)
                status = StatusCode.INTERNAL
                raise GRPCError(
                    StatusCode.INTERNAL, "internal server error; the server logged the details"
                ) from None
            finally:
                self._finish(call, status, stream)

        return Handler(handle, handler.cardinality, handler.request_type, handler.reply_type)

    def _start(self, call: Call, stream: Stream[Any, Any]) -> None:
        _current.set((call, self._observers))
        _stream.set(stream)
        self._in_flight.add(call)
        for observer in self._observers:
            observer.started(call)

    def _finish(self, call: Call, status: StatusCode, stream: Stream[Any, Any]) -> None:
        call.status = status
        call.duration = time.monotonic() - call.started
        call.subject = _subject(current_identity())
        self._in_flight.discard(call)
        self._ended.set()
        for observer in self._observers:
            observer.finished(call)


class CallStream:
    """grpclib's server ``Stream`` as a handler sees it through the call wrapper: the same
    stream, with the messages it receives and sends counted on the ``Call`` (and told to
    ``observers`` that count them), a server stream paced (``muxs.server.deadlines.Pacer``)."""

    __slots__ = ("_call", "_observers", "_pacer", "_stream")

    def __init__(
        self,
        stream: Stream[Any, Any],
        call: Call,
        observers: Collection[CallObserver],
        paced: bool,
    ) -> None:
        self._stream = stream
        self._call = call
        self._observers = observers
        self._pacer = Pacer() if paced else None

    async def recv_message(self) -> Any:
        message = await self._stream.recv_message()
        if message is not None:
            self._call.received += 1
            for observer in self._observers:
                observer.counted(self._call, Counted.RECEIVED, 1)
        return message

    async def send_message(self, message: Any) -> None:
        await self._stream.send_message(message)
        self._call.sent += 1
        for observer in self._observers:
            observer.counted(self._call, Counted.SENT, 1)
        if self._pacer is not None and self._pacer.turn_is_over():
            await asyncio.sleep(0)  # let the deadline, a cancel and the other calls run
            self._pacer.new_turn()

    def __aiter__(self) -> CallStream:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # metadata, peer, deadline, send_trailing_metadata...


def _deadline_passed(stream: Stream[Any, Any]) -> bool:
    return stream.deadline is not None and stream.deadline.time_remaining() <= DEADLINE_SLACK


def _subject(identity: Identity | None) -> str | None:
    """The token subject and the client certificate's, as far as they are known."""
    if identity is None:
        return None
    known = [part for part in (identity.subject, identity.peer) if part]
    return " / ".join(known) or None
