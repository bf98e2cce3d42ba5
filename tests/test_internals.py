"""What ``muxs._internals`` relies on in grpclib, h2 and hyperframe, checked thing by thing.

Each test names the private attribute, method body or exception one reach of muxs relies
on: when an upgrade changes it, the test that fails says which reach to revisit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import random
import re
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import grpclib.client
import grpclib.config
import grpclib.const
import grpclib.encoding.base
import grpclib.events
import grpclib.exceptions
import grpclib.health.check
import grpclib.metadata
import grpclib.protocol
import grpclib.server
import grpclib.stream
import grpclib.testing
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
import h2.utilities
import h2.windows
import hpack
import multidict
import pytest
from hyperframe import frame as hyperframe_frame
from hyperframe.flags import Flags
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame

from muxs import _internals
from muxs.frame_layout import FRAME_HEADER
from tests.polling import until
from tests.rawh2 import grpclib_h2_config

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def source(function: object) -> str:
    return textwrap.dedent(inspect.getsource(function))  # type: ignore[arg-type]


def assert_steps(function: object, *steps: str) -> None:
    """Each of ``steps`` is a line (or part of one) of ``function``'s source."""
    text = source(function)
    for step in steps:
        assert step in text, step


# --- the version check --------------------------------------------------------------


def test_the_installed_releases_are_the_supported_ones() -> None:
    _internals.check_versions(
        {
            "grpclib": grpclib.__version__,
            "h2": h2.__version__,
            "hyperframe": "6.1.0",
            "hpack": hpack.__version__,
        }
    )


@pytest.mark.parametrize("version", ["0.4.8", "0.5.0", "1.0"])
def test_an_untested_grpclib_is_refused_at_import_with_what_to_install(version: str) -> None:
    installed = {"grpclib": version, "h2": "4.4.1", "hyperframe": "6.1.0", "hpack": "4.2.0"}
    with pytest.raises(_internals.UnsupportedVersion) as refused:
        _internals.check_versions(installed)
    assert str(refused.value).startswith(
        f"muxs needs grpclib>=0.4.9,<0.5 (it relies on that release's internals, "
        f"muxs/_internals.py); {version} is installed"
    )
    assert isinstance(refused.value, ImportError)


def test_pyproject_declares_the_ranges_the_version_check_enforces() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for name, (first, unsupported) in _internals.SUPPORTED.items():
        wanted = f"{name}>={'.'.join(map(str, first))},<{'.'.join(map(str, unsupported))}"
        assert wanted in declared


# --- hyperframe and h2 ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 16384])
@pytest.mark.parametrize("pad_length", [None, 0, 1, 3, 20])
def test_a_data_frames_text_is_hyperframes(size: int, pad_length: int | None) -> None:
    frame = DataFrame(1, (bytes(range(256)) * 64)[:size])
    if pad_length is not None:
        frame.flags.add("PADDED")
        frame.pad_length = pad_length
    assert frame._body_repr() == Frame._body_repr(frame)  # hyperframe's generic: the whole body
    assert repr(frame).startswith("DataFrame(stream_id=1")


def test_a_data_frames_body_is_not_serialized_to_build_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = DataFrame(1, b"x" * 16384)

    def refuse() -> bytes:
        raise AssertionError("the whole body was serialized")

    monkeypatch.setattr(frame, "serialize_body", refuse)
    assert frame._body_repr() == "<hex:78787878787878787878...>"


def test_hyperframe_builds_a_frames_text_with_body_repr_and_raw_data_repr() -> None:
    assert "self._body_repr()" in source(Frame.__repr__)
    assert hyperframe_frame._raw_data_repr(b"x" * 11) == "<hex:78787878787878787878...>"


class _TraceLines:
    """An h2 logger that writes its lines (h2 calls ``debug`` and ``trace``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, fmtstr: str, *args: Any) -> None:
        self.lines.append(fmtstr % args)

    trace = debug


def _frames(data: bytes) -> list[Frame]:
    """The frames in ``data``, parsed by hyperframe."""
    frames, view = [], memoryview(data)
    while view:
        parsed, length = Frame.parse_frame_header(view[:9])
        parsed.parse_body(view[9 : 9 + length])
        frames.append(parsed)
        view = view[9 + length :]
    return frames


def test_received_frames_are_logged_with_hyperframes_text() -> None:
    logger = _TraceLines()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(logger=logger)  # type: ignore[arg-type]
    )
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.send_headers(1, REQUESTS[0], end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(1, RESPONSE_HEADERS)
    server.send_data(1, b"reply" * 10, end_stream=True)
    sent = server.data_to_send()
    client.receive_data(sent)
    frames = _frames(sent)
    received = [line for line in logger.lines if line.startswith("Received frame: ")]
    assert received[-len(frames) :] == [f"Received frame: {f!r}" for f in frames]
    assert "HeadersFrame(stream_id=1" in received[-2]
    lazy = h2.connection.repr(frames[0])  # type: ignore[attr-defined]
    assert not isinstance(lazy, str)  # built only when a line is written
    assert str(lazy) == repr(frames[0])


def test_h2_builds_a_received_frames_text_only_for_its_trace_line() -> None:
    text = inspect.getsource(h2.connection)
    assert text.count("repr(") == 1
    assert 'self.config.logger.trace("Received frame: %s", repr(frame))' in source(
        h2.connection.H2Connection._receive_frame
    )


# --- grpclib's client -----------------------------------------------------------------


def test_a_channel_makes_its_connections_with_create_connection_and_protocol_factory() -> None:
    assert "await self._create_connection()" in source(grpclib.client.Channel.__connect__)
    assert "self._protocol_factory" in source(grpclib.client.Channel._create_connection)


# --- grpclib's server -------------------------------------------------------------------


def test_a_server_makes_its_connections_with_protocol_factory() -> None:
    assert source(grpclib.server.Server.start).count("self._protocol_factory") == 2


async def test_a_server_keeps_its_h2_configuration_and_asyncio_server() -> None:
    server = grpclib.server.Server([])
    assert isinstance(server._h2_config, h2.config.H2Configuration)
    assert server._server is None
    assert "self._h2_config" in source(grpclib.server.Server._protocol_factory)


def test_a_peer_keeps_its_connections_transport() -> None:
    assert "self._transport = transport" in source(grpclib.protocol.Peer.__init__)
    ours, theirs = socket.socketpair()

    class Transport(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return ours if name == "socket" else default

    try:
        assert _internals.peer_socket(grpclib.protocol.Peer(Transport())) is ours
    finally:
        ours.close()
        theirs.close()


async def test_a_server_started_without_listener_closes_and_waits_closed() -> None:
    server = grpclib.server.Server([])
    assert "self._server_closed_fut" in source(grpclib.server.Server.wait_closed)
    assert isinstance(_internals.accepted_protocol(server), grpclib.protocol.H2Protocol)
    _internals.start_without_listener(server)
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout=5)


def test_the_keepalive_fields_of_grpclibs_configuration() -> None:
    fields = {field.name for field in dataclasses.fields(grpclib.config.Configuration)}
    assert {"_keepalive_time", "_keepalive_timeout"} <= fields


def test_a_connection_keeps_its_h2_state_machine() -> None:
    assert "self._connection = connection" in source(grpclib.protocol.Connection.__init__)


def test_data_received_is_what_process_events_copies() -> None:
    assert source(grpclib.protocol.H2Protocol.data_received) == textwrap.dedent("""\
        def data_received(self, data: bytes) -> None:
            try:
                events = self.connection.feed(data)
            except ProtocolError:
                log.debug('Protocol error', exc_info=True)
                self.processor.close('Protocol error')
            else:
                self.connection.flush()
                for event in events:
                    self.processor.process(event)
                self.connection.flush()
        """)


def test_process_events_hands_each_event_to_its_handler_as_grpclib_does() -> None:
    assert source(grpclib.protocol.EventsProcessor.process) == textwrap.dedent("""\
        def process(self, event: H2Event) -> None:
            try:
                proc = self.processors[event.__class__]
            except KeyError:
                raise NotImplementedError(event)
            except AttributeError:
                pass  # connection was closed and self.processors was deleted
            else:
                proc(event)  # type: ignore[operator]
        """)
    assert "return self._connection.receive_data(data)" in source(grpclib.protocol.Connection.feed)
    assert "\nlog = logging.getLogger(__name__)\n" in inspect.getsource(grpclib.protocol)


def test_the_events_processor_has_a_table_of_handlers_by_event_type() -> None:
    init = source(grpclib.protocol.EventsProcessor.__init__)
    assert "self.processors = {" in init
    assert "PingAckReceived: self.process_ping_ack_received," in init
    assert "RemoteSettingsChanged: self.process_remote_settings_changed," in init
    assert "self.processors[event.__class__]" in source(grpclib.protocol.EventsProcessor.process)


def test_grpclib_has_no_handler_for_the_events_the_sdk_adds_one_for() -> None:
    init = source(grpclib.protocol.EventsProcessor.__init__)
    for event_type in (
        "InformationalResponseReceived",
        "UnknownFrameReceived",
        "AlternativeServiceAvailable",
        "PushedStreamReceived",
    ):
        assert event_type not in init


def test_a_call_waits_for_the_trailers_grpclib_sets_on_its_stream() -> None:
    assert_steps(
        grpclib.protocol.EventsProcessor.process_trailers_received,
        "stream.trailers = event.headers",
        "stream.trailers_received.set()",
    )
    assert_steps(
        grpclib.protocol.EventsProcessor.process_response_received,
        "stream.headers = event.headers",
    )
    assert_steps(
        grpclib.protocol.Stream.recv_trailers,
        "if self.trailers is None:",
        "await self.trailers_received.wait()",
    )


def test_the_handler_keeps_a_task_per_stream_made_in_its_loop() -> None:
    accept = source(grpclib.server.Handler.accept)
    assert "self._tasks[stream] = self.loop.create_task(request_handler(" in accept
    assert "self.mapping, stream, headers, self.codec," in accept
    assert "self.status_details_codec, self.dispatch, release_stream," in accept


def test_the_handler_sweeps_ended_tasks_from_tasks_and_cancelled() -> None:
    assert "self._cancelled: Set[" in source(grpclib.server.Handler.__init__)
    assert "self._cancelled.add(task)" in source(grpclib.server.Handler.cancel)
    assert "self._cancelled.update(self._tasks.values())" in source(grpclib.server.Handler.close)


def test_a_stream_waits_for_flow_control_window_on_its_window_updated_event() -> None:
    assert "self.window_updated = Event()" in source(grpclib.protocol.Stream.__init__)
    assert "await self.window_updated.wait()" in source(grpclib.protocol.Stream.send_data)


def test_generated_bases_run_server_streams_through_call_rpc_handler_server_stream() -> None:
    from betterproto2.grpclib import ServiceBase

    from muxs_api.muxs import FileControllerBase

    assert list(inspect.signature(ServiceBase._call_rpc_handler_server_stream).parameters) == [
        "self",
        "handler",
        "stream",
        "request",
    ]
    read_stream = FileControllerBase._FileControllerBase__rpc_read_stream  # type: ignore[attr-defined]
    assert "self._call_rpc_handler_server_stream(" in source(read_stream)


def test_a_message_is_read_as_a_prefix_then_its_body_through_recv_data() -> None:
    body = source(grpclib.stream.recv_message)
    assert "await stream.recv_data(5)" in body
    assert "await stream.recv_data(message_len)" in body


def test_a_stream_receives_data_as_its_buffer_reads_it() -> None:
    assert source(grpclib.protocol.Stream.recv_data).endswith(
        "return await self.buffer.read(size)\n"
    )
    stream = _ReadStream([])
    assert _internals.buffer_reads(stream) == stream.buffer.read  # type: ignore[arg-type]


def test_a_client_call_makes_its_http2_stream_with_create_stream_then_sends_its_request() -> None:
    body = source(grpclib.client.Stream.send_request)
    assert ".processor.connection" in body
    assert ".create_stream(wrapper=self._wrapper)" in body
    assert "release_stream = await stream.send_request(" in body
    assert "headers, end_stream=end, _processor=protocol.processor," in body


def test_a_message_is_sent_as_its_prefix_and_body_in_one_send_data() -> None:
    body = source(grpclib.stream.send_message)
    assert "await stream.send_data(reply_data, end_stream=end)" in body
    assert "reply_data = (struct.pack('?', False)" in body


def test_a_server_stream_sends_its_headers_and_trailers_only_through_send_headers() -> None:
    initial = source(grpclib.server.Stream.send_initial_metadata)
    assert "(':status', '200')," in initial
    assert "await self._stream.send_headers(headers)" in initial
    trailing = source(grpclib.server.Stream.send_trailing_metadata)
    assert "(':status', '200')," in trailing
    assert "await self._stream.send_headers(headers, end_stream=True)" in trailing


async def test_a_read_cut_short_by_the_streams_end_raises_short_read() -> None:
    buffer = grpclib.protocol.Buffer(lambda size: None)
    buffer.add(b"abc", 3)
    buffer.eof()
    with pytest.raises(_internals.SHORT_READ):
        await buffer.read(5)


def test_letting_go_of_a_stream_gives_back_grpclibs_own_methods() -> None:
    stream = grpclib.protocol.Stream.__new__(grpclib.protocol.Stream)
    vars(stream).update(recv_data=print, send_data=print, send_headers=print, buffer=print)
    _internals.let_go_of_stream(stream)
    assert vars(stream) == {"buffer": print}  # only muxs's methods are dropped
    for name in ("recv_data", "send_data", "send_headers"):
        assert getattr(stream, name).__func__ is getattr(grpclib.protocol.Stream, name)


def test_headers_sent_anew_replace_the_stateless_sender_and_wrap_grpclibs_own() -> None:
    stream = grpclib.protocol.Stream.__new__(grpclib.protocol.Stream)
    stream.connection = None  # type: ignore[assignment]
    blocks = _internals.StatelessHeaders()
    _internals.send_headers_statelessly(stream, [("x-old", "1")], blocks)
    first = stream.send_headers
    _internals.send_headers_statelessly_instead(stream, [("x-new", "1")], blocks)
    assert stream.send_headers is not first
    _internals.let_go_of_stream(stream)  # only grpclib's own is under the new sender
    assert stream.send_headers.__func__ is grpclib.protocol.Stream.send_headers  # type: ignore[attr-defined]


def test_a_server_stream_says_it_sent_its_headers_or_a_trailers_only_response() -> None:
    for step in ("send_initial_metadata", "send_trailing_metadata"):
        body = source(getattr(grpclib.server.Stream, step))
        flag = step.replace("send_", "_send_").replace("metadata", "metadata_done")
        assert f"self.{flag} = True" in body
    assert "if self._send_initial_metadata_done:" in source(
        grpclib.server.Stream.send_trailing_metadata
    )  # else a trailers-only response
    stream = grpclib.server.Stream.__new__(grpclib.server.Stream)
    for initial, trailing in [(False, False), (True, False), (False, True)]:
        stream._send_initial_metadata_done = initial
        stream._send_trailing_metadata_done = trailing
        assert _internals.response_headers_sent(stream) is (initial or trailing)
    stream._stream = grpclib.protocol.Stream.__new__(grpclib.protocol.Stream)
    assert _internals.http2_stream(stream) is stream._stream


def test_a_server_stream_wraps_its_http2_stream_which_has_its_h2_connection() -> None:
    assert "self._stream = stream" in source(grpclib.server.Stream.__init__)
    assert "self._h2_connection = h2_connection" in source(grpclib.protocol.Stream.__init__)


# --- grpclib's health and reflection --------------------------------------------------


def test_a_service_check_caches_the_time_of_its_last_run() -> None:
    assert grpclib.health.check.ServiceCheck._last_check is None
    assert "self._last_check is not None" in source(grpclib.health.check.ServiceCheck.__check__)


def test_the_reflection_services_take_their_names_and_pool() -> None:
    from grpclib.reflection._deprecated import ServerReflection as V1Alpha
    from grpclib.reflection.service import ServerReflection

    for service in (ServerReflection, V1Alpha):
        parameters = inspect.signature(service.__init__).parameters
        assert parameters["_service_names"].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters["_pool"].kind is inspect.Parameter.KEYWORD_ONLY


# --- the event loops --------------------------------------------------------------------


def test_the_tls_protocols_of_start_tls_are_buffered_protocols() -> None:
    from asyncio import sslproto

    assert issubclass(sslproto.SSLProtocol, asyncio.BufferedProtocol)
    uvloop = pytest.importorskip("uvloop.loop")
    assert callable(uvloop.SSLProtocol.get_buffer)
    assert callable(uvloop.SSLProtocol.buffer_updated)


def test_importing_muxs_with_an_untested_grpclib_fails_at_once_and_says_why() -> None:
    code = "import grpclib; grpclib.__version__ = '0.5.0'; import muxs"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "muxs._internals.UnsupportedVersion: muxs needs grpclib>=0.4.9,<0.5 (it relies on that "
        "release's internals, muxs/_internals.py); 0.5.0 is installed: "
        'pip install "grpclib>=0.4.9,<0.5"'
    )


def test_a_client_stream_keeps_the_http2_stream_its_request_was_sent_on() -> None:
    send_request = source(grpclib.client.Stream.send_request)
    assert "self._stream = stream" in send_request
    assert "self._send_request_done = True" in send_request
    assert "self.id = stream_id" in source(grpclib.protocol.Stream.init_stream)
    assert "self.connection = connection" in source(grpclib.protocol.Stream.__init__)


def test_a_server_reset_reads_as_grpclibs_reset_message() -> None:
    template = "Stream reset by remote party, error_code: {}"
    assert f"msg = ('{template}'" in source(grpclib.protocol.EventsProcessor.process_stream_reset)
    for code in (h2.errors.ErrorCodes.REFUSED_STREAM, h2.errors.ErrorCodes.CANCEL, 0xFF):
        error = grpclib.exceptions.StreamTerminatedError(template.format(code))
        assert _internals.reset_code(error) == code
    for spelled in ("ErrorCodes.CANCEL", "8"):  # as each Python version formats the enum
        error = grpclib.exceptions.StreamTerminatedError(template.format(spelled))
        assert _internals.reset_code(error) == h2.errors.ErrorCodes.CANCEL
    refused = template.format(h2.errors.ErrorCodes.REFUSED_STREAM)
    cancelled = template.format(h2.errors.ErrorCodes.CANCEL)
    assert _internals.is_refused_stream(grpclib.exceptions.StreamTerminatedError(refused))
    assert not _internals.is_refused_stream(grpclib.exceptions.StreamTerminatedError(cancelled))
    closed = grpclib.exceptions.StreamTerminatedError("Connection lost")
    assert _internals.reset_code(closed) is None


def test_a_client_streams_end_is_what_reading_its_trailers_requires() -> None:
    assert "not self._end_done" in source(grpclib.client.Stream.recv_trailing_metadata)
    assert "self._end_done = True" in source(grpclib.client.Stream.end)
    assert "self._stream.reset_nowait()" in source(grpclib.client.Stream.__aexit__)


def test_a_streams_end_is_kept_by_its_buffer() -> None:
    assert "stream.__ended__()" in source(grpclib.protocol.EventsProcessor.process_stream_ended)
    assert "self.buffer.eof()" in source(grpclib.protocol.Stream.__ended__)
    assert "self._eof = True" in source(grpclib.protocol.Buffer.eof)
    assert "self._eof = True" in source(_internals.DirectBuffer.eof)


def test_a_client_connection_pings_by_its_configurations_keepalive() -> None:
    assert "self._config._keepalive_time" in source(grpclib.protocol.Connection.initialize)
    ping = source(grpclib.protocol.Connection._ping)
    assert "self._config._keepalive_timeout" in ping
    assert "self.close" in ping
    config = _internals.keepalive_config(1.5, 2.5)
    assert (config._keepalive_time, config._keepalive_timeout) == (1.5, 2.5)


def test_a_connection_paces_its_pings_by_the_configuration() -> None:
    need = source(grpclib.protocol.Connection._is_need_send_ping)
    assert "self._config._keepalive_permit_without_calls" in need
    assert "self._config._http2_max_pings_without_data" in need
    assert "self._config._http2_min_sent_ping_interval_without_data" in need
    config = _internals.keepalive_config(4.0, 1.0, permit_without_calls=True)
    assert config._keepalive_permit_without_calls
    assert config._http2_max_pings_without_data == 0
    assert config._http2_min_sent_ping_interval_without_data == 2.0


# --- h2 and grpclib's client after a GOAWAY ------------------------------------------------


class _Transport(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _client_protocol() -> tuple[grpclib.protocol.H2Protocol, _Transport]:
    protocol = grpclib.protocol.H2Protocol(
        grpclib.client.Handler(),
        grpclib.config.Configuration().__for_client__(),
        h2.config.H2Configuration(client_side=True, header_encoding="ascii"),
    )
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_h2_closes_on_a_goaway_received_through_its_frame_dispatch_table() -> None:
    protocol, _ = _client_protocol()
    connection = _internals.h2_connection(protocol)
    assert connection._frame_dispatch_table[GoAwayFrame] == connection._receive_goaway_frame
    dispatch = "self._frame_dispatch_table[frame.__class__](frame)"
    assert dispatch in source(h2.connection.H2Connection._receive_frame)
    assert "ConnectionInputs.RECV_GOAWAY" in source(
        h2.connection.H2Connection._receive_goaway_frame
    )


async def test_a_connection_serving_streams_after_a_goaway_still_receives_their_frames() -> None:
    protocol, transport = _client_protocol()
    _internals.serve_streams_after_goaway(protocol)
    client = _internals.h2_connection(protocol)
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    client.send_headers(
        1,
        [(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")],
        end_stream=True,
    )
    server.receive_data(transport.written + client.data_to_send())
    goaway = GoAwayFrame(0, last_stream_id=1, additional_data=b"max_age").serialize()
    server.send_headers(1, [(":status", "200")], end_stream=True)
    events = protocol.connection.feed(server.data_to_send() + goaway + server.data_to_send())
    kinds = [type(event) for event in events]
    assert h2.events.ConnectionTerminated in kinds
    assert h2.events.StreamEnded in kinds  # the reply after the GOAWAY
    (terminated,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert (terminated.last_stream_id, terminated.additional_data) == (1, b"max_age")
    # Any other GOAWAY closes the connection, as h2 does.
    error = GoAwayFrame(0, last_stream_id=1, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
    protocol.connection.feed(error.serialize())
    with pytest.raises(h2.exceptions.ProtocolError):
        protocol.connection.feed(PingFrame(0, b"12345678").serialize())


def test_the_processor_fails_each_stream_it_holds_through_its_wrapper() -> None:
    assert "stream.__terminated__(reason)" in source(grpclib.protocol.EventsProcessor.close)
    terminated = source(grpclib.protocol.Stream.__terminated__)
    assert "self.wrapper.cancel(StreamTerminatedError(reason))" in terminated
    assert "if self.wrapper is not None:" in terminated


def test_a_release_sets_the_stream_close_waiter() -> None:
    register = source(grpclib.protocol.EventsProcessor.register)
    assert "self.streams[stream.id] = stream" in register
    assert "_streams.pop(stream.id)" in register
    assert "self.connection.stream_close_waiter.set()" in register


def test_a_channel_connects_again_unless_connected_reads_its_connection_as_usable() -> None:
    connect = source(grpclib.client.Channel.__connect__)
    assert connect.count("if not self._connected:") == 2
    assert "self._protocol = await self._create_connection()" in connect
    assert isinstance(inspect.getattr_static(grpclib.client.Channel, "_connected"), property)


# --- h2 and hpack: header blocks ------------------------------------------------------

#: What muxs's server sends: response headers, trailers, and a trailers-only response.
RESPONSE_HEADERS = [
    (":status", "200"),
    ("content-type", "application/grpc+proto"),
    ("grpc-accept-encoding", "gzip,deflate,identity"),
    ("x-custom", "Value with spaces"),
]
TRAILERS = [("grpc-status", "0"), ("x-trailer", "t")]
TRAILERS_ONLY = [
    (":status", "200"),
    ("content-type", "application/grpc+proto"),
    ("grpc-status", "5"),
    ("grpc-message", "no such file"),
]


REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/a/b"), (":authority", "x")]


def _connections() -> tuple[Any, Any]:
    """A client and a server h2 connection, preface and one request (stream 1) exchanged."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


