"""Every reach of muxs into the internals of grpclib, h2, hyperframe and hpack, in one place.

Each name here relies on something its library does not promise (a private attribute, the
body of a method, the exception it raises), and says what in a one-line comment starting
``Relies on:``. tests/test_internals.py checks each of those things directly, so an
upgrade that changes one fails there by name; importing this module checks the versions it
was written for (``SUPPORTED``), so an untested release fails at import with a clear error,
not with an ``AttributeError`` in the middle of a call. docs/UPSTREAM.md proposes the
upstream changes that would let some of these go.

The SDK imports this module (its channel and the DATA frame ``repr``), so importing it loads
only what a client loads already: grpclib's client and protocol, h2 and hyperframe. The
server's reaches take grpclib's server objects as arguments and import nothing of the server.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import re
import socket
import time
import types
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpclib
import grpclib.client
import grpclib.const
import grpclib.encoding.proto
import grpclib.events
import grpclib.exceptions
import grpclib.metadata
import grpclib.protocol
import grpclib.server
import grpclib.stream
import grpclib.utils
import h2
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.stream
import h2.utilities
import hpack
import hyperframe
import hyperframe.exceptions
from betterproto2.grpclib import ServiceBase
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.encoding.base import GRPC_CONTENT_TYPE
from grpclib.metadata import (
    USER_AGENT,
    decode_metadata,
    encode_grpc_message,
    encode_metadata,
    encode_timeout,
)
from grpclib.protocol import AbstractHandler, Connection, EventsProcessor, H2Protocol, Peer, Stream
from hyperframe import frame
from hyperframe.flags import Flags

from muxs.coalescing import CoalescingTransport
from muxs.frame_layout import END_STREAM, FRAME_HEADER, PADDED

if TYPE_CHECKING:
    # Relies on: grpclib's typing protocols, which live in its private ``_typing`` module
    # (which imports grpclib's server: so for type checkers only).

    from grpclib._typing import ICheckable as ICheckable
    from grpclib._typing import IServable as IServable
    from grpclib._typing import IServerMethodFunc as IServerMethodFunc
    from grpclib.health.check import ServiceCheck
    from grpclib.server import Server
    from grpclib.server import Stream as ServerStream

#: The releases this module was written and tested against: ``[first, next_unsupported)``.
#: pyproject.toml declares the same ranges (tests/test_internals.py keeps them equal).
SUPPORTED = {
    "grpclib": ((0, 4, 9), (0, 5)),
    "h2": ((4, 4, 1), (5,)),
    "hyperframe": ((6, 1, 0), (7,)),
    "hpack": ((4, 2, 0), (5,)),
}

_E = TypeVar("_E")


class UnsupportedVersion(ImportError):
    """A dependency whose internals muxs reaches into is outside the tested range."""


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def check_versions(installed: dict[str, str]) -> None:
    """Raise ``UnsupportedVersion`` unless each of ``installed`` is within ``SUPPORTED``."""
    for name, (first, unsupported) in SUPPORTED.items():
        release = _release(installed[name])
        if not first <= release < unsupported:
            wanted = ".".join(map(str, first)), ".".join(map(str, unsupported))
            raise UnsupportedVersion(
                f"muxs needs {name}>={wanted[0]},<{wanted[1]} (it relies on that release's "
                f"internals, muxs/_internals.py); {installed[name]} is installed: "
                f'pip install "{name}>={wanted[0]},<{wanted[1]}"'
            )


check_versions(
    {
        "grpclib": grpclib.__version__,
        "h2": h2.__version__,
        "hyperframe": hyperframe.__version__,
        "hpack": hpack.__version__,
    }
)


# --- hyperframe and h2: the cost of receiving frames ------------------------------------

_SHOWN = 11  # hyperframe's _raw_data_repr shows 10 bytes and "..." when there are more


def _data_body_repr(self: frame.DataFrame) -> str:
    """hyperframe's text for a DATA frame's body (padding length, data, padding), built from
    its head only: h2 builds every received frame's ``repr`` for a trace log line nobody
    reads, and hyperframe hex-encoded the whole body to show its first 10 bytes."""
    if "PADDED" in self.flags:
        head = self.serialize_padding_data() + bytes(self.data[:_SHOWN])
        head = (head + b"\0" * min(self.pad_length, _SHOWN))[:_SHOWN]
    else:
        head = self.data[:_SHOWN]
    # Relies on: hyperframe.frame._raw_data_repr (hyperframe 6.1), the helper of every body repr.
    return frame._raw_data_repr(bytes(head))


# Relies on: hyperframe's DataFrame._body_repr, which Frame.__repr__ calls for the body.
frame.DataFrame._body_repr = _data_body_repr  # type: ignore[method-assign,assignment]


class _FrameText(functools.partial):  # type: ignore[type-arg]
    """A received frame's ``repr``, built only if a log line is written with it (``%s``):
    ``repr`` and the frame, in a ``partial`` (made in C, without a Python call)."""

    __slots__ = ()

    def __str__(self) -> str:
        return cast(str, self())


# Relies on: h2.connection calling repr() once, in H2Connection._receive_frame, to log
# "Received frame: %s" with h2's logger (a no-op unless the H2Configuration has a logger):
# the name, looked up in h2.connection's globals before the builtins, now makes the text
# lazily, so an unlogged line costs one small object, not the frame's text.
h2.connection.repr = functools.partial(_FrameText, repr)  # type: ignore[attr-defined]


#: h2's state machines' enums whose members are hashed by Python code (``Enum.__hash__``:
#: ``hash(self._name_)``) each time a machine looks up a transition (``_transitions[(state,
#: input)]``), about 19 times per unary call; ``StreamState`` is an ``IntEnum``, hashed in C.
_HASHED_ENUMS = (
    h2.stream.StreamInputs,
    h2.connection.ConnectionState,
    h2.connection.ConnectionInputs,
)


def _hash_state_machine_enums_by_identity() -> None:
    """Hash the members of ``_HASHED_ENUMS`` by identity, in C: they compare by identity
    (``Enum`` defines no ``__eq__``), so equal members still hash alike. The two tables keyed
    by them are rebuilt in place, with the same items, under the new hashes."""
    # Relies on: h2's only hashed containers of these members being h2.stream._transitions
    # and H2ConnectionStateMachine._transitions (tests/test_internals.py scans h2 for others).
    for kind in _HASHED_ENUMS:
        kind.__hash__ = object.__hash__  # type: ignore[method-assign]
    _rehash(h2.stream._transitions)
    _rehash(h2.connection.H2ConnectionStateMachine._transitions)


def _rehash(table: dict[Any, Any]) -> None:
    """``table`` rebuilt in place with the same items, under its keys' hashes now."""
    items = list(table.items())
    table.clear()
    table.update(items)


_hash_state_machine_enums_by_identity()


# --- grpclib's client: how a channel makes a connection ---------------------------------


class ConnectingChannel(Channel):
    """grpclib's ``Channel`` with two public hooks into how it makes each connection."""

    def protocol_made(self, protocol: H2Protocol) -> H2Protocol:
        """The protocol of a new connection; override to wrap it."""
        return protocol

    async def connect(self, connect: Callable[[], Awaitable[H2Protocol]]) -> H2Protocol:
        """Make a connection with ``connect``; override to bound or explain it."""
        return await connect()

    # Relies on: Channel._protocol_factory(), called by _create_connection for each connection.
    def _protocol_factory(self) -> H2Protocol:
        return self.protocol_made(super()._protocol_factory())

    def make_protocol(self) -> H2Protocol:
        """A new connection's protocol, as the channel makes it (for a ``connect`` override
        that makes its connection itself)."""
        return self._protocol_factory()

    # Relies on: Channel._create_connection(), awaited by __connect__ to make each connection.
    async def _create_connection(self) -> H2Protocol:
        return await self.connect(super()._create_connection)

    def reusable(self, protocol: H2Protocol) -> bool:
        """Whether new calls may go on ``protocol``, the channel's open connection; override to
        retire it (after a GOAWAY): the next call makes a new one, the calls on it go on."""
        return True

    # Relies on: Channel._connected, which __connect__ reads (before and under its lock) to
    # decide whether to make a new connection, and Channel._protocol, the one it has.
    @property
    def _connected(self) -> bool:
        protocol = self._protocol
        return bool(super()._connected) and protocol is not None and self.reusable(protocol)


# --- grpclib's server and its connections -----------------------------------------------


def make_protocols_with(server: Server, wrap: Callable[[H2Protocol], asyncio.Protocol]) -> None:
    """Make ``server`` serve each new connection with ``wrap(grpclib's protocol)``."""
    # Relies on: Server._protocol_factory, which start() passes to the loop's create_server.
    make = server._protocol_factory

    def make_protocol() -> Any:  # grpclib only calls what the protocols have in common
        return wrap(make())

    server._protocol_factory = make_protocol  # type: ignore[method-assign]


def accepted_protocol(server: Server) -> asyncio.Protocol:
    """The protocol ``server`` serves a newly accepted connection with."""
    # Relies on: Server._protocol_factory, which start() passes to the loop's create_server.
    return cast(asyncio.Protocol, server._protocol_factory())


class _NoListener:
    """What a server started without a listening socket has in its place (grpclib's server
    and ``stop_listening`` call only these two)."""

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def start_without_listener(server: Server) -> None:
    """Mark ``server`` started with no listening socket (its connections are handed to it),
    so that its ``close()`` and ``wait_closed()`` work; as ``grpclib.testing.ChannelFor``
    does."""
    # Relies on: Server._server and Server._server_closed_fut, which start() sets and
    # close() and wait_closed() require (and wait_closed() awaits).
    server._server = cast(asyncio.AbstractServer, _NoListener())
    server._server_closed_fut = asyncio.get_running_loop().create_future()


def decode_headers_as_latin1(server: Server) -> None:
    """Have h2 decode ``server``'s request header values as latin-1 (every byte decodes)."""
    # Relies on: Server._h2_config, the H2Configuration every connection of the server gets.
    server._h2_config.header_encoding = "latin-1"


def peer_socket(peer: Peer) -> socket.socket | None:
    """The socket of a connection's ``peer`` (None once closed)."""
    # Relies on: Peer._transport, the connection's asyncio transport.
    sock: socket.socket | None = peer._transport.get_extra_info("socket")
    return sock


def stop_listening(server: Server) -> None:
    """Close ``server``'s listening socket; its connections stay open."""
    # Relies on: Server._server, the asyncio server that start() made (None before).
    if server._server is not None:
        server._server.close()


def keepalive_config(
    time: float | None,
    timeout: float,
    base: Configuration | None = None,
    *,
    permit_without_calls: bool = False,
) -> Configuration:
    """grpclib's configuration (``base``'s, else the default) with this keepalive (seconds;
    ``time`` None: no pings): a ping every ``time`` while a call is open (or always, with
    ``permit_without_calls``), the connection closed if one is not acknowledged within
    ``timeout``. Pings go on whether or not data flows, as gRPC's keepalive design (A8) has
    it: grpclib alone stops after two pings without data, and spaces those 300 s apart."""
    # Relies on: Configuration's _keepalive_time, _keepalive_timeout,
    # _keepalive_permit_without_calls, _http2_max_pings_without_data and
    # _http2_min_sent_ping_interval_without_data, which grpclib's Connection (client and
    # server alike) reads in initialize(), _ping() and _is_need_send_ping().
    config = dataclasses.replace(
        base or Configuration(),
        _keepalive_time=time,
        _keepalive_timeout=timeout,
        _keepalive_permit_without_calls=permit_without_calls,
    )
    if time is None:
        return config
    # Half the period: a timer that fires a hair early does not skip its ping.
    return dataclasses.replace(
        config,
        _http2_max_pings_without_data=0,
        _http2_min_sent_ping_interval_without_data=time / 2,
    )


def h2_connection(protocol: H2Protocol) -> h2.connection.H2Connection:
    """The h2 state machine of a grpclib connection."""
    # Relies on: grpclib.protocol.Connection._connection, the h2 H2Connection it drives.
    return protocol.connection._connection


def process_events(protocol: H2Protocol, events: Collection[Any]) -> None:
    """What grpclib's ``H2Protocol.data_received`` does with the events h2 returned, each
    event handed to the processor's handler for it as ``EventsProcessor.process`` hands it
    (its look-up, without its call)."""
    # Relies on: H2Protocol.data_received being flush, processor.process per event, flush;
    # and EventsProcessor.process: the handler in processors by the event's class,
    # NotImplementedError for a class it has none for, nothing once close() has deleted
    # processors.
    protocol.connection.flush()
    processor = protocol.processor
    for event in events:
        try:
            handler: Any = processor.processors[event.__class__]
        except KeyError:
            raise NotImplementedError(event) from None
        except AttributeError:
            continue  # the connection was closed
        handler(event)
    protocol.connection.flush()


def receive(protocol: H2Protocol, data: bytes) -> None:
    """What grpclib's ``H2Protocol.data_received`` does with ``data`` (``process_events``),
    with a protocol error answered by the GOAWAY h2 prepared before the connection closes
    (grpclib closes it without sending it, so the peer never learns why), and a header block
    too large refused before it is held whole (``refuse_large_header_block``)."""
    # Relies on: H2Protocol.data_received's steps: the connection's feed (h2's receive_data),
    # a ProtocolError logged at debug level with grpclib.protocol's logger and the processor
    # closed with "Protocol error", else process_events' steps.
    try:
        events = protocol.connection._connection.receive_data(data)
        refuse_large_header_block(protocol.connection._connection)
    except h2.exceptions.ProtocolError:
        grpclib.protocol.log.debug("Protocol error", exc_info=True)
        protocol.connection.flush()
        protocol.processor.close("Protocol error")
        return
    process_events(protocol, events)


def refuse_large_header_block(h2_conn: h2.connection.H2Connection) -> None:
    """If the header block h2 holds unfinished is over twice the header list size its decoder
    accepts (an HPACK encoding is never larger than its list), end the connection with GOAWAY
    ENHANCE_YOUR_CALM, as h2 would once the block is whole and decoded, and raise h2's error:
    h2 holds a block's frames until it ends, up to 64 CONTINUATIONs of the frame size (64 MiB
    with the SDK's 1 MiB frames)."""
    # Relies on: the FrameBuffer's _headers_buffer (the HEADERS and CONTINUATION frames of a
    # block not yet ended, each with its data) and _data (the start of a frame not yet whole),
    # the decoder's max_header_list_size, h2 answering an oversized list with
    # DenialOfServiceError (ENHANCE_YOUR_CALM), and H2Connection._terminate_connection.
    buffer = h2_conn.incoming_buffer
    if not buffer._headers_buffer:
        return
    held = len(buffer._data) + sum(len(part.data) for part in buffer._headers_buffer)
    if held > 2 * h2_conn.decoder.max_header_list_size:
        h2_conn._terminate_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        raise h2.exceptions.DenialOfServiceError(f"Header block of over {held} bytes")


