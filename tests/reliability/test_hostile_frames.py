"""A hostile peer's frames against the server's fast paths (issue 18: muxs parses request
frames, decodes header blocks once per HPACK table state, takes DATA straight from a read and
runs a call in fewer steps than grpclib and h2): each crafted frame gets the exact answer h2 or
grpclib gives (or the one muxs documents instead: a stream error where RFC 9113 names one, a
status where grpclib logged a traceback), the server's state for it is let go, nothing is
logged as an unexpected error, and the server goes on serving (the same connection when it
survives, a new one in any case).

Where h2 ends the connection, the GOAWAY's code is also checked against h2's own answer to the
same bytes (``h2s_goaway``: h2 as grpclib configures it), since grpclib alone closes the socket
without sending it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from h2.errors import ErrorCodes

from muxs import RunningServer, StatusCode
from muxs.api import HelloReply, HelloRequest
from muxs.frame_layout import FRAME_HEADER
from muxs.server.limits import MAX_FRAME_BYTES, LimitedServer
from tests.polling import until
from tests.rawframes import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    FramePeer,
    frame,
    literal_block,
    reset,
    window_update,
)
from tests.rawh2 import grpc_frame, grpclib_h2_config, request_headers

SAY_HELLO = "/muxs.Greeter/SayHello"
LOTS_OF_REPLIES = "/muxs.Greeter/LotsOfReplies"
LOTS_OF_GREETINGS = "/muxs.Greeter/LotsOfGreetings"
HELLO = grpc_frame(bytes(HelloRequest(name="you")))
REQUEST = request_headers(SAY_HELLO)
#: A request's headers but its ``:path`` (``indexed_path`` blocks put it first).
NOT_PATH = [header for header in REQUEST if header[0] != ":path"]
#: The HPACK index of the newest entry of a dynamic table (RFC 7541 section 2.3.3).
NEWEST = 62


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    assert [record.getMessage() for record in caplog.records] == []


@dataclass(frozen=True)
class Outcome:
    """The server's answer on the stream a case watches, and on the connection."""

    reset: int | None = None
    status: int | None = None
    goaway: int | None = None


def indexed_path(path: str) -> bytes:
    """A request block whose ``:path`` is a literal with incremental indexing (the newest
    entry of both tables once decoded); its other headers are literals never indexed."""
    literal = b"\x44" + bytes([len(path)]) + path.encode()  # :path's static name, index 4
    return literal + literal_block(NOT_PATH)


def request(peer: FramePeer, stream_id: int, headers: list[tuple[str, str]] = REQUEST) -> None:
    """A whole SayHello (or ``headers``'s call) with one HELLO."""
    peer.headers(stream_id, literal_block(headers))
    peer.data(stream_id, HELLO, end=True)


Case = Callable[[FramePeer], Awaitable[int]]
CASES: dict[str, tuple[Case, Outcome]] = {}


def case(expected: Outcome) -> Callable[[Case], Case]:
    """Register a case: it sends its frames and returns the stream whose answer is checked."""

    def register(sent: Case) -> Case:
        CASES[sent.__name__] = (sent, expected)
        return sent

    return register


# --- headers grpclib checks in its request handler (muxs's serve_request) ------------------


@case(Outcome(status=StatusCode.UNKNOWN.value))
async def te_gzip(peer: FramePeer) -> int:
    request(peer, 1, request_headers(SAY_HELLO, te="gzip"))
    return 1


@case(Outcome(status=StatusCode.UNKNOWN.value))
async def te_trailers_and_gzip(peer: FramePeer) -> int:
    request(peer, 1, request_headers(SAY_HELLO, te="trailers, gzip"))
    return 1


@case(Outcome(reset=ErrorCodes.PROTOCOL_ERROR))
async def a_response_pseudo_header(peer: FramePeer) -> int:
    request(peer, 1, [*REQUEST, (":status", "200")])
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def an_informational_status_first(peer: FramePeer) -> int:
    request(peer, 1, [(":status", "100"), *REQUEST])
    return 1