def _stream_state(server: Any) -> tuple[Any, ...]:
    machine = server.streams[1].state_machine
    return (machine.state, machine.headers_sent, machine.trailers_sent, server.state_machine.state)


def _sent_both_ways(
    blocks: list[tuple[list[tuple[str, str]], bool]],
) -> tuple[list[bytes], list[bytes], Any, Any]:
    """Each block sent by h2's ``send_headers`` (its headers never indexed) on one connection
    and by muxs's ``_frame_headers`` on another: (h2's bytes, muxs's, both servers)."""
    _, by_h2 = _connections()
    _, by_muxs = _connections()
    stateless = _internals.StatelessHeaders()
    ours, theirs = [], []
    for headers, end in blocks:
        never_indexed = [hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers]
        by_h2.send_headers(1, never_indexed, end_stream=end)
        theirs.append(by_h2.data_to_send())
        ours.append(_internals._frame_headers(by_muxs, by_muxs.streams[1], headers, end, stateless))
        assert _stream_state(by_muxs) == _stream_state(by_h2)
    return theirs, ours, by_h2, by_muxs


@pytest.mark.parametrize(
    "blocks",
    [[(RESPONSE_HEADERS, False), (TRAILERS, True)], [(TRAILERS_ONLY, True)]],
    ids=["headers-then-trailers", "trailers-only"],
)
def test_stateless_header_frames_are_h2s_own_bytes_for_never_indexed_headers(
    blocks: list[tuple[list[tuple[str, str]], bool]],
) -> None:
    theirs, ours, _, by_muxs = _sent_both_ways(blocks)
    assert ours == theirs
    assert by_muxs.streams[1].closed  # h2's state machine saw the stream end
    # hpack's encoder announced nothing and indexed nothing: the block holds for any peer.
    assert not by_muxs.encoder.table_size_changes
    assert not by_muxs.encoder.header_table.dynamic_entries


def test_a_stateless_header_block_decodes_to_the_headers_whatever_the_peers_table() -> None:
    block = _internals.StatelessHeaders().block(
        RESPONSE_HEADERS, h2.utilities.HeaderValidationFlags(False, False, True, False)
    )
    busy = hpack.Decoder()
    busy.decode(hpack.Encoder().encode([("x-other", "1"), ("content-type", "text/plain")]))
    for decoder in (hpack.Decoder(), busy):
        for _ in range(2):  # and again: decoding it changed nothing
            decoded: list[tuple[Any, Any]] = list(decoder.decode(block))
            assert decoded == RESPONSE_HEADERS


def test_a_block_longer_than_a_frame_is_split_as_h2_splits_it() -> None:
    big = [*RESPONSE_HEADERS, ("x-big", "v" * 20000)]
    theirs, ours, _, _ = _sent_both_ways([(big, False), (TRAILERS, True)])
    assert ours == theirs


def test_headers_that_h2_refuses_are_refused_the_same() -> None:
    _, by_muxs = _connections()
    stateless = _internals.StatelessHeaders()
    _internals._frame_headers(by_muxs, by_muxs.streams[1], RESPONSE_HEADERS, False, stateless)
    with pytest.raises(h2.exceptions.ProtocolError, match="pseudo-header field out of sequence"):
        _internals._frame_headers(
            by_muxs, by_muxs.streams[1], [*TRAILERS, (":status", "200")], True, stateless
        )


def test_h2_validates_encodes_and_frames_headers_as_stateless_headers_copies() -> None:
    send = source(h2.connection.H2Connection.send_headers)
    assert "self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)" in send
    assert "self._prepare_for_sending(frames)" in send
    assert "self._data_to_send += " in source(h2.connection.H2Connection._prepare_for_sending)
    stream_send = source(h2.stream.H2Stream.send_headers)
    assert "hdr_validation_flags = self._build_hdr_validation_flags(events)" in stream_send
    assert "self.state_machine.process_input(StreamInputs.SEND_END_STREAM)" in stream_send
    build = source(h2.stream.H2Stream._build_headers_frames)
    assert "normalize_outbound_headers(" in build
    assert "validate_outbound_headers(" in build
    assert "encoded_headers = encoder.encode(headers)" in build


def test_grpclib_sends_a_server_streams_header_blocks_through_send_headers() -> None:
    body = source(grpclib.protocol.Stream.send_headers)
    assert "await self.connection.write_ready.wait()" in body
    assert "self._transport.write(self._h2_connection.data_to_send())" in body
    assert "self.connection.headers_send_process()" in body


def _blocks_a_client_sends() -> list[bytes]:
    """Header blocks as a client's encoder makes them: first literals it indexes, then the
    same headers from its table, a new header, a table size change, the same again."""
    encoder = hpack.Encoder()
    request = [(":method", "POST"), (":path", "/muxs.Greeter/SayHello"), ("te", "trailers")]
    blocks = [encoder.encode(request), encoder.encode(request), encoder.encode(request)]
    blocks.append(encoder.encode([*request, ("x-new", "1")]))
    blocks.append(encoder.encode(request))
    encoder.header_table_size = 64
    blocks += [encoder.encode(request), encoder.encode(request), encoder.encode(request)]
    return blocks


def test_received_blocks_decoded_once_are_what_hpack_decodes() -> None:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    _internals.decode_headers_once(connection)
    plain = hpack.Decoder()
    for block in _blocks_a_client_sends():
        assert connection.decoder.decode(block, raw=True) == plain.decode(block, raw=True)
        ours, theirs = connection.decoder.header_table, plain.header_table
        assert list(ours.dynamic_entries) == list(theirs.dynamic_entries)
        assert ours.maxsize == theirs.maxsize


