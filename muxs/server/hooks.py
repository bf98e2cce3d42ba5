"""The one place muxs hooks into the calls its server handles.

``CallHooks.wrap`` wraps each handler of the hosted services once, when the server is
built; for every call the wrapper:

- keeps one ``CallContext`` (``muxs.server.context``: method, peer, metadata, duration,
  messages in and out, final status) that everyone shares: the handler (``current()``), the
  interceptors, and the observers, the access log (``muxs.server.access_log``) and the metrics
  (``muxs.server.metrics``), which read it once the call has ended;
- refuses new calls with UNAVAILABLE once a drain begins (health checks excepted);
- runs the interceptors (``muxs.server.interceptors``) around the handler, the first being
  muxs's auth (``muxs.server.verification.authenticator``) when auth or mutual TLS is on;
- sends the response headers and trailers the call added, with its status;
- applies the deadline rules of ``muxs.server.deadlines`` (a server stream shares the event loop,
  ``max_call_seconds`` bounds the call);
- is the last-resort error handler: an unexpected exception in a handler is logged once
  with its traceback, and the client gets INTERNAL with a generic message.

It uses none of grpclib's event listeners, which cost an event object and a dispatch per
call and per message: a call's status follows from how its handler ended, and the handler
gets a ``CallStream``, grpclib's stream as seen through the wrapper, which counts the
messages it receives and sends (and paces a server stream). Only observers that ask for
them (``counts_messages``: the metrics) are told of each message as it goes.

``count_bytes_written`` adds to the running call's record; ``send_window()`` tells
a handler how much it can send before its client must read (ReadStream reads ahead no more).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from grpclib.const import Cardinality, Handler
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.protocol import Peer
from grpclib.server import Stream

from muxs import _internals
from muxs.auth.identity import ANONYMOUS, Identity, current_identity, set_identity
from muxs.errors import StatusCode
from muxs.server.context import CallContext, current_or_none, enter
from muxs.server.deadlines import DEADLINE_SLACK, Pacer, bounded
from muxs.server.interceptors import ServerInterceptor, chain
from muxs.server.refusals import draining
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


class CallObserver:
    """Told about every call; override what you need (every method does nothing here)."""

    #: Whether ``counted`` hears of each message as it is received or sent; otherwise it
    #: hears only of bytes written, and ``finished`` reads the totals from the ``Call``.
    counts_messages = False

    def started(self, call: CallContext) -> None:
        """The call's request headers arrived."""

    def counted(self, call: CallContext, what: Counted, amount: int) -> None:
        """The call wrote bytes to a file, or (``counts_messages``) received or sent a message."""

    def finished(self, call: CallContext) -> None:
        """The call ended: ``status``, ``duration`` and the message counts are set."""


def count_bytes_written(amount: int) -> None:
    """Count ``amount`` bytes a FileController handler wrote to a file for this call."""
    call = current_or_none()
    if call is None:
        return
    call.bytes_written += amount
    for observer in call.observers:
        observer.counted(call, Counted.BYTES_WRITTEN, amount)