@case(Outcome(status=StatusCode.INTERNAL.value))
async def a_unary_call_ended_by_its_headers_with_a_content_length(peer: FramePeer) -> int:
    peer.headers(1, literal_block([*REQUEST, ("content-length", "5")]), end=True)
    return 1


@case(Outcome(reset=ErrorCodes.PROTOCOL_ERROR))
async def a_negative_content_length(peer: FramePeer) -> int:
    request(peer, 1, [*REQUEST, ("content-length", "-1")])
    return 1


@case(Outcome(reset=ErrorCodes.PROTOCOL_ERROR))
async def two_content_lengths(peer: FramePeer) -> int:
    request(peer, 1, [*REQUEST, ("content-length", str(len(HELLO))), ("content-length", "1")])
    return 1


@case(Outcome(status=StatusCode.DEADLINE_EXCEEDED.value))
async def two_grpc_timeouts_one_passed(peer: FramePeer) -> int:
    request(peer, 1, [*REQUEST, ("grpc-timeout", "5S"), ("grpc-timeout", "1n")])
    return 1


@case(Outcome(status=StatusCode.INTERNAL.value))
async def a_compressed_message_said_identity(peer: FramePeer) -> int:
    peer.headers(1, literal_block([*REQUEST, ("grpc-encoding", "identity")]))
    peer.data(1, grpc_frame(bytes(HelloRequest(name="you")), compressed=True), end=True)
    return 1


@case(Outcome(status=StatusCode.UNIMPLEMENTED.value))
async def an_encoding_muxs_lacks(peer: FramePeer) -> int:
    peer.headers(1, literal_block([*REQUEST, ("grpc-encoding", "zstd")]))
    peer.data(1, grpc_frame(b"zstd", compressed=True), end=True)
    return 1


@case(Outcome(status=StatusCode.INTERNAL.value))
async def gzip_then_identity(peer: FramePeer) -> int:
    peer.headers(
        1, literal_block([*REQUEST, ("grpc-encoding", "gzip"), ("grpc-encoding", "identity")])
    )
    peer.data(1, grpc_frame(b"\x1f\x8b", compressed=True), end=True)
    return 1


@case(Outcome(status=StatusCode.INTERNAL.value))
async def a_message_prefix_cut_short(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.data(1, b"\0\0\0", end=True)
    return 1


# --- a second header block, and frames after the end of a request ---------------------------


# Each in one write: h2 takes the frames in one read, before the call has answered.


@case(Outcome(reset=ErrorCodes.STREAM_CLOSED))
async def data_after_the_trailers(peer: FramePeer) -> int:
    trailers = literal_block([("x-trailer", "1")])
    peer.write(
        frame(HEADERS, END_HEADERS, 1, literal_block(REQUEST))
        + frame(DATA, 0, 1, HELLO)
        + frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers)
        + frame(DATA, 0, 1, HELLO)
    )
    return 1


@case(Outcome(reset=ErrorCodes.STREAM_CLOSED))
async def headers_after_the_trailers(peer: FramePeer) -> int:
    trailers = literal_block([("x-trailer", "1")])
    peer.write(
        frame(HEADERS, END_HEADERS, 1, literal_block(REQUEST))
        + frame(DATA, 0, 1, HELLO)
        + frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers)
        + frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers)
    )
    return 1


@case(Outcome(reset=ErrorCodes.STREAM_CLOSED))
async def data_after_the_end(peer: FramePeer) -> int:
    peer.write(
        frame(HEADERS, END_HEADERS, 1, literal_block(REQUEST))
        + frame(DATA, END_STREAM, 1, HELLO)
        + frame(DATA, 0, 1, HELLO)
    )
    return 1


@case(Outcome(reset=ErrorCodes.STREAM_CLOSED, status=StatusCode.OK.value))
async def data_after_the_answer(peer: FramePeer) -> int:
    request(peer, 1)
    await peer.answer(1)
    peer.data(1, HELLO)
    await peer.until(lambda: peer.answers[1].resets == [ErrorCodes.STREAM_CLOSED])
    return 1