def test_h2_decodes_each_received_header_block_with_its_decoder() -> None:
    assert "_decode_headers(self.decoder, frame.data)" in source(
        h2.connection.H2Connection._receive_headers_frame
    )
    assert "decoder.decode(encoded_header_block, raw=True)" in source(h2.connection._decode_headers)
    assert {"dynamic_entries", "maxsize"} <= set(dir(hpack.Decoder().header_table))


def test_h2_makes_a_received_blocks_text_with_decode_headers_by_its_modules_name() -> None:
    body = source(h2.stream.H2Stream._process_received_headers)
    assert "headers = _decode_headers(headers, header_encoding)" in body
    assert "return list(headers)" in body
    assert h2.stream._decode_headers is _internals._decode_known_headers
    original = source(_internals._h2_decode_headers)
    assert "yield header.__class__(n, v)" in original


def _servers_receiving(client: Any, count: int) -> list[Any]:
    """``count`` server h2 connections configured as muxs's (header values as latin-1), each
    having received ``client``'s preface; the first decodes its blocks once."""
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding="latin-1",
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    servers = [h2.connection.H2Connection(config) for _ in range(count)]
    _internals.decode_headers_once(servers[0])
    preface = client.data_to_send()
    for server in servers:
        server.initiate_connection()
        server.receive_data(preface)
    client.receive_data(servers[-1].data_to_send())
    acknowledgement = client.data_to_send()
    for server in servers:
        server.data_to_send()
        server.receive_data(acknowledgement)
    return servers


def test_received_headers_decoded_once_are_h2s_own_as_plain_tuples() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    ours, h2s = _servers_receiving(client, 2)
    plain = 0
    for number, headers in enumerate(REQUESTS * 3):
        client.send_headers(2 * number + 1, headers, end_stream=True)
        data = client.data_to_send()
        received, expected = ours.receive_data(data), h2s.receive_data(data)
        assert [type(event) for event in received] == [type(event) for event in expected]
        assert received[0].headers == expected[0].headers
        assert all(type(header) is tuple for header in received[0].headers) or (
            all(isinstance(header, hpack.HeaderTuple) for header in received[0].headers)
        )
        plain += type(received[0].headers[0]) is tuple
    assert plain >= len(REQUESTS)  # the blocks the client's table made repeat


#: What the SDK sends: a request's headers (grpclib's, muxs's and the caller's metadata).
REQUESTS = [
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1:50051"),
        *extra,
        ("te", "trailers"),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-python-grpclib/0.4.9 (linux)"),
        ("grpc-accept-encoding", "gzip,deflate,identity"),
    ]
    for path, extra in [
        ("/muxs.Greeter/SayHello", []),
        ("/muxs.Greeter/SayHello", [("grpc-timeout", "4999m")]),
        ("/muxs.FileController/ReadStream", [("grpc-timeout", "4998m"), ("x-id", "é 1")]),
        ("/muxs.Greeter/SayHello", []),
    ]
]


