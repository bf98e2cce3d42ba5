"""Raw garbage on every method, sent with a raw HTTP/2 client: a proper status, never a crash.

Each case checks the exact status gRPC's protocol gives, that nothing was logged as an
unexpected error (grpclib logs a traceback for those), and that the same connection
then serves a good call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import hypothesis
import pytest
from h2.errors import ErrorCodes
from hypothesis import strategies as st

from muxs import RunningServer, StatusCode
from muxs.api import HelloRequest
from tests.rawh2 import RawConnection, Reply, grpc_frame, request_headers
from tests.reliability.methods import LIMIT, METHODS, REFUSALS, implemented

SAY_HELLO = "/muxs.Greeter/SayHello"
INTERNAL, UNIMPLEMENTED = StatusCode.INTERNAL, StatusCode.UNIMPLEMENTED

# name: (request body, extra headers, status), for every method.
CASES: dict[str, tuple[bytes, dict[str, str], StatusCode]] = {
    "undecodable message": (grpc_frame(b"\xff" * 11), {}, INTERNAL),
    "group wire type": (grpc_frame(b"\x0b\x0c"), {}, INTERNAL),
    "truncated prefix": (b"\x00\x00\x00", {}, INTERNAL),
    "length prefix that lies": (grpc_frame(b"\x0a\x01a", length=100), {}, INTERNAL),
    "compressed flag, no grpc-encoding": (grpc_frame(b"", compressed=True), {}, INTERNAL),
    "gzip, truncated": (
        grpc_frame(b"\x1f\x8b", compressed=True),
        {"grpc_encoding": "gzip"},
        INTERNAL,
    ),
    "br, unsupported": (
        grpc_frame(b"\x1f\x8b", compressed=True),
        {"grpc_encoding": "br"},
        UNIMPLEMENTED,
    ),
    "over the size limit": (grpc_frame(b"", length=LIMIT + 1), {}, StatusCode.RESOURCE_EXHAUSTED),
}


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    assert [record.getMessage() for record in caplog.records] == []


async def open_conn(server: RunningServer) -> RawConnection:
    return await RawConnection.open(server.host, server.port)


async def assert_serves(conn: RawConnection) -> None:
    reply = await conn.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="next"))))
    assert reply.grpc_status == StatusCode.OK.value
    assert reply.messages() == [bytes(HelloRequest(name="Hello, next!"))]


def assert_clean(reply: Reply, server: RunningServer) -> None:
    """The message is for a client: no traceback, no server path."""
    assert "Traceback" not in reply.grpc_message
    assert str(server.root) not in reply.grpc_message


def expected(path: str, status: StatusCode) -> StatusCode:
    # The generated base of a client-streaming method not yet implemented answers
    # UNIMPLEMENTED without reading the request.
    if not implemented(path) and METHODS[path].cardinality.client_streaming:
        return UNIMPLEMENTED
    return status


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", METHODS)
async def test_bad_framing_on_every_method(
    live_server: RunningServer, path: str, case: str
) -> None:
    body, headers, status = CASES[case]
    async with await open_conn(live_server) as conn:
        reply = await conn.call(path, body, **headers)
        assert (reply.http_status, reply.grpc_status) == (200, expected(path, status).value)
        assert_clean(reply, live_server)
        await assert_serves(conn)


@pytest.mark.parametrize(
    "path", [path for path, method in METHODS.items() if not method.cardinality.client_streaming]
)
async def test_a_unary_request_without_its_message(live_server: RunningServer, path: str) -> None:
    async with await open_conn(live_server) as conn:
        reply = await conn.call(path, b"")
        assert reply.grpc_status == INTERNAL.value
        assert reply.grpc_message == "the request ended before its message"
        await assert_serves(conn)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/muxs.Greeter/NoSuchMethod", "Method not found"),
        ("/muxs.NoSuchService/SayHello", "Method not found"),
        ("/", "Method not found"),
        ("not a path", "Method not found"),
    ],
)
async def test_unknown_methods_and_services(
    live_server: RunningServer, path: str, message: str
) -> None:
    async with await open_conn(live_server) as conn:
        reply = await conn.call(path, grpc_frame(b""))
        assert (reply.grpc_status, reply.grpc_message) == (UNIMPLEMENTED.value, message)
        await assert_serves(conn)


@pytest.mark.parametrize(
    ("headers", "http_status"),
    [
        ({"content_type": "text/plain"}, 415),
        ({"content_type": "application/grpc+json"}, 415),
        ({"content_type": "application/json"}, 415),
        ({":method": "GET"}, 405),
        ({"te": "gzip"}, 400),
    ],
)
async def test_bad_headers_get_the_http_status_grpc_names(
    live_server: RunningServer, headers: dict[str, str], http_status: int
) -> None:
    async with await open_conn(live_server) as conn:
        stream = conn.start(request_headers(SAY_HELLO, **headers))
        await conn.send(stream, grpc_frame(b""), end=True)
        reply = await conn.reply(stream)
        assert reply.http_status == http_status
        await assert_serves(conn)


async def test_a_request_without_content_type_is_415(live_server: RunningServer) -> None:
    async with await open_conn(live_server) as conn:
        headers = [h for h in request_headers(SAY_HELLO) if h[0] != "content-type"]
        stream = conn.start(headers)
        await conn.send(stream, grpc_frame(b""), end=True)
        assert (await conn.reply(stream)).http_status == 415
        await assert_serves(conn)


@pytest.mark.parametrize(
    ("garbage", "error_code"),
    [
        (b"\x00\x00\x04\xff\x00\x00\x00\x00\x00junk", None),  # a frame of unknown type: ignored
        (b"\x00\x00\x08\x06\x00\x00\x00\x00\x01", ErrorCodes.PROTOCOL_ERROR),  # short PING
        (
            b"\x00\x00\x05\x01\x05\x00\x00\x00\x03\xff\xff\xff\xff\xff",
            ErrorCodes.COMPRESSION_ERROR,
        ),  # bad HPACK: an index past the table (RFC 9113 section 4.3)
        (b"\x00\x00\x02\x01\x05\x00\x00\x00\x03\xff\x80", ErrorCodes.COMPRESSION_ERROR),
        (b"\x00\x00\x03\x01\x05\x00\x00\x00\x03\x3f\xe1\x3f", ErrorCodes.COMPRESSION_ERROR),
        (b"\x00\x00\x04\x00\x01\x00\x00\x00\x00abcd", ErrorCodes.PROTOCOL_ERROR),  # DATA on 0
    ],
)
async def test_http2_garbage_costs_only_its_own_connection(
    live_server: RunningServer, garbage: bytes, error_code: ErrorCodes | None
) -> None:
    async with await open_conn(live_server) as conn:
        await assert_serves(conn)
        conn.write_raw(garbage)
        if error_code is None:
            await assert_serves(conn)
        else:
            await conn.wait_closed()
            assert conn.goaway is not None
            assert conn.goaway.error_code == error_code
    async with await open_conn(live_server) as conn:
        await assert_serves(conn)


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"\x00" * 100],
)
async def test_not_http2_at_all(live_server: RunningServer, garbage: bytes) -> None:
    reader, writer = await asyncio.open_connection(live_server.host, live_server.port)
    writer.write(garbage)
    assert await reader.read() != b""  # the server answers (GOAWAY) and closes
    writer.close()
    async with await open_conn(live_server) as conn:
        await assert_serves(conn)


async def test_a_connection_cut_inside_a_frame(live_server: RunningServer) -> None:
    async with await open_conn(live_server) as conn:
        stream = conn.start(request_headers(SAY_HELLO))
        conn.write_raw(
            b"\x00\x01\x00\x00\x00\x00\x00\x00" + stream.to_bytes(1, "big") + b"\x00\x00"
        )
    async with await open_conn(live_server) as conn:
        await assert_serves(conn)


@hypothesis.settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    path=st.sampled_from(sorted(METHODS)), body=st.binary(max_size=300), framed=st.booleans()
)
async def test_random_bytes_on_any_method(
    live_server: RunningServer, path: str, body: bytes, framed: bool
) -> None:
    async with await open_conn(live_server) as conn:
        reply = await conn.call(path, grpc_frame(body) if framed else body)
        unimplemented = set() if implemented(path) else {UNIMPLEMENTED}
        assert StatusCode(reply.grpc_status) in REFUSALS | {StatusCode.OK} | unimplemented
        assert_clean(reply, live_server)
        await assert_serves(conn)