def replace_event_handler(
    protocol: H2Protocol, event_type: type[_E], handler: Callable[[_E], None]
) -> Callable[[_E], None]:
    """Have ``protocol`` handle h2's ``event_type`` events with ``handler``; return grpclib's
    handler (which ``handler`` may call, and may put back)."""
    # Relies on: EventsProcessor.processors, grpclib's table of a handler per h2 event type.
    processors = protocol.processor.processors
    previous = cast(Callable[[_E], None], processors[event_type])
    processors[event_type] = handler
    return previous


def add_event_handler(
    protocol: H2Protocol, event_type: type[_E], handler: Callable[[_E], None]
) -> None:
    """Have ``protocol`` handle h2's ``event_type`` events, which grpclib has no handler for:
    its ``EventsProcessor.process`` raises NotImplementedError out of ``data_received``, and
    the connection dies with a traceback, the rest of the events it read never processed."""
    # Relies on: EventsProcessor.processors, grpclib's table of a handler per h2 event type.
    processors = protocol.processor.processors
    assert event_type not in processors, event_type
    processors[event_type] = handler


def forget_task(handler: AbstractHandler, stream: Stream, task: asyncio.Task[None]) -> None:
    """Have grpclib's server ``Handler`` let go of ``stream``'s ended ``task`` now."""
    # Relies on: Handler._tasks (stream -> task) and Handler._cancelled (tasks it cancelled on
    # close), which grpclib sweeps only every tenth call and every tenth connection.
    tasks: dict[Stream, asyncio.Task[None]] = handler._tasks  # type: ignore[attr-defined]
    if tasks.get(stream) is task:
        del tasks[stream]
    handler._cancelled.discard(task)  # type: ignore[attr-defined]


# --- grpclib's server: a call's request handled in fewer steps ----------------------------

#: grpclib's server logger, which its request handler logs a call's failures with.
_SERVER_LOG = logging.getLogger(grpclib.server.__name__)


class LeanStream(grpclib.server.Stream[Any, Any]):
    """grpclib's server ``Stream``, whose methods skip grpclib's event dispatch when nobody
    listens to the event (a coroutine awaited for each), and the ``MultiDict`` and encoding
    of response metadata when there is none: the same headers, messages and state as
    grpclib's own, which take any call that has listeners or metadata."""

    # Relies on: grpclib.server.Stream's recv_message, send_initial_metadata, send_message
    # and send_trailing_metadata (0.4.9), whose steps these are (tests/test_internals.py
    # compares their source), the attributes they read and set, and grpclib.events._ident,
    # the dispatch method of an event nobody listens to.

    async def recv_message(self) -> Any:
        if self._dispatch.recv_message is not _NOT_LISTENED:
            return await super().recv_message()
        message = await grpclib.stream.recv_message(self._stream, self._codec, self._recv_type)
        if message is not None:
            self._messages_received += 1
            connection = self._stream.connection
            connection.messages_received += 1
            connection.last_message_received = time.monotonic()
        return message

    async def send_initial_metadata(self, *, metadata: Any = None) -> None:
        if metadata or self._dispatch.send_initial_metadata is not _NOT_LISTENED:
            await super().send_initial_metadata(metadata=metadata)
            return
        if self._send_initial_metadata_done:
            raise grpclib.exceptions.ProtocolError("Initial metadata was already sent")
        await self._stream.send_headers([(":status", "200"), ("content-type", self._content_type)])
        self._send_initial_metadata_done = True

    async def send_message(self, message: Any) -> None:
        if self._dispatch.send_message is not _NOT_LISTENED:
            await super().send_message(message)
            return
        if not self._send_initial_metadata_done:
            await self.send_initial_metadata()
        if not self._cardinality.server_streaming and self._send_message_done:
            raise grpclib.exceptions.ProtocolError("Message was already sent")
        await grpclib.stream.send_message(self._stream, self._codec, message, self._send_type)
        self._send_message_done = True
        self._messages_sent += 1
        connection = self._stream.connection
        connection.messages_sent += 1
        connection.last_message_sent = time.monotonic()

    async def send_trailing_metadata(
        self,
        *,
        status: grpclib.const.Status = grpclib.const.Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: Any = None,
    ) -> None:
        if (
            metadata
            or status_details is not None
            or self._dispatch.send_trailing_metadata is not _NOT_LISTENED
        ):
            await super().send_trailing_metadata(
                status=status,
                status_message=status_message,
                status_details=status_details,
                metadata=metadata,
            )
            return
        if self._send_trailing_metadata_done:
            raise grpclib.exceptions.ProtocolError("Trailing metadata was already sent")
        if (
            not self._cardinality.server_streaming
            and not self._send_message_done
            and status is grpclib.const.Status.OK
        ):
            raise grpclib.exceptions.ProtocolError(
                "Unary response with OK status requires a single message to be sent"
            )
        code = "0" if status is grpclib.const.Status.OK else str(status.value)
        if self._send_initial_metadata_done:
            headers = [("grpc-status", code)]
        else:  # trailers-only response
            headers = [
                (":status", "200"),
                ("content-type", self._content_type),
                ("grpc-status", code),
            ]
        if status_message is not None:
            headers.append(("grpc-message", encode_grpc_message(status_message)))
        await self._stream.send_headers(headers, end_stream=True)
        self._send_trailing_metadata_done = True
        if status != grpclib.const.Status.OK and self._stream.closable:
            self._stream.reset_nowait()


async def serve_request(
    handler: grpclib.server.Handler,
    stream: Stream,
    headers: list[tuple[str, str]],
    fields: dict[str, str],
    release_stream: Callable[[], Any],
) -> None:
    """What grpclib's ``request_handler`` does with a request's ``headers`` (``fields``: the
    same as a dict, made once by the caller), step by step, with a ``LeanStream`` and
    grpclib's ``recv_request`` dispatched only when it has listeners, the deadline parsed
    only when the request has one."""
    # Relies on: grpclib.server.request_handler (0.4.9), whose steps these are
    # (tests/test_internals.py compares its source): its checks and their answers
    # (grpclib.server._abort), Deadline.from_headers, decode_metadata, the stream's wrapper,
    # its exceptions and what it logs of them with grpclib.server's logger.
    try:
        if fields[":method"] != "POST":
            await grpclib.server._abort(stream, 405)
            return
        content_type = fields.get("content-type")
        if content_type is None:
            await grpclib.server._abort(
                stream, 415, grpclib.const.Status.UNKNOWN, "Missing content-type header"
            )
            return
        base_content_type, _, sub_type = content_type.partition("+")
        sub_type = sub_type or grpclib.encoding.proto.ProtoCodec.__content_subtype__
        if base_content_type != GRPC_CONTENT_TYPE or sub_type != handler.codec.__content_subtype__:
            await grpclib.server._abort(
                stream, 415, grpclib.const.Status.UNKNOWN, "Unacceptable content-type header"
            )
            return
        if fields.get("te") != "trailers":
            await grpclib.server._abort(
                stream,
                400,
                grpclib.const.Status.UNKNOWN,
                'Required "te: trailers" header is missing',
            )
            return
        method_name = fields[":path"]
        method = handler.mapping.get(method_name)
        if method is None:
            await grpclib.server._abort(
                stream, 200, grpclib.const.Status.UNIMPLEMENTED, "Method not found"
            )
            return
        try:
            deadline = (
                grpclib.metadata.Deadline.from_headers(headers)
                if "grpc-timeout" in fields
                else None
            )
        except ValueError:
            await grpclib.server._abort(
                stream, 200, grpclib.const.Status.UNKNOWN, "Invalid grpc-timeout header"
            )
            return
        metadata = decode_metadata(headers)
        user_agent = fields.get("user-agent")
        dispatch = handler.dispatch
        call = LeanStream(
            stream,
            method_name,
            method.cardinality,
            method.request_type,
            method.reply_type,
            codec=handler.codec,
            status_details_codec=handler.status_details_codec,
            dispatch=dispatch,
            deadline=deadline,
            user_agent=user_agent,
        )
        async with call:
            wrapper: grpclib.utils.Wrapper
            try:
                if deadline is None:
                    wrapper = stream.wrapper = grpclib.utils.Wrapper()
                    with wrapper:
                        await _call_method(call, method.func, metadata, content_type)
                else:
                    wrapper = stream.wrapper = grpclib.utils.DeadlineWrapper()
                    with wrapper.start(deadline), wrapper:
                        await _call_method(call, method.func, metadata, content_type)
            except grpclib.exceptions.GRPCError:
                raise
            except TimeoutError:  # asyncio.TimeoutError
                if wrapper.cancel_failed:
                    _SERVER_LOG.exception("Failed to handle cancellation")
                    raise grpclib.exceptions.GRPCError(
                        grpclib.const.Status.DEADLINE_EXCEEDED
                    ) from None
                elif wrapper.cancelled:
                    _SERVER_LOG.info("Deadline exceeded")
                    raise grpclib.exceptions.GRPCError(
                        grpclib.const.Status.DEADLINE_EXCEEDED
                    ) from None
                else:
                    _SERVER_LOG.exception("Timeout occurred")
                    raise
            except grpclib.exceptions.StreamTerminatedError as err:
                if wrapper.cancel_failed:
                    _SERVER_LOG.exception("Failed to handle cancellation")
                    raise
                else:
                    assert wrapper.cancelled
                    _SERVER_LOG.info("Request was cancelled: %s", err)
                    raise
            except Exception:
                _SERVER_LOG.exception("Application error")
                raise
    except grpclib.exceptions.ProtocolError:
        _SERVER_LOG.exception("Application error")
    except Exception:
        _SERVER_LOG.exception("Server error")
    finally:
        release_stream()


async def _call_method(
    call: LeanStream, method_func: Any, metadata: Any, content_type: str
) -> None:
    """``method_func`` called with ``call``, its request ``metadata`` set, after grpclib's
    ``recv_request`` dispatch if it has listeners (which may change both)."""
    dispatch = call._dispatch
    if dispatch.recv_request is _NOT_LISTENED:
        call.metadata = metadata
    else:
        call.metadata, method_func = await dispatch.recv_request(
            metadata,
            method_func,
            method_name=call._method_name,
            deadline=call.deadline,
            content_type=content_type,
            user_agent=call.user_agent,
            peer=call.peer,
        )
    await method_func(call)


def start_call(
    handler: grpclib.server.Handler,
    stream: Stream,
    headers: list[tuple[str, str]],
    fields: dict[str, str],
    release_stream: Callable[[], Any],
) -> asyncio.Task[None]:
    """What grpclib's server ``Handler.accept`` does with a new request, with
    ``serve_request`` in its task; the task (muxs lets go of it as it ends: ``forget_task``,
    so grpclib's sweep of ended tasks every tenth call is not needed)."""
    # Relies on: Handler.accept making the stream's task in Handler.loop and keeping it in
    # Handler._tasks (which cancel() and close() cancel, and check_closed() reads).
    task = handler.loop.create_task(serve_request(handler, stream, headers, fields, release_stream))
    handler._tasks[stream] = task
    return task


def wait_for_window_with(stream: Stream, event: asyncio.Event) -> None:
    """Have grpclib's ``send_data`` on ``stream`` wait for flow-control window on ``event``."""
    # Relies on: grpclib.protocol.Stream.window_updated, the event send_data awaits while the
    # stream's or the connection's window is closed, set on each WINDOW_UPDATE.
    stream.window_updated = event


def read_requests_with(
    stream: Stream, wrap: Callable[[Callable[[int], Awaitable[bytes]]], Any]
) -> None:
    """Have grpclib read ``stream``'s request messages through ``wrap(its recv_data)``."""
    # Relies on: grpclib.stream.recv_message reading a message as recv_data(5), then the body.
    stream.recv_data = wrap(stream.recv_data)  # type: ignore[method-assign]


def acknowledge_once_a_turn(stream: Stream, taken: Callable[[Any, int], None]) -> None:
    """Have ``stream`` acknowledge the data its reader takes through ``taken`` (its
    connection's ``acknowledging_once_a_turn``): once a turn of the event loop, summed, not
    once per DATA frame (grpclib's ``Buffer.read`` acknowledges each frame it takes: h2's
    window bookkeeping and a flush, four times for a 64 KiB message in 16 KiB frames). h2
    decides as before when a WINDOW_UPDATE is due; a reader waiting for more data has had
    what it took acknowledged by the next turn, so the peer's window reopens."""
    # Relies on: grpclib.protocol.Buffer.read calling self._ack_callback(size) (the
    # connection's ack for the stream) for each DATA frame it takes.
    stream.buffer._ack_callback = functools.partial(taken, stream.buffer._ack_callback)


def acknowledging_once_a_turn(
    schedule: Callable[[Callable[[], None]], Any],
) -> Callable[[Any, int], None]:
    """``taken(acknowledge, size)`` for ``acknowledge_once_a_turn``: the sizes a connection's
    streams take, summed per stream (by its ``acknowledge``) and each stream's sum
    acknowledged, all in one callback that the first size taken in a turn has ``schedule``
    call (the loop's ``call_soon``, or the connection's ``CoalescingTransport.before_flush``:
    no callback of its own)."""
    return _summed_once_a_turn(_acknowledge_each, schedule)


def _acknowledge_each(sizes: dict[Callable[[int], None], int]) -> None:
    for acknowledge, size in sizes.items():
        acknowledge(size)


