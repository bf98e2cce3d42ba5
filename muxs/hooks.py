"""The one place muxs hooks into grpclib's server events.

Every call a muxs server accepts passes through ``CallHooks``:

- it keeps one ``Call`` record (method, peer, duration, messages in and out, final
  status) that its observers share: the access log (``muxs.access_log``) and the
  metrics (``muxs.metrics``) read the same record instead of each keeping their own;
- it is the last-resort error handler: an unexpected exception in a handler is logged
  once with its traceback, and the client gets INTERNAL with a generic message;
- once a drain begins it refuses new calls with UNAVAILABLE (health checks excepted).

All the events of a call run in the task that handles it, so the record travels in a
``ContextVar``: ``current_call()`` returns it inside a handler, and ``count_bytes_written``
adds to it. A call ends when its trailers are sent or, for a call that never sends them
(cancelled by the client or by the server's shutdown), when its task ends.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from grpclib._typing import IServable
from grpclib.const import Cardinality, Status
from grpclib.events import RecvMessage, RecvRequest, SendMessage, SendTrailingMetadata, listen
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.protocol import Peer
from grpclib.server import Server, Stream

from muxs.auth.identity import Identity, current_identity

log = logging.getLogger(__name__)

HEALTH_SERVICE = "grpc.health.v1.Health"
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
    status: Status | None = None
    duration: float = 0.0
    interrupted: bool = False

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


class CallObserver:
    """Told about every call; override what you need (every method does nothing here)."""

    def started(self, call: Call) -> None:
        """The call's request headers arrived."""

    def counted(self, call: Call, what: Counted, amount: int) -> None:
        """The call received or sent a message, or wrote bytes to a file."""

    def finished(self, call: Call) -> None:
        """The call ended: ``status`` and ``duration`` are set."""


_current: ContextVar[tuple[Call, Sequence[CallObserver]] | None] = ContextVar(
    "muxs_call", default=None
)


def current_call() -> Call | None:
    """The call being handled by the running task (None outside a muxs handler)."""
    current = _current.get()
    return current[0] if current else None


def count_bytes_written(amount: int) -> None:
    """Count ``amount`` bytes a FileController handler wrote to a file for this call."""
    _count(Counted.BYTES_WRITTEN, amount)


def _count(what: Counted, amount: int) -> None:
    current = _current.get()
    if current is None:
        return
    call, observers = current
    if what is Counted.RECEIVED:
        call.received += amount
    elif what is Counted.SENT:
        call.sent += amount
    else:
        call.bytes_written += amount
    for observer in observers:
        observer.counted(call, what, amount)


def format_peer(peer: Peer) -> str:
    """``host:port`` (``[v6]:port``) of a connection's peer, or ``unknown``."""
    address = peer.addr()
    if not address:
        return "unknown"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _refuse(stream: Stream[object, object]) -> None:
    raise GRPCError(Status.UNAVAILABLE, "the server is shutting down; retry on another server")


class CallHooks:
    """Hooks a grpclib ``Server`` hosting ``services``; tells ``observers`` about each call."""

    def __init__(
        self,
        server: Server,
        services: Collection[IServable],
        observers: Sequence[CallObserver],
    ) -> None:
        self._observers = tuple(observers)
        self._kinds = {
            path: _KINDS[handler.cardinality]
            for service in services
            for path, handler in service.__mapping__().items()
        }
        self._in_flight: set[Call] = set()
        self._ended = asyncio.Event()
        self._refusing = False
        listen(server, RecvRequest, self._on_request)
        listen(server, RecvMessage, self._on_received)
        listen(server, SendMessage, self._on_sent)
        listen(server, SendTrailingMetadata, self._on_trailers)

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

    async def _on_request(self, event: RecvRequest) -> None:
        _, service, method = event.method_name.split("/", 2)
        call = Call(
            service=service,
            method=method,
            kind=self._kinds.get(event.method_name, "unary"),
            peer=format_peer(event.peer),
            started=time.monotonic(),
        )
        _current.set((call, self._observers))
        self._in_flight.add(call)
        task = asyncio.current_task()
        assert task is not None
        task.add_done_callback(lambda _: self._finish(call, Status.CANCELLED))
        for observer in self._observers:
            observer.started(call)
        handler = event.method_func
        if self._refusing and service != HEALTH_SERVICE:
            handler = _refuse

        async def guarded(stream: Stream[object, object]) -> None:
            try:
                await handler(stream)
            except GRPCError:
                raise
            except (asyncio.CancelledError, StreamTerminatedError):
                call.interrupted = True
                raise
            except Exception:
                log.exception("unexpected error in %s", event.method_name)
                raise GRPCError(
                    Status.INTERNAL, "internal server error; the server logged the details"
                ) from None

        event.method_func = guarded

    async def _on_received(self, event: RecvMessage) -> None:
        _count(Counted.RECEIVED, 1)

    async def _on_sent(self, event: SendMessage) -> None:
        _count(Counted.SENT, 1)

    async def _on_trailers(self, event: SendTrailingMetadata) -> None:
        current = _current.get()
        if current is None:
            return
        call = current[0]
        call.subject = _subject(current_identity())
        # A client's cancel interrupts the handler and grpclib then reports UNKNOWN.
        cancelled = event.status is Status.UNKNOWN and call.interrupted
        self._finish(call, Status.CANCELLED if cancelled else event.status)

    def _finish(self, call: Call, status: Status) -> None:
        if call.status is not None:
            return
        call.status = status
        call.duration = time.monotonic() - call.started
        self._in_flight.discard(call)
        self._ended.set()
        for observer in self._observers:
            observer.finished(call)


def _subject(identity: Identity | None) -> str | None:
    """The token subject and the client certificate's, as far as they are known."""
    if identity is None:
        return None
    known = [part for part in (identity.subject, identity.peer) if part]
    return " / ".join(known) or None
