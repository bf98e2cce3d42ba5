"""Malformed requests that RFC 9113 makes stream errors, sent with a raw HTTP/2 client.

h2 raises these as connection errors (GOAWAY PROTOCOL_ERROR, every call on the connection
lost): a body whose length is not its ``content-length``, a ``content-length`` that is not a
number, trailers without END_STREAM. Each must reset only its own stream with PROTOCOL_ERROR
(section 8.1.1) while a call open beside it on the same connection goes on; request trailers
with a pseudo-header are malformed too (section 8.1), and well-formed trailers are ignored,
as grpc-go does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, HeadersFrame

from muxs import RunningServer, StatusCode
from muxs.api import HelloReply, HelloRequest
from tests.rawh2 import RawConnection, grpc_frame, request_headers

SAY_HELLO = "/muxs.Greeter/SayHello"
LOTS_OF_GREETINGS = "/muxs.Greeter/LotsOfGreetings"
HELLO = grpc_frame(bytes(HelloRequest(name="you")))


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    assert [record.getMessage() for record in caplog.records] == []


async def assert_serves(conn: RawConnection) -> None:
    reply = await conn.call(SAY_HELLO, HELLO)
    assert reply.grpc_status == StatusCode.OK.value
    assert reply.messages() == [bytes(HelloReply(message="Hello, you!"))]


def send_trailers(
    conn: RawConnection, stream: int, trailers: list[tuple[str, str]], end: bool
) -> None:
    """A trailers block written past h2 (which refuses to send a malformed one)."""
    block = conn.h2.encoder.encode(trailers)
    flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
    conn.write_raw(HeadersFrame(stream, data=block, flags=flags).serialize())


async def assert_only_its_stream_is_reset(conn: RawConnection, stream: int, beside: int) -> None:
    """``stream`` is reset PROTOCOL_ERROR; the call ``beside`` it, still open, is served."""
    reply = await conn.reply(stream)
    assert reply.reset == ErrorCodes.PROTOCOL_ERROR
    assert conn.goaway is None
    await conn.send(beside, HELLO, end=True)
    other = await conn.reply(beside)
    assert (other.reset, other.grpc_status) == (None, StatusCode.OK.value)
    await assert_serves(conn)


@pytest.mark.parametrize(
    ("content_length", "body"),
    [
        (str(len(HELLO) + 1), HELLO),  # shorter than claimed: found at its END_STREAM
        (str(len(HELLO) - 1), HELLO),  # longer than claimed: found at its DATA frame
        ("0", HELLO),
        ("many", HELLO),  # not a number: found at its HEADERS
        ("-1", HELLO),
    ],
)
async def test_a_lying_content_length_resets_only_its_stream(
    live_server: RunningServer, content_length: str, body: bytes
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        await assert_serves(conn)
        beside = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(beside, HELLO)
        stream = conn.start(request_headers(SAY_HELLO, content_length=content_length))
        await conn.send(stream, body, end=True)
        await assert_only_its_stream_is_reset(conn, stream, beside)


async def test_a_true_content_length_is_served(live_server: RunningServer) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        reply = await conn.call(SAY_HELLO, HELLO, content_length=str(len(HELLO)))
        assert reply.grpc_status == StatusCode.OK.value


async def test_request_trailers_are_ignored(live_server: RunningServer) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        stream = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(stream, HELLO)
        send_trailers(conn, stream, [("x-checksum", "abc")], end=True)
        reply = await conn.reply(stream)
        assert (reply.reset, reply.grpc_status) == (None, StatusCode.OK.value)
        assert reply.messages() == [bytes(HelloReply(message="Hello, you!"))]


@pytest.mark.parametrize(
    ("trailers", "end"),
    [
        ([("x-checksum", "abc")], False),  # trailers must end the stream
        ([(":path", "/muxs.FileController/Delete")], True),  # no pseudo-header in trailers
        ([("x-checksum", "abc"), (":status", "200")], True),
    ],
    ids=["without END_STREAM", "a pseudo-header", "a pseudo-header last"],
)
async def test_malformed_request_trailers_reset_only_their_stream(
    live_server: RunningServer, trailers: list[tuple[str, str]], end: bool
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        beside = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(beside, HELLO)
        stream = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(stream, HELLO)
        send_trailers(conn, stream, trailers, end)
        await assert_only_its_stream_is_reset(conn, stream, beside)


async def test_a_content_length_overrun_in_a_run_of_frames_resets_only_its_stream(
    live_server: RunningServer,
) -> None:
    """Four DATA frames in one write, taken as one run, the third past the content-length:
    the stream is reset there, and the fourth, on a stream now closed, is h2's to answer."""
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        beside = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(beside, HELLO)
        length = str(2 * len(HELLO))
        stream = conn.start(request_headers(LOTS_OF_GREETINGS, content_length=length))
        conn.write_raw(b"".join(DataFrame(stream, data=HELLO).serialize() for _ in range(4)))
        await assert_only_its_stream_is_reset(conn, stream, beside)