class DirectBuffer:
    """grpclib's ``Buffer`` (a stream's received DATA, which ``recv_data`` reads) without its
    ``asyncio.Queue``: a frame received is appended to a deque, and a read that has the
    bytes it asks for takes them without awaiting anything; one that lacks them waits once,
    until they are all there (grpclib's reader is woken, and awaits the queue again, for
    every frame). Frames are acknowledged as grpclib's ``Buffer`` does: each when a read
    takes it, so a peer can send no more than its flow-control window ahead of the reader;
    a read waiting for more takes (and acknowledges) each frame as it comes.

    One difference: an empty DATA frame (no data, no padding) adds nothing here, where
    grpclib's ``Buffer`` ends a read that meets one short (docs/UPSTREAM.md); muxs's server
    passes none on that does not end its stream (``limits._carries_nothing``)."""

    __slots__ = (
        "_ack_callback",
        "_acked",
        "_acked_size",
        "_eof",
        "_loop",
        "_unacked",
        "_waiter",
        "_wanted",
    )

    def __init__(self, ack_callback: Callable[[int], None]) -> None:
        #: Named as grpclib's ``Buffer`` names it: ``acknowledge_once_a_turn`` sets either's.
        self._ack_callback = ack_callback
        self._unacked: collections.deque[tuple[bytes, int]] = collections.deque()
        self._acked: collections.deque[bytes | memoryview] = collections.deque()
        self._acked_size = 0
        self._eof = False
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0

    def add(self, data: bytes, ack_size: int) -> None:
        """A DATA frame's ``data``; ``ack_size``, its flow-controlled length, is
        acknowledged when a read takes it."""
        if not ack_size:  # an empty frame
            return
        if self._waiter is None:
            self._unacked.append((data, ack_size))
            return
        self._take_frame(data, ack_size)  # a read waits: it takes the frame now
        if self._acked_size >= self._wanted:
            self._wake()

    def add_run(self, frames: list[tuple[bytes, int]]) -> None:
        """``add`` of each frame of ``frames`` (none empty), in order."""
        if self._waiter is None:
            self._unacked.extend(frames)
            return
        taking = iter(frames)
        for data, ack_size in taking:  # a read waits: it takes frames until it has its bytes
            self._take_frame(data, ack_size)
            if self._acked_size >= self._wanted:
                self._wake()
                self._unacked.extend(taking)
                return

    def eof(self) -> None:
        """The stream has ended."""
        self._eof = True
        if self._waiter is not None:
            self._wake()

    async def read(self, size: int) -> bytes:
        """The next ``size`` bytes; b"" at the end of the stream; AssertionError (as
        grpclib's ``Buffer``) if the stream ends inside them."""
        assert size >= 0, "Size can not be negative"
        if size == 0:
            return b""
        while True:
            unacked = self._unacked
            while self._acked_size < size and unacked:
                self._take_frame(*unacked.popleft())
            if self._acked_size >= size:
                return self._read_taken(size)
            if self._eof:
                if not self._acked_size:
                    return b""
                raise AssertionError("Received less data than expected")
            self._waiter, self._wanted = self._loop.create_future(), size
            try:
                await self._waiter
            finally:
                self._waiter = None

    def unacked_size(self) -> int:
        """The flow-controlled bytes of the frames no read took (grpclib's release of the
        stream acknowledges them); they are dropped."""
        size = sum(ack_size for _, ack_size in self._unacked)
        self._unacked.clear()
        return size

    def _take_frame(self, data: bytes, ack_size: int) -> None:
        if data:
            self._acked.append(data)
            self._acked_size += len(data)
        self._ack_callback(ack_size)

    def _wake(self) -> None:
        assert self._waiter is not None
        if not self._waiter.done():  # not cancelled
            self._waiter.set_result(None)
        self._waiter = None

    def _read_taken(self, size: int) -> bytes:
        """``size`` bytes of the frames taken (there are that many), joined."""
        self._acked_size -= size
        acked = self._acked
        first = acked[0]
        if len(first) == size:
            acked.popleft()
            return bytes(first)  # no copy of a whole frame's bytes
        if len(first) > size:
            view = memoryview(first)
            acked[0] = view[size:]
            return bytes(view[:size])
        pieces: list[bytes | memoryview] = []
        while size:
            piece = acked[0]
            if len(piece) <= size:
                pieces.append(acked.popleft())
                size -= len(piece)
            else:
                view = memoryview(piece)
                pieces.append(view[:size])
                acked[0] = view[size:]
                size = 0
        return b"".join(pieces)


class DirectStream(Stream):
    """grpclib's HTTP/2 stream of a server's call, whose received DATA is kept in a
    ``DirectBuffer`` from the start: grpclib's ``Buffer`` (an ``asyncio.Queue`` and its
    ``Event``) is never made."""

    def init_stream(self, stream_id: int, connection: Any) -> None:
        # Relies on: grpclib.protocol.Stream.init_stream's steps (the id; a Buffer that
        # acknowledges through connection.ack(stream_id, size); the connection's
        # streams_started and last_stream_created), and the Buffer's use: fed add(data,
        # ack_size) by EventsProcessor.process_data_received, eof() by Stream.__ended__, read
        # by recv_data and asked unacked_size() by release_stream.
        self.id = stream_id
        self.buffer = DirectBuffer(  # type: ignore[assignment]
            functools.partial(connection.ack, stream_id)
        )
        connection.streams_started += 1
        self.created = connection.last_stream_created = time.monotonic()


def make_direct_streams(protocol: H2Protocol) -> None:
    """Have grpclib's server connection ``protocol`` make each request's stream a
    ``DirectStream`` (acknowledged through grpclib's callback: set
    ``acknowledge_once_a_turn`` on each)."""
    # Relies on: EventsProcessor.process_request_received making each request's stream with
    # connection.create_stream(stream_id=...), which is Stream(connection, its
    # _connection, its _transport, stream_id=..., wrapper=...).
    connection = protocol.connection
    connection.create_stream = functools.partial(  # type: ignore[method-assign]
        DirectStream, connection, connection._connection, connection._transport
    )


def buffer_reads(stream: Stream) -> Callable[[int], Awaitable[bytes]]:
    """What ``stream.recv_data`` does, without its own coroutine: its buffer's ``read``."""
    # Relies on: grpclib.protocol.Stream.recv_data being ``return await self.buffer.read(size)``.
    return stream.buffer.read


def acknowledge_connection_once_a_turn(protocol: H2Protocol) -> None:
    """Have grpclib's client connection ``protocol`` acknowledge the data its calls take once
    a turn of the event loop, summed per stream (as ``acknowledge_once_a_turn`` does for one
    stream), and the data of every stream h2 has closed in one acknowledgement: h2 gives a
    closed stream no window back, only the connection, so the replies of many unary calls
    (a call's reply and trailers arrive together) cost h2 one acknowledgement, not one each
    (with a ``StreamClosedError`` raised and caught inside h2 for each)."""
    # Relies on: grpclib's client streams acknowledging through the connection's ack
    # (stream_id, size) (bound in Stream.init_stream, called by EventsProcessor for data of
    # released streams), which is h2's acknowledge_received_data(size, stream_id) then
    # flush(); h2 acknowledging a stream that is not open (or forgotten) for the connection
    # only.
    connection = protocol.connection
    h2_conn = h2_connection(protocol)

    def acknowledge(sizes: dict[int, int]) -> None:
        if connection.is_closing():
            return
        closed_id = closed_size = 0
        for stream_id, size in sizes.items():
            stream = h2_conn.streams.get(stream_id)
            if stream is not None and stream.open:
                h2_conn.acknowledge_received_data(size, stream_id)
            else:
                closed_id, closed_size = stream_id, closed_size + size
        if closed_size:
            h2_conn.acknowledge_received_data(closed_size, closed_id)
        connection.flush()

    # Relies on too: H2Stream.closed being state_machine.state == StreamState.CLOSED (read
    # here without the property's call, for every read of an open stream).
    taken = _summed_once_a_turn(acknowledge)
    silent = type(h2_conn.config.logger) in (h2.config.DummyLogger, _SilentLogger)

    def ack(stream_id: int, size: int) -> None:
        if not size:
            return
        h2_stream = h2_conn.streams.get(stream_id)
        if silent and (h2_stream is None or h2_stream.state_machine.state is _STREAM_CLOSED):
            acknowledge_closed(h2_conn, size)  # at once: nothing to sum it with
            if h2_conn._data_to_send and not connection.is_closing():
                connection.flush()
        else:
            taken(stream_id, size)

    connection.ack = ack  # type: ignore[method-assign]


_STREAM_CLOSED = h2.stream.StreamState.CLOSED


def acknowledge_closed(h2_conn: h2.connection.H2Connection, size: int) -> None:
    """What ``h2_conn.acknowledge_received_data(size, stream_id)`` does for a stream that is
    closed (or forgotten) on a connection without a logger: only the connection's window
    takes ``size`` back, a WINDOW_UPDATE queued when h2's window manager gives an
    increment."""
    # Relies on: acknowledge_received_data's steps for such a stream (a debug line to
    # config.logger, the connection's _inbound_flow_control_window_manager.process_bytes, a
    # WindowUpdateFrame(0) for its increment, nothing for a closed stream,
    # _prepare_for_sending) and H2Connection._data_to_send.
    increment = h2_conn._inbound_flow_control_window_manager.process_bytes(size)
    if increment:
        update = frame.WindowUpdateFrame(0)
        update.window_increment = increment
        h2_conn._prepare_for_sending([update])


def _summed_once_a_turn(
    settle: Callable[[dict[Any, int]], None],
    schedule: Callable[[Callable[[], None]], Any] | None = None,
) -> Callable[[Any, int], None]:
    """``taken(key, size)``, which sums the sizes taken by key and hands them to ``settle``
    once a turn of the event loop (the first size taken in a turn schedules it, with
    ``schedule``: the running loop's ``call_soon`` if None)."""
    soon = schedule or asyncio.get_running_loop().call_soon
    pending: dict[Any, int] = {}

    def settle_pending() -> None:
        sizes = pending.copy()
        pending.clear()
        settle(sizes)

    def taken(key: Any, size: int) -> None:
        if not pending:
            soon(settle_pending)
        pending[key] = pending.get(key, 0) + size

    return taken


def send_replies_with(
    stream: Stream, wrap: Callable[[Callable[..., Awaitable[None]]], Any]
) -> None:
    """Have grpclib send ``stream``'s reply messages through ``wrap(its send_data)``."""
    # Relies on: grpclib.stream.send_message writing a message as one send_data(prefix + body).
    stream.send_data = wrap(stream.send_data)  # type: ignore[method-assign]


#: The methods muxs sets on a server stream, each holding the stream (a reference cycle):
#: ``read_requests_with``'s ``recv_data``, ``send_data_directly``'s and ``send_replies_with``'s
#: ``send_data``, ``send_headers_statelessly``'s ``send_headers``.
_STREAM_METHODS = ("recv_data", "send_data", "send_headers")


def let_go_of_stream(stream: Stream) -> None:
    """Drop the methods muxs set on ``stream`` once its call has ended: without the cycles
    they make, the stream and what its call made are freed then, by reference counting, not
    by the cyclic garbage collector's next pass (a unary call left some 45 objects to it, so
    a collection every 17 calls). Anything that still calls one gets grpclib's own."""
    # Relies on: grpclib.protocol.Stream keeping its attributes in its __dict__, where the
    # methods set on it shadow its class's recv_data, send_data and send_headers.
    for name in _STREAM_METHODS:
        stream.__dict__.pop(name, None)


#: What grpclib's ``recv_data`` raises when the stream ends inside the bytes asked for.
# Relies on: grpclib.protocol.Buffer.read raising a bare AssertionError for a short read.
SHORT_READ = AssertionError


def send_window(stream: ServerStream[Any, Any]) -> int:
    """Bytes ``stream`` can send now without waiting for its client: the smaller of its HTTP/2
    stream's and connection's flow-control windows; 0 while its socket takes no writes."""
    # Relies on: grpclib.server.Stream._stream, its HTTP/2 stream (grpclib.protocol.Stream).
    http2 = stream._stream
    if not http2.connection.write_ready.is_set() or http2.id is None:
        return 0
    try:
        # Relies on: grpclib.protocol.Stream._h2_connection, its connection's h2 state.
        window: int = http2._h2_connection.local_flow_control_window(http2.id)
    except h2.exceptions.ProtocolError:  # the stream is closed
        return 0
    return max(0, window)


def http2_stream(stream: ServerStream[Any, Any]) -> Stream:
    """The HTTP/2 stream grpclib's server ``stream`` (a call) sends and receives on."""
    # Relies on: grpclib.server.Stream._stream, its HTTP/2 stream (grpclib.protocol.Stream).
    return stream._stream


def response_headers_sent(stream: ServerStream[Any, Any]) -> bool:
    """Whether grpclib's server ``stream`` has sent its response headers, or a trailers-only
    response."""
    # Relies on: grpclib.server.Stream._send_initial_metadata_done and
    # _send_trailing_metadata_done, set once send_initial_metadata and send_trailing_metadata
    # (which sends a trailers-only response when no headers went before) have sent theirs.
    return bool(stream._send_initial_metadata_done or stream._send_trailing_metadata_done)


def send_headers_statelessly_instead(
    stream: Stream, extra: Sequence[tuple[str, str]], blocks: StatelessHeaders
) -> None:
    """``send_headers_statelessly(stream, extra, blocks)`` on a stream it was already given to,
    with other ``extra`` headers: the blocks it sends from now on carry these instead."""
    # Relies on: grpclib.protocol.Stream keeping its attributes in its __dict__, where the
    # send_headers set on it shadows its class's (grpclib's own, which the new one wraps).
    stream.__dict__.pop("send_headers", None)
    send_headers_statelessly(stream, extra, blocks)


# --- grpclib's health and reflection services -------------------------------------------


def forget_last_check(check: ServiceCheck) -> None:
    """Make ``check`` run on its next use, however recent its last run."""
    # Relies on: ServiceCheck._last_check, the time of its last run (None: never run).
    check._last_check = None


def reflection_services(names: Collection[str], pool: Any) -> list[IServable]:
    """grpclib's reflection services, v1 and v1alpha, listing ``names`` from ``pool``."""
    # Relies on: grpclib.reflection._deprecated, where grpclib keeps its v1alpha service.
    from grpclib.reflection._deprecated import ServerReflection as ServerReflectionV1Alpha
    from grpclib.reflection.service import ServerReflection

    # Relies on: the constructors' _service_names and _pool arguments (their public
    # ``extend`` lists the services given, not reflection itself).
    return [
        ServerReflection(_service_names=names, _pool=pool),
        ServerReflectionV1Alpha(_service_names=names, _pool=pool),
    ]


# --- the event loops --------------------------------------------------------------------