def _grpclib_client_connections() -> tuple[Any, Any]:
    """A client h2 connection configured as grpclib's channels configure theirs, and a
    server, prefaces exchanged."""
    client = h2.connection.H2Connection(grpclib_h2_config(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _request_state(client: Any, stream_id: int) -> tuple[Any, ...]:
    stream = client.streams[stream_id]
    machine = stream.state_machine
    return (
        machine.state,
        machine.headers_sent,
        stream._authority,
        stream.request_method,
        client.highest_outbound_stream_id,
        client.open_outbound_streams,
        client.state_machine.state,
    )


def test_stateless_request_frames_are_h2s_own_bytes_for_never_indexed_headers() -> None:
    by_h2, _ = _grpclib_client_connections()
    by_muxs, server = _grpclib_client_connections()
    fields = _internals.StatelessFields()
    for number, headers in enumerate(REQUESTS):
        stream_id = 2 * number + 1
        end = number % 2 == 1
        never_indexed = [hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers]
        by_h2.send_headers(stream_id, never_indexed, end_stream=end)
        _internals._add_header_frames(by_muxs, stream_id, headers, end, fields)
        ours = by_muxs.data_to_send()
        assert ours == by_h2.data_to_send()
        assert _request_state(by_muxs, stream_id) == _request_state(by_h2, stream_id)
        # A peer decodes the headers, whatever its table holds.
        received = [e for e in server.receive_data(ours) if hasattr(e, "headers")]
        assert [(n.decode(), v.decode()) for n, v in received[0].headers] == headers
    assert not by_muxs.encoder.header_table.dynamic_entries  # h2's encoder never used
    assert not fields._encoder.header_table.dynamic_entries  # nor filled by the fields'


def test_a_block_kept_field_by_field_is_the_block_encoded_whole() -> None:
    fields = _internals.StatelessFields()
    flags = h2.utilities.HeaderValidationFlags(True, False, False, False)
    for headers in [*REQUESTS, *REQUESTS]:  # twice: the second time from what was kept
        assert fields.block(headers) == _internals.StatelessHeaders().block(headers, flags)
    big = ("x-token", "t" * 1000)  # encoded each time, not kept
    with_big = [*REQUESTS[0], big]
    assert fields.block(with_big) == _internals.StatelessHeaders().block(with_big, flags)
    assert big not in fields._fields


def test_a_request_past_the_peers_stream_limit_is_refused_as_h2_refuses_it() -> None:
    by_h2, to_h2 = _grpclib_client_connections()
    by_muxs, to_muxs = _grpclib_client_connections()
    fields = _internals.StatelessFields()
    for client, server in ((by_h2, to_h2), (by_muxs, to_muxs)):
        server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        client.receive_data(server.data_to_send())
    by_h2.send_headers(1, REQUESTS[0])
    _internals._add_header_frames(by_muxs, 1, REQUESTS[0], False, fields)
    with pytest.raises(h2.exceptions.TooManyStreamsError) as theirs:
        by_h2.send_headers(3, REQUESTS[0])
    with pytest.raises(h2.exceptions.TooManyStreamsError) as ours:
        _internals._add_header_frames(by_muxs, 3, REQUESTS[0], False, fields)
    assert str(ours.value) == str(theirs.value)
    assert 3 not in by_muxs.streams


def test_a_request_past_the_peers_stream_limit_is_refused_without_walking_every_stream() -> None:
    by_h2, to_h2 = _grpclib_client_connections()
    by_muxs, to_muxs = _grpclib_client_connections()
    for client, server in ((by_h2, to_h2), (by_muxs, to_muxs)):
        server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
        client.receive_data(server.data_to_send())
    limit, fields = _internals._StreamLimit(), _internals.StatelessFields()
    for stream_id in (1, 3):
        by_h2.send_headers(stream_id, REQUESTS[0])
        _internals._add_header_frames(by_muxs, stream_id, REQUESTS[0], False, fields, limit.check)
    with pytest.raises(h2.exceptions.TooManyStreamsError) as theirs:
        by_h2.send_headers(5, REQUESTS[0])
    with pytest.raises(h2.exceptions.TooManyStreamsError) as ours:
        _internals._add_header_frames(by_muxs, 5, REQUESTS[0], False, fields, limit.check)
    assert str(ours.value) == str(theirs.value)
    assert 5 not in by_muxs.streams


def test_closed_streams_are_forgotten_once_twice_the_open_ones_and_the_slack() -> None:
    client, server = _grpclib_client_connections()
    limit, fields = _internals._StreamLimit(), _internals.StatelessFields()
    held = []
    for number in range(100):  # one call at a time: each ends before the next starts
        stream_id = 2 * number + 1
        _internals._add_header_frames(client, stream_id, REQUESTS[0], True, fields, limit.check)
        server.receive_data(client.data_to_send())
        server.send_headers(stream_id, RESPONSE_HEADERS, end_stream=True)
        client.receive_data(server.data_to_send())
        assert client.streams[stream_id].closed
        held.append(len(client.streams))
    assert max(held) == _internals.STREAM_SWEEP_SLACK  # then a walk forgets the closed ones
    assert client.open_outbound_streams == 0


def test_requests_go_through_h2_while_a_table_size_change_is_pending() -> None:
    by_h2, _ = _grpclib_client_connections()
    by_muxs, _ = _grpclib_client_connections()
    protocol = grpclib.protocol.H2Protocol(None, None, None)  # type: ignore[arg-type]
    protocol.connection = grpclib.protocol.Connection(
        by_muxs, None, config=grpclib.config.Configuration()  # type: ignore[arg-type]
    )
    _internals.send_requests_statelessly(protocol, _internals.StatelessFields())
    for connection in (by_h2, by_muxs):
        connection.encoder.header_table_size = 256
    by_h2.send_headers(1, REQUESTS[0])  # announced, and indexed, by h2
    by_muxs.send_headers(1, REQUESTS[0])
    assert by_muxs.data_to_send() == by_h2.data_to_send()
    by_muxs.send_headers(3, REQUESTS[0])  # then stateless
    stateless = _internals.StatelessFields().block(REQUESTS[0])
    assert by_muxs.data_to_send().endswith(stateless)


def test_grpclib_sends_request_headers_through_h2s_send_headers_unchecked() -> None:
    send = source(grpclib.protocol.Stream.send_request)
    assert "self._h2_connection.send_headers(stream_id, headers," in send
    assert "self._transport.write(self._h2_connection.data_to_send())" in send
    channel = source(grpclib.client.Channel.__init__)
    assert "validate_outbound_headers=False" in channel
    assert "normalize_outbound_headers=False" in channel
    h2_send = source(h2.connection.H2Connection.send_headers)
    assert "value = self.open_outbound_streams" in h2_send
    assert "for stream_id, stream in self.streams.items():" in source(
        h2.connection.H2Connection._open_streams
    )
    assert "self._get_or_create_stream(" in h2_send
    stream_send = source(h2.stream.H2Stream.send_headers)
    assert "self._authority = authority_from_headers(bytes_headers)" in stream_send
    assert "self.request_method = extract_method_header(bytes_headers)" in stream_send


# --- h2: DATA frames ------------------------------------------------------------------


def _windows(connection: Any) -> tuple[Any, ...]:
    stream = connection.streams[1]
    return (
        connection.outbound_flow_control_window,
        stream.outbound_flow_control_window,
        stream.state_machine.state,
        connection.state_machine.state,
    )


@pytest.mark.parametrize("size", [0, 1, 16384])
def test_direct_data_frames_are_h2s_own_bytes(size: int) -> None:
    _, by_h2 = _connections()
    _, by_muxs = _connections()
    for connection in (by_h2, by_muxs):
        connection.send_headers(1, RESPONSE_HEADERS)
        connection.data_to_send()
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    for end in (False, True):
        by_h2.send_data(1, data, end_stream=end)
        theirs = by_h2.data_to_send()
        ours = _internals._frame_data(by_muxs, 1, len(data), end) + data
        assert ours == theirs
        assert _windows(by_muxs) == _windows(by_h2)
    assert by_muxs.streams[1].closed


def test_direct_data_frames_are_refused_past_the_window_or_the_frame_size() -> None:
    _, connection = _connections()
    connection.send_headers(1, RESPONSE_HEADERS)
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        _internals._frame_data(connection, 1, connection.max_outbound_frame_size + 1, False)
    connection.outbound_flow_control_window = 10
    with pytest.raises(h2.exceptions.FlowControlError):
        _internals._frame_data(connection, 1, 11, False)
    with pytest.raises(h2.exceptions.FlowControlError):  # the window its caller just read
        _internals._frame_data(connection, 1, 11, False, window=10)


class _SendingStream:
    """What ``send_data_directly`` needs of a grpclib server stream (stream 1 of ``h2_conn``)."""

    def __init__(self, h2_conn: Any) -> None:
        self._h2_connection = h2_conn
        self.id = 1
        self._transport = _Writes()
        self.window_updated = asyncio.Event()
        self.data_sent = 0
        self.connection = grpclib.protocol.Connection.__new__(grpclib.protocol.Connection)
        self.connection._transport = self._transport  # type: ignore[assignment]
        self.connection.write_ready = asyncio.Event()
        self.connection.write_ready.set()
        self.connection.data_sent = 0
        self.connection.data_send_process = lambda: None  # type: ignore[method-assign]


async def test_a_direct_send_woken_on_a_lost_connection_fails_as_grpclib_fails_its_calls() -> None:
    """Waiting for window when the connection is lost, woken (``wake_writers``): it raises
    grpclib's ``StreamTerminatedError("Connection lost")`` instead of waiting again."""
    _, server = _connections()
    server.send_headers(1, RESPONSE_HEADERS)
    server.streams[1].outbound_flow_control_window = 0
    server.data_to_send()
    stream = _SendingStream(server)
    _internals.send_data_directly(stream, lambda _: None)  # type: ignore[arg-type]
    sending = asyncio.create_task(stream.send_data(b"x" * 100))  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # it waits for window
    assert not sending.done()
    stream._transport.closing = True  # the connection is lost ...
    stream.window_updated.set()  # ... and wake_writers wakes its writers
    with pytest.raises(grpclib.exceptions.StreamTerminatedError, match="Connection lost"):
        await sending
    assert stream.data_sent == 0


async def test_direct_data_frames_the_peers_window_cuts_short_are_told_with_their_writes() -> None:
    """20,000 bytes on a stream window of 3: a frame of 3 bytes, cut short (told, with its two
    writes); then, the window opened wide, one of the frame size and one of the rest: not."""
    _, server = _connections()
    server.send_headers(1, RESPONSE_HEADERS)
    server.streams[1].outbound_flow_control_window = 3
    server.data_to_send()
    stream = _SendingStream(server)
    cuts: list[int] = []
    _internals.send_data_directly(stream, cuts.append)  # type: ignore[arg-type]
    sending = asyncio.create_task(stream.send_data(b"x" * 20000))  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # the first frame, then a wait for window
    assert (cuts, stream.data_sent) == ([2], 3)
    server.streams[1].outbound_flow_control_window = 1 << 20
    server.outbound_flow_control_window = 1 << 20
    stream.window_updated.set()
    await sending
    assert (cuts, stream.data_sent) == ([2], 20000)
    frames = _frames(stream._transport.written)
    assert [len(f.data) for f in frames if isinstance(f, DataFrame)] == [
        3,
        16384,
        20000 - 3 - 16384,
    ]


def test_h2_and_grpclib_send_data_as_direct_data_frames_copies() -> None:
    send = source(h2.connection.H2Connection.send_data)
    assert "self.state_machine.process_input(ConnectionInputs.SEND_DATA)" in send
    assert "self.outbound_flow_control_window -= frame_size" in send
    stream_send = source(h2.stream.H2Stream.send_data)
    assert "self.state_machine.process_input(StreamInputs.SEND_DATA)" in stream_send
    assert "self.state_machine.process_input(StreamInputs.SEND_END_STREAM)" in stream_send
    assert "self.outbound_flow_control_window -= df.flow_controlled_length" in stream_send
    grpclib_send = source(grpclib.protocol.Stream.send_data)
    assert "max_frame_size = self._h2_connection.max_outbound_frame_size" in grpclib_send
    assert "await self.window_updated.wait()" in grpclib_send
    assert "self.connection.data_send_process()" in grpclib_send
    assert "self.connection.data_sent += f_chunk_len" in grpclib_send


class _ReadStream:
    """What ``acknowledge_once_a_turn`` needs of a grpclib stream: its buffer."""

    def __init__(self, acknowledged: list[int]) -> None:
        self.buffer = grpclib.protocol.Buffer(acknowledged.append)


def _acknowledging() -> Any:
    return _internals.acknowledging_once_a_turn(asyncio.get_running_loop().call_soon)


async def test_data_read_in_a_turn_is_acknowledged_once_summed() -> None:
    acknowledged: list[int] = []
    stream = _ReadStream(acknowledged)
    _internals.acknowledge_once_a_turn(stream, _acknowledging())  # type: ignore[arg-type]
    for piece in (b"a" * 10, b"b" * 20, b"c" * 30):
        stream.buffer.add(piece, len(piece) + 1)  # flow-controlled: padding counts
    assert await stream.buffer.read(5) == b"a" * 5
    assert await stream.buffer.read(35) == b"a" * 5 + b"b" * 20 + b"c" * 10
    assert acknowledged == []
    await asyncio.sleep(0)
    assert acknowledged == [11 + 21 + 31]


async def test_a_reader_waiting_for_data_has_what_it_took_acknowledged() -> None:
    """No deadlock: a peer out of window gets the WINDOW_UPDATE while the reader waits."""
    acknowledged: list[int] = []
    stream = _ReadStream(acknowledged)
    _internals.acknowledge_once_a_turn(stream, _acknowledging())  # type: ignore[arg-type]
    stream.buffer.add(b"x" * 10, 10)
    reading = asyncio.ensure_future(stream.buffer.read(20))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert acknowledged == [10]
    assert not reading.done()
    stream.buffer.add(b"y" * 10, 10)
    assert await reading == b"x" * 10 + b"y" * 10
    await asyncio.sleep(0)
    assert acknowledged == [10, 10]


async def test_a_connections_streams_are_acknowledged_each_in_one_callback() -> None:
    acknowledged: list[tuple[str, int]] = []
    scheduled: list[Any] = []
    taken = _internals.acknowledging_once_a_turn(scheduled.append)
    streams = [_ReadStream([]) for _ in range(2)]
    for name, stream in zip("ab", streams, strict=True):
        stream.buffer._ack_callback = functools.partial(
            lambda name, size: acknowledged.append((name, size)), name
        )
        _internals.acknowledge_once_a_turn(stream, taken)  # type: ignore[arg-type]
        stream.buffer.add(b"x" * 10, 10)
        stream.buffer.add(b"y" * 5, 6)
    for stream in (*streams, streams[0], streams[0]):
        await stream.buffer.read(5)
    assert (len(scheduled), acknowledged) == (1, [])
    scheduled.pop()()
    assert acknowledged == [("a", 16), ("b", 10)]


_PATTERN = bytes(range(251)) * 200  # bytes that show where they came from


def _buffer_script(seed: int) -> list[tuple[str, int]]:
    """Frames added (with 0-3 bytes of padding, some of them padding only), reads of 1 B to
    70 KiB, one at a time, and sometimes the stream's end."""
    rng = random.Random(seed)
    script: list[tuple[str, int]] = []
    reading = False
    for _ in range(rng.randrange(1, 30)):
        if not reading and rng.random() < 0.4:
            script.append(("read", rng.choice((1, 5, 100, 16384, 65536, 70000))))
            reading = True
        else:
            script.append(("add", rng.choice((0, 1, 5, 3000, 16384, 40000))))
        if rng.random() < 0.05:
            break
    if rng.random() < 0.5:
        script.append(("eof", 0))
    script.append(("read", rng.choice((1, 5, 65536))))
    return script


async def _run_buffer(buffer: Any, acknowledged: list[int], script: Any) -> list[Any]:
    """What a buffer's reader sees and what it acknowledges, after each step of ``script``
    and once the event loop has run what it can."""
    seen: list[Any] = []
    reading: asyncio.Future[bytes] | None = None
    sent = 0
    for step, size in script:
        if step == "add":
            padding = size % 4 if size else 1  # a frame of padding only when size is 0
            buffer.add(_PATTERN[sent % 251 : sent % 251 + size], size + padding)
            sent += size
        elif step == "run":  # frames of ``size`` bytes each, none empty, in one call
            frames = []
            for piece in (size, size // 2 + 1, 3):
                frames.append((_PATTERN[sent % 251 : sent % 251 + piece], piece + piece % 4))
                sent += piece
            if isinstance(buffer, _internals.DirectBuffer):
                buffer.add_run(frames)
            else:
                for data, ack_size in frames:
                    buffer.add(data, ack_size)
        elif step == "eof":
            buffer.eof()
        elif reading is None:
            reading = asyncio.ensure_future(buffer.read(size))
        for _ in range(8):
            await asyncio.sleep(0)
        if reading is not None and reading.done():
            error = reading.exception()
            seen.append(type(error) if error is not None else reading.result())
            reading = None
        seen.append(list(acknowledged))
    if reading is not None:
        reading.cancel()
        seen.append("waiting")
    seen.append(buffer.unacked_size())
    return seen


async def test_direct_buffer_reads_and_acknowledges_as_grpclibs_buffer() -> None:
    """The same bytes, the same short reads and ends, each frame acknowledged with its
    flow-controlled size by the same read, and the same left unacknowledged."""
    for seed in range(400):
        script = _buffer_script(seed)
        by_grpclib: list[int] = []
        by_muxs: list[int] = []
        expected = await _run_buffer(grpclib.protocol.Buffer(by_grpclib.append), by_grpclib, script)
        seen = await _run_buffer(_internals.DirectBuffer(by_muxs.append), by_muxs, script)
        assert seen == expected, (seed, script)


async def test_a_run_of_frames_is_taken_as_each_of_its_frames_added() -> None:
    for seed in range(400):
        script = [
            ("run", size or 1) if step == "add" else (step, size)
            for step, size in _buffer_script(seed)
        ]
        by_grpclib: list[int] = []
        by_muxs: list[int] = []
        expected = await _run_buffer(grpclib.protocol.Buffer(by_grpclib.append), by_grpclib, script)
        seen = await _run_buffer(_internals.DirectBuffer(by_muxs.append), by_muxs, script)
        assert seen == expected, (seed, script)


async def test_direct_buffer_takes_an_empty_data_frame_as_nothing() -> None:
    """grpclib's buffer ends a read that meets an empty DATA frame short (the message looks
    truncated); the direct buffer reads on."""
    acknowledged: list[int] = []
    for buffer in (
        grpclib.protocol.Buffer(acknowledged.append),
        _internals.DirectBuffer(acknowledged.append),
    ):
        buffer.add(b"ab", 2)
        buffer.add(b"", 0)
        buffer.add(b"cd", 2)
        if isinstance(buffer, grpclib.protocol.Buffer):
            with pytest.raises(AssertionError):
                await buffer.read(4)
        else:
            assert await buffer.read(4) == b"abcd"


async def test_a_direct_buffer_read_cancelled_while_waiting_loses_nothing() -> None:
    acknowledged: list[int] = []
    buffer = _internals.DirectBuffer(acknowledged.append)
    buffer.add(b"abc", 3)
    reading = asyncio.ensure_future(buffer.read(10))
    await asyncio.sleep(0)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    buffer.add(b"defgh", 5)
    assert await buffer.read(8) == b"abcdefgh"
    assert acknowledged == [3, 5]


async def _a_requests_stream(direct: bool) -> list[Any]:
    """A request's stream as grpclib's server connection makes it (with
    ``make_direct_streams`` when ``direct``): its buffer's type, what it reads and
    acknowledges, what it leaves unacknowledged, and what the connection counts."""
    protocol = grpclib.protocol.H2Protocol(
        _Accepting(), grpclib.config.Configuration().__for_server__(), h2.config.H2Configuration()
    )
    protocol.connection_made(_SocketlessWrites())  # type: ignore[arg-type]
    if direct:
        _internals.make_direct_streams(protocol)
    acknowledged: list[tuple[int, int]] = []
    protocol.connection.ack = lambda *ack: acknowledged.append(ack)  # type: ignore[method-assign]
    stream = protocol.connection.create_stream(stream_id=5)
    seen: list[Any] = [type(stream.buffer).__name__, stream.id, stream.created is not None]
    stream.buffer.add(b"x" * 10, 12)
    stream.buffer.add(b"y" * 3, 3)
    seen += [await stream.buffer.read(12), acknowledged.copy(), stream.buffer.unacked_size()]
    stream.buffer.eof()
    seen += [await stream.buffer.read(1), await stream.buffer.read(1)]
    seen += [protocol.connection.streams_started, protocol.connection.last_stream_created]
    return [*seen, stream.created]


async def test_a_servers_stream_gets_a_direct_buffer_acknowledging_as_grpclibs() -> None:
    ours, theirs = await _a_requests_stream(True), await _a_requests_stream(False)
    assert ours[0] == "DirectBuffer"
    assert theirs[0] == "Buffer"
    assert (
        ours[1:-3] == theirs[1:-3] == [5, True, b"x" * 10 + b"yy", [(5, 12), (5, 3)], 0, b"y", b""]
    )
    assert ours[-3] == theirs[-3] == 1
    assert ours[-2] == ours[-1]


def test_grpclib_makes_a_requests_stream_with_create_stream_and_init_stream() -> None:
    assert "stream = self.connection.create_stream(stream_id=event.stream_id)" in source(
        grpclib.protocol.EventsProcessor.process_request_received
    )
    assert "return Stream(self, self._connection, self._transport," in source(
        grpclib.protocol.Connection.create_stream
    )
    init = source(grpclib.protocol.Stream.init_stream)
    assert "self.buffer = Buffer(partial(connection.ack, self.id))" in init
    assert "self.connection.streams_started += 1" in init
    assert "self.created = self.connection.last_stream_created = time.monotonic()" in init


class _Writes:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.written = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing


def _received_replies(client: Any, server: Any) -> None:
    """Stream 1 open with 36,000 bytes received, stream 3 closed with 16,000 (its reply and
    trailers came together)."""
    for stream_id in (1, 3):
        client.send_headers(stream_id, REQUESTS[0], end_stream=True)
    server.receive_data(client.data_to_send())
    for stream_id, pieces in ((1, 3), (3, 1)):
        server.send_headers(stream_id, RESPONSE_HEADERS)
        size = 12000 if stream_id == 1 else 16000
        for _ in range(pieces):
            server.send_data(stream_id, b"x" * size)
    server.send_headers(3, TRAILERS, end_stream=True)
    client.receive_data(server.data_to_send())


def _inbound_windows(connection: Any) -> tuple[int, int]:
    return connection.inbound_flow_control_window, connection.streams[1].inbound_flow_control_window


async def test_a_client_connection_acknowledges_a_turns_data_summed_closed_streams_at_once() -> (
    None
):
    by_h2, to_h2 = _grpclib_client_connections()
    by_muxs, to_muxs = _grpclib_client_connections()
    _received_replies(by_h2, to_h2)
    _received_replies(by_muxs, to_muxs)
    assert by_muxs.streams[3].closed
    assert not by_muxs.streams[1].closed
    writes = _Writes()
    protocol = grpclib.protocol.H2Protocol(None, None, None)  # type: ignore[arg-type]
    protocol.connection = grpclib.protocol.Connection(
        by_muxs, writes, config=grpclib.config.Configuration()  # type: ignore[arg-type]
    )
    _internals.acknowledge_connection_once_a_turn(protocol)
    for stream_id, size in ((1, 12000), (3, 16000), (1, 12000), (1, 12000), (3, 0)):
        protocol.connection.ack(stream_id, size)
    assert writes.written == b""  # the closed stream's 16,000 bytes gave no increment yet
    by_h2.acknowledge_received_data(16000, 3)  # at once
    await asyncio.sleep(0)
    by_h2.acknowledge_received_data(36000, 1)  # summed, once the turn ends
    assert writes.written == by_h2.data_to_send()
    assert any(f.stream_id == 1 for f in _frames(writes.written))  # a WINDOW_UPDATE each
    assert any(f.stream_id == 0 for f in _frames(writes.written))
    assert _inbound_windows(by_muxs) == _inbound_windows(by_h2)
    written, writes.closing = writes.written, True
    protocol.connection.ack(1, 40000)  # a closing connection acknowledges nothing
    await asyncio.sleep(0)
    assert writes.written == written
    assert _inbound_windows(by_muxs) == _inbound_windows(by_h2)
    protocol.connection.ack(3, 40000)  # nor writes what a closed stream gave back
    await asyncio.sleep(0)
    assert writes.written == written


def test_a_closed_streams_data_is_acknowledged_as_h2_acknowledges_it() -> None:
    by_h2, to_h2 = _grpclib_client_connections()
    by_muxs, to_muxs = _grpclib_client_connections()
    _received_replies(by_h2, to_h2)
    _received_replies(by_muxs, to_muxs)
    by_h2.data_to_send()
    by_muxs.data_to_send()
    updates = []
    for size in (16000, 1, 20000, 30000, 100):
        by_h2.acknowledge_received_data(size, 3)
        _internals.acknowledge_closed(by_muxs, size)
        sent = by_muxs.data_to_send()
        assert sent == by_h2.data_to_send()
        assert _inbound_windows(by_muxs) == _inbound_windows(by_h2)
        updates.append(bool(sent))
    assert updates == [False, False, True, False, False]  # past half the window: an increment
    assert_steps(
        vars(h2.stream.H2Stream)["closed"].fget,
        "return self.state_machine.state == StreamState.CLOSED",
    )
    assert_steps(
        h2.connection.H2Connection.acknowledge_received_data,
        "conn_manager = self._inbound_flow_control_window_manager",
        "conn_increment = conn_manager.process_bytes(acknowledged_size)",
        "f = WindowUpdateFrame(0)",
        "f.window_increment = conn_increment",
        "stream = self._get_stream_by_id(stream_id)",
        "except StreamClosedError:",
        "if stream.open:",
        "self._prepare_for_sending(frames)",
    )


def test_grpclib_acknowledges_each_frame_read_through_the_buffers_callback() -> None:
    assert "self._ack_callback(ack_size)" in source(grpclib.protocol.Buffer.read)
    init_stream = source(grpclib.protocol.Stream.init_stream)
    assert "self.buffer = Buffer(partial(connection.ack, self.id))" in init_stream


# --- h2: receiving DATA frames -----------------------------------------------------------


def _server() -> Any:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.data_to_send()
    return server


def _client_bytes() -> bytes:
    """A client's preface, then requests and DATA of every kind h2 takes as data, and
    frames around them: padding, empty frames, ends, window updates, pings, a reset."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    for stream_id in (1, 3, 5):
        client.send_headers(stream_id, REQUEST)
    client.send_data(1, b"a" * 16384)
    client.send_data(1, b"A" * 3000)  # a run of two on one stream
    client.send_data(3, b"")
    client.send_data(3, b"f" * 20)  # and of three
    client.send_data(3, b"g" * 30)
    client.send_data(3, b"h" * 40)
    client.send_data(1, b"b" * 100, pad_length=7)
    client.ping(b"12345678")
    client.send_data(3, b"c" * 5000)
    client.increment_flow_control_window(1000)
    client.send_data(1, b"d", end_stream=True)
    client.reset_stream(5)
    client.send_headers(7, REQUEST, end_stream=True)
    client.send_data(3, b"e" * 10000, end_stream=True)
    sent: bytes = client.data_to_send()
    # DATA on a stream the client ended and on one it reset: h2 answers with RST_STREAM.
    for stream_id in (1, 5):
        sent += DataFrame(stream_id, data=b"late").serialize()
    return sent


def _receiving_state(server: Any, failed: bool = False) -> tuple[Any, ...]:
    streams = tuple(
        (
            stream_id,
            stream.state_machine.state,
            stream._inbound_window_manager.current_window_size,
            stream._actual_content_length,
        )
        for stream_id, stream in sorted(server.streams.items())
    )
    return (
        server.state_machine.state,
        server._inbound_flow_control_window_manager.current_window_size,
        b"" if failed else bytes(server.incoming_buffer._data),
        len(server.incoming_buffer._headers_buffer),
        streams,
    )


def _described(event: Any) -> tuple[str, list[tuple[str, str]]]:
    return type(event).__name__, sorted((name, repr(v)) for name, v in vars(event).items())


def _expanded(events: list[Any]) -> list[Any]:
    """``events`` with each ``DataRun`` replaced by the ``DataReceived`` it stands for."""
    expanded: list[Any] = []
    for event in events:
        is_run = isinstance(event, _internals.DataRun)
        expanded.extend(event.events() if is_run else [event])
    return expanded


def _received_both_ways(
    sent: bytes, piece: int, *, more_window: int = 0
) -> tuple[list[Any], list[Any]]:
    """``sent`` fed, its preface alone and the rest in pieces of ``piece`` bytes, to h2's
    ``receive_data`` on one server and to ``receive_data_directly`` on another (whose
    connections have ``more_window``); each piece's events, answers and state compared.
    (h2's outcome, muxs's): the events, or the ProtocolError raised."""
    by_h2, by_muxs = _server(), _server()
    for server in (by_h2, by_muxs) if more_window else ():
        server.increment_flow_control_window(more_window)  # the connection's
        server.data_to_send()
    theirs: list[Any] = []
    ours: list[Any] = []
    preface = len(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the client's, which starts ``sent``
    pieces = [sent[:preface]]  # alone: h2 takes a piece with (part of) it itself
    pieces += [sent[start : start + piece] for start in range(preface, len(sent), piece)]
    for data in pieces:
        for connection, outcome in ((by_h2, theirs), (by_muxs, ours)):
            try:
                if connection is by_h2:
                    events = connection.receive_data(data)
                else:
                    events = _expanded(_internals.receive_data_directly(connection, data))
                outcome.extend(_described(event) for event in events)
            except h2.exceptions.ProtocolError as exc:
                outcome.append((type(exc).__name__, str(exc)))
        assert by_muxs.data_to_send() == by_h2.data_to_send()
        failed = bool(theirs) and theirs[-1][0].endswith("Error")
        # After the error, h2's buffer holds the rest of the piece, which it never reads.
        assert _receiving_state(by_muxs, failed) == _receiving_state(by_h2, failed)
        if failed:
            break
    return theirs, ours


@pytest.mark.parametrize("piece", [1, 9, 100, 4096, 16393, 1 << 20])
def test_data_received_directly_is_what_h2_makes_of_it(piece: int) -> None:
    theirs, ours = _received_both_ways(_client_bytes(), piece)
    assert ours == theirs
    kinds = [kind for kind, _ in theirs]
    assert kinds.count("DataReceived") == 10
    assert "StreamReset" in kinds
    assert "PingReceived" in kinds


def _preface_and_request() -> bytes:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    sent: bytes = client.data_to_send()
    return sent


@pytest.mark.parametrize(
    "frames",
    [
        DataFrame(1, data=b"x" * 16385).serialize(),  # over the frame size
        b"".join(DataFrame(1, data=b"x" * 16384).serialize() for _ in range(5)),  # the window
        hyperframe_frame.HeadersFrame(3, data=b"\x82").serialize()  # in a header block
        + DataFrame(1, data=b"x").serialize(),
        bytes([0, 0, 2, 0, 0x8, 0, 0, 0, 1, 5]) + b"x",  # padded by more than it holds
    ],
    ids=["frame-size", "flow-control", "header-block", "padding"],
)
def test_data_h2_refuses_is_refused_the_same(frames: bytes) -> None:
    theirs, ours = _received_both_ways(_preface_and_request() + frames, 1 << 20)
    assert ours == theirs
    assert theirs[-1][0] in ("FrameTooLargeError", "FlowControlError", "ProtocolError")


@pytest.mark.parametrize("frames", [1, 3])
def test_a_run_within_the_announced_content_length_is_taken_as_h2_takes_it(frames: int) -> None:
    """A request announcing 3,000 bytes: runs of one and three 1,000-byte frames."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [*REQUEST, ("content-length", "3000")])
    sent = client.data_to_send() + DataFrame(1, data=b"x" * 1000).serialize() * frames
    theirs, ours = _received_both_ways(sent, 1 << 20)
    assert ours == theirs
    assert not any(name.endswith("Error") for name, _ in theirs)


def test_a_run_past_the_announced_content_length_resets_its_stream_at_the_frame_past_it() -> None:
    """Five 1,000-byte frames in one piece on a request announcing 3,000 bytes: h2 fails the
    connection at the fourth; muxs takes the first three, resets the stream at the fourth
    (a stream error, RFC 9113 8.1.1) and gives h2 the fifth, on a stream now closed."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [*REQUEST, ("content-length", "3000")])
    sent = client.data_to_send() + DataFrame(1, data=b"x" * 1000).serialize() * 5
    with pytest.raises(h2.exceptions.InvalidBodyLengthError):
        _server().receive_data(sent)
    by_muxs = _server()
    events = _expanded(_internals.receive_data_directly(by_muxs, sent))
    received = [e.flow_controlled_length for e in events if type(e) is h2.events.DataReceived]
    assert received == [1000, 1000, 1000]
    resets = [e for e in events if type(e) is h2.events.StreamReset]
    assert [(e.stream_id, e.error_code, e.remote_reset) for e in resets] == [
        (1, h2.errors.ErrorCodes.PROTOCOL_ERROR, False)
    ]
    assert by_muxs.state_machine.state is h2.connection.ConnectionState.SERVER_OPEN
    assert by_muxs.streams[1].closed


@pytest.mark.parametrize("window", ["stream", "connection"])
def test_a_run_past_a_window_is_refused_at_the_frame_h2_refuses(window: str) -> None:
    """Five 16 KiB frames on a stream whose connection has more window than the stream; or
    three on each of two streams, which the streams' windows hold and the connection's not."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.send_headers(3, REQUEST)
    sent = client.data_to_send()
    runs = [(1, 5)] if window == "stream" else [(1, 3), (3, 3)]
    for stream_id, frames in runs:
        sent += DataFrame(stream_id, data=b"x" * 16384).serialize() * frames
    more_window = 1 << 20 if window == "stream" else 0
    theirs, ours = _received_both_ways(sent, 1 << 20, more_window=more_window)
    assert ours == theirs
    assert theirs[-1][0] == "FlowControlError"


def test_h2s_windows_and_body_length_refuse_as_a_run_checks_ahead() -> None:
    consumed = source(h2.windows.WindowManager.window_consumed)
    assert "self.current_window_size -= size" in consumed
    assert "if self.current_window_size < 0:" in consumed
    track = source(h2.stream.H2Stream._track_content_length)
    assert "self._actual_content_length += length" in track
    assert "expected = self._expected_content_length" in track
    assert "if expected < actual:" in track


@pytest.mark.parametrize(
    ("extra", "frames"),
    [
        ([("content-length", "2")], DataFrame(1, data=b"xyz").serialize()),  # over
        ([("content-length", "9")], DataFrame(1, data=b"xyz", flags=["END_STREAM"]).serialize()),
        ([("content-length", "many")], b""),  # not a number: refused with the headers
        ([], hyperframe_frame.HeadersFrame(1, data=b"\x82", flags=["END_HEADERS"]).serialize()),
    ],
    ids=["longer", "shorter", "not-a-number", "trailers-without-end"],
)
def test_a_malformed_request_h2_fails_the_connection_for_resets_only_its_stream(
    extra: list[tuple[str, str]], frames: bytes
) -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST + extra)
    sent = client.data_to_send() + frames
    by_h2 = _server()
    with pytest.raises(h2.exceptions.ProtocolError) as raised:
        by_h2.receive_data(sent)
    assert type(raised.value) in (h2.exceptions.ProtocolError, h2.exceptions.InvalidBodyLengthError)
    by_muxs = _server()
    events = _internals.receive_data_directly(by_muxs, sent)
    assert isinstance(events[-1], h2.events.StreamReset)
    assert (events[-1].stream_id, events[-1].error_code, events[-1].remote_reset) == (
        1,
        h2.errors.ErrorCodes.PROTOCOL_ERROR,
        False,
    )
    assert by_muxs.state_machine.state is h2.connection.ConnectionState.SERVER_OPEN
    assert by_muxs.streams[1].closed
    assert b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x01" in by_muxs.data_to_send()


def test_a_push_promise_from_a_client_still_fails_the_connection() -> None:
    """h2 refuses it before it decodes its block (the peer's HPACK table would hold entries
    the server's lacks): a connection error, as in h2, not a stream error."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    promise = hyperframe_frame.PushPromiseFrame(1, promised_stream_id=2, flags=["END_HEADERS"])
    promise.data = b"\x44\x02/x"  # :path /x, indexed
    sent = client.data_to_send() + promise.serialize()
    by_h2, by_muxs = _server(), _server()
    with pytest.raises(h2.exceptions.ProtocolError):
        by_h2.receive_data(sent)
    with pytest.raises(h2.exceptions.ProtocolError):
        _internals.receive_data_directly(by_muxs, sent)
    assert by_muxs.data_to_send() == by_h2.data_to_send()


def test_a_frame_over_the_frame_size_is_refused_from_its_header_as_h2_refuses_it_whole() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    too_long = 16385
    header = FRAME_HEADER.pack(too_long >> 8, too_long & 0xFF, 0x0, 0x0, 1)
    request = client.data_to_send()
    by_h2, by_muxs = _server(), _server()
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        by_h2.receive_data(request + header + bytes(too_long))
    _internals.receive_data_directly(by_muxs, request + header[:8])
    _internals.refuse_overlong_frame(by_muxs)  # not a whole header yet
    _internals.receive_data_directly(by_muxs, header[8:])
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        _internals.refuse_overlong_frame(by_muxs)
    assert by_muxs.data_to_send() == by_h2.data_to_send()
    assert_steps(
        h2.frame_buffer.FrameBuffer.__next__,
        "if len(self._data) < length + 9:",
        "self._validate_frame_length(length)",
    )


def test_a_header_block_too_large_is_refused_unfinished_as_h2_refuses_it_decoded() -> None:
    """A response block of 140 headers of 1,000 bytes (140 KiB, over the client's 64 KiB list
    size) in 16 KiB frames: h2 refuses it once it has it all; muxs once over 128 KiB."""
    field = b"\x10\x07x-large\x7f\xe9\x06" + b"\x00" * 1000  # a value of 1,000 bytes
    block = field * 140
    parts = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    frames = [hyperframe_frame.HeadersFrame(1, data=parts[0]).serialize()]
    frames += [hyperframe_frame.ContinuationFrame(1, data=part).serialize() for part in parts[1:]]
    ended = hyperframe_frame.ContinuationFrame(1, flags=["END_HEADERS"]).serialize()

    def client() -> Any:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        connection.send_headers(1, REQUEST)
        connection.data_to_send()
        return connection

    by_h2, by_muxs = client(), client()
    with pytest.raises(h2.exceptions.DenialOfServiceError):
        by_h2.receive_data(b"".join(frames) + ended)
    by_muxs.receive_data(b"".join(frames[:7]))  # 112 KiB: not over 128 KiB yet
    _internals.refuse_large_header_block(by_muxs)
    by_muxs.receive_data(b"".join(frames[7:]))
    with pytest.raises(h2.exceptions.DenialOfServiceError):
        _internals.refuse_large_header_block(by_muxs)
    assert by_muxs.data_to_send() == by_h2.data_to_send()


def test_a_frame_within_the_frame_size_is_left_to_come() -> None:
    server = _server()
    settings_begun = FRAME_HEADER.pack(0, 6, 0x4, 0, 0)
    _internals.receive_data_directly(server, _client_bytes()[:24] + settings_begun)
    _internals.refuse_overlong_frame(server)
    assert server.state_machine.state is not h2.connection.ConnectionState.CLOSED


def test_a_header_block_hpack_cannot_decode_is_a_compression_error() -> None:
    server = _server()
    _internals.decode_headers_once(server)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    block = hyperframe_frame.HeadersFrame(1, data=b"\xff\x80", flags=["END_HEADERS"])
    with pytest.raises(_internals.CompressionError):
        server.receive_data(client.data_to_send() + block.serialize())
    goaway = GoAwayFrame(0)
    goaway.parse_body(memoryview(server.data_to_send()[-17:][9:]))
    assert goaway.error_code == h2.errors.ErrorCodes.COMPRESSION_ERROR


def test_data_received_directly_goes_through_h2_with_a_logger() -> None:
    logger = _TracingLogger()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, logger=logger))
    sent = _preface_and_request() + DataFrame(1, data=b"x").serialize()
    _internals.receive_data_directly(server, sent[:24])  # the preface
    _internals.receive_data_directly(server, sent[24:])
    assert any(line.startswith("Received frame: DataFrame") for line in logger.lines)


class _TracingLogger(h2.config.DummyLogger):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def debug(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)

    trace = debug


def test_h2_receives_data_frames_as_receive_data_directly_copies() -> None:
    receive = source(h2.connection.H2Connection.receive_data)
    assert "self.incoming_buffer.add_data(data)" in receive
    assert "self.incoming_buffer.max_frame_size = self.max_inbound_frame_size" in receive
    assert "events.extend(self._receive_frame(frame))" in receive
    assert "self._terminate_connection(e.error_code)" in receive
    data_frame = source(h2.connection.H2Connection._receive_data_frame)
    assert "ConnectionInputs.RECV_DATA" in data_frame
    assert "self._inbound_flow_control_window_manager.window_consumed(" in data_frame
    assert "stream.receive_data(" in data_frame
    assert "return self._connection.receive_data(data)" in source(grpclib.protocol.Connection.feed)
    buffer_next = source(h2.frame_buffer.FrameBuffer.__next__)
    assert "del self._data[:9+length]" in buffer_next
    assert "self._validate_frame_length(length)" in buffer_next


@pytest.mark.parametrize("piece", [1000, 1 << 20])
def test_only_the_data_frames_h2_must_judge_go_through_its_frames(piece: int) -> None:
    """The padded frame and those on closed streams; not the frames of open streams, also
    those cut between pieces."""
    server = _server()
    judged: list[Any] = []
    receive_frame = server._receive_frame

    def spy(received: Frame) -> Any:
        judged.append(received)
        return receive_frame(received)

    server._receive_frame = spy
    sent = _client_bytes()
    _internals.receive_data_directly(server, sent[:24])  # the preface goes to h2 as it is
    for start in range(24, len(sent), piece):
        _internals.receive_data_directly(server, sent[start : start + piece])
    data_frames = [(f.stream_id, bytes(f.data)) for f in judged if isinstance(f, DataFrame)]
    assert data_frames == [(1, b"b" * 100), (1, b"late"), (5, b"late")]
    register = source(grpclib.protocol.EventsProcessor.register)
    assert "self.connection.ack(stream.id, _stream.buffer.unacked_size())" in register
    assert "self.connection.ack(" in source(grpclib.protocol.EventsProcessor.process_data_received)
    ack = source(grpclib.protocol.Connection.ack)
    assert "self._connection.acknowledge_received_data(size, stream_id)" in ack
    assert "self.flush()" in ack
    h2_ack = source(h2.connection.H2Connection.acknowledge_received_data)
    assert "if stream.open:" in h2_ack
    assert "except StreamClosedError:" in h2_ack


def test_frames_taken_directly_one_after_another_on_a_stream_come_as_one_run() -> None:
    server, sent = _server(), _client_bytes()
    _internals.receive_data_directly(server, sent[:24])  # the preface goes to h2 as it is
    events = _internals.receive_data_directly(server, sent[24:])
    runs = [(e.stream_id, len(e.frames), e.size) for e in events if type(e) is _internals.DataRun]
    assert runs == [(1, 2, 16384 + 3000), (3, 3, 20 + 30 + 40), (3, 1, 5000)]


class _Accepting(grpclib.protocol.AbstractHandler):
    """Takes each request's stream, except stream 3, which it lets go of at once (grpclib
    then acknowledges that stream's data unread)."""

    def __init__(self) -> None:
        self.streams: dict[int, grpclib.protocol.Stream] = {}

    def accept(self, stream: Any, headers: Any, release_stream: Any) -> None:
        if stream.id == 3:
            release_stream()
            return
        self.streams[stream.id] = stream

    def cancel(self, stream: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _SocketlessWrites(_Writes):
    def get_extra_info(self, name: str) -> None:
        return None


async def _served(direct: bool, in_runs: bool) -> tuple[Any, ...]:
    """What grpclib's server makes of ``_client_bytes()``: taken by grpclib's own
    ``data_received`` or as ``DataRun`` events; each stream's bytes (read whole), the
    counts, and what it wrote (its acknowledgements among it)."""
    transport = _SocketlessWrites()
    handler = _Accepting()
    config = grpclib.config.Configuration().__for_server__()
    h2_config = h2.config.H2Configuration(
        client_side=False, header_encoding="ascii", validate_inbound_headers=False
    )
    protocol = grpclib.protocol.H2Protocol(handler, config, h2_config)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    if direct:
        _internals.make_direct_streams(protocol)
    if in_runs:
        _internals.receive_data_runs(protocol)
        h2_conn, sent = _internals.h2_connection(protocol), _client_bytes()
        _internals.process_events(protocol, _internals.receive_data_directly(h2_conn, sent[:24]))
        events = _internals.receive_data_directly(h2_conn, sent[24:])  # after the preface
        assert any(type(event) is _internals.DataRun for event in events)
        _internals.process_events(protocol, events)
    else:
        protocol.data_received(_client_bytes())
    read = {
        stream_id: (await stream.buffer.read(stream.data_received), stream.data_received)
        for stream_id, stream in handler.streams.items()
    }
    last_data = protocol.connection.last_data_received
    return read, protocol.connection.data_received, last_data is not None, transport.written


@pytest.mark.parametrize("direct", [True, False], ids=["direct-buffer", "grpclib-buffer"])
async def test_grpclib_takes_a_data_run_as_the_data_received_of_its_frames(direct: bool) -> None:
    ours = await _served(direct, in_runs=True)
    assert ours == await _served(direct, in_runs=False)
    assert ours[0][1][0] == b"a" * 16384 + b"A" * 3000 + b"b" * 100 + b"d"
    process = source(grpclib.protocol.EventsProcessor.process_data_received)
    assert "stream.buffer.add(" in process
    assert "stream.data_received += size" in process
    assert "self.connection.data_received += size" in process
    assert "self.connection.last_data_received = time.monotonic()" in process


# --- a client's received frames parsed directly ---------------------------------------------


def _random_frame(rng: random.Random) -> bytes:
    """One frame's bytes, well-formed (mostly) or not: the kinds parsed directly with every
    flag byte, padding, priority, a header block over CONTINUATIONs, stream id 0 and the
    reserved bit, window increments out of range, lengths over the frame size, other kinds."""
    kind = rng.choice([0x0, 0x0, 0x1, 0x1, 0x8, 0x8, 0x9, 0x6, 0x3, 0xA])
    flags = rng.choice([0, 0x1, 0x4, 0x5, 0x5, rng.randrange(256)])
    stream_id = rng.choice([1, 3, 0x7FFFFFFF, 0x80000001] + [rng.randrange(1, 99)] * 4)
    body = rng.randbytes(rng.choice([0, 1, 5, 30, 16384]))
    if kind == 0x8:
        stream_id = rng.choice([0, stream_id])
        body = rng.choice([1, 2**31 - 1, rng.randrange(1, 2**31)]).to_bytes(4, "big")
    elif kind in (0x6, 0x3):
        body = rng.randbytes(8 if kind == 0x6 else 4)
        stream_id = 0 if kind == 0x6 else stream_id
    if rng.random() < 0.1:  # malformed
        stream_id = rng.choice([0, 0x80000000])
        body = rng.choice(
            [body[:3], body + b"x", bytes(4), bytes(16385), (2**31).to_bytes(4, "big")]
        )
    if kind in (0x0, 0x1) and flags & 0x8 and rng.random() < 0.9:  # padding that fits
        body = bytes([min(len(body), rng.randrange(8))]) + body
    if kind == 0x1 and flags & 0x20 and rng.random() < 0.9:
        body = body[:1] * bool(flags & 0x8) + rng.randbytes(5) + body[bool(flags & 0x8) :]
    frame = FRAME_HEADER.pack(len(body) >> 8, len(body) & 0xFF, kind, flags, stream_id) + body
    if kind == 0x1 and not flags & 0x4 and rng.random() < 0.9:  # a header block, ended
        for end in (0, 0, 0x4):
            part = rng.randbytes(rng.randrange(20))
            frame += FRAME_HEADER.pack(0, len(part), 0x9, end, stream_id) + part
    return frame


def _parsed(frame: Frame) -> tuple[Any, ...]:
    """A parsed frame, all of it: its class, attributes, flags and valid flags."""
    attributes = dict(vars(frame))
    flags = attributes.pop("flags")
    return (
        type(frame).__name__,
        sorted(
            (name, bytes(value) if isinstance(value, memoryview) else value)
            for name, value in attributes.items()
        ),
        sorted(flags),
        repr(flags._valid_flags),
    )


def _frames_both_ways(
    sent: bytes, pieces: list[int], server: bool = False
) -> tuple[list[Any], list[Any]]:
    """``sent`` fed in ``pieces`` to h2's FrameBuffer and to DirectFrameBuffer (a server's,
    when ``sent`` starts with the client's preamble), each taking its frames after each
    piece; (h2's, muxs's): the frames, or the first error."""
    outcomes: tuple[list[Any], list[Any]] = ([], [])
    buffers = (
        h2.frame_buffer.FrameBuffer(server=server),
        _internals.DirectFrameBuffer(server=server),
    )
    for buffer, outcome in zip(buffers, outcomes, strict=True):
        buffer.max_frame_size = 16384
        start = 0
        try:
            for piece in pieces:
                buffer.add_data(sent[start : start + piece])
                start += piece
                outcome.extend(_parsed(frame) for frame in buffer)
        except Exception as exc:
            outcome.append((type(exc).__name__, str(exc)))
        outcome.append(bytes(buffer._data))
    return outcomes


@pytest.mark.parametrize("server", [False, True], ids=["client", "server"])
@pytest.mark.parametrize("seed", range(300))
def test_frames_parsed_directly_are_hyperframes_frames(seed: int, server: bool) -> None:
    rng = random.Random(seed)
    sent = b"".join(_random_frame(rng) for _ in range(rng.randrange(1, 12)))
    if server:
        sent = h2.frame_buffer.FrameBuffer(server=True)._preamble + sent
    pieces = [rng.choice([1, 9, 13, 100, len(sent)]) for _ in range(len(sent))]
    theirs, ours = _frames_both_ways(sent, pieces, server)
    assert ours == theirs


def test_a_server_connection_parses_frames_directly_after_the_preamble() -> None:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    _internals.parse_frames_directly(server)
    assert type(server.incoming_buffer) is _internals.DirectFrameBuffer
    client = h2.connection.H2Connection()
    client.initiate_connection()
    request = [(":method", "POST"), (":scheme", "http"), (":path", "/a"), (":authority", "a")]
    client.send_headers(1, request)
    client.send_data(1, b"hello", end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert [type(event).__name__ for event in events] == [
        "RemoteSettingsChanged",
        "RequestReceived",
        "DataReceived",
        "StreamEnded",
    ]
    fresh = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    _internals.parse_frames_directly(fresh)
    with pytest.raises(h2.exceptions.ProtocolError, match="Invalid HTTP/2 preamble"):
        fresh.receive_data(b"GET / HTTP/1.1\r\n\r\n" + bytes(20))


def test_a_unary_responses_frames_are_parsed_directly() -> None:
    """The response's HEADERS, DATA and trailers and a WINDOW_UPDATE, not through
    hyperframe's parse; a padded DATA frame and a PING through it."""
    buffer = _internals.DirectFrameBuffer(server=False)
    buffer.max_frame_size = 16384
    through_hyperframe = []
    parse = Frame.parse_frame_header

    def spy(header: memoryview, strict: bool = False) -> tuple[Frame, int]:
        parsed = parse(header, strict)
        through_hyperframe.append(type(parsed[0]).__name__)
        return parsed

    response = [
        hyperframe_frame.WindowUpdateFrame(0, window_increment=5),
        hyperframe_frame.HeadersFrame(1, data=b"\x88", flags=["END_HEADERS"]),
        DataFrame(1, data=b"\0\0\0\0\x02hi"),
        hyperframe_frame.HeadersFrame(1, data=b"\x40", flags=["END_HEADERS", "END_STREAM"]),
        DataFrame(3, data=b"x", flags=["PADDED"], pad_length=2),
        PingFrame(0, opaque_data=b"12345678"),
    ]
    buffer.add_data(b"".join(frame.serialize() for frame in response))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Frame, "parse_frame_header", staticmethod(spy))
        parsed = list(buffer)
    assert [_parsed(frame)[:3] for frame in parsed[:4]] == [
        _parsed(frame)[:3] for frame in response[:4]
    ]
    assert through_hyperframe == ["DataFrame", "PingFrame"]


def test_h2_parses_frames_as_direct_frame_buffer_copies() -> None:
    buffer_next = source(h2.frame_buffer.FrameBuffer.__next__)
    assert "Frame.parse_frame_header(memoryview(self._data[:9]))" in buffer_next
    assert "self._validate_frame_length(length)" in buffer_next
    assert "f.parse_body(memoryview(self._data[9:9+length]))" in buffer_next
    assert "del self._data[:9+length]" in buffer_next
    assert "new_frame = self._update_header_buffer(f)" in buffer_next
    assert "self._flags: set[str] = set()" in source(Flags.__init__)
    assert "self._valid_flags" in source(Flags.add)
    assert "self.incoming_buffer = FrameBuffer(server=not self.config.client_side)" in source(
        h2.connection.H2Connection.__init__
    )
    assert "self.incoming_buffer.max_frame_size" in source(h2.connection.H2Connection.receive_data)


# --- h2's state machines' enums hashed by identity ------------------------------------------


def _hashed_containers(value: Any) -> list[Any]:
    """``value`` and the dicts, sets and frozensets inside it (in tuples, lists, classes)."""
    found = []
    if isinstance(value, dict | set | frozenset):
        found.append(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, tuple | list):
        for item in value:
            found += _hashed_containers(item)
    elif isinstance(value, type) and value.__module__.startswith("h2."):
        for attribute in vars(value).values():
            found += _hashed_containers(attribute)
    return found


def test_h2s_only_tables_keyed_by_its_state_machines_enums_are_the_two_rebuilt() -> None:
    members = {id(member) for kind in _internals._HASHED_ENUMS for member in kind}
    holding = []
    for module in [m for name, m in sys.modules.items() if name.startswith("h2")]:
        for container in _hashed_containers(list(vars(module).values())):
            for key in container:
                parts = key if isinstance(key, tuple) else (key,)
                if any(id(part) in members for part in parts):
                    holding.append(id(container))
                    break
    tables = (h2.stream._transitions, h2.connection.H2ConnectionStateMachine._transitions)
    assert sorted(set(holding)) == sorted(id(table) for table in tables)


def test_the_state_machines_enums_hash_by_identity_and_compare_by_identity() -> None:
    for kind in _internals._HASHED_ENUMS:
        assert kind.__eq__ is object.__eq__
        for member in kind:
            assert hash(member) == object.__hash__(member)
    tables: tuple[dict[Any, Any], ...] = (
        h2.stream._transitions,
        h2.connection.H2ConnectionStateMachine._transitions,
    )
    for table in tables:
        for (state, received), transition in list(table.items()):
            assert table[(state, received)] is transition


def test_h2s_state_machines_still_make_a_calls_transitions() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    server.initiate_connection()
    events = server.receive_data(client.data_to_send())
    assert [type(event).__name__ for event in events] == [
        "RemoteSettingsChanged",
        "RequestReceived",
        "StreamEnded",
    ]
    server.send_headers(1, [(":status", "200")], end_stream=True)
    events = client.receive_data(server.data_to_send())
    assert "StreamEnded" in [type(event).__name__ for event in events]
    assert client.streams[1].closed


# --- h2: a client connection's configuration read without descriptors ---------------------


def test_the_settled_options_are_h2_configurations_options() -> None:
    taken = inspect.signature(h2.config.H2Configuration.__init__).parameters
    assert set(_internals._H2_OPTIONS) == set(taken) - {"self", "logger"}
    for option in _internals._H2_OPTIONS:
        assert option in vars(_internals._SettledConfiguration)


def _exchange(settle: bool) -> tuple[bytes, list[str]]:
    """A request and its response, the client's connection settled or not: what the
    client sent, and the events it made of the response."""
    config = h2.config.H2Configuration(client_side=True, header_encoding="ascii")
    client = h2.connection.H2Connection(config)
    if settle:
        _internals.settle_configuration(client)
        assert type(client.config) is _internals._SettledConfiguration
        for option in _internals._H2_OPTIONS:
            assert getattr(client.config, option) == getattr(config, option)
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.send_data(1, b"hello", end_stream=True)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"reply")
    server.send_headers(1, [("grpc-status", "0")], end_stream=True)
    events = client.receive_data(server.data_to_send())
    return client.data_to_send(), [repr(event) for event in events]


def test_a_settled_connection_sends_and_receives_as_h2s_own() -> None:
    assert _exchange(settle=True) == _exchange(settle=False)


def test_a_connection_with_a_logger_keeps_its_configuration() -> None:
    logger = _TracingLogger()
    config = h2.config.H2Configuration(client_side=True, logger=logger)
    client = h2.connection.H2Connection(config)
    _internals.settle_configuration(client)
    assert client.config is config


def test_the_silent_logger_formats_nothing() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise AssertionError("formatted")

    logger = _internals._SilentLogger()
    logger.debug("Received frame: %s %r", Unprintable(), Unprintable(), extra=1)
    logger.trace("Processed %d bytes", Unprintable())


# --- grpclib's client: a unary call in one step --------------------------------------------


class _BytesCodec(grpclib.encoding.base.CodecBase):
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class _Replies:
    """A method whose request says how it answers, with one reply or none."""

    async def answer(self, stream: Any) -> None:
        request = await stream.recv_message()
        if request == b"trailers-only":
            raise grpclib.exceptions.GRPCError(grpclib.const.Status.NOT_FOUND, "no such thing")
        await stream.send_initial_metadata(metadata={"x-initial": "1"})
        if request != b"no-reply":
            await stream.send_message(b"reply to " + request)
        if request == b"late-error":
            raise grpclib.exceptions.GRPCError(grpclib.const.Status.INTERNAL, "went wrong")
        await stream.send_trailing_metadata(metadata={"x-trailing": "2"})

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            "/test.Replies/Answer": grpclib.const.Handler(
                # UNARY_STREAM: grpclib's server then lets a call end OK without a reply.
                self.answer,
                grpclib.const.Cardinality.UNARY_STREAM,
                bytes,
                bytes,
            )
        }


async def _called(
    request: bytes, one_step: bool, metadata: dict[str, str] | None = None
) -> list[Any]:
    """A unary call with every grpclib event listened to, through grpclib's own methods or
    ``exchange``: the events, the outcome, and what the call kept."""
    seen: list[Any] = []
    async with grpclib.testing.ChannelFor([_Replies()], codec=_BytesCodec()) as channel:
        for kind in (
            grpclib.events.SendRequest,
            grpclib.events.SendMessage,
            grpclib.events.RecvInitialMetadata,
            grpclib.events.RecvMessage,
            grpclib.events.RecvTrailingMetadata,
        ):

            async def listener(event: Any, kind: Any = kind) -> None:
                seen.append(kind.__name__)

            grpclib.events.listen(channel, kind, listener)
        call = channel.request(
            "/test.Replies/Answer",
            grpclib.const.Cardinality.UNARY_UNARY,
            bytes,
            bytes,
            timeout=30,
            metadata=metadata,
        )
        outcome: Any = None
        try:
            async with call:
                if one_step:
                    outcome = await _internals.exchange(call, request)
                else:
                    await call.send_message(request, end=True)
                    outcome = await call.recv_message()
        except grpclib.exceptions.GRPCError as exc:
            outcome = (exc.status, exc.message)
        seen.append(outcome)
        seen += [dict(call.initial_metadata or {}), dict(call.trailing_metadata or {})]
        seen += [call._messages_sent, call._messages_received, call._trailers_only]
        seen += [channel._calls_succeeded, channel._calls_failed]
    return seen


@pytest.mark.parametrize("metadata", [{"x-request": "3"}, None], ids=["metadata", "none"])
@pytest.mark.parametrize("request_", [b"hello", b"no-reply", b"late-error", b"trailers-only"])
async def test_a_unary_call_in_one_step_is_grpclibs_call(
    request_: bytes, metadata: dict[str, str] | None
) -> None:
    expected = await _called(request_, one_step=False, metadata=metadata)
    assert await _called(request_, one_step=True, metadata=metadata) == expected


def test_an_ok_status_is_what_grpclib_makes_of_it_and_raises_nothing() -> None:
    """``_received_trailers`` takes ``grpc-status: 0`` without grpclib's two steps."""
    call: Any = grpclib.client.Stream.__new__(grpclib.client.Stream)
    call._status_details_codec = None
    ok = grpclib.const.Status.OK
    assert call._process_grpc_status({"grpc-status": "0", "grpc-message": "x"}) == (ok, None, None)
    assert call._raise_for_grpc_status(ok, None, None) is None
    assert grpclib.metadata.encode_metadata(multidict.MultiDict()) == []
    assert_steps(
        grpclib.client.Stream._process_grpc_status,
        "status = Status(int(grpc_status))",
        "message, details = None, None",
        "if status is not Status.OK:",
    )
    assert_steps(grpclib.client.Stream._raise_for_grpc_status, "if status is not Status.OK:")


def test_grpclibs_client_steps_are_those_exchange_copies() -> None:
    client = grpclib.client.Stream
    assert_steps(
        client.send_request,
        "protocol = await self._channel.__connect__()",
        ".create_stream(wrapper=self._wrapper)",
        "headers.append(('grpc-timeout', encode_timeout(timeout)))",
        "headers.extend(encode_metadata(metadata))",
        "headers, end_stream=end, _processor=protocol.processor,",
        "self.peer = self._stream.connection.get_peer()",
    )
    send_message = source(client.send_message)
    assert "await send_message(self._stream, self._codec, message," in send_message
    assert "self._stream.connection.last_message_sent = time.monotonic()" in send_message
    initial = source(client.recv_initial_metadata)
    assert "self._raise_for_content_type(headers_map)" in initial
    assert "if 'grpc-status' in headers_map:  # trailers-only response" in initial
    assert "message = await recv_message(self._stream, self._codec," in source(client.recv_message)
    trailing = source(client.recv_trailing_metadata)
    assert "trailers = await self._stream.recv_trailers()" in trailing
    assert "self._raise_for_grpc_status(status, message, details)" in trailing
    finish = source(client._maybe_finish)
    assert "and not self._stream._transport.is_closing()" in finish
    assert "self.__dict__[name] = _ident" in source(grpclib.events._Dispatch.__init__)
    sends = source(grpclib.stream.send_message)
    assert "reply_bin = codec.encode(message, message_type)" in sends
    assert "reply_data = (struct.pack('?', False)" in sends
    assert "+ struct.pack('>I', len(reply_bin))" in sends
    assert "await stream.send_data(reply_data, end_stream=end)" in sends
    assert_steps(
        grpclib.stream.recv_message,
        "meta = await stream.recv_data(5)",
        "if not meta:",
        "compressed_flag = struct.unpack('?', meta[:1])[0]",
        "raise NotImplementedError('Compression not implemented')",
        "message_len = struct.unpack('>I', meta[1:])[0]",
        "message_bin = await stream.recv_data(message_len)",
        "message = codec.decode(message_bin, message_type)",
    )
    for waits, kept in (("recv_headers", "headers"), ("recv_trailers", "trailers")):
        body = source(getattr(grpclib.protocol.Stream, waits))
        assert f"if self.{kept} is None:" in body
        assert f"await self.{kept}_received.wait()" in body
        assert f"return self.{kept}" in body


# --- h2: a client's received header blocks taken without h2's generic steps ----------------


def _response_blocks(server: Any) -> list[bytes]:
    """What a server sends the client's streams 1, 3, 5...: replies (headers, data,
    trailers) whose blocks repeat, a trailers-only reply, one with a content-length, an
    informational response first, headers with priority, and trailers without END_STREAM."""
    encoder = server.encoder
    sent: list[bytes] = []
    response = [(":status", "200"), ("content-type", "application/grpc")]
    trailers = [("grpc-status", "0"), ("grpc-message", "")]
    for stream_id in (1, 3, 5, 7, 9):
        server.send_headers(stream_id, response)
        server.send_data(stream_id, b"\0\0\0\0\1x")
        server.send_headers(stream_id, trailers, end_stream=True)
        sent.append(server.data_to_send())
    server.send_headers(11, [(":status", "200"), ("grpc-status", "5")], end_stream=True)
    server.send_headers(13, [*response, ("content-length", "6")])
    server.send_data(13, b"\0\0\0\0\1x", end_stream=True)
    server.send_headers(15, [(":status", "100")])
    prioritised = _headers_frame(15, encoder.encode(response), "PRIORITY")
    prioritised.stream_weight = 31
    ended = _headers_frame(15, encoder.encode(trailers), "END_STREAM")
    sent.append(server.data_to_send() + prioritised.serialize() + ended.serialize())
    server.send_headers(17, response)
    sent += [server.data_to_send(), _headers_frame(17, encoder.encode(trailers)).serialize()]
    return sent


def _headers_frame(stream_id: int, block: bytes, *flags: str) -> Any:
    made = hyperframe_frame.HeadersFrame(stream_id, data=block)
    for flag in ("END_HEADERS", *flags):
        made.flags.add(flag)
    return made


def _client_received(patched: bool) -> list[Any]:
    """The events (described) a grpclib-configured client receives for ``_response_blocks``,
    with muxs's ``receive_known_headers`` or h2's own, and its streams' states."""
    client, server = _grpclib_client_connections()
    if patched:
        _internals.decode_headers_once(client)
        _internals.receive_known_headers(client)
    for number in range(9):
        method = "HEAD" if number == 5 else "POST"
        client.send_headers(2 * number + 1, REQUESTS[0])
        client.streams[2 * number + 1].request_method = method.encode()
        client.send_data(2 * number + 1, b"\0\0\0\0\1x", end_stream=True)
    server.receive_data(client.data_to_send())
    seen: list[Any] = []
    for data in _response_blocks(server):
        try:
            seen += [_described(event) for event in client.receive_data(data)]
        except h2.exceptions.ProtocolError as exc:
            seen.append((type(exc).__name__, str(exc)))
        seen.append(client.data_to_send())
    for stream_id, stream in sorted(client.streams.items()):
        machine = stream.state_machine
        seen.append((stream_id, machine.state, stream._expected_content_length))
    return seen


def test_known_header_blocks_are_received_as_h2_receives_them() -> None:
    ours = _client_received(patched=True)
    assert ours == _client_received(patched=False)
    assert ("ProtocolError", "Trailers must have END_STREAM set") in ours


def _request_pieces(number: int) -> list[bytes]:
    """What a client sends a server in case ``number``: requests whose blocks repeat (with a
    body, without), with a content-length the body keeps then breaks, with one h2 refuses,
    a request with priority, more streams than the server's limit of 3, a stream id too low
    then even, and request trailers with then without END_STREAM."""
    encoder = hpack.Encoder()
    request, body = REQUESTS[0], b"\0\0\0\0\1x"

    def headers(stream_id: int, block: list[tuple[str, str]], *flags: str) -> bytes:
        return bytes(_headers_frame(stream_id, encoder.encode(block), *flags).serialize())

    def data(stream_id: int, payload: bytes = body, end: bool = True) -> bytes:
        made = DataFrame(stream_id, data=payload)
        if end:
            made.flags.add("END_STREAM")
        return bytes(made.serialize())

    def requests(*stream_ids: int, block: list[tuple[str, str]] = request) -> list[bytes]:
        return [headers(n, block) + data(n) for n in stream_ids]

    sized = [*request, ("content-length", "6")]
    trailers = [("grpc-status", "0")]
    cases = [
        lambda: requests(1, 3, 5) + [headers(n, request, "END_STREAM") for n in (7, 9)],
        lambda: [*requests(1, 3, block=sized), headers(5, sized) + data(5, b"x")],
        lambda: requests(1, 3, block=[*request, ("content-length", "six")]),
        lambda: [*requests(1), headers(3, request, "PRIORITY") + data(3)],
        lambda: [headers(n, request) for n in (1, 3, 5, 7)],
        lambda: [*requests(1, 3), headers(3, request), headers(4, request)],
        lambda: [
            headers(n, request) + data(n, end=False) + headers(n, trailers, *end)
            for n, end in ((1, ["END_STREAM"]), (3, []))
        ],
    ]
    return cases[number]()


def _server_received(pieces: list[bytes], patched: bool) -> list[Any]:
    """The events (described) a server configured as grpclib's receives for ``pieces``, with
    muxs's ``receive_known_headers`` or h2's own, what it answers and its streams' states."""
    server = h2.connection.H2Connection(grpclib_h2_config(client_side=False))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 3})
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    _internals.decode_headers_once(server)
    if patched:
        _internals.receive_known_headers(server)
    seen: list[Any] = []
    for piece in pieces:
        try:
            seen += [_described(event) for event in server.receive_data(piece)]
        except h2.exceptions.ProtocolError as exc:
            seen.append((type(exc).__name__, str(exc)))
        seen.append(server.data_to_send())
    for stream_id, stream in sorted(server.streams.items()):
        machine = stream.state_machine
        seen.append((stream_id, machine.state, stream._expected_content_length))
    seen.append((server.highest_inbound_stream_id, dict(server._closed_streams)))
    return seen


