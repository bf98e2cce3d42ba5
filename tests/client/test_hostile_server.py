"""A hostile server's frames against the SDK's fast paths (issue 18: the SDK parses response
frames directly, decodes each header block once per HPACK table state and takes a plain one
without h2's generic steps, keeps replies in a ``DirectBuffer`` and runs a unary call in one
step): each call ends with the exact status, at once (never waiting for its deadline), nothing
is logged as an unexpected error, and the client goes on calling.

The server is ``tests.rawframes.FramePeer`` on the accepting side: no HTTP/2 library between
the test and the wire.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
from h2.errors import ErrorCodes

from muxs import Client, RpcError, StatusCode
from muxs.api import HelloReply
from muxs.call_compression import MAX_REPLY_BYTES
from tests.rawframes import (
    CONTINUATION,
    END_HEADERS,
    HEADERS,
    PUSH_PROMISE,
    SETTINGS,
    FramePeer,
    frame,
    literal_block,
    reset,
)
from tests.rawh2 import WAIT, grpc_frame

REPLY = grpc_frame(bytes(HelloReply(message="hi")))
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]
OK_TRAILERS = literal_block([("grpc-status", "0")])
MISSING_TRAILERS = "the server closed the stream without sending trailers"

Answer = Callable[[FramePeer, int], Awaitable[None]]


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR)
    yield
    assert [record.getMessage() for record in caplog.records] == []


@asynccontextmanager
async def client_of(
    answer: Answer, *, acknowledges_settings: bool = True
) -> AsyncIterator[tuple[Client, list[FramePeer]]]:
    """A client of a server that answers each request (once it has ended) with ``answer``;
    and the server's side of each connection, as they come."""
    peers: list[FramePeer] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = FramePeer(reader, writer)
        peer.acknowledges_settings = acknowledges_settings
        peers.append(peer)
        peer.write(frame(SETTINGS, 0, 0))
        for stream_id in itertools.count(1, 2):
            await peer.until(partial(request_ended, peer, stream_id))
            if peer.closed.is_set():
                return
            await answer(peer, stream_id)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client(f"127.0.0.1:{port}", timeout=WAIT) as client:
            yield client, peers
    finally:
        server.close()
        for peer in peers:
            await peer.__aexit__(None, None, None)


def request_ended(peer: FramePeer, stream_id: int) -> bool:
    return stream_id in peer.answers and peer.answers[stream_id].ended


async def replied(peer: FramePeer, stream_id: int) -> None:
    """A whole unary reply."""
    peer.headers(stream_id, literal_block(RESPONSE))
    peer.data(stream_id, REPLY)
    peer.headers(stream_id, OK_TRAILERS, end=True)


async def status_of(client: Client) -> StatusCode:
    """How a SayHello ends."""
    try:
        assert (await client.say_hello("ann")).message == "hi"
    except RpcError as exc:
        return exc.status
    return StatusCode.OK


#: Frames a server may send before its reply on a stream, made for that stream.
IGNORED: dict[str, Callable[[int], bytes]] = {
    "unknown-type": lambda stream_id: frame(0x42, 0, stream_id, b"an extension"),
    "altsvc": lambda _: frame(0xA, 0, 0, b"\x00\x09localhost" + b'h2=":443"'),
    "informational": lambda stream_id: frame(
        HEADERS, END_HEADERS, stream_id, literal_block([(":status", "100")])
    ),
}


@pytest.mark.parametrize("sent_first", list(IGNORED))
async def test_what_the_sdk_may_ignore_is_ignored(sent_first: str) -> None:
    """grpclib has no handler for these events: the connection died with a traceback and,
    as h2 had taken the rest of the read, the call waited for its deadline."""

    async def answer(peer: FramePeer, stream_id: int) -> None:
        peer.write(IGNORED[sent_first](stream_id))
        await replied(peer, stream_id)

    async with client_of(answer) as (client, peers):
        assert [await status_of(client) for _ in range(2)] == [StatusCode.OK] * 2
        assert len(peers) == 1


def promise(stream_id: int) -> bytes:
    promised = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    return frame(
        PUSH_PROMISE, END_HEADERS, stream_id, (2).to_bytes(4, "big") + literal_block(promised)
    )


async def test_a_push_before_the_server_has_the_clients_settings_is_refused() -> None:
    async def answer(peer: FramePeer, stream_id: int) -> None:
        peer.write(promise(stream_id))
        await replied(peer, stream_id)

    async with client_of(answer, acknowledges_settings=False) as (client, peers):
        assert await status_of(client) is StatusCode.OK
        (peer,) = peers
        await peer.until(lambda: 2 in peer.answers and peer.answers[2].done)
        assert peer.answers[2].resets == [ErrorCodes.REFUSED_STREAM]


async def test_a_push_after_the_client_said_none_fails_the_connection() -> None:
    async def answer(peer: FramePeer, stream_id: int) -> None:
        peer.write(promise(stream_id))
        await replied(peer, stream_id)

    async with client_of(answer) as (client, peers):
        assert await status_of(client) is StatusCode.UNAVAILABLE
        await peers[0].until(lambda: peers[0].goaway is not None)
        assert peers[0].goaway == ErrorCodes.PROTOCOL_ERROR