def feed_tls_protocol(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Give ``data`` to the TLS protocol ``start_tls`` put on ``transport``, as the transport
    gives a ``BufferedProtocol`` what it reads (uvloop read it early: MagicStack/uvloop#707)."""
    # Relies on: both loops' start_tls protocols being buffered ones (uvloop's by duck typing).
    tls = cast(asyncio.BufferedProtocol, transport.get_protocol())
    view = memoryview(data)
    while view and not transport.is_closing():
        buffer = memoryview(tls.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        tls.buffer_updated(size)
        view = view[size:]


class ClosingServerStreams(ServiceBase):
    """A generated service base whose server-streaming handlers are closed as soon as their
    call ends, a failed send included, so what they hold (an open file) is released then,
    not whenever the garbage collector reaches the abandoned generator."""

    # Relies on: betterproto2's ServiceBase._call_rpc_handler_server_stream(handler, stream,
    # request), which each generated base's server-streaming method calls, and which leaves
    # the handler's generator suspended when sending a reply fails.
    async def _call_rpc_handler_server_stream(
        self, handler: Callable[[Any], Any], stream: ServerStream[Any, Any], request: Any
    ) -> None:
        replies = handler(request)
        if not isinstance(replies, AsyncGenerator):
            await super()._call_rpc_handler_server_stream(lambda _: replies, stream, request)
            return
        async with aclosing(replies):
            async for reply in replies:
                await stream.send_message(reply)


# --- grpclib's client streams -------------------------------------------------------------


def sent_request_stream(stream: Any) -> Stream | None:
    """The HTTP/2 stream a grpclib client ``Stream`` sent its request headers on (None: the
    request was never sent, as when the connection failed first)."""
    # Relies on: grpclib.client.Stream._stream, set by send_request once the headers are sent.
    return cast(Stream | None, getattr(stream, "_stream", None))


# --- h2 and grpclib's client: the calls below a GOAWAY finish ------------------------------


def serve_streams_after_goaway(protocol: H2Protocol) -> None:
    """Have the h2 connection of ``protocol`` go on with its streams after a GOAWAY NO_ERROR
    (RFC 9113 section 6.8: those up to its last stream id may still complete): h2 reports it
    (``ConnectionTerminated``) and stays open; any other GOAWAY closes it, as h2 does."""
    connection = h2_connection(protocol)
    # Relies on: H2Connection._frame_dispatch_table (a handler per frame type, made per
    # connection) and its _receive_goaway_frame, which moves the connection to CLOSED (after
    # which h2 refuses every frame and every send) and drops what it had yet to send.
    table = connection._frame_dispatch_table
    close = table[frame.GoAwayFrame]

    def received(goaway: frame.GoAwayFrame) -> tuple[list[frame.Frame], list[Any]]:
        if goaway.error_code != h2.errors.ErrorCodes.NO_ERROR:
            return cast(tuple[list[frame.Frame], list[Any]], close(goaway))
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors.ErrorCodes.NO_ERROR
        event.last_stream_id = goaway.last_stream_id
        event.additional_data = goaway.additional_data or None
        return [], [event]

    table[frame.GoAwayFrame] = received


def spare_ended_calls(protocol: H2Protocol) -> None:
    """Have the calls on grpclib's client connection ``protocol`` whose response has fully
    come (their HTTP/2 stream closed both ways) keep it when the connection closes: grpclib
    fails every call it still holds, even one whose reply its caller has yet to read (a
    server closes a retired connection as soon as its last reply is written)."""
    streams = h2_connection(protocol).streams
    for stream in protocol.processor.streams.values():
        state = streams.get(stream.id) if stream.id is not None else None
        if state is None or state.closed:
            # Relies on: EventsProcessor.close failing each stream of ``streams`` through
            # Stream.__terminated__, which only cancels the call's waits through its wrapper.
            stream.wrapper = None


def response_ended(protocol: H2Protocol, stream_id: int) -> bool:
    """Whether the call on grpclib's client connection ``protocol`` over HTTP/2 stream
    ``stream_id`` has received its whole response (the server's END_STREAM), unread or not."""
    stream = protocol.processor.streams.get(stream_id)
    # Relies on: EventsProcessor.process_stream_ended calling Stream.__ended__, which ends the
    # stream's buffer (grpclib's Buffer, or muxs's DirectBuffer) with buffer.eof(): _eof.
    return stream is not None and bool(getattr(stream.buffer, "_eof", False))


#: The trailers ``fill_missing_trailers`` gives a call (grpc-go's status and words for it).
MISSING_TRAILERS = [
    ("grpc-status", "13"),  # INTERNAL
    ("grpc-message", "the server closed the stream without sending trailers"),
]


def fill_missing_trailers(stream: Stream) -> None:
    """Give grpclib's client ``stream``, whose response has ended, ``MISSING_TRAILERS`` if it
    got neither trailers nor a trailers-only response: grpclib would wait for trailers until
    the call's deadline, or forever."""
    # Relies on: grpclib.protocol.Stream's headers, trailers and trailers_received, which
    # process_response_received and process_trailers_received set (h2 gives a block's
    # TrailersReceived before its StreamEnded), and which recv_trailers (and exchange) wait on.
    headers = stream.headers
    if stream.trailers is not None or headers is None:
        return
    if any(name == "grpc-status" for name, _ in headers):
        return
    stream.trailers = list(MISSING_TRAILERS)
    stream.trailers_received.set()


def terminate_stream(stream: Stream, reason: str) -> None:
    """Fail the call on grpclib's HTTP/2 ``stream`` with ``StreamTerminatedError(reason)``."""
    # Relies on: grpclib.protocol.Stream.__terminated__(reason), with which EventsProcessor
    # fails a call whose stream was reset or whose connection closed.
    stream.__terminated__(reason)


async def streams_released(protocol: H2Protocol) -> None:
    """Return once every call on grpclib's client connection ``protocol`` has ended."""
    # Relies on: EventsProcessor.streams (id -> stream, from the request sent until the call
    # releases it) and Connection.stream_close_waiter, set at each release.
    waiter = protocol.connection.stream_close_waiter
    while protocol.processor.streams:
        waiter.clear()
        await waiter.wait()


# Relies on: grpclib's message for a stream the server reset (process_stream_reset), with h2's
# ErrorCodes formatted as its name or its number (7: REFUSED_STREAM) by the Python version.
_RESET_BY_SERVER = re.compile(r"reset by remote party, error_code: (?:ErrorCodes\.)?(\w+)$")


def reset_code(error: BaseException) -> int | None:
    """The HTTP/2 error code with which the server reset the stream of the call that failed
    with grpclib's ``StreamTerminatedError`` ``error`` (None: it was not reset by the server)."""
    found = _RESET_BY_SERVER.search(str(error))
    if found is None:
        return None
    code = found.group(1)
    if code.isdigit():
        return int(code)
    member = h2.errors.ErrorCodes.__members__.get(code)
    return None if member is None else int(member)


def is_refused_stream(error: BaseException) -> bool:
    """Whether grpclib's ``StreamTerminatedError`` says the server refused the stream."""
    return reset_code(error) == h2.errors.ErrorCodes.REFUSED_STREAM


# --- h2 and hpack: the cost of header blocks ----------------------------------------------

#: How many distinct header blocks a ``StatelessHeaders`` (one per server) and a connection's
#: received-header cache keep; more, and they start again (a bound whatever the peers send).
HEADER_BLOCKS_KEPT = 256
RECEIVED_BLOCKS_KEPT = 16
#: How many distinct header fields a ``StatelessFields`` (the SDK's) keeps, and the longest
#: field it keeps (a longer one, a large token, is encoded each time).
HEADER_FIELDS_KEPT = 1024
HEADER_FIELD_BYTES_KEPT = 256
#: Received header blocks longer than this are decoded every time (a gRPC request's block,
#: once its headers are in the peer's table, is a few dozen bytes).
RECEIVED_BLOCK_BYTES = 512
#: How many closed streams more than the open ones a client connection's h2 may hold before
#: it walks its streams to forget them (``_StreamLimit``).
STREAM_SWEEP_SLACK = 8

_END_HEADERS = 0x4

# h2's state machines' inputs, looked up once: on CPython 3.11 an enum class's attribute goes
# through EnumType.__getattr__'s slow path, and calling AllowedStreamIDs runs Python code.
_CONNECTION_SENDS_HEADERS = h2.connection.ConnectionInputs.SEND_HEADERS
_CONNECTION_SENDS_DATA = h2.connection.ConnectionInputs.SEND_DATA
_CONNECTION_RECEIVES_DATA = h2.connection.ConnectionInputs.RECV_DATA
_STREAM_SENDS_HEADERS = h2.stream.StreamInputs.SEND_HEADERS
_STREAM_SENDS_DATA = h2.stream.StreamInputs.SEND_DATA
_STREAM_SENDS_END = h2.stream.StreamInputs.SEND_END_STREAM
#: The stream ids a connection opens, by its ``client_side``.
_OWN_STREAM_IDS = {side: h2.connection.AllowedStreamIDs(side) for side in (False, True)}


class StatelessHeaders:
    """Response header blocks HPACK-encoded so that they leave no state: each header is a
    static-table index when the table has it, else a literal never indexed (RFC 7541
    section 6.2.3), so a block is valid whatever the peer's dynamic table holds and can be
    sent again as it is. Each distinct block (headers and h2's validation flags) is made once
    by h2's own validation and hpack's encoder, then kept."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[Any, ...], bytes] = {}

    def block(self, headers: Sequence[tuple[str, str]], flags: Any) -> bytes:
        """The block of ``headers``, validated as h2 validates them with ``flags``."""
        key = (flags, *headers)
        block = self._blocks.get(key)
        if block is None:
            block = self._encode(headers, flags)
            if len(self._blocks) >= HEADER_BLOCKS_KEPT:
                self._blocks.clear()
            self._blocks[key] = block
        return block

    @staticmethod
    def _encode(headers: Sequence[tuple[str, str]], flags: Any) -> bytes:
        # Relies on: h2.utilities' utf8_encode_headers, normalize_outbound_headers and
        # validate_outbound_headers, the pipeline H2Stream._build_headers_frames runs.
        checked = h2.utilities.validate_outbound_headers(
            h2.utilities.normalize_outbound_headers(
                h2.utilities.utf8_encode_headers(headers), flags, False
            ),
            flags,
        )
        return _stateless_block(hpack.Encoder(), checked)


def _stateless_block(encoder: hpack.Encoder, headers: Iterable[tuple[Any, Any]]) -> bytes:
    """``headers`` encoded by ``encoder`` (which has never indexed a header nor had its table
    resized) as never-indexed fields: they add nothing to its table, it has no table size
    update to announce, so each field's bytes depend on that field alone."""
    return encoder.encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers])


class StatelessFields:
    """Request header blocks, HPACK-encoded as ``StatelessHeaders``' (valid whatever the
    peer's table holds), but kept field by field: a stateless block is its fields' encodings
    one after the other, so the fields that change from call to call (``:path``,
    ``grpc-timeout``, metadata) cost only their own encoding, and only the first time. Like
    h2 on grpclib's channels (``validate_outbound_headers`` and ``normalize_outbound_headers``
    off), it sends the headers as they are, unchecked."""

    def __init__(self) -> None:
        self._fields: dict[tuple[Any, Any], bytes] = {}
        self._encoder = hpack.Encoder()

    def block(self, headers: Sequence[tuple[Any, Any]], flags: Any = None) -> bytes:
        """The block of ``headers`` (``flags`` is unused: nothing is validated)."""
        fields = self._fields
        return b"".join([fields.get(header) or self._field(header) for header in headers])

    def _field(self, header: tuple[Any, Any]) -> bytes:
        encoded = _stateless_block(self._encoder, [header])
        if len(encoded) <= HEADER_FIELD_BYTES_KEPT:
            if len(self._fields) >= HEADER_FIELDS_KEPT:
                self._fields.clear()
            self._fields[header] = encoded
        return encoded


def send_headers_statelessly(
    stream: Stream, extra: Sequence[tuple[str, str]], blocks: StatelessHeaders
) -> None:
    """Have grpclib's server send ``stream``'s header blocks (its headers, its trailers or a
    trailers-only response, ``extra`` added to each block that starts with ``:status``) as
    ``blocks``' stateless blocks, each framed directly as one HEADERS frame: h2's state
    machines see the headers (and the stream's end) as ``H2Connection.send_headers`` would
    make them see them, but h2 neither validates nor encodes a block it has seen."""
    # Relies on: grpclib.protocol.Stream.send_headers(headers, end_stream) sending every
    # header block of grpclib's server stream (awaiting write_ready, StreamClosedError for a
    # stream h2 no longer has, then the transport write and headers_send_process()).
    send_headers = stream.send_headers
    connection = stream.connection

    async def send(headers: list[tuple[str, str]], end_stream: bool = False) -> None:
        informational = False
        if headers and headers[0][0] == ":status":
            headers = [*headers, *extra]
            informational = headers[0][1].startswith("1")
        if not connection.write_ready.is_set():  # (set: wait() returns at once)
            await connection.write_ready.wait()
        h2_conn = stream._h2_connection
        h2_stream = h2_conn.streams.get(stream.id)  # type: ignore[arg-type]
        # hpack must announce a table size change first; h2 frames informational responses;
        # grpclib's path raises for a stream h2 no longer has.
        if h2_stream is None or h2_conn.encoder.table_size_changes or informational:
            await send_headers(headers, end_stream=end_stream)
            return
        data = _frame_headers(h2_conn, h2_stream, headers, end_stream, blocks)
        stream._transport.write(data)
        connection.headers_send_process()

    stream.send_headers = send  # type: ignore[method-assign]


def send_requests_statelessly(protocol: H2Protocol, blocks: StatelessFields) -> None:
    """Have the h2 connection of grpclib's client connection ``protocol`` send each request's
    headers as ``blocks``' stateless block, framed directly as one HEADERS frame: h2's state
    machines (and its count of open streams) see the request as ``send_headers`` would make
    them see it, but h2 neither encodes the headers nor builds frame objects for them."""
    h2_conn = h2_connection(protocol)
    config = h2_conn.config
    # StatelessFields sends the headers unchecked, as h2 does with these off (grpclib's).
    assert not config.validate_outbound_headers
    assert not config.normalize_outbound_headers
    # Relies on: grpclib.protocol.Stream.send_request sending each request's headers with
    # H2Connection.send_headers(stream_id, headers, end_stream=...), then data_to_send().
    send_headers = h2_conn.send_headers
    limit = _StreamLimit()

    def send(stream_id: int, headers: Any, end_stream: bool = False, **priority: Any) -> None:
        # hpack must announce a table size change first; h2 frames priority information.
        if priority or h2_conn.encoder.table_size_changes:
            send_headers(stream_id, headers, end_stream, **priority)
        else:
            _add_header_frames(h2_conn, stream_id, headers, end_stream, blocks, limit.check)

    h2_conn.send_headers = send  # type: ignore[method-assign,assignment]


def _frame_headers(
    h2_conn: h2.connection.H2Connection,
    h2_stream: h2.stream.H2Stream,
    headers: Sequence[tuple[str, str]],
    end_stream: bool,
    blocks: StatelessHeaders,
) -> bytes:
    """What ``H2Connection.send_headers`` does for a server's response headers or trailers,
    with ``blocks``' block; returns what the connection has to send, the frame last."""
    _add_header_frames(h2_conn, h2_stream.stream_id, headers, end_stream, blocks)
    return h2_conn.data_to_send()


def _add_header_frames(
    h2_conn: h2.connection.H2Connection,
    stream_id: int,
    headers: Sequence[tuple[Any, Any]],
    end_stream: bool,
    blocks: StatelessHeaders | StatelessFields,
    check_limit: Callable[[h2.connection.H2Connection], None] | None = None,
) -> None:
    """What ``H2Connection.send_headers`` does without priority information, for anything
    but an informational response, with ``blocks``' block: the stream opened if it is new
    (a request; ``check_limit``, else h2's own count, refuses one past the peer's limit),
    the state machines' inputs, the frame added to what h2 has to send."""
    # Relies on: H2Connection.send_headers's steps: TooManyStreamsError when a new stream
    # would pass the peer's max_concurrent_streams (_StreamLimit), the connection's
    # SEND_HEADERS input, the stream from
    # _get_or_create_stream, then H2Stream.send_headers's SEND_HEADERS input, validation flags
    # from its events (_build_hdr_validation_flags), SEND_END_STREAM, what it records of a
    # request (_authority, request_method), and the frames added to
    # H2Connection._data_to_send; one HEADERS frame when the block fits the peer's
    # max_outbound_frame_size.
    if stream_id not in h2_conn.streams:
        (check_limit or _StreamLimit.check_exactly)(h2_conn)
    h2_conn.state_machine.process_input(_CONNECTION_SENDS_HEADERS)
    h2_stream = h2_conn._get_or_create_stream(
        stream_id, _OWN_STREAM_IDS[h2_conn.config.client_side]
    )
    events = h2_stream.state_machine.process_input(_STREAM_SENDS_HEADERS)
    # StatelessFields validates nothing: it has no use for the flags.
    flags = None
    if type(blocks) is not StatelessFields:
        key = (h2_stream.state_machine.client, events[0].__class__)
        flags = _VALIDATION_FLAGS.get(key) or _validation_flags(key, h2_stream, events)
    block = blocks.block(headers, flags)
    frame_flags = _END_HEADERS
    if end_stream:
        h2_stream.state_machine.process_input(_STREAM_SENDS_END)
        frame_flags |= END_STREAM
    elif h2_stream.state_machine.trailers_sent:
        raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
    _record_request(h2_stream, headers)
    size = len(block)
    if size > h2_conn.max_outbound_frame_size:
        h2_conn._data_to_send += b"".join(
            f.serialize() for f in _split_headers(h2_stream.stream_id, block, frame_flags, h2_conn)
        )
    else:
        h2_conn._data_to_send += FRAME_HEADER.pack(
            size >> 8, size & 0xFF, 0x1, frame_flags, h2_stream.stream_id
        )
        h2_conn._data_to_send += block


#: h2's header validation flags of a block sent, by whether its stream is a client's and the
#: class of the event its SEND_HEADERS input made (all that h2's flags are made of).
_VALIDATION_FLAGS: dict[tuple[bool | None, type], Any] = {}


def _validation_flags(
    key: tuple[bool | None, type], h2_stream: h2.stream.H2Stream, events: Any
) -> Any:
    """The flags ``H2Stream._build_hdr_validation_flags(events)`` makes, kept by ``key``."""
    # Relies on: _build_hdr_validation_flags reading only the class of events[0] and
    # state_machine.client.
    flags = _VALIDATION_FLAGS[key] = h2_stream._build_hdr_validation_flags(events)
    return flags


class _StreamLimit:
    """h2's check that a new request stays within the peer's ``max_concurrent_streams``,
    without walking every stream of the connection on each request: h2 counts the open ones
    (``open_outbound_streams``) by walking them all, and forgets the closed ones as it goes.
    The open streams are never more than the streams h2 holds, so the count is needed only
    once those reach the limit; h2's walk still runs, to forget closed streams, once the
    streams it holds are twice the open ones at the last walk (plus ``STREAM_SWEEP_SLACK``):
    a walk per about as many requests as there are calls in flight, and closed streams kept
    no longer than that."""

    def __init__(self) -> None:
        self._sweep_at = 0

    def check(self, h2_conn: h2.connection.H2Connection) -> None:
        """Refuse a new request past the peer's limit (``TooManyStreamsError``), as h2 does."""
        held = len(h2_conn.streams)
        if held < self._sweep_at and held < h2_conn.remote_settings.max_concurrent_streams:
            return
        open_streams = self.check_exactly(h2_conn)
        self._sweep_at = 2 * open_streams + STREAM_SWEEP_SLACK

    @staticmethod
    def check_exactly(h2_conn: h2.connection.H2Connection) -> int:
        """h2's check, walking every stream (and forgetting the closed ones); the open count."""
        # Relies on: H2Connection.open_outbound_streams, which walks H2Connection.streams,
        # counting the open ones and moving the closed ones out (to _closed_streams).
        most = h2_conn.remote_settings.max_concurrent_streams
        open_streams = h2_conn.open_outbound_streams
        if open_streams + 1 > most:
            raise h2.exceptions.TooManyStreamsError(
                f"Max outbound streams is {most}, {open_streams} open"
            )
        return open_streams


def _record_request(h2_stream: h2.stream.H2Stream, headers: Sequence[tuple[Any, Any]]) -> None:
    """What ``H2Stream.send_headers`` records of the headers it sends: a request's authority
    (on a client's stream, once) and its method (None for a response); found once for each
    set of the headers it reads from (``_RECORDS``)."""
    recorded = tuple([header for header in headers if header[0] in _RECORDED])
    if not recorded:  # a response's headers or trailers: h2 would record no method
        h2_stream.request_method = None
        return
    record = _RECORDS.get(recorded)
    if record is None:
        named = h2.utilities.utf8_encode_headers(recorded)
        record = (
            h2.utilities.authority_from_headers(named),
            h2.utilities.extract_method_header(named),
        )
        if len(_RECORDS) >= RECORDS_KEPT:
            _RECORDS.clear()
        _RECORDS[recorded] = record
    authority, method = record
    if h2_stream.state_machine.client and h2_stream._authority is None:
        h2_stream._authority = authority
    h2_stream.request_method = method


_RECORDED = frozenset({":authority", ":method", b":authority", b":method"})
#: How many sets of ``_RECORDED`` headers ``_RECORDS`` keeps (then it starts again).
RECORDS_KEPT = 64
#: A request's authority and method as h2 records them, by its ``_RECORDED`` headers.
_RECORDS: dict[tuple[Any, ...], tuple[bytes | None, bytes | None]] = {}


def _split_headers(
    stream_id: int, block: bytes, flags: int, h2_conn: h2.connection.H2Connection
) -> list[frame.Frame]:
    """A block too long for one frame: a HEADERS frame and CONTINUATION frames, as h2 splits."""
    size = h2_conn.max_outbound_frame_size
    parts = [block[i : i + size] for i in range(0, len(block), size)]
    first = frame.HeadersFrame(stream_id, data=parts[0])
    if flags & END_STREAM:
        first.flags.add("END_STREAM")
    frames: list[frame.Frame] = [first]
    frames += [frame.ContinuationFrame(stream_id, data=part) for part in parts[1:]]
    frames[-1].flags.add("END_HEADERS")
    return frames


class _KnownBlock(list[Any]):
    """The headers of a received block that ``_DecodingOnce`` keeps (hpack's ``HeaderTuple``s
    of bytes, which h2 reads), with ``texts``: the block's headers as text, by encoding, shared
    by every copy of the block (``_decode_known_headers``); ``plain``: whether it is neither
    an informational response nor has a ``content-length`` h2 refuses
    (``receive_known_headers`` takes such a block without h2's generic steps); and
    ``content_length``: the length h2 then expects of the body of a request (not HEAD) or
    response with it (None: no ``content-length``)."""

    __slots__ = ("content_length", "plain", "texts")

    def __init__(
        self,
        headers: Iterable[Any],
        texts: dict[str, list[tuple[Any, ...]]],
        plain: bool,
        content_length: int | None,
    ) -> None:
        super().__init__(headers)
        self.texts = texts
        self.plain = plain
        self.content_length = content_length


def _content_length(headers: list[Any]) -> tuple[bool, int | None]:
    """Whether h2 takes the ``content-length`` of ``headers`` (none, or the same number each
    time), and the body length it then expects (not after a HEAD request), as its own
    ``H2Stream._initialize_content_length`` finds them."""
    # Relies on: H2Stream._initialize_content_length reading only self.request_method and
    # setting only self._expected_content_length, ProtocolError for a value it refuses.
    if all(name not in _CONTENT_LENGTH for name, _ in headers):
        return True, None
    reader = types.SimpleNamespace(request_method=None, _expected_content_length=None)
    try:
        h2.stream.H2Stream._initialize_content_length(reader, headers)  # type: ignore[arg-type]
    except h2.exceptions.ProtocolError:
        return False, None
    return True, reader._expected_content_length


class CompressionError(h2.exceptions.ProtocolError):
    """A header block HPACK cannot decode: a connection error COMPRESSION_ERROR (RFC 9113
    section 4.3), which h2 would call PROTOCOL_ERROR."""

    error_code = h2.errors.ErrorCodes.COMPRESSION_ERROR


class _DecodingOnce(hpack.Decoder):
    """hpack's ``Decoder``, with each block whose decoding left the table as it was kept with
    its headers, and decoded again only after the table changed; a block it cannot decode
    raises ``CompressionError``."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self._kept: dict[tuple[Any, ...], _KnownBlock] = {}
        self._version = 0  # one more each time the table changes

    def decode(self, data: bytes, raw: bool = False) -> Any:
        # Relies on: h2's _decode_headers passing on an h2 ProtocolError as it is (it
        # translates hpack's errors, IndexError, TypeError and UnicodeDecodeError to a
        # PROTOCOL_ERROR), and h2 closing the connection with the error's error_code.
        try:
            return self._decode(data, raw)
        except hpack.OversizedHeaderListError:
            raise  # h2's DenialOfServiceError (ENHANCE_YOUR_CALM)
        except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise CompressionError(f"Error decoding header block: {exc}") from exc

    def _decode(self, data: bytes, raw: bool) -> Any:
        if len(data) > RECEIVED_BLOCK_BYTES:
            self._forget()  # the table may change: what was kept may not hold
            return super().decode(data, raw)
        known = self.known(data, raw)
        if known is not None:
            return _KnownBlock(known, known.texts, known.plain, known.content_length)
        table = self.header_table
        before = (table.maxsize, *table.dynamic_entries)
        try:
            headers = list(super().decode(data, raw))
        except BaseException:  # the table may be half changed: h2 closes the connection
            self._forget()
            raise
        if (table.maxsize, *table.dynamic_entries) != before:
            self._forget()
            return headers
        if len(self._kept) >= RECEIVED_BLOCKS_KEPT:
            self._kept.clear()
        valid, length = _content_length(headers)
        plain = valid and not h2.utilities.is_informational_response(headers)
        key = (self._version, raw, self.max_header_list_size, self.max_allowed_table_size, data)
        known = self._kept[key] = _KnownBlock(headers, {}, plain, length)
        return _KnownBlock(known, known.texts, plain, length)

    def known(self, data: bytes, raw: bool = True) -> _KnownBlock | None:
        """The block kept for ``data`` (decoding it now would leave the table as it is), itself,
        not a copy (nothing may change it); None: none is kept."""
        key = (self._version, raw, self.max_header_list_size, self.max_allowed_table_size, data)
        return self._kept.get(key)

    def _forget(self) -> None:
        self._version += 1
        self._kept.clear()


# Relies on: h2.stream._decode_headers(headers, encoding), a generator of the headers of a
# received block as text (each hpack HeaderTuple of bytes decoded into one of str), which
# H2Stream._process_received_headers calls by its module's name and makes a list of.
_h2_decode_headers = h2.stream._decode_headers


def _decode_known_headers(headers: Any, encoding: str) -> Iterator[Any]:
    """h2's ``_decode_headers``, done once for each block ``_DecodingOnce`` keeps: its
    headers as text are kept with it, as plain tuples of ``str`` (hpack's ``HeaderTuple`` is
    a tuple subclass that ``dict()``, unpacking and ``__new__`` each take the slow way; the
    names and values are the same). Any other headers are h2's to decode."""
    if type(headers) is not _KnownBlock:
        return _h2_decode_headers(headers, encoding)
    text = headers.texts.get(encoding)
    if text is None:
        text = [tuple(header) for header in _h2_decode_headers(headers, encoding)]
        headers.texts[encoding] = text
    return iter(text)


h2.stream._decode_headers = _decode_known_headers  # type: ignore[assignment]


def decode_headers_once(h2_conn: h2.connection.H2Connection) -> None:
    """Have ``h2_conn`` (which has received no header block yet) decode each received header
    block once per state of its HPACK table: a block whose decoding left the table as it was
    is kept with its headers, and decoded again only after the table changed (a client's
    later requests reuse its table's entries, so their blocks repeat byte for byte); the
    text of a block kept is made once too (``_decode_known_headers``)."""
    # Relies on: h2 decoding every received header block with self.decoder.decode(block,
    # raw=True), setting only the decoder's max_header_list_size and max_allowed_table_size;
    # hpack's Decoder keeping its table in header_table (dynamic_entries, maxsize), changed by
    # nothing but decode.
    fresh = h2_conn.decoder
    assert not fresh.header_table.dynamic_entries, "a block was decoded already"
    decoder = _DecodingOnce(fresh.max_header_list_size)
    decoder.max_allowed_table_size = fresh.max_allowed_table_size
    decoder.header_table.maxsize = fresh.header_table.maxsize
    h2_conn.decoder = decoder


_CONTENT_LENGTH = (b"content-length", "content-length")
_RECEIVES_HEADERS = h2.connection.ConnectionInputs.RECV_HEADERS
_STREAM_RECEIVES_HEADERS = h2.stream.StreamInputs.RECV_HEADERS
_STREAM_RECEIVES_END = h2.stream.StreamInputs.RECV_END_STREAM


def receive_known_headers(h2_conn: h2.connection.H2Connection) -> None:
    """Have the connection ``h2_conn`` (whose decoder is ``decode_headers_once``'s, and which
    neither normalizes nor validates what it receives, as grpclib's connections do) take each
    received HEADERS frame without priority, on a stream it has (or, on a server, a request
    opening a new stream), whose block the decoder knows and is ``plain``, as h2's
    ``_receive_headers_frame`` and ``H2Stream.receive_headers`` take it, without their
    generic steps: the block is not decoded again (its decoding would change nothing),
    neither scanned for an informational status (it has none) nor for a ``content-length``
    (read once, when the block was kept), no validation flags are built for steps that are
    off, and its text is the one kept with it. Any other frame or block is h2's, step by
    step as before (the block decoded once)."""
    # Relies on: H2Connection._frame_dispatch_table (a handler per frame type, made per
    # connection), hyperframe's Flags._flags (the set of a frame's flag names),
    # h2.connection._decode_headers(decoder, data) (decoding with its errors translated), and
    # the steps of _receive_headers_frame (for a stream in
    # H2Connection.streams, without PRIORITY: decode, the connection's RECV_HEADERS input,
    # the stream's receive_headers(headers, END_STREAM, header_encoding)) and of
    # H2Stream.receive_headers for a block that is not informational and has no
    # content-length it refuses, with normalize and validate off (the stream's RECV_HEADERS
    # input, then RECV_END_STREAM with its event hung on the headers event as stream_ended,
    # _expected_content_length the block's, or 0 after a HEAD request; ProtocolError for trailers
    # without END_STREAM; the headers decoded with _decode_headers(headers, encoding) made a
    # list when header_encoding is a str, else the list of hpack's tuples); for a stream it
    # has not (a server's new request), first TooManyStreamsError when it would pass
    # local_settings.max_concurrent_streams (open_inbound_streams, which also forgets the
    # closed streams), then, after the connection's input, _get_or_create_stream's
    # _begin_new_stream(stream_id, AllowedStreamIDs(not client_side)).
    config = h2_conn.config
    assert type(h2_conn.decoder) is _DecodingOnce
    assert not config.normalize_inbound_headers
    assert not config.validate_inbound_headers
    table = h2_conn._frame_dispatch_table
    generic = table[frame.HeadersFrame]
    streams = h2_conn.streams
    machine = h2_conn.state_machine
    decoder = h2_conn.decoder
    encoding = config.header_encoding

    peer_ids = _OWN_STREAM_IDS[not config.client_side]

    def received(headers_frame: frame.HeadersFrame) -> tuple[list[frame.Frame], list[Any]]:
        stream_id = headers_frame.stream_id
        h2_stream = streams.get(stream_id)
        flags = headers_frame.flags._flags  # the names in a set: "in" without a Python call
        if (h2_stream is None and config.client_side) or "PRIORITY" in flags:
            return cast(tuple[list[frame.Frame], list[Any]], generic(headers_frame))
        end_stream = "END_STREAM" in flags
        block = decoder.known(headers_frame.data)  # decoding it would change nothing
        if h2_stream is None:  # a request on a new stream
            if block is None or not block.plain:
                return cast(tuple[list[frame.Frame], list[Any]], generic(headers_frame))
            most = h2_conn.local_settings.max_concurrent_streams
            open_streams = h2_conn.open_inbound_streams  # also forgets the closed streams
            if open_streams + 1 > most:
                raise h2.exceptions.TooManyStreamsError(
                    f"Max inbound streams is {most}, {open_streams} open"
                )
            events = machine.process_input(_RECEIVES_HEADERS)
            h2_stream = h2_conn._begin_new_stream(stream_id, peer_ids)
        elif block is None or not block.plain:
            headers = h2.connection._decode_headers(decoder, headers_frame.data)
            events = machine.process_input(_RECEIVES_HEADERS)
            frames, stream_events = h2_stream.receive_headers(headers, end_stream, encoding)
            return frames, events + stream_events
        else:
            events = machine.process_input(_RECEIVES_HEADERS)
        stream_machine = h2_stream.state_machine
        stream_events = stream_machine.process_input(_STREAM_RECEIVES_HEADERS)
        event: Any = stream_events[0]
        if end_stream:
            ended = stream_machine.process_input(_STREAM_RECEIVES_END)
            event.stream_ended = ended[0]
            stream_events += ended
        head = h2_stream.request_method == b"HEAD"
        h2_stream._expected_content_length = 0 if head else block.content_length
        if not end_stream and isinstance(event, h2.events.TrailersReceived):
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set")
        if isinstance(encoding, str):
            text = block.texts.get(encoding)
            event.headers = list(_decode_known_headers(block, encoding) if text is None else text)
        else:
            event.headers = list(block)
        return [], events + stream_events

    table[frame.HeadersFrame] = received


def send_data_directly(stream: Stream, cut_short: Callable[[int], None] | None = None) -> None:
    """Have grpclib's server send ``stream``'s DATA frames framed by muxs (``_send_framed``),
    calling ``cut_short`` as it says."""
    stream.send_data = functools.partial(  # type: ignore[method-assign]
        _send_framed, stream, cut_short=cut_short
    )


async def _send_framed(
    stream: Stream,
    data: bytes,
    end_stream: bool = False,
    cut_short: Callable[[int], None] | None = None,
) -> None:
    """What grpclib's ``send_data`` does on ``stream``, with DATA frames framed by muxs: h2's
    state machines and flow-control windows see each frame as ``H2Connection.send_data`` would
    make them see it, but the frame's bytes are not copied into a hyperframe ``DataFrame``,
    then into h2's buffer, then out of it: its 9-byte header and a view of the data go to the
    transport. ``cut_short`` is called with the writes of each frame the peer's flow-control
    window made smaller than both the frame size and what was left to send."""
    # Relies on: grpclib.protocol.Stream.send_data(data, end_stream): waiting for write_ready,
    # then for window_updated while the window is closed, sending min(window, the peer's
    # max_outbound_frame_size, what is left) per frame, counting data_sent on the stream and
    # its connection, and calling data_send_process() after each frame.
    connection = stream.connection
    h2_conn = stream._h2_connection
    stream_id = stream.id
    assert stream_id is not None
    view = memoryview(data)
    position, last = 0, len(data)
    while True:
        if not connection.write_ready.is_set():  # (set: wait() returns at once)
            await connection.write_ready.wait()
            _fail_if_lost(connection)
        window = h2_conn.local_flow_control_window(stream_id)
        if not window > 0:
            stream.window_updated.clear()
            await stream.window_updated.wait()
            _fail_if_lost(connection)
            continue
        most = min(h2_conn.max_outbound_frame_size, last - position)
        size = min(window, most)
        chunk = view[position : position + size]
        position += size
        ends = end_stream and position == last
        stream._transport.write(_frame_data(h2_conn, stream_id, size, ends, window))
        stream._transport.write(chunk)
        if size < most and cut_short is not None:
            cut_short(2)
        stream.data_sent += size
        connection.data_sent += size
        connection.data_send_process()
        if position == last:
            return


def wake_writers(protocol: H2Protocol) -> None:
    """Wake every task waiting to write on ``protocol``'s connection, now that it is lost:
    grpclib's steps would wait for ever for the ``write_ready``, the closed stream or the
    window it never gets again; woken, each fails (``_fail_if_lost``). A task in its call's
    ``Wrapper`` is cancelled by grpclib anyway, but not one still waiting to open its stream
    (not yet the processor's) nor one writing a call's requests from a task of its own."""
    # Relies on: grpclib.protocol.Connection's write_ready and stream_close_waiter, the
    # events send_request and send_data wait on, and each stream's window_updated (the
    # processor's streams; a stream not yet opened waits on the connection's events only).
    connection = protocol.processor.connection
    connection.write_ready.set()
    connection.stream_close_waiter.set()
    for stream in protocol.processor.streams.values():
        stream.window_updated.set()


def _fail_if_lost(connection: Connection) -> None:
    """Fail a write woken on a lost connection (``wake_writers``) as grpclib fails the calls
    it had: ``StreamTerminatedError("Connection lost")``."""
    # Relies on: grpclib.protocol.Connection.is_closing() being true once its transport is
    # gone (Connection.close deletes it).
    if connection.is_closing():
        raise grpclib.exceptions.StreamTerminatedError("Connection lost")


def _frame_data(
    h2_conn: h2.connection.H2Connection,
    stream_id: int,
    size: int,
    end_stream: bool,
    window: int | None = None,
) -> bytes:
    """What ``H2Connection.send_data`` does for ``size`` bytes without padding: the checks,
    the state machines' inputs, both windows taken down; returns what h2 had to send before,
    then the DATA frame's header (its body, the data, goes after it). ``window``: the
    stream's ``local_flow_control_window``, when the caller has just read it."""
    # Relies on: H2Connection.send_data's steps: FlowControlError past the window,
    # FrameTooLargeError past max_outbound_frame_size, the connection's SEND_DATA input, then
    # H2Stream.send_data's SEND_DATA (and SEND_END_STREAM) inputs and its
    # outbound_flow_control_window, then the connection's.
    if window is None:
        window = h2_conn.local_flow_control_window(stream_id)
    if size > window:
        raise h2.exceptions.FlowControlError(f"Cannot send {size} bytes")
    if size > h2_conn.max_outbound_frame_size:
        raise h2.exceptions.FrameTooLargeError(f"Cannot send frame size {size}")
    h2_conn.state_machine.process_input(_CONNECTION_SENDS_DATA)
    h2_stream = h2_conn.streams[stream_id]
    h2_stream.state_machine.process_input(_STREAM_SENDS_DATA)
    flags = 0
    if end_stream:
        h2_stream.state_machine.process_input(_STREAM_SENDS_END)
        flags = END_STREAM
    h2_stream.outbound_flow_control_window -= size
    h2_conn.outbound_flow_control_window -= size
    h2_conn._data_to_send += FRAME_HEADER.pack(size >> 8, size & 0xFF, 0x0, flags, stream_id)
    return h2_conn.data_to_send()


# --- grpclib's client: the SDK's HTTP/2 streams -------------------------------------------


class ClientStream(Stream):
    """grpclib's HTTP/2 stream (``grpclib.protocol.Stream``) for a call on one of the SDK's
    connections (``on_new_streams``), with what muxs fits to each of them built in instead of
    set on each one: its DATA frames framed directly (``_send_framed``), its replies kept in a
    ``DirectBuffer`` from the start (no ``Buffer`` and its ``asyncio.Queue`` made first), and
    ``extra_headers`` sent after its request headers (``add_request_headers``)."""

    #: Headers sent after the request's, this stream's own once set (``add_request_headers``).
    extra_headers: Sequence[tuple[str, str]] = ()

    send_data = _send_framed

    def init_stream(self, stream_id: int, connection: Connection) -> None:
        # Relies on: grpclib.protocol.Stream.init_stream's steps (the id, a buffer that
        # acknowledges through connection.ack(stream_id, size), streams_started, created and
        # the connection's last_stream_created), called by send_request.
        self.id = stream_id
        self.buffer = DirectBuffer(functools.partial(connection.ack, stream_id))  # type: ignore[assignment]
        self.connection.streams_started += 1
        self.created = self.connection.last_stream_created = time.monotonic()

    async def send_request(
        self,
        headers: list[tuple[str, str]],
        end_stream: bool = False,
        *,
        _processor: EventsProcessor,
        write: bool = True,
    ) -> Callable[[], None]:
        """grpclib's ``send_request``; with ``write`` False, what h2 has to send (the
        headers) is left in h2's buffer for the request's DATA frame (``send_at_once``)."""
        # Relies on: grpclib.protocol.Stream.send_request's steps, which these are, with
        # extra_headers added: wait for write_ready, send the headers on the next stream id
        # (waiting on stream_close_waiter while h2 refuses more streams), init_stream,
        # register with the processor, write what h2 has to send, headers_send_process().
        assert self.id is None, self.id
        headers = [*headers, *self.extra_headers]
        connection, h2_conn = self.connection, self._h2_connection
        while True:
            if not connection.write_ready.is_set():  # (set: wait() returns at once)
                await connection.write_ready.wait()
                _fail_if_lost(connection)
            stream_id = h2_conn.get_next_available_stream_id()
            try:
                h2_conn.send_headers(stream_id, headers, end_stream=end_stream)
            except h2.exceptions.TooManyStreamsError:
                connection.stream_close_waiter.clear()
                await connection.stream_close_waiter.wait()
                _fail_if_lost(connection)
                continue
            self.init_stream(stream_id, connection)
            release_stream = _processor.register(self)
            if write:
                self._transport.write(h2_conn.data_to_send())
            connection.headers_send_process()
            return release_stream

    def send_at_once(self, data: bytes) -> bool:
        """Send ``data``, a unary request, and end the stream, in one DATA frame written at
        once with the headers h2 holds (``send_request(write=False)``), when the connection is
        ready to write and the windows and the frame size take it: no flush left for the next
        turn of the loop. False, with the headers handed to the transport, when they do not
        (``send_data`` then sends ``data``)."""
        # Relies on: what _send_framed relies on (a single frame: no wait for write_ready or
        # window_updated, the frame framed by _frame_data, the counters and
        # data_send_process()); H2Connection.data_to_send returning what h2 holds.
        connection, h2_conn, stream_id = self.connection, self._h2_connection, self.id
        assert stream_id is not None
        size = len(data)
        transport: Any = self._transport
        if (
            not connection.write_ready.is_set()
            or size > h2_conn.local_flow_control_window(stream_id)
            or size > h2_conn.max_outbound_frame_size
        ):
            transport.write(h2_conn.data_to_send())
            return False
        transport.write_now(_frame_data(h2_conn, stream_id, size, True) + data)
        self.data_sent += size
        connection.data_sent += size
        connection.data_send_process()
        return True


def on_new_streams(protocol: H2Protocol, fit: Callable[[ClientStream], None]) -> None:
    """Have grpclib's client make each HTTP/2 stream of ``protocol`` (after its
    ``connection_made``) a ``ClientStream``, seen by ``fit`` before it sends its request."""
    # Relies on: grpclib.client.Stream.send_request making its HTTP/2 stream with
    # protocol.processor.connection.create_stream(wrapper=...), then its send_request(headers);
    # and Connection.create_stream being Stream(self, self._connection, self._transport,
    # stream_id=..., wrapper=...).
    connection = protocol.processor.connection

    def created(*, stream_id: int | None = None, wrapper: Any = None) -> ClientStream:
        stream = ClientStream(
            connection,
            connection._connection,
            connection._transport,
            stream_id=stream_id,
            wrapper=wrapper,
        )
        fit(stream)
        return stream

    connection.create_stream = created  # type: ignore[method-assign]


def add_request_headers(stream: ClientStream, extra: Sequence[tuple[str, str]]) -> None:
    """Have grpclib's client send ``extra`` after ``stream``'s request headers (grpclib
    refuses metadata named ``grpc-*``)."""
    stream.extra_headers = extra


# --- h2: receiving DATA frames -------------------------------------------------------

#: The states of a stream in which h2 takes a DATA frame as data (in the others it resets
#: the stream or fails the connection: ``receive_data_directly`` leaves those frames to h2).
# Tuples, not sets: a member is found by identity, where a set hashes it (Enum.__hash__, a
# Python call per DATA frame).
_RECEIVING = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL)
_CONNECTION_OPEN = (
    h2.connection.ConnectionState.SERVER_OPEN,
    h2.connection.ConnectionState.CLIENT_OPEN,
)