@case(Outcome(reset=ErrorCodes.PROTOCOL_ERROR))
async def trailers_and_data_on_a_stream_the_server_reset(peer: FramePeer) -> int:
    request(peer, 1, [*REQUEST, ("connection", "close")])  # reset PROTOCOL_ERROR
    await peer.answer(1)
    peer.headers(1, literal_block([("x-trailer", "1")]), end=True)
    peer.data(1, HELLO)
    closed = [ErrorCodes.PROTOCOL_ERROR, ErrorCodes.STREAM_CLOSED, ErrorCodes.STREAM_CLOSED]
    await peer.until(lambda: peer.answers[1].resets == closed)
    return 1


@case(Outcome(goaway=ErrorCodes.STREAM_CLOSED))
async def a_stream_id_used_again(peer: FramePeer) -> int:
    request(peer, 1)
    await peer.answer(1)
    peer.answers.clear()
    request(peer, 1)
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_lower_stream_id(peer: FramePeer) -> int:
    request(peer, 5)
    await peer.answer(5)
    request(peer, 3)
    return 3


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_servers_stream_id(peer: FramePeer) -> int:
    request(peer, 2)
    return 2


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def headers_on_the_connection(peer: FramePeer) -> int:
    peer.headers(0, literal_block(REQUEST))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def data_on_an_idle_stream(peer: FramePeer) -> int:
    peer.data(1, HELLO)
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_push_promise_from_the_client(peer: FramePeer) -> int:
    peer.headers(1, indexed_path(SAY_HELLO))
    peer.data(1, HELLO, end=True)
    await peer.answer(1)
    # h2 refuses the frame before it decodes its block: were the connection kept, the
    # client's newest HPACK entry would be /muxs.Greeter/Nope and the server's SayHello, and
    # a call naming the client's would reach the server's.
    peer.headers(3, literal_block(REQUEST))
    promised = (2).to_bytes(4, "big") + b"\x44\x12/muxs.Greeter/Nope"
    peer.write(frame(PUSH_PROMISE, END_HEADERS, 3, promised))
    return 3


# --- header blocks: CONTINUATION, and HPACK state --------------------------------------------


@case(Outcome(status=StatusCode.OK.value))
async def a_block_in_three_frames(peer: FramePeer) -> int:
    block = literal_block(REQUEST)
    peer.write(
        frame(HEADERS, 0, 1, block[:10])
        + frame(CONTINUATION, 0, 1, block[10:20])
        + frame(CONTINUATION, END_HEADERS, 1, block[20:])
    )
    peer.data(1, HELLO, end=True)
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_hundred_empty_continuations(peer: FramePeer) -> int:
    peer.write(frame(HEADERS, 0, 1, literal_block(REQUEST)) + frame(CONTINUATION, 0, 1) * 100)
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_continuation_of_another_stream(peer: FramePeer) -> int:
    peer.write(frame(HEADERS, 0, 1, literal_block(REQUEST)) + frame(CONTINUATION, END_HEADERS, 3))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_continuation_alone(peer: FramePeer) -> int:
    peer.write(frame(CONTINUATION, END_HEADERS, 1, literal_block(REQUEST)))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def data_inside_a_header_block(peer: FramePeer) -> int:
    peer.write(frame(HEADERS, 0, 1, literal_block(REQUEST)[:10]) + frame(DATA, 0, 1, HELLO))
    return 1


@case(Outcome(goaway=ErrorCodes.COMPRESSION_ERROR))
async def a_block_replayed_after_its_entries_were_evicted(peer: FramePeer) -> int:
    peer.headers(1, indexed_path(SAY_HELLO))
    peer.data(1, HELLO, end=True)
    await peer.answer(1)
    indexed = bytes([0x80 | NEWEST]) + literal_block(NOT_PATH)  # decoded, and kept
    for stream_id in (3, 5):  # the second time from what was kept
        peer.headers(stream_id, indexed)
        peer.data(stream_id, HELLO, end=True)
        await peer.answer(stream_id)
        assert peer.answers[stream_id].status == StatusCode.OK.value
    peer.headers(7, b"\x20" + literal_block(REQUEST))  # a table size update to 0: evicted
    peer.data(7, HELLO, end=True)
    await peer.answer(7)
    peer.headers(9, indexed)
    return 9


