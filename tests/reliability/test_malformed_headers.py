"""Malformed request headers, sent with a raw HTTP/2 client: each is answered at once.

grpclib alone leaves some of these requests unanswered (the client waits for its own
deadline), answers others UNKNOWN, and a non-ASCII value killed the whole connection.
Each case checks the exact answer (docs/RELIABILITY.md gives the reasons), that nothing
was logged as an unexpected error, and that the same connection then serves a SayHello.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame

from muxs import RunningServer, StatusCode
from muxs.api import HelloRequest
from muxs.server.budgets import MAX_HEADER_BLOCK_BYTES
from tests.rawh2 import RawConnection, Reply, grpc_frame, request_headers

SAY_HELLO = "/muxs.Greeter/SayHello"
HELLO = grpc_frame(bytes(HelloRequest(name="you")))
MALFORMED_TIMEOUT = "malformed grpc-timeout: 1 to 8 digits and a unit of HMSmun"
NOT_ASCII = (
    "header {!r} is not printable ASCII; send binary values base64-encoded "
    "in a header whose name ends in -bin"
)


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    assert [record.getMessage() for record in caplog.records] == []


async def call_with(
    server: RunningServer, headers: list[tuple[str, str]]
) -> tuple[Reply, RawConnection]:
    conn = await RawConnection.open(server.host, server.port)
    stream = conn.start(headers)
    await conn.send(stream, HELLO, end=True)
    return await conn.reply(stream), conn


async def assert_status(
    server: RunningServer, headers: list[tuple[str, str]], status: StatusCode, message: str
) -> None:
    """The call gets ``status`` and ``message``, and the connection serves a SayHello next."""
    reply, conn = await call_with(server, headers)
    async with conn:
        assert (reply.http_status, reply.grpc_status, reply.grpc_message) == (
            200,
            status.value,
            message,
        )
        await assert_serves(conn)


async def assert_serves(conn: RawConnection) -> None:
    reply = await conn.call(SAY_HELLO, HELLO)
    assert reply.grpc_status == StatusCode.OK.value
    assert reply.messages() == [bytes(HelloRequest(name="Hello, you!"))]


@pytest.mark.parametrize("timeout", ["999999999H", "9" * 400 + "S"])
async def test_a_grpc_timeout_too_large_to_represent_is_internal(
    live_server: RunningServer, timeout: str
) -> None:
    headers = request_headers(SAY_HELLO, grpc_timeout=timeout)
    await assert_status(live_server, headers, StatusCode.INTERNAL, MALFORMED_TIMEOUT)


async def test_the_largest_grpc_timeout_is_served(live_server: RunningServer) -> None:
    reply, conn = await call_with(live_server, request_headers(SAY_HELLO, grpc_timeout="99999999H"))
    async with conn:
        assert reply.grpc_status == StatusCode.OK.value


@pytest.mark.parametrize("timeout", ["1n", "0S", "999u", "1m"])
async def test_a_grpc_timeout_already_passed_is_deadline_exceeded(
    live_server: RunningServer, timeout: str
) -> None:
    headers = request_headers(SAY_HELLO, grpc_timeout=timeout)
    await assert_status(
        live_server,
        headers,
        StatusCode.DEADLINE_EXCEEDED,
        "the deadline passed before the call started",
    )


@pytest.mark.parametrize("timeout", ["soon", "10", "S", "-1S", "1.5S", "10s", "1 S"])
async def test_a_malformed_grpc_timeout_is_internal(
    live_server: RunningServer, timeout: str
) -> None:
    headers = request_headers(SAY_HELLO, grpc_timeout=timeout)
    await assert_status(live_server, headers, StatusCode.INTERNAL, MALFORMED_TIMEOUT)


async def test_bin_metadata_that_is_not_base64_is_internal(live_server: RunningServer) -> None:
    headers = request_headers(SAY_HELLO, trace_bin="abcde")  # no base64 has 4n+1 characters
    await assert_status(
        live_server, headers, StatusCode.INTERNAL, "header 'trace-bin' is not base64"
    )


@pytest.mark.parametrize("value", ["AAEC", "AAE", "AA==", ""])
async def test_bin_metadata_padded_or_not_is_accepted(
    live_server: RunningServer, value: str
) -> None:
    reply, conn = await call_with(live_server, request_headers(SAY_HELLO, trace_bin=value))
    async with conn:
        assert reply.grpc_status == StatusCode.OK.value


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-name", "héllo"), ("x-name", "日本"), ("trace-bin", "AA\xff"), ("x-name", "a\x01b")],
)
async def test_metadata_outside_printable_ascii_is_internal(
    live_server: RunningServer, name: str, value: str
) -> None:
    headers = request_headers(SAY_HELLO, **{name: value})
    await assert_status(live_server, headers, StatusCode.INTERNAL, NOT_ASCII.format(name))


async def test_a_header_name_outside_ascii_is_internal(live_server: RunningServer) -> None:
    headers = [*request_headers(SAY_HELLO), ("x-é", "value")]
    await assert_status(
        live_server, headers, StatusCode.INTERNAL, "a header name is not printable ASCII"
    )


@pytest.mark.parametrize("pseudo", [":path", ":method", ":scheme"])
async def test_a_request_without_a_required_pseudo_header_is_reset(
    live_server: RunningServer, pseudo: str
) -> None:
    headers = [header for header in request_headers(SAY_HELLO) if header[0] != pseudo]
    reply, conn = await call_with(live_server, headers)
    async with conn:
        assert reply.reset == ErrorCodes.PROTOCOL_ERROR
        assert not reply.headers
        await assert_serves(conn)


@pytest.mark.parametrize(
    "headers",
    [
        # Two :path: grpclib routed by the last, a proxy or log may read the first.
        [*request_headers(SAY_HELLO), (":path", "/muxs.FileController/Delete")],
        [*request_headers(SAY_HELLO), (":protocol", "websocket")],
        [("user-agent", "x"), *request_headers(SAY_HELLO)],  # pseudo after regular
        [*request_headers(SAY_HELLO), ("X-Upper", "v")],
        [*request_headers(SAY_HELLO), ("connection", "keep-alive")],
        [*request_headers(SAY_HELLO), ("transfer-encoding", "chunked")],
    ],
    ids=["two paths", "unknown pseudo", "pseudo late", "uppercase", "connection", "chunked"],
)
async def test_a_malformed_request_is_reset(
    live_server: RunningServer, headers: list[tuple[str, str]]
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        conn.h2.config.normalize_outbound_headers = False  # h2 would lowercase and drop fields
        stream = conn.start(headers)
        await conn.send(stream, HELLO, end=True)
        reply = await conn.reply(stream)
        assert reply.reset == ErrorCodes.PROTOCOL_ERROR
        assert not reply.headers
        await assert_serves(conn)


@pytest.mark.parametrize("path", ["/muxs.Greeter/", "/muxs.Greeter", "/", "", "//SayHello"])
async def test_a_path_without_a_method_is_unimplemented(
    live_server: RunningServer, path: str
) -> None:
    headers = request_headers(path)
    await assert_status(live_server, headers, StatusCode.UNIMPLEMENTED, "Method not found")


async def test_a_header_block_over_its_bound_is_refused_before_it_is_buffered(
    live_server: RunningServer,
) -> None:
    # Frames of up to 1 MiB (the server's SETTINGS_MAX_FRAME_SIZE) and 64 CONTINUATIONs
    # (h2's bound) let one unfinished header block hold 64 MiB until request_header_timeout.
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        await assert_serves(conn)  # the server's SETTINGS (1 MiB frames) acknowledged
        stream = conn.h2.get_next_available_stream_id()
        first = conn.h2.encoder.encode(request_headers(SAY_HELLO))
        conn.write_raw(HeadersFrame(stream, data=first).serialize())
        announced = ContinuationFrame(stream, data=b"\0" * MAX_HEADER_BLOCK_BYTES).serialize()
        conn.write_raw(announced[:1024])  # the body never comes: refused on its frame header
        await conn.wait_closed()
        assert conn.goaway is not None
        assert (conn.goaway.error_code, conn.goaway.additional_data) == (
            ErrorCodes.ENHANCE_YOUR_CALM,
            b"header block too large",
        )
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        await assert_serves(conn)


async def test_a_header_list_over_its_limit_costs_only_its_connection(
    live_server: RunningServer,
) -> None:
    # 10 000 tiny headers: a block under MAX_HEADER_BLOCK_BYTES, a list over the 64 KiB
    # SETTINGS_MAX_HEADER_LIST_SIZE (each header counts 32 bytes more), refused by h2.
    headers = [*request_headers(SAY_HELLO), *((f"x{i}", "v") for i in range(10_000))]
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        conn.start(headers, end=True)
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        await assert_serves(conn)


async def test_a_header_near_the_header_list_limit_is_served(live_server: RunningServer) -> None:
    # h2 advertises SETTINGS_MAX_HEADER_LIST_SIZE 64 KiB: a header block within it is not cut.
    headers = [*request_headers(SAY_HELLO), ("x-large", "v" * 60_000)]
    reply, conn = await call_with(live_server, headers)
    async with conn:
        assert reply.grpc_status == StatusCode.OK.value