class DataRun:
    """The DATA frames, none empty, that ``receive_data_directly`` took one after another on
    one stream: one event in place of their ``DataReceived`` (``events`` makes those), handed
    to the stream's buffer in one call (``receive_data_runs``)."""

    __slots__ = ("frames", "size", "stream_id")

    def __init__(self, stream_id: int, frames: list[tuple[bytes, int]], size: int) -> None:
        self.stream_id = stream_id
        #: Each frame's data and its flow-controlled length (the same: no padding).
        self.frames = frames
        #: Their length in all.
        self.size = size

    def joined(self, events: list[Any]) -> None:
        """Append this run to ``events``, or join it to the run of its stream that ends them."""
        last = events[-1] if events else None
        if type(last) is DataRun and last.stream_id == self.stream_id:
            last.frames += self.frames
            last.size += self.size
        else:
            events.append(self)

    def events(self) -> list[h2.events.DataReceived]:
        """The events h2 makes of these frames."""
        return [
            h2.events.DataReceived(stream_id=self.stream_id, data=data, flow_controlled_length=size)
            for data, size in self.frames
        ]


def receive_data_runs(protocol: H2Protocol) -> None:
    """Have grpclib's events processor of ``protocol`` take each ``DataRun`` as it takes
    the ``DataReceived`` of each of its frames: added to the stream's buffer (in one call to
    a ``DirectBuffer``), or acknowledged if the stream is gone, and counted."""
    # Relies on: EventsProcessor.processors (a handler per event class, looked up by
    # process()), its streams (id -> Stream) and connection, and process_data_received's
    # steps: stream.buffer.add(data, flow_controlled_length), stream.data_received and
    # connection.data_received += len(data), connection.ack(stream_id, size) for a stream it
    # no longer has, connection.last_data_received = time.monotonic().
    processor = protocol.processor
    streams = processor.streams
    connection = processor.connection

    def process_data_run(run: DataRun) -> None:
        stream = streams.get(run.stream_id)
        if stream is None:
            for _, size in run.frames:
                connection.ack(run.stream_id, size)
        else:
            buffer: Any = stream.buffer  # grpclib's Buffer, or a DirectBuffer
            if type(buffer) is DirectBuffer:
                buffer.add_run(run.frames)
            else:
                for data, size in run.frames:
                    buffer.add(data, size)
            stream.data_received += run.size
        connection.data_received += run.size
        connection.last_data_received = time.monotonic()

    processor.processors[DataRun] = process_data_run