@pytest.mark.parametrize("ending", ["data", "headers"])
async def test_a_response_without_trailers_is_internal_at_once(ending: str) -> None:
    """grpclib waited for the trailers until the call's deadline (forever without one)."""

    async def answer(peer: FramePeer, stream_id: int) -> None:
        if ending == "data":
            peer.headers(stream_id, literal_block(RESPONSE))
            peer.data(stream_id, REPLY, end=True)
        else:
            peer.headers(stream_id, literal_block(RESPONSE), end=True)

    async with client_of(answer) as (client, _):
        with pytest.raises(RpcError) as raised:
            await client.say_hello("ann")
        assert (raised.value.status, raised.value.message) == (
            StatusCode.INTERNAL,
            MISSING_TRAILERS,
        )
        with pytest.raises(RpcError) as raised:
            [reply async for reply in client.lots_of_replies("ann")]
        assert (raised.value.status, raised.value.message) == (
            StatusCode.INTERNAL,
            MISSING_TRAILERS,
        )


async def test_a_reply_claiming_more_than_the_limit_is_refused_before_its_body() -> None:
    """grpclib buffered what the prefix claimed (up to 4 GiB) as the server sent it."""

    async def answer(peer: FramePeer, stream_id: int) -> None:
        peer.headers(stream_id, literal_block(RESPONSE))
        peer.data(stream_id, grpc_frame(b"", length=MAX_REPLY_BYTES + 1) + bytes(16000))

    async with client_of(answer) as (client, peers):
        with pytest.raises(RpcError) as raised:
            await client.say_hello("ann")
        assert raised.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.message == (
            f"a reply of {MAX_REPLY_BYTES + 1} bytes is over the client's limit of "
            f"{MAX_REPLY_BYTES}"
        )
        (peer,) = peers
        await peer.until(lambda: peer.answers[1].reset is not None)  # the stream let go


CONTENT_TYPE = (
    b"\x5f\x10application/grpc"  # content-type (static name 31), literal without indexing
)


def newest_content_type(value: str) -> bytes:
    """``content-type: value``, indexed in the client's table (its newest entry)."""
    return b"\x40\x0ccontent-type" + bytes([len(value)]) + value.encode()


async def test_a_response_block_replayed_after_the_table_changed_is_decoded_again() -> None:
    """The SDK keeps a response block whose decoding left its table as it was: the same
    bytes after a newer entry mean other headers (a content-type the call refuses), and
    after a table size update that evicted their entry they are a COMPRESSION_ERROR."""
    status = literal_block([(":status", "200")])
    indexed = status + b"\xbe"  # :status 200, then the newest entry of the table

    async def answer(peer: FramePeer, stream_id: int) -> None:
        block = {
            1: status + newest_content_type("application/grpc"),
            3: indexed,  # decoded, and kept
            5: indexed,  # taken as kept
            7: indexed,  # its trailers make text/html the newest entry
            9: indexed,  # now text/html
            11: b"\x20" + status + CONTENT_TYPE,  # a table size update to 0: evicts every entry
            13: indexed,  # refers to no entry
        }[stream_id]
        peer.headers(stream_id, block)
        peer.data(stream_id, REPLY)
        trailers = OK_TRAILERS + (newest_content_type("text/html") if stream_id == 7 else b"")
        peer.headers(stream_id, trailers, end=True)

    async with client_of(answer) as (client, peers):
        statuses = [await status_of(client) for _ in range(6)]
        assert statuses == [StatusCode.OK] * 4 + [StatusCode.UNKNOWN, StatusCode.OK]
        with pytest.raises(RpcError) as raised:
            await client.say_hello("ann")
        assert raised.value.status is StatusCode.UNAVAILABLE
        await peers[0].until(lambda: peers[0].goaway is not None)
        assert peers[0].goaway == ErrorCodes.COMPRESSION_ERROR


STATUS_OF_RESET = {
    ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,
    ErrorCodes.CANCEL: StatusCode.CANCELLED,
    ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED,
}


@pytest.mark.parametrize("after", ["request", "headers", "reply"])
async def test_a_reset_of_every_code_at_every_step_fails_the_call_with_its_status(
    after: str,
) -> None:
    """NO_ERROR too: it keeps a response only once the response has ended."""
    codes = [code for code in [*ErrorCodes, 0xFF] if code != ErrorCodes.REFUSED_STREAM]

    async def answer(peer: FramePeer, stream_id: int) -> None:
        if after != "request":
            peer.headers(stream_id, literal_block(RESPONSE))
        if after == "reply":
            peer.data(stream_id, REPLY)
        peer.write(reset(stream_id, codes[stream_id // 2]))

    async with client_of(answer) as (client, peers):
        for code in codes:
            expected = STATUS_OF_RESET.get(code, StatusCode.INTERNAL)
            assert await status_of(client) is expected, code
        assert len(peers) == 1
        assert peers[0].goaway is None


async def test_a_header_block_too_large_is_refused_before_it_is_held_whole() -> None:
    """h2 holds a block's frames until it ends: up to 64 CONTINUATIONs of the SDK's 1 MiB
    frame size (reproduced: 60 MiB held until the call's deadline)."""
    part = literal_block([("x-large", "x" * 100)]) * 150  # 16 KiB of headers

    async def answer(peer: FramePeer, stream_id: int) -> None:
        peer.write(frame(HEADERS, 0, stream_id, literal_block(RESPONSE)))
        for _ in range(10):
            peer.write(frame(CONTINUATION, 0, stream_id, part))

    async with client_of(answer) as (client, peers):
        assert await status_of(client) is StatusCode.UNAVAILABLE
        await peers[0].until(lambda: peers[0].goaway is not None)
        assert peers[0].goaway == ErrorCodes.ENHANCE_YOUR_CALM