def send_window() -> int | None:
    """Bytes the running call can send now without waiting for its client: its HTTP/2
    flow-control window (the smaller of its stream's and its connection's), 0 while the
    connection's socket is not taking writes; None outside a muxs handler."""
    call = current_or_none()
    return None if call is None else _internals.send_window(call.stream)


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

    ``authenticator``, when given and when auth or mutual TLS is on, checks every call before
    ``interceptors`` and the handler run (it is the first interceptor, after ``tracing``, which
    when given traces every call, refused ones included); ``max_call_seconds``, when given,
    bounds every call.
    """

    def __init__(
        self,
        observers: Sequence[CallObserver] = (),
        *,
        authenticator: Authenticator | None = None,
        interceptors: Sequence[ServerInterceptor] = (),
        tracing: ServerInterceptor | None = None,
        max_call_seconds: float | None = None,
    ) -> None:
        self._observers = tuple(observers)
        self._counting = tuple(o for o in self._observers if o.counts_messages)
        self._interceptors: tuple[ServerInterceptor, ...] = tuple(interceptors)
        if authenticator is not None and authenticator.active:
            self._interceptors = (authenticator, *self._interceptors)
        if tracing is not None:
            self._interceptors = (tracing, *self._interceptors)
        self._max_call_seconds = max_call_seconds
        #: The calls whose handler has started, each with its task.
        self._in_flight: dict[CallContext, asyncio.Task[Any] | None] = {}
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

    def cancel_in_flight(self) -> None:
        """Cancel the calls whose handler has started; those not started yet are still
        refused (``refuse_new_calls``), so their clients can send them again."""
        for task in self._in_flight.values():
            if task is not None:
                task.cancel()

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
        interceptors = self._interceptors
        func = handler.func
        if self._max_call_seconds is not None:
            func = bounded(func, path, self._max_call_seconds)

        async def run_handler(call: CallContext) -> None:
            """The handler, its outcome recorded on ``call`` for the interceptors to read."""
            try:
                stream: Any = CallStream(call, counting, paced)  # as grpclib's Stream
                await func(stream)
            except BaseException as exc:
                raise _failed(call, exc) from None
            call.status = StatusCode.OK

        async def handle(stream: Stream[Any, Any]) -> None:
            call = CallContext(
                service, method, kind, format_peer(stream.peer), time.monotonic(), stream
            )
            self._start(call)
            try:
                if self._refusing and service != HEALTH_SERVICE:
                    raise draining(
                        DRAIN_RETRY_SECONDS,
                        "the server is shutting down; retry on another server",
                    )
                if interceptors:
                    await chain(interceptors, call, partial(run_handler, call))()
                else:
                    await run_handler(call)
                call.status = StatusCode.OK  # also when an interceptor ended the call itself
                if call.pending_headers is not None or call.trailers is not None:
                    await _send_metadata(call, None)
            except BaseException as exc:
                failure = _failed(call, exc)
                if isinstance(failure, GRPCError) and (
                    call.pending_headers is not None or call.trailers is not None
                ):
                    await _send_metadata(call, failure)
                raise failure from None
            finally:
                self._finish(call)

        return Handler(handle, handler.cardinality, handler.request_type, handler.reply_type)

    def _start(self, call: CallContext) -> None:
        call.observers = self._observers
        enter(call)
        set_identity(ANONYMOUS)  # until auth, if on, names the caller
        self._in_flight[call] = asyncio.current_task()
        for observer in self._observers:
            observer.started(call)

    def _finish(self, call: CallContext) -> None:
        if call.status is None:
            call.status = StatusCode.UNKNOWN
        call.duration = time.monotonic() - call.started
        identity = current_identity()
        call.subject = None if identity is ANONYMOUS else _subject(identity)
        self._in_flight.pop(call, None)
        self._ended.set()
        for observer in self._observers:
            observer.finished(call)


def _failed(call: CallContext, exc: BaseException) -> BaseException:
    """What to raise for ``exc`` ending ``call``, its status recorded: a ``GRPCError`` as it
    is, a cancel as it is (DEADLINE_EXCEEDED if the deadline passed, else CANCELLED), and an
    unexpected error, logged once with its traceback, as INTERNAL with a generic message."""
    if isinstance(exc, GRPCError):
        call.status = exc.status
    elif isinstance(exc, asyncio.CancelledError | StreamTerminatedError):
        if call.status in (None, StatusCode.OK):
            cancelled = _deadline_passed(call.stream)
            call.status = StatusCode.DEADLINE_EXCEEDED if cancelled else StatusCode.CANCELLED
    elif isinstance(exc, Exception):
        log.exception("unexpected error in %s", call.path)
        call.status = StatusCode.INTERNAL
        return GRPCError(
            StatusCode.INTERNAL, "internal server error; the server logged the details"
        )
    return exc


async def _send_metadata(call: CallContext, failure: GRPCError | None) -> None:
    """Send the headers and trailers the call added, with its status."""
    if call.pending_headers is not None:
        await call.send_headers()
    if failure is None:
        await call.stream.send_trailing_metadata(metadata=call.trailers)
    else:
        await call.stream.send_trailing_metadata(
            status=failure.status,
            status_message=failure.message,
            status_details=failure.details,
            metadata=call.trailers,
        )


class CallStream:
    """grpclib's server ``Stream`` as a handler sees it through the call wrapper: the same
    stream, with the messages it receives and sends counted on the ``CallContext`` (and told to
    ``observers`` that count them, and to the call's watchers), a server stream paced
    (``muxs.server.deadlines.Pacer``), the headers the call added sent with the first reply."""

    __slots__ = ("_call", "_observers", "_pacer", "_stream")

    def __init__(
        self,
        call: CallContext,
        observers: Collection[CallObserver],
        paced: bool,
    ) -> None:
        self._stream = call.stream
        self._call = call
        self._observers = observers
        self._pacer = Pacer() if paced else None

    async def recv_message(self) -> Any:
        message = await self._stream.recv_message()
        if message is not None:
            call = self._call
            call.received += 1
            for observer in self._observers:
                observer.counted(call, Counted.RECEIVED, 1)
            if call.watchers is not None:
                for watcher in call.watchers:
                    watcher(call, "received", message)
        return message

    async def send_message(self, message: Any) -> None:
        call = self._call
        if call.pending_headers is not None:
            await call.send_headers()
        if call.watchers is not None:
            for watcher in call.watchers:
                watcher(call, "sent", message)
        await self._stream.send_message(message)
        call.sent += 1
        for observer in self._observers:
            observer.counted(call, Counted.SENT, 1)
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