def receive_data_directly(h2_conn: h2.connection.H2Connection, data: bytes) -> list[Any]:
    """``h2_conn.receive_data(data)``, with each DATA frame that h2 would take as data
    (unpadded, within the frame size, on a stream open to the peer, outside a header block)
    taken straight from ``data``: h2's state machines and both flow-control windows get the
    same inputs, in the same order, and the events are the same, but no hyperframe
    ``DataFrame`` is built (its flags, padding and ``repr`` for a trace line nobody reads)
    and its payload is copied once, not three times (into h2's buffer, out of it, into the
    frame). Every other frame goes through h2's buffer as before; so does the client's magic
    (the preface's first 24 bytes). With a logger in h2's configuration, all of it does.
    Consecutive frames taken directly on one stream, none of them empty, come as one
    ``DataRun`` event (in place of their ``DataReceived``; ``receive_data_runs`` has grpclib
    take it).

    A request h2 finds malformed on an open stream (a lying ``content-length``, trailers
    without END_STREAM), which h2 raises as a connection error, resets only its stream
    (``_stream_error``)."""
    # Relies on: H2Connection.receive_data's steps (incoming_buffer.add_data, its
    # max_frame_size set from max_inbound_frame_size, _receive_frame for each frame the
    # FrameBuffer yields, _terminate_connection on a ProtocolError or InvalidPaddingError),
    # the FrameBuffer's _data (what it holds of a frame: add_data appends to it once the
    # preface is through) and _headers_buffer (a header block begun).
    buffer = h2_conn.incoming_buffer
    if type(h2_conn.config.logger) not in (h2.config.DummyLogger, _SilentLogger):
        return h2_conn.receive_data(data)
    events: list[Any] = []
    if buffer._preamble_len:  # the client's magic: checked by h2 (it raises on another)
        preamble = buffer._preamble_len
        events += h2_conn.receive_data(data[:preamble])
        data = data[preamble:]
    buffer.max_frame_size = h2_conn.max_inbound_frame_size
    view = memoryview(data)
    position, end = 0, len(view)
    try:
        held = buffer._data
        if held:  # the rest of a frame h2 holds the start of
            position = min(end, _missing(held, view))
            h2_stream, flags = None, 0
            if len(held) >= 9:
                high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(held)
                if len(held) + position == 9 + (high << 8 | low):  # whole with this part
                    h2_stream = _receiving(h2_conn, high << 8 | low, kind, flags, stream_id)
            if h2_stream is not None:
                with memoryview(held) as start:  # released before h2's buffer is emptied
                    payload = b"".join((start[9:], view[:position]))
                del held[:]
                _receive_directly(h2_conn, h2_stream, payload, flags, events)
            else:
                held += view[:position]
                _receive_through_buffer(h2_conn, view[:0], events)
        while end - position >= 9:
            high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(view, position)
            frame_end = position + 9 + (high << 8 | low)
            if frame_end > end:
                break
            h2_stream = _receiving(h2_conn, high << 8 | low, kind, flags, stream_id)
            if h2_stream is not None and not flags and frame_end > position + 9:
                position = _receive_run(h2_conn, h2_stream, view, position, events)
                continue
            if h2_stream is not None:
                payload = bytes(view[position + 9 : frame_end])
                _receive_directly(h2_conn, h2_stream, payload, flags, events)
            else:
                _receive_through_buffer(h2_conn, view[position:frame_end], events)
            position = frame_end
        if position < end:
            _hold_or_receive(h2_conn, view[position:], events)
    except hyperframe.exceptions.InvalidPaddingError as exc:
        h2_conn._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
        raise h2.exceptions.ProtocolError("Received frame with invalid padding.") from exc
    except h2.exceptions.ProtocolError as exc:
        h2_conn._terminate_connection(exc.error_code)
        raise
    return events