@pytest.mark.parametrize("number", range(7))
def test_known_request_blocks_are_received_as_h2_receives_them(number: int) -> None:
    pieces = _request_pieces(number)
    ours = _server_received(pieces, patched=True)
    assert ours == _server_received(pieces, patched=False)
    expected = [
        "RequestReceived",
        "InvalidBodyLengthError",
        "Invalid content-length header",
        "PriorityUpdated",
        "TooManyStreamsError",
        "Invalid stream ID for peer",
        "Trailers must have END_STREAM set",
    ][number]
    assert expected in repr(ours)


def test_validation_flags_are_made_of_the_streams_side_and_the_events_class() -> None:
    # What _internals._VALIDATION_FLAGS keeps h2's flags by.
    body = source(h2.stream.H2Stream._build_hdr_validation_flags)
    assert re.findall(r"self\.[\w.]+", body) == ["self.state_machine.client"]
    assert set(re.findall(r"events\[\w+\]", body)) == {"events[0]"}
    assert body.count("isinstance(") == body.count("events[0]") == 3


def test_known_header_blocks_skip_only_h2s_generic_steps() -> None:
    assert_steps(
        h2.connection.H2Connection._receive_headers_frame,
        "headers = _decode_headers(self.decoder, frame.data)",
        "ConnectionInputs.RECV_HEADERS,",
        "frames, stream_events = stream.receive_headers(",
        '"END_STREAM" in frame.flags,',
        'if "PRIORITY" in frame.flags:',
        "return frames, events + stream_events",
        "if frame.stream_id not in self.streams:",
        "max_open_streams = self.local_settings.max_concurrent_streams",
        "value = self.open_inbound_streams",
        'msg = f"Max inbound streams is {max_open_streams}, {value} open"',
        "frame.stream_id, AllowedStreamIDs(not self.config.client_side),",
    )
    assert_steps(
        h2.connection.H2Connection._get_or_create_stream,
        "return self.streams[stream_id]",
        "return self._begin_new_stream(stream_id, allowed_ids)",
    )
    assert_steps(
        h2.stream.H2Stream.receive_headers,
        "if is_informational_response(headers):",
        "events = self.state_machine.process_input(input_)",
        "StreamInputs.RECV_END_STREAM,",
        ').stream_ended = cast("StreamEnded", es_events[0])',
        "self._initialize_content_length(headers)",
        "if isinstance(headers_event, TrailersReceived) and not end_stream:",
        "headers_event.headers = self._process_received_headers(",
    )
    content_length = source(h2.stream.H2Stream._initialize_content_length)
    assert 'if self.request_method == b"HEAD":' in content_length
    assert 'if n == b"content-length":' in content_length
    assert "self._expected_content_length = content_length" in content_length
    assert "self._expected_content_length = 0" in content_length
    assert "raise ProtocolError(msg)" in content_length


