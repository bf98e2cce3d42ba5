"""OpenTelemetry tracing of muxs calls, on the two interceptor seams (``pip install "muxs[otel]"``).

``server_interceptor()`` (for ``muxs.serve(interceptors=[...])``; ``muxs serve --otel`` adds it
itself) gives every call the server handles a SERVER span, the child of the span whose W3C
``traceparent`` the client sent; ``client_interceptor()`` (for ``muxs.Client(interceptors=[...])``)
gives every call of the SDK a CLIENT span and sends its ``traceparent``. Both follow
OpenTelemetry's RPC semantic conventions: the span is named ``package.Service/Method`` and carries
``rpc.system`` (``grpc``), ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code`` and the peer's
address (``network.peer.*`` on the server, ``server.*`` on the client); its status is ERROR for
every failed call on the client, and on the server for the statuses that mean the server failed
(UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), unset otherwise.
Message events are off unless asked for (``server_interceptor(message_events=True)``, server
side only: the client seam does not see messages): they cost a watcher call per message.

Spans go to ``tracer_provider``, by default the global one (``opentelemetry.trace``); context is
propagated with the global propagator (W3C trace context and baggage unless ``OTEL_PROPAGATORS``
says otherwise). ``import muxs`` does not import this module.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from grpclib.exceptions import GRPCError, StreamTerminatedError

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, TracerProvider
    from opentelemetry.trace.status import Status
    from opentelemetry.trace.status import StatusCode as SpanStatus
except ImportError as missing:
    raise ImportError("muxs.otel needs OpenTelemetry: pip install 'muxs[otel]'") from missing

from muxs import __version__
from muxs.errors import RpcError, StatusCode
from muxs.interceptors import ClientCall, Interceptor, Proceed

if TYPE_CHECKING:
    from muxs.server.context import CallContext, Direction
    from muxs.server.interceptors import ServerInterceptor, ServerProceed

__all__ = ["SERVER_ERRORS", "client_interceptor", "server_interceptor"]

#: The statuses that make a server span's status ERROR (the semantic conventions' list): the
#: others are the client's doing, and leave it unset.
SERVER_ERRORS = frozenset(
    {
        StatusCode.UNKNOWN,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.UNIMPLEMENTED,
        StatusCode.INTERNAL,
        StatusCode.UNAVAILABLE,
        StatusCode.DATA_LOSS,
    }
)
_TRACER_NAME = "muxs"


def server_interceptor(
    tracer_provider: TracerProvider | None = None, *, message_events: bool = False
) -> ServerInterceptor:
    """A server interceptor that traces every call (put it first: it then also sees the calls
    auth refuses). ``message_events`` adds an event per message received and sent (the
    conventions' ``message`` event: ``message.type``, ``message.id``), at the cost of a
    watcher call per message (``CallContext.watch_messages``)."""
    tracer = trace.get_tracer(_TRACER_NAME, __version__, tracer_provider)

    async def trace_call(call: CallContext, proceed: ServerProceed) -> None:
        parent = propagate.extract(call.metadata)
        attributes = _rpc_attributes(call.service, call.method)
        address = call.stream.peer.addr()
        if isinstance(address, tuple):
            attributes["network.peer.address"] = address[0]
            attributes["network.peer.port"] = address[1]
        with tracer.start_as_current_span(
            f"{call.service}/{call.method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if message_events:
                call.watch_messages(partial(_message_event, span))
            try:
                await proceed()
            except GRPCError as exc:
                _end(span, exc.status, exc.status in SERVER_ERRORS, exc.message)
                raise
            except BaseException as exc:
                status = _ended_as(call, exc)
                _end(span, status, status in SERVER_ERRORS, None)
                raise
            _end(span, StatusCode.OK, False, None)

    return trace_call


def client_interceptor(tracer_provider: TracerProvider | None = None) -> Interceptor:
    """A client interceptor that traces every call (put it first: one span per call, however
    many attempts a retrying interceptor after it makes)."""
    tracer = trace.get_tracer(_TRACER_NAME, __version__, tracer_provider)

    async def trace_call(call: ClientCall, proceed: Proceed) -> None:
        service, _, method = call.method.lstrip("/").partition("/")
        attributes = _rpc_attributes(service, method)
        host, _, port = call.target.rpartition(":")
        if host and port.isdigit():
            attributes["server.address"] = host.strip("[]")
            attributes["server.port"] = int(port)
        with tracer.start_as_current_span(
            f"{service}/{method}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            call.metadata[:] = [(k, v) for k, v in call.metadata if k not in carrier]
            call.metadata.extend(carrier.items())
            try:
                await proceed(call)
            except RpcError as exc:
                _end(span, exc.status, True, exc.message)
                raise
            except BaseException as exc:  # cancelled, or the caller's request iterator failed
                _end(span, StatusCode.CANCELLED, True, type(exc).__name__)
                raise
            _end(span, StatusCode.OK, False, None)

    return trace_call


def _rpc_attributes(service: str, method: str) -> dict[str, str | int]:
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _message_event(span: Span, call: CallContext, direction: Direction, message: object) -> None:
    """The conventions' event for a message: its direction and its number in that direction
    (from 1; a message is counted once received, and once it has been sent)."""
    sent = direction == "sent"
    number = call.sent + 1 if sent else call.received
    span.add_event("message", {"message.type": direction.upper(), "message.id": number})


def _ended_as(call: CallContext, exc: BaseException) -> StatusCode:
    """The status of a call that raised ``exc`` (not a ``GRPCError``), as the call hooks
    (``muxs.server.hooks``) answer it: a cancel's, or INTERNAL for an unexpected error."""
    if call.status not in (None, StatusCode.OK):
        return call.status
    if isinstance(exc, asyncio.CancelledError | StreamTerminatedError):
        return StatusCode.CANCELLED
    return StatusCode.INTERNAL


def _end(span: Span, status: StatusCode, error: bool, message: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", status.value)
    if error:
        span.set_status(Status(SpanStatus.ERROR, message or status.name))