def _receiving(
    h2_conn: h2.connection.H2Connection, length: int, kind: int, flags: int, stream_id: int
) -> h2.stream.H2Stream | None:
    """The stream whose data the frame with this header carries, if h2 would take it as
    data: an unpadded DATA frame within the frame size, on a stream open to the peer,
    outside a header block (else None: the frame goes through h2)."""
    # Relies on: H2Connection.streams (id -> H2Stream, the streams not yet cleaned up) and
    # the FrameBuffer's max_frame_size and _headers_buffer.
    buffer = h2_conn.incoming_buffer
    if kind or flags & PADDED or buffer._headers_buffer:  # not DATA, padded, in a block
        return None
    if length > buffer.max_frame_size:
        return None
    h2_stream = h2_conn.streams.get(stream_id)
    if h2_stream is None or h2_stream.state_machine.state not in _RECEIVING:
        return None
    return h2_stream


def _receive_directly(
    h2_conn: h2.connection.H2Connection,
    h2_stream: h2.stream.H2Stream,
    payload: bytes,
    flags: int,
    events: list[Any],
) -> None:
    """What h2's ``_receive_data_frame`` does with an unpadded DATA frame on an open stream:
    for one that does not end the stream, on an open connection, after the stream's headers
    (an upload's every frame but its last), what that comes to, without the state machines'
    look-ups (their states stay as they are)."""
    # Relies on: _receive_data_frame's steps: the connection's RECV_DATA input, its
    # _inbound_flow_control_window_manager.window_consumed, then H2Stream.receive_data (the
    # stream's RECV_DATA input, its _inbound_window_manager.window_consumed,
    # _track_content_length, the event's data and flow_controlled_length); and the state
    # machines' transitions for RECV_DATA in the states taken directly: to the same state,
    # the stream's through data_received (which checks headers_received, makes the event).
    size = len(payload)
    stream_machine = h2_stream.state_machine
    if (
        flags & END_STREAM
        or not stream_machine.headers_received
        or h2_conn.state_machine.state not in _CONNECTION_OPEN
    ):
        events += h2_conn.state_machine.process_input(_CONNECTION_RECEIVES_DATA)
        h2_conn._inbound_flow_control_window_manager.window_consumed(size)
        try:
            events += h2_stream.receive_data(payload, bool(flags & END_STREAM), size)[1]
        except h2.exceptions.ProtocolError as exc:
            events += _stream_error(h2_conn, h2_stream.stream_id, exc, size)
        return
    h2_conn._inbound_flow_control_window_manager.window_consumed(size)
    h2_stream._inbound_window_manager.window_consumed(size)
    try:
        h2_stream._track_content_length(size, False)
    except h2.exceptions.InvalidBodyLengthError as exc:
        events += _stream_error(h2_conn, h2_stream.stream_id, exc, size)
        return
    stream_id = stream_machine.stream_id
    if not size:
        events.append(
            h2.events.DataReceived(stream_id=stream_id, data=payload, flow_controlled_length=0)
        )
        return
    DataRun(stream_id, [(payload, size)], size).joined(events)


def _receive_run(
    h2_conn: h2.connection.H2Connection,
    h2_stream: h2.stream.H2Stream,
    view: memoryview,
    position: int,
    events: list[Any],
) -> int:
    """The whole DATA frame at ``position`` (not empty, no flags, on ``h2_stream``, which
    ``_receiving`` found for it) and the whole frames after it that are alike on the same
    stream, received as ``_receive_directly`` receives each, but with both windows and the
    body's length taken down once for all of them when none of them runs out (else frame by
    frame, so that h2's error is raised at the frame it is raised at); return where they end."""
    # Relies on: WindowManager.current_window_size (window_consumed raises FlowControlError
    # once it is below 0), H2Stream._expected_content_length and _actual_content_length
    # (_track_content_length raises InvalidBodyLengthError once the second is over the first);
    # and what _receive_directly relies on.
    stream_id = h2_stream.state_machine.stream_id
    max_size = h2_conn.incoming_buffer.max_frame_size
    frames: list[tuple[bytes, int]] = []
    size, end = 0, len(view)
    while end - position >= 9:
        high, low, kind, flags, frame_stream_id = FRAME_HEADER.unpack_from(view, position)
        length = high << 8 | low
        frame_end = position + 9 + length
        if kind or flags or frame_stream_id != stream_id or not 0 < length <= max_size:
            break
        if frame_end > end:
            break
        frames.append((bytes(view[position + 9 : frame_end]), length))
        size += length
        position = frame_end
    connection_window = h2_conn._inbound_flow_control_window_manager
    stream_window = h2_stream._inbound_window_manager
    expected = h2_stream._expected_content_length
    if (
        h2_stream.state_machine.headers_received
        and h2_conn.state_machine.state in _CONNECTION_OPEN
        and size <= connection_window.current_window_size
        and size <= stream_window.current_window_size
        and (expected is None or h2_stream._actual_content_length + size <= expected)
    ):
        connection_window.window_consumed(size)
        stream_window.window_consumed(size)
        h2_stream._track_content_length(size, False)
        DataRun(stream_id, frames, size).joined(events)
    else:
        start = position - sum(9 + length for _, length in frames)
        for payload, length in frames:
            if h2_stream.state_machine.state in _RECEIVING:
                _receive_directly(h2_conn, h2_stream, payload, 0, events)
            else:  # reset by a stream error on the way: h2 takes the rest, as on any closed one
                _receive_through_buffer(h2_conn, view[start : start + 9 + length], events)
            start += 9 + length
    return position


def _missing(held: bytearray, view: memoryview) -> int:
    """How many bytes of ``view`` complete the frame whose start h2 holds (``held``)."""
    head = bytes(held[:9]) + bytes(view[: max(0, 9 - len(held))])
    if len(head) < 9:
        return len(view)
    return 9 + int.from_bytes(head[:3], "big") - len(held)


def _hold_or_receive(
    h2_conn: h2.connection.H2Connection, rest: memoryview, events: list[Any]
) -> None:
    """The rest of a read, a frame's start: held in h2's buffer as it is when the frame
    will be taken directly once whole (h2 would parse its header, and make nothing of it
    until then), else added to h2's buffer as any other data."""
    # Relies on: the FrameBuffer's add_data appending to _data once the preface is through,
    # and its __next__ leaving a frame that is not whole in _data (a header within the
    # frame size raises nothing).
    if len(rest) >= 9:
        high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(rest)
        if _receiving(h2_conn, high << 8 | low, kind, flags, stream_id) is not None:
            h2_conn.incoming_buffer._data += rest
            return
    _receive_through_buffer(h2_conn, rest, events)


#: The frames an error of which on an open stream may make only that stream malformed
#: (``_stream_error``). Not a PUSH_PROMISE: a client may send none (RFC 9113 section 8.4, a
#: connection error), and h2 refuses it before it decodes its header block, so the peer's
#: HPACK table would hold entries the server's lacks (its next blocks decoded wrongly).
_STREAM_ERROR_FRAMES = (frame.DataFrame, frame.HeadersFrame, frame.PriorityFrame)


def _receive_through_buffer(
    h2_conn: h2.connection.H2Connection, data: memoryview, events: list[Any]
) -> None:
    """``data`` added to h2's buffer, and each frame it completes received as h2 does."""
    buffer = h2_conn.incoming_buffer
    buffer.add_data(data)
    while (received := next(buffer, None)) is not None:
        try:
            events += h2_conn._receive_frame(received)
        except h2.exceptions.ProtocolError as exc:
            if not isinstance(received, _STREAM_ERROR_FRAMES):
                raise
            size = received.flow_controlled_length if isinstance(received, frame.DataFrame) else 0
            events += _stream_error(h2_conn, received.stream_id, exc, size)