# --- grpclib's client: the SDK's HTTP/2 streams ---------------------------------------------


class _WritingAtOnce(_Transport):
    """A transport that keeps what is written to it, as a ``CoalescingTransport`` would pass
    it on (``write_now``: at once)."""

    def write_now(self, data: bytes) -> None:
        self.write(b"<now>" + data)


async def _requested(
    made: Any, message: bytes = b"\0\0\0\0\3abc", at_once: bool = False
) -> tuple[Any, ...]:
    """A request (headers, a ``message``) on a stream ``made(connection)``, and a reply taken:
    what was written, the stream's and the connection's state, the reply read. ``at_once``:
    sent as ``exchange`` sends a request alone on its connection."""
    h2_conn, server = _grpclib_client_connections()
    transport = _WritingAtOnce()
    connection = grpclib.protocol.Connection(
        h2_conn, transport, config=grpclib.config.Configuration()
    )
    processor = grpclib.protocol.EventsProcessor(grpclib.client.Handler(), connection)
    stream = made(connection)
    if at_once:
        release = await stream.send_request(REQUEST, _processor=processor, write=False)
        if not stream.send_at_once(message):
            await stream.send_data(message, end_stream=True)
        transport.written = transport.written.replace(b"<now>", b"", 1)
    else:
        release = await stream.send_request(REQUEST, _processor=processor)
        await stream.send_data(message, end_stream=True)
    server.receive_data(transport.written)
    server.send_headers(stream.id, [(":status", "200")])
    server.send_data(stream.id, b"\0\0\0\0\2ok")
    for event in h2_conn.receive_data(server.data_to_send()):
        processor.process(event)
    reply = [await stream.recv_data(5), await stream.recv_data(2)]
    release()
    return (
        transport.written,  # the direct sender writes a frame's header, then its data
        reply,
        stream.id,
        stream.data_sent,
        stream.headers,
        connection.streams_started,
        connection.data_sent,
        _request_state(h2_conn, 1),
        h2_conn.data_to_send(),
    )