@case(Outcome(status=StatusCode.UNIMPLEMENTED.value))
async def a_block_replayed_after_a_newer_entry(peer: FramePeer) -> int:
    peer.headers(1, indexed_path(SAY_HELLO))
    peer.data(1, HELLO, end=True)
    await peer.answer(1)
    indexed = bytes([0x80 | NEWEST]) + literal_block(NOT_PATH)
    peer.headers(3, indexed)  # SayHello, decoded and kept
    peer.data(3, HELLO, end=True)
    await peer.answer(3)
    assert peer.answers[3].status == StatusCode.OK.value
    peer.headers(5, indexed_path("/muxs.Greeter/Nope"))  # the newest entry now
    peer.data(5, HELLO, end=True)
    await peer.answer(5)
    peer.headers(7, indexed)  # the same bytes: now a call to /muxs.Greeter/Nope
    peer.data(7, HELLO, end=True)
    return 7


@case(Outcome(goaway=ErrorCodes.COMPRESSION_ERROR))
async def a_table_size_update_inside_a_block(peer: FramePeer) -> int:
    block = literal_block(REQUEST)
    peer.headers(1, block[:5] + b"\x20" + block[5:])
    return 1


@case(Outcome(goaway=ErrorCodes.COMPRESSION_ERROR))
async def a_table_size_update_over_the_limit(peer: FramePeer) -> int:
    peer.headers(1, b"\x3f\xe1\xff\x03" + literal_block(REQUEST))
    return 1


@case(Outcome(goaway=ErrorCodes.COMPRESSION_ERROR))
async def an_index_past_the_table(peer: FramePeer) -> int:
    peer.headers(1, bytes([0x80 | 70]) + literal_block(REQUEST))
    return 1


# --- flow control, priority, padding, settings, resets ----------------------------------------


@case(Outcome(reset=ErrorCodes.FLOW_CONTROL_ERROR))
async def a_stream_window_over_its_maximum(peer: FramePeer) -> int:
    peer.headers(1, literal_block(request_headers(LOTS_OF_REPLIES)))
    peer.write(window_update(1, 2**31 - 1))
    return 1