def refuse_overlong_frame(h2_conn: h2.connection.H2Connection) -> None:
    """If h2 holds the start of a frame longer than its inbound frame size, end the connection
    as h2 would once the frame is whole (FRAME_SIZE_ERROR), and raise h2's error: h2 checks a
    frame's length only then, buffering all of it first (up to 16 MiB a connection)."""
    # Relies on: the FrameBuffer's _data (what it holds of a frame not yet whole), its
    # __next__ validating a frame's length against max_frame_size (set from
    # max_inbound_frame_size by each receive_data) once the frame is whole, and
    # H2Connection._terminate_connection, with which receive_data answers its error.
    held = h2_conn.incoming_buffer._data
    if len(held) < 9:
        return
    high, low, _, _, _ = FRAME_HEADER.unpack_from(held)
    length = high << 8 | low
    if length > h2_conn.max_inbound_frame_size:
        h2_conn._terminate_connection(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
        raise h2.exceptions.FrameTooLargeError(f"Received overlong frame: length {length}")


def _stream_error(
    h2_conn: h2.connection.H2Connection, stream_id: int, exc: h2.exceptions.ProtocolError, size: int
) -> list[Any]:
    """A malformed request found by h2 on an open stream, which h2 raises as a connection
    error: a stream error instead (RFC 9113 section 8.1.1), the stream reset PROTOCOL_ERROR,
    the ``size`` bytes of DATA it took from the connection's window given back, and grpclib
    told (a ``StreamReset`` of its own). Any other error is raised again.

    The request is malformed when its body's length is not its ``content-length``
    (``InvalidBodyLengthError``), or when h2's stream refuses its header block after
    decoding it (the HPACK table is in step): a ``content-length`` that is not a number, or
    trailers without END_STREAM."""
    # Relies on: h2 raising these from H2Stream.receive_data and receive_headers after the
    # state machines' RECV_DATA or RECV_HEADERS inputs (the stream open, its headers
    # received), h2's other errors being subclasses of ProtocolError (muxs's
    # CompressionError for a block HPACK cannot decode among them), and
    # H2Connection.reset_stream and acknowledge_received_data.
    h2_stream = h2_conn.streams.get(stream_id)
    if (
        type(exc) not in (h2.exceptions.ProtocolError, h2.exceptions.InvalidBodyLengthError)
        or h2_stream is None
        or h2_stream.closed
        or not h2_stream.state_machine.headers_received
        or h2_conn.state_machine.state not in _CONNECTION_OPEN
    ):
        raise exc
    h2_conn.reset_stream(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
    if size:
        h2_conn.acknowledge_received_data(size, stream_id)
    return [
        h2.events.StreamReset(
            stream_id=stream_id, error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR, remote_reset=False
        )
    ]


# --- hyperframe and h2: a client's received frames parsed directly ------------------------

_HEADERS, _WINDOW_UPDATE = 0x1, 0x8
_PRIORITY = 0x20
_END_HEADERS_FLAG = 0x4
_INCREMENTS = range(1, 2**31)


def _flag_names(kind: type[frame.Frame], flags: int) -> frozenset[str]:
    """The names hyperframe's ``parse_flags`` gives a frame of ``kind`` with ``flags``."""
    return frozenset(name for name, bit in kind.defined_flags if flags & bit)


#: Per frame type taken directly: its class, its valid flag names (hyperframe's
#: ``Flags._valid_flags``: one set, shared by its frames, which never change it), the flags
#: that send it through hyperframe instead, and its flag names by flag byte.
_DIRECT_KINDS = {
    kind.type: (
        kind,
        {name for name, _ in kind.defined_flags},
        refused,
        [_flag_names(kind, flags) for flags in range(256)],
    )
    for kind, refused in (
        (frame.DataFrame, PADDED),
        (frame.HeadersFrame, PADDED | _PRIORITY),
        (frame.WindowUpdateFrame, 0),
    )
    if kind.type is not None
}


class DirectFrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's ``FrameBuffer``, building the frames a unary call comes in (DATA and HEADERS
    frames without padding or priority, a HEADERS frame ending its header block,
    WINDOW_UPDATE) straight from their bytes: the same objects with the same attributes as
    hyperframe's parse, without its per-frame flag set comprehension, flag loop, mixin
    initialisers and copies. Any other frame, a frame inside a header block or one
    hyperframe would refuse goes through hyperframe, as before."""

    def __next__(self) -> frame.Frame:
        # Relies on: FrameBuffer's _data (the bytes received and not yet parsed, after the
        # preamble, which add_data takes), max_frame_size, _headers_buffer (a header block
        # begun), and its __next__'s steps for a whole frame outside a header block:
        # parse_frame_header (the frame class by type, Frame.__init__ with the stream id,
        # parse_flags), the length check, parse_body, the frame's bytes dropped, the frame
        # returned; and the attributes each class's __init__ and parse_body set (Frame:
        # stream_id, flags, body_len; Padding: pad_length; Priority: depends_on,
        # stream_weight, exclusive; DATA and HEADERS: data; WINDOW_UPDATE: window_increment)
        # and Flags' _valid_flags and _flags.
        data = self._data
        if len(data) < 9 or self._headers_buffer:
            return super().__next__()
        high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(data)
        length = high << 8 | low
        direct = _DIRECT_KINDS.get(kind)
        if (
            direct is None
            or flags & direct[2]
            or length > self.max_frame_size
            or len(data) < 9 + length
            or (kind == _HEADERS and not flags & _END_HEADERS_FLAG)
        ):
            return super().__next__()
        stream_id &= 0x7FFFFFFF
        made: Any
        if kind == _WINDOW_UPDATE:
            increment = int.from_bytes(data[9:13], "big") if length == 4 else 0
            if increment not in _INCREMENTS:
                return super().__next__()  # hyperframe's error
            made = frame.WindowUpdateFrame.__new__(frame.WindowUpdateFrame)
            made.window_increment = increment
        elif not stream_id:
            return super().__next__()  # hyperframe's error
        else:
            made = direct[0].__new__(direct[0])
            made.pad_length = 0
            if kind == _HEADERS:
                made.depends_on, made.stream_weight, made.exclusive = 0, 0, False
            with memoryview(data) as view:
                made.data = view[9 : 9 + length].tobytes()
        made.stream_id = stream_id
        made.body_len = length
        made.flags = flag_set = Flags.__new__(Flags)
        flag_set._valid_flags = direct[1]
        flag_set._flags = set(direct[3][flags])
        del data[: 9 + length]
        return made  # type: ignore[no-any-return]


def parse_frames_directly(h2_conn: h2.connection.H2Connection) -> None:
    """Have the connection ``h2_conn`` (a client's or a server's, before it has received
    anything) parse the frames it receives with ``DirectFrameBuffer``."""
    # Relies on: H2Connection.incoming_buffer, the FrameBuffer receive_data adds to and takes
    # frames from (setting its max_frame_size first), made with server=not client_side; a
    # server's checks the client's preamble in add_data (_preamble, _preamble_len).
    buffer = h2_conn.incoming_buffer
    direct = DirectFrameBuffer(server=not h2_conn.config.client_side)
    assert not buffer._data
    assert (buffer._preamble, buffer._preamble_len) == (direct._preamble, direct._preamble_len)
    h2_conn.incoming_buffer = direct


# --- h2: a client connection's configuration read without descriptors ---------------------

#: H2Configuration's options, as its __init__ takes them.
_H2_OPTIONS = (
    "client_side",
    "header_encoding",
    "validate_outbound_headers",
    "normalize_outbound_headers",
    "split_outbound_cookies",
    "validate_inbound_headers",
    "normalize_inbound_headers",
)


class _SilentLogger(h2.config.DummyLogger):
    """h2's ``DummyLogger`` whose no-op methods are C callables (``"".format`` takes any
    arguments, formats none of them and returns ""): h2 calls them about 11 times per unary
    call."""

    debug = trace = "".format  # type: ignore[assignment]


class _SettledConfiguration(h2.config.H2Configuration):
    """An ``H2Configuration`` whose options are plain attributes: h2 reads ``client_side``
    and the others through a Python descriptor (or property) each time, about 10 times per
    unary call. Made only by ``settle_configuration``, never changed."""

    # Plain class attributes shadow the base's descriptors, so the instance's own win.
    client_side = header_encoding = validate_outbound_headers = None  # type: ignore[assignment]
    normalize_outbound_headers = split_outbound_cookies = None  # type: ignore[assignment]
    validate_inbound_headers = normalize_inbound_headers = None  # type: ignore[assignment]


#: The fewest closed streams a connection remembers (``keep_closed_streams``).
CLOSED_STREAMS_KEPT = 512


def keep_closed_streams(
    h2_conn: h2.connection.H2Connection, kept: int = CLOSED_STREAMS_KEPT
) -> None:
    """Have the connection ``h2_conn`` (before it has any stream) remember how at most its
    ``kept`` latest closed streams closed, not h2's 65,536: about 120 bytes each, 7.5 MiB a
    connection once as many calls have ended on it. h2 reads it only for a frame that comes on
    a closed stream: one it reset gets RST_STREAM STREAM_CLOSED, one that ended or that it no
    longer remembers closes the connection (a peer's frames on a stream it reset come within a
    round trip of the reset, not ``kept`` streams later)."""
    # Relies on: H2Connection._closed_streams, the h2.utilities.SizeLimitDict (size_limit
    # MAX_CLOSED_STREAMS) made in __init__, filled as streams are cleaned up (_open_streams)
    # and read by _stream_closed_by.
    h2_conn._closed_streams = h2.utilities.SizeLimitDict(size_limit=kept)


def settle_configuration(h2_conn: h2.connection.H2Connection) -> None:
    """Give the connection ``h2_conn`` (before it has any stream) a copy of its configuration
    read without descriptors (``_SettledConfiguration``), with a ``_SilentLogger`` if it had
    h2's ``DummyLogger``; a configuration with any other logger is left as it is."""
    # Relies on: H2Configuration's options (_H2_OPTIONS, tests/test_internals.py compares
    # them with its __init__), read by H2Connection and each H2Stream it makes (which takes
    # the connection's config) as config.<option> and config.logger.debug/trace.
    config = h2_conn.config
    assert not h2_conn.streams
    if type(config.logger) is not h2.config.DummyLogger:
        return
    settled = _SettledConfiguration.__new__(_SettledConfiguration)
    for option in _H2_OPTIONS:
        settled.__dict__[option] = getattr(config, option)
    settled.logger = _SilentLogger()
    h2_conn.config = settled


# --- grpclib's client: a unary call in one step ------------------------------------------


def end_requests_unsent(call: grpclib.client.Stream[Any, Any]) -> None:
    """Have grpclib's client ``call``, whose replies have all come, read its trailers on
    leaving even if its requests were not all sent (the server ended the call before they
    did, or reset the stream to stop them): nothing more can reach the server, and leaving
    resets what is left of the stream. Nothing changes for a call whose requests ended."""
    # Relies on: grpclib.client.Stream._end_done, which recv_trailing_metadata (called on
    # leaving, by _maybe_finish) requires for a call that streams its requests; and
    # __aexit__ resetting a stream still closable (Stream.reset_nowait).
    call._end_done = True


#: grpclib's dispatch method for an event nobody listens to (returns its arguments).
_NOT_LISTENED = grpclib.events._ident


async def exchange(call: grpclib.client.Stream[Any, Any], message: Any) -> Any:
    """What grpclib's client ``call`` (a unary call, entered, nothing sent) does in
    ``send_message(message, end=True)`` (which sends the request headers first),
    ``recv_message()`` (which receives the response headers first), then on leaving
    (``_maybe_finish``: the trailers, unless the call was cancelled or its connection is
    closing), step by step, in one scope of the call's wrapper instead of five, with
    grpclib's events dispatched only when they have listeners. The reply (None: the server
    sent none); grpclib's errors at the same steps, and the call's state as grpclib leaves
    it, so that leaving it and its other methods go on as they would."""
    # Relies on: grpclib.client.Stream's send_request, send_message, recv_initial_metadata,
    # recv_message, recv_trailing_metadata and _maybe_finish (0.4.9), and the functions and
    # methods they call (grpclib.stream's send_message and recv_message, the HTTP/2 stream's
    # recv_headers and recv_trailers), whose steps these are
    # (tests/test_internals.py compares their source); the attributes they read and set;
    # their helpers _raise_for_status, _raise_for_content_type, _process_grpc_status and
    # _raise_for_grpc_status (grpc-status "0": OK, no message, no details, nothing raised);
    # encode_metadata (nothing for no metadata); and grpclib.events._ident, a dispatch method
    # no one listens to.
    assert not call._send_request_done
    assert not call._cardinality.client_streaming
    assert not call._cardinality.server_streaming
    channel, dispatch = call._channel, call._dispatch
    with call._wrapper:
        # send_request
        protocol = await channel.__connect__()
        stream: Any = protocol.processor.connection.create_stream(wrapper=call._wrapper)
        headers = [
            (":method", "POST"),
            (":scheme", channel._scheme),
            (":path", call._method_name),
            (":authority", channel._authority),
        ]
        if call._deadline is not None:
            headers.append(("grpc-timeout", encode_timeout(call._deadline.time_remaining())))
        subtype = call._codec.__content_subtype__
        content_type = GRPC_CONTENT_TYPE + ("" if subtype == "proto" else "+" + subtype)
        headers += (("te", "trailers"), ("content-type", content_type), ("user-agent", USER_AGENT))
        metadata = call._metadata
        if dispatch.send_request is not _NOT_LISTENED:
            (metadata,) = await dispatch.send_request(
                metadata,
                method_name=call._method_name,
                deadline=call._deadline,
                content_type=content_type,
            )
        if metadata:  # encode_metadata's isinstance(metadata, typing.Mapping) costs 4 calls
            headers += encode_metadata(metadata)
        # Alone on its connection (nothing to gather its request with in this turn), sent now.
        at_once = (
            not protocol.processor.streams
            and dispatch.send_message is _NOT_LISTENED
            and type(stream._transport) is CoalescingTransport
            and type(stream) is ClientStream
            and "send_data" not in vars(stream)  # not compressed (``send_replies_with``)
        )
        if at_once:
            release_stream = await stream.send_request(
                headers, end_stream=False, _processor=protocol.processor, write=False
            )
        else:
            release_stream = await stream.send_request(
                headers, end_stream=False, _processor=protocol.processor
            )
        call._stream = stream
        call._release_stream = release_stream
        call.peer = stream.connection.get_peer()
        call._send_request_done = True
        # send_message(message, end=True)
        if dispatch.send_message is not _NOT_LISTENED:
            (message,) = await dispatch.send_message(message)
        if at_once:
            try:
                body = call._codec.encode(message, call._send_type)
            except BaseException:
                stream._transport.write(stream._h2_connection.data_to_send())  # the headers
                raise
            data = b"\0" + len(body).to_bytes(4, "big") + body
            if not stream.send_at_once(data):
                await stream.send_data(data, end_stream=True)
        else:
            body = call._codec.encode(message, call._send_type)  # grpclib.stream.send_message
            await stream.send_data(b"\0" + len(body).to_bytes(4, "big") + body, end_stream=True)
        call._send_message_done = True
        call._messages_sent += 1
        stream.connection.messages_sent += 1
        stream.connection.last_message_sent = time.monotonic()
        call._end_done = True
        # recv_initial_metadata
        if stream.headers is None:  # stream.recv_headers()
            await stream.headers_received.wait()
        response = stream.headers
        assert response is not None
        call._recv_initial_metadata_done = True
        headers_map = dict(response)
        call._raise_for_status(headers_map)
        call._raise_for_content_type(headers_map)
        if "grpc-status" in headers_map:  # trailers-only response
            call._trailers_only = True
            initial: Any = decode_metadata(())  # grpclib's empty metadata (a MultiDict)
            if dispatch.recv_initial_metadata is not _NOT_LISTENED:
                (initial,) = await dispatch.recv_initial_metadata(initial)
            call.initial_metadata = initial
            await _received_trailers(call, response, headers_map)
        else:
            initial = decode_metadata(response)
            if dispatch.recv_initial_metadata is not _NOT_LISTENED:
                (initial,) = await dispatch.recv_initial_metadata(initial)
            call.initial_metadata = initial
        # recv_message (grpclib.stream.recv_message: None at the end of the stream)
        reply = None
        meta = await stream.recv_data(5)
        if meta:
            if meta[0]:
                raise NotImplementedError("Compression not implemented")
            size = int.from_bytes(meta[1:], "big")
            body = await stream.recv_data(size)
            assert len(body) == size, f"{len(body)} != {size}"
            reply = call._codec.decode(body, call._recv_type)
            if dispatch.recv_message is not _NOT_LISTENED:
                (reply,) = await dispatch.recv_message(reply)
            call._messages_received += 1
            stream.connection.messages_received += 1
            stream.connection.last_message_received = time.monotonic()
        # _maybe_finish: recv_trailing_metadata
        if call._trailers_only:
            call._recv_trailing_metadata_done = True
        elif not call._cancel_done and not stream._transport.is_closing():
            if stream.trailers is None:  # stream.recv_trailers()
                await stream.trailers_received.wait()
            trailers = stream.trailers
            assert trailers is not None
            call._recv_trailing_metadata_done = True
            await _received_trailers(call, trailers, dict(trailers))
    return reply


async def _received_trailers(
    call: grpclib.client.Stream[Any, Any], trailers: Any, trailers_map: dict[str, str]
) -> None:
    """What grpclib's ``recv_trailing_metadata`` (and a trailers-only response) does with the
    trailers: the status checked, the trailing metadata decoded, dispatched and kept, an
    error status raised."""
    if trailers_map.get("grpc-status") == "0":  # what _process_grpc_status makes of it
        status, message, details = grpclib.const.Status.OK, None, None
    else:
        status, message, details = call._process_grpc_status(trailers_map)
    trailing = decode_metadata(trailers)
    if call._dispatch.recv_trailing_metadata is not _NOT_LISTENED:
        (trailing,) = await call._dispatch.recv_trailing_metadata(
            trailing, status=status, status_message=message, status_details=details
        )
    call.trailing_metadata = trailing
    if status is not grpclib.const.Status.OK:
        call._raise_for_grpc_status(status, message, details)