async def test_a_client_stream_is_grpclibs_with_extra_headers_and_direct_data() -> None:
    extra = [("grpc-accept-encoding", "gzip,deflate,identity")]

    def grpclibs(connection: Any) -> Any:
        stream = grpclib.protocol.Stream(connection, connection._connection, connection._transport)
        send_request = stream.send_request

        async def with_extra(headers: Any, **kwargs: Any) -> Any:
            return await send_request([*headers, *extra], **kwargs)

        stream.send_request = with_extra  # type: ignore[method-assign,assignment]
        return stream

    def muxs(connection: Any) -> Any:
        stream = _internals.ClientStream(connection, connection._connection, connection._transport)
        _internals.add_request_headers(stream, extra)
        return stream

    ours = await _requested(muxs)
    assert ours == await _requested(grpclibs)
    assert ours[1] == [b"\0\0\0\0\2", b"ok"]
    # A request alone on its connection: the same bytes, written at once when one frame
    # takes it (a message past the frame size goes through send_data).
    for message in (b"\0\0\0\0\3abc", b"\0\0\0\x4e\x20" + bytes(20000)):
        ours = await _requested(muxs, message, at_once=True)
        assert ours == await _requested(grpclibs, message)
        written_at_once = await _requested_writes(muxs, message)
        assert written_at_once == (len(message) < 16384)