@case(Outcome(goaway=ErrorCodes.FLOW_CONTROL_ERROR))
async def a_connection_window_over_its_maximum(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(window_update(0, 2**31 - 1))
    return 1


@case(Outcome(goaway=ErrorCodes.FLOW_CONTROL_ERROR))
async def initial_window_settings_past_a_windows_maximum(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(window_update(1, 2**31 - 1 - 65535))
    peer.write(frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + (65536).to_bytes(4, "big")))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_window_update_of_nothing(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(window_update(1, 0))
    return 1


@case(Outcome(goaway=ErrorCodes.FRAME_SIZE_ERROR))
async def a_window_update_of_five_bytes(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(frame(WINDOW_UPDATE, 0, 1, b"\0\0\0\1\0"))
    return 1


@case(Outcome(goaway=ErrorCodes.FLOW_CONTROL_ERROR))
async def data_past_the_window(peer: FramePeer) -> int:
    peer.headers(1, literal_block(request_headers(LOTS_OF_GREETINGS)))
    for _ in range(5):  # 80 KiB, in a window of 64 KiB
        peer.data(1, bytes(16384))
    return 1


@case(Outcome(status=StatusCode.OK.value))
async def headers_with_priority(peer: FramePeer) -> int:
    priority = (3).to_bytes(4, "big") + b"\x10"
    peer.headers(1, priority + literal_block(REQUEST), flags=END_HEADERS | PRIORITY_FLAG)
    peer.data(1, HELLO, end=True)
    return 1


@case(Outcome(reset=ErrorCodes.PROTOCOL_ERROR))
async def headers_depending_on_their_own_stream(peer: FramePeer) -> int:
    priority = (1).to_bytes(4, "big") + b"\x10"
    peer.headers(1, priority + literal_block(REQUEST), flags=END_HEADERS | PRIORITY_FLAG)
    return 1


@case(Outcome(reset=ErrorCodes.PROTOCOL_ERROR))
async def a_stream_depending_on_itself(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(frame(PRIORITY, 0, 1, (1).to_bytes(4, "big") + b"\x10"))
    return 1


@case(Outcome(goaway=ErrorCodes.FRAME_SIZE_ERROR))
async def a_priority_of_three_bytes(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(frame(PRIORITY, 0, 1, b"\0\0\0"))
    return 1


@case(Outcome(status=StatusCode.OK.value))
async def padded_headers(peer: FramePeer) -> int:
    padded = b"\x03" + literal_block(REQUEST) + bytes(3)
    peer.headers(1, padded, flags=END_HEADERS | PADDED)
    peer.data(1, HELLO, end=True)
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def headers_padded_past_their_end(peer: FramePeer) -> int:
    peer.headers(1, b"\xff" + literal_block(REQUEST), flags=END_HEADERS | PADDED)
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def data_padded_past_its_end(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(frame(DATA, PADDED | END_STREAM, 1, b"\xff" + HELLO))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def settings_on_a_stream(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(frame(SETTINGS, 0, 1))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_frame_size_setting_below_the_minimum(peer: FramePeer) -> int:
    peer.write(frame(SETTINGS, 0, 0, (5).to_bytes(2, "big") + (100).to_bytes(4, "big")))
    peer.headers(1, literal_block(REQUEST))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_reset_of_an_idle_stream(peer: FramePeer) -> int:
    peer.write(reset(1, ErrorCodes.CANCEL))
    return 1


@case(Outcome(goaway=ErrorCodes.PROTOCOL_ERROR))
async def a_reset_of_the_connection(peer: FramePeer) -> int:
    peer.write(reset(0, ErrorCodes.CANCEL))
    return 1


@case(Outcome(goaway=ErrorCodes.FRAME_SIZE_ERROR))
async def a_reset_of_three_bytes(peer: FramePeer) -> int:
    peer.headers(1, literal_block(REQUEST))
    peer.write(frame(RST_STREAM, 0, 1, b"\0\0\0"))
    return 1


async def served(peer: FramePeer, stream_id: int) -> None:
    """``peer``'s connection serves a SayHello on ``stream_id``."""
    request(peer, stream_id)
    answer = await peer.answer(stream_id)
    assert (answer.reset, answer.status) == (None, StatusCode.OK.value)
    assert HelloReply.parse(answer.data[5:]) == HelloReply(message="Hello, you!")


def let_go(connection: Any) -> bool:
    """Whether the server's ``connection`` holds no call and no stream."""
    return bool(connection.calls_open == connection.streams_held == 0)


def h2s_goaway(sent: bytes | bytearray) -> int | None:
    """The error code of the GOAWAY h2, configured as grpclib's server configures it, answers
    the client's bytes ``sent`` with, frame by frame, each call answered (trailers-only) as
    its request ends (None: no GOAWAY)."""
    config = grpclib_h2_config(client_side=False)
    connection = h2.connection.H2Connection(config)
    connection.initiate_connection()
    connection.receive_data(sent[: len(PREFACE)])
    pos = len(PREFACE)
    try:
        while pos + 9 <= len(sent):
            high, low, _, _, _ = FRAME_HEADER.unpack_from(sent, pos)
            end = pos + 9 + (high << 8 | low)
            for event in connection.receive_data(sent[pos:end]):
                if isinstance(event, h2.events.StreamEnded):
                    trailers_only = [(":status", "200"), ("grpc-status", "0")]
                    connection.send_headers(event.stream_id, trailers_only, end_stream=True)
            pos = end
    except h2.exceptions.ProtocolError:
        pass
    replies = connection.data_to_send()
    pos = 0
    while pos + 9 <= len(replies):
        high, low, kind, _, _ = FRAME_HEADER.unpack_from(replies, pos)
        if kind == GOAWAY:
            return int.from_bytes(replies[pos + 13 : pos + 17], "big")
        pos += 9 + (high << 8 | low)
    return None


@pytest.mark.parametrize("name", list(CASES))
async def test_a_hostile_frame_gets_the_libraries_answer(
    live_server: RunningServer, name: str
) -> None:
    sent, expected = CASES[name]
    async with await FramePeer.open(live_server.host, live_server.port) as peer:
        stream_id = await sent(peer)
        answer = await peer.answer(stream_id)
        outcome = Outcome(answer.reset, answer.status, peer.goaway)
        assert outcome == expected
        if expected.goaway is None:
            await served(peer, stream_id + 2)
        elif expected.goaway != ErrorCodes.COMPRESSION_ERROR:  # h2 says PROTOCOL_ERROR
            assert h2s_goaway(peer.sent) == expected.goaway
        assert isinstance(live_server.server, LimitedServer)
        for connection in live_server.server.connections:
            await until(partial(let_go, connection))
    async with await FramePeer.open(live_server.host, live_server.port) as other:
        await served(other, 1)


async def test_a_frame_over_the_frame_size_is_refused_before_it_is_buffered(
    live_server: RunningServer,
) -> None:
    """h2 checks a frame's length only once it has the whole frame: a peer announcing 16 MiB
    had every byte of it held before its FRAME_SIZE_ERROR."""
    async with await FramePeer.open(live_server.host, live_server.port) as peer:
        request(peer, 1)
        await peer.answer(1)  # the server's SETTINGS (a frame size of 1 MiB) are acknowledged
        largest = (1 << 24) - 1
        peer.write(FRAME_HEADER.pack(largest >> 8, largest & 0xFF, DATA, 0, 3))
        peer.write(bytes(MAX_FRAME_BYTES))
        await peer.until(lambda: peer.goaway is not None)
        assert peer.goaway == ErrorCodes.FRAME_SIZE_ERROR
    async with await FramePeer.open(live_server.host, live_server.port) as other:
        await served(other, 1)


STEPS = ["headers", "part of the body", "the end", "a reply"]


@pytest.mark.parametrize("step", STEPS)
async def test_a_reset_of_every_code_at_every_step_lets_the_call_go(
    live_server: RunningServer, step: str
) -> None:
    """A stream reset with each error code (and one h2 does not know), after its headers,
    inside its body, after its end, or once a reply has come: every call is let go, nothing
    is logged as an error, and the connection serves the next call."""
    codes = [*ErrorCodes, 0xFF]
    async with await FramePeer.open(live_server.host, live_server.port) as peer:
        for index, code in enumerate(codes):
            stream_id = 1 + 2 * index
            peer.headers(stream_id, literal_block(request_headers(LOTS_OF_REPLIES)))
            if step == "part of the body":
                peer.data(stream_id, HELLO[:3])
            elif step != "headers":
                peer.data(stream_id, HELLO, end=True)
            if step == "a reply":
                await peer.until(lambda replied=stream_id: replied in peer.answers)
            peer.write(reset(stream_id, code))
        await served(peer, 1 + 2 * len(codes))
        assert peer.goaway is None
        assert isinstance(live_server.server, LimitedServer)
        (connection,) = live_server.server.connections
        await until(partial(let_go, connection))


async def test_a_smaller_hpack_table_is_announced_before_the_next_response_block(
    live_server: RunningServer,
) -> None:
    """The server's response blocks are cached stateless ones (static indexes, literals
    never indexed); a client's smaller SETTINGS_HEADER_TABLE_SIZE must still be announced
    at the start of the next block (RFC 7541 section 4.2), which strict decoders require."""
    no_table = (1).to_bytes(2, "big") + (0).to_bytes(4, "big")
    async with await FramePeer.open(live_server.host, live_server.port, no_table) as peer:
        for stream_id in (1, 3):
            request(peer, stream_id)
            assert (await peer.answer(stream_id)).status == StatusCode.OK.value
        blocks = [payload for kind, _, _, payload in peer.frames if kind == HEADERS]
        assert blocks[0][:1] == b"\x20"  # a table size update to 0, first
        assert len(blocks) == 4
        assert not [block for block in blocks[1:] if block[0] & 0xE0 == 0x20]  # once