async def _requested_writes(made: Any, message: bytes) -> bool:
    """Whether a request alone on its connection went out in one write at once."""
    h2_conn, _ = _grpclib_client_connections()
    transport = _WritingAtOnce()
    config = grpclib.config.Configuration()
    connection = grpclib.protocol.Connection(h2_conn, transport, config=config)
    processor = grpclib.protocol.EventsProcessor(grpclib.client.Handler(), connection)
    stream = made(connection)
    await stream.send_request(REQUEST, _processor=processor, write=False)
    assert not transport.written  # the headers wait in h2's buffer for the DATA frame
    sent = stream.send_at_once(message)
    assert sent == transport.written.startswith(b"<now>")
    return bool(sent)


def test_a_client_stream_copies_grpclibs_steps() -> None:
    assert_steps(
        grpclib.protocol.Stream.send_request,
        "await self.connection.write_ready.wait()",
        "stream_id = self._h2_connection.get_next_available_stream_id()",
        "self._h2_connection.send_headers(stream_id, headers,",
        "except TooManyStreamsError:",
        "self.connection.stream_close_waiter.clear()",
        "await self.connection.stream_close_waiter.wait()",
        "self.init_stream(stream_id, self.connection)",
        "release_stream = _processor.register(self)",
        "self._transport.write(self._h2_connection.data_to_send())",
        "self.connection.headers_send_process()",
    )
    assert_steps(
        grpclib.protocol.Stream.init_stream,
        "self.id = stream_id",
        "self.buffer = Buffer(partial(connection.ack, self.id))",
        "self.connection.streams_started += 1",
        "self.created = self.connection.last_stream_created = time.monotonic()",
    )
    assert "return Stream(self, self._connection, self._transport," in source(
        grpclib.protocol.Connection.create_stream
    )


class _Unknown:
    """An event grpclib has no handler for."""


def test_process_events_refuses_an_unknown_event_and_skips_those_after_a_close() -> None:
    protocol = grpclib.protocol.H2Protocol(
        grpclib.client.Handler(),
        grpclib.config.Configuration().__for_client__(),
        h2.config.H2Configuration(),
    )
    protocol.connection_made(_Transport())
    with pytest.raises(NotImplementedError):
        _internals.process_events(protocol, [_Unknown()])
    protocol.processor.close()
    _internals.process_events(protocol, [_Unknown(), h2.events.PingReceived(ping_data=b"12345678")])


# --- grpclib's server: a call's request handled in fewer steps -------------------------------


class _Answers:
    """Methods whose request says how they answer: unary, and unary-stream (which may end
    without a reply)."""

    async def answer(self, stream: Any) -> None:
        request = await stream.recv_message()
        if request == b"trailers-only":
            raise grpclib.exceptions.GRPCError(grpclib.const.Status.NOT_FOUND, "no such thing")
        if request == b"crash":
            raise ValueError("a bug")
        if request == b"metadata":
            await stream.send_initial_metadata(metadata={"x-initial": "1"})
        if request != b"no-reply":
            await stream.send_message(b"reply to " + request)
        if request == b"twice":
            await stream.send_message(b"again")
        if request == b"late-error":
            raise grpclib.exceptions.GRPCError(grpclib.const.Status.INTERNAL, "went wrong")
        if request == b"metadata":
            await stream.send_trailing_metadata(metadata={"x-trailing": "2"})
        if request == b"ends":
            await stream.send_trailing_metadata()
        if request == b"slow":
            await asyncio.Event().wait()

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            f"/test.Answers/{name}": grpclib.const.Handler(self.answer, cardinality, bytes, bytes)
            for name, cardinality in (
                ("Unary", grpclib.const.Cardinality.UNARY_UNARY),
                ("Stream", grpclib.const.Cardinality.UNARY_STREAM),
            )
        }


_SERVER_EVENTS = (
    grpclib.events.RecvRequest,
    grpclib.events.RecvMessage,
    grpclib.events.SendInitialMetadata,
    grpclib.events.SendMessage,
    grpclib.events.SendTrailingMetadata,
)


async def _answered(
    method: str, request: bytes, in_steps: bool, listened: bool, caplog: Any
) -> list[Any]:
    """A call to ``method`` served by grpclib's own request handler or (``in_steps``) by
    ``start_call``, with every server event listened to or none: what the client got, the
    events the server dispatched and what grpclib's server logged."""
    seen: list[Any] = []
    caplog.clear()
    with pytest.MonkeyPatch.context() as patch:
        if in_steps:

            def accept(self: Any, stream: Any, headers: Any, release_stream: Any) -> None:
                _internals.start_call(self, stream, headers, dict(headers), release_stream)

            patch.setattr(grpclib.server.Handler, "accept", accept)
        testing = grpclib.testing.ChannelFor([_Answers()], codec=_BytesCodec())
        async with testing as channel:
            for kind in _SERVER_EVENTS if listened else ():

                async def listener(event: Any, kind: Any = kind) -> None:
                    seen.append(kind.__name__)

                grpclib.events.listen(testing._server, kind, listener)
            call = channel.request(
                f"/test.Answers/{method}",
                grpclib.const.Cardinality.UNARY_UNARY,
                bytes,
                bytes,
                timeout=0.05 if request == b"slow" else 30,
                metadata={"x-request": "3"},
            )
            outcome: Any = None
            try:
                async with call:
                    await call.send_message(request, end=True)
                    outcome = await call.recv_message()
            except grpclib.exceptions.GRPCError as exc:
                outcome = (exc.status, exc.message)
            except TimeoutError:
                outcome = "the client's deadline"
            seen.append(outcome)
            seen += [dict(call.initial_metadata or {}), dict(call.trailing_metadata or {})]
            handler: Any = testing._server_protocol.handler
            await until(lambda: all(task.done() for task in handler._tasks.values()))
    seen += [
        (record.name, record.levelname, record.getMessage())
        for record in caplog.records
        if record.name.startswith("grpclib.server")
    ]
    return seen


_ANSWERS = [b"hello", b"metadata", b"trailers-only", b"crash", b"no-reply", b"twice"]
_ANSWERS += [b"late-error", b"ends", b"slow"]


@pytest.mark.parametrize("listened", [False, True], ids=["unlistened", "listened"])
@pytest.mark.parametrize("method", ["Unary", "Stream"])
@pytest.mark.parametrize("request_", _ANSWERS)
async def test_a_call_served_in_steps_is_grpclibs_call(
    request_: bytes, method: str, listened: bool, caplog: Any
) -> None:
    ours = await _answered(method, request_, True, listened, caplog)
    theirs = await _answered(method, request_, False, listened, caplog)
    if request_ == b"slow":  # the server's trailers race the client's own deadline
        ours, theirs = sorted(map(repr, ours)), sorted(map(repr, theirs))
    assert ours == theirs


def test_grpclibs_server_steps_are_those_serve_request_and_lean_stream_copy() -> None:
    assert_steps(
        grpclib.server.request_handler,
        "headers_map = dict(headers)",
        "if headers_map[':method'] != 'POST':",
        "base_content_type, _, sub_type = content_type.partition('+')",
        "if headers_map.get('te') != 'trailers':",
        "method = mapping.get(method_name)",
        "deadline = Deadline.from_headers(headers)",
        "metadata = decode_metadata(headers)",
        "user_agent = headers_map.get('user-agent')",
        "wrapper = _stream.wrapper = DeadlineWrapper()",
        "deadline_wrapper = wrapper.start(deadline)",
        "stream.metadata, method_func = await dispatch.recv_request(",
        "await method_func(stream)",
        "log.info('Request was cancelled: %s', err)",
        "log.exception('Application error')",
        "log.exception('Server error')",
        "release_stream()",
    )
    assert "(v for k, v in headers if k == 'grpc-timeout')" in source(
        grpclib.metadata.Deadline.from_headers
    )
    stream = grpclib.server.Stream
    assert "message, = await self._dispatch.recv_message(message)" in source(stream.recv_message)
    initial = source(stream.send_initial_metadata)
    assert "metadata, = await self._dispatch.send_initial_metadata(metadata)" in initial
    assert "headers.extend(encode_metadata(cast(_Metadata, metadata)))" in initial
    send = source(stream.send_message)
    assert "message, = await self._dispatch.send_message(message)" in send
    assert "await send_message(self._stream, self._codec, message, self._send_type)" in send
    trailing = source(stream.send_trailing_metadata)
    assert "if status != Status.OK and self._stream.closable:" in trailing
    assert "and self._status_details_codec is not None" in trailing
    assert "metadata, = await self._dispatch.send_trailing_metadata(" in trailing
    assert "'Unary response with OK status requires '" in trailing
    assert "self.__dict__[name] = _ident" in source(grpclib.events._Dispatch.__init__)
    assert "log = logging.getLogger(__name__)" in inspect.getsource(grpclib.server)


def test_a_connection_remembers_only_its_latest_closed_streams() -> None:
    init = source(h2.connection.H2Connection.__init__)
    assert "self._closed_streams: dict[int, StreamClosedBy | None] = SizeLimitDict(" in init
    assert "self._closed_streams" in source(h2.connection.H2Connection._stream_closed_by)
    assert "self._closed_streams[stream_id] = stream.closed_by" in source(
        h2.connection.H2Connection._open_streams
    )
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    _internals.keep_closed_streams(server, 4)
    server.initiate_connection()
    client.initiate_connection()
    request = [(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")]
    for stream_id in range(1, 40, 2):  # 20 streams, each reset by the server
        client.send_headers(stream_id, request)
        server.receive_data(client.data_to_send())
        server.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        server.data_to_send()
        assert server.open_inbound_streams == 0  # h2 files the closed ones as it counts
    assert list(server._closed_streams) == [33, 35, 37, 39]
    # Trailers on a stream it remembers resetting are a stream error, as in h2; on one it no
    # longer remembers, a connection error, as h2 makes them past its 65,536.
    trailers = client.encoder.encode([("x-late", "1")])
    for stream_id in (39, 31):
        late = HeadersFrame(stream_id, data=trailers, flags=["END_HEADERS", "END_STREAM"])
        if stream_id == 39:
            server.receive_data(late.serialize())
            (reset,) = _frames(server.data_to_send())
            assert (type(reset), reset.stream_id) == (RstStreamFrame, 39)
        else:
            with pytest.raises(h2.exceptions.StreamIDTooLowError):
                server.receive_data(late.serialize())
