"""The connection limits of ``muxs.server.limits``, seen from the wire (a raw HTTP/2 client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpclib.client
import pytest
from grpclib.client import Channel
from grpclib.events import SendRequest, listen
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from muxs import Client, RpcError, RunningServer, ServerSettings, StatusCode
from muxs.api import HelloRequest
from muxs.server.limits import MAX_FRAME_BYTES, LimitedServer, _LimitedProtocol
from tests.polling import until
from tests.rawh2 import RawConnection, grpc_frame, request_headers

LIMIT = 64 * 1024
SAY_HELLO = "/muxs.Greeter/SayHello"
LOTS_OF_GREETINGS = "/muxs.Greeter/LotsOfGreetings"


@pytest.fixture
def settings(root_dir: Path, request: pytest.FixtureRequest) -> ServerSettings:
    """Small limits; a test may change more with ``indirect`` parametrization."""
    return ServerSettings(
        host="127.0.0.1",
        port=0,
        root=root_dir,
        max_message_bytes=LIMIT,
        max_concurrent_streams=3,
        max_connections=4,
        idle_timeout=0.5,
        **getattr(request, "param", {}),
    )


async def raw(server: RunningServer) -> RawConnection:
    return await RawConnection.open(server.host, server.port)


def connections(server: RunningServer) -> int:
    assert isinstance(server.server, LimitedServer)
    return len(server.server.connections)


def hello(name: str) -> bytes:
    return grpc_frame(bytes(HelloRequest(name=name)))


async def assert_serves(conn: RawConnection) -> None:
    reply = await conn.call(SAY_HELLO, hello("again"))
    assert reply.grpc_status == StatusCode.OK.value
    assert reply.messages() == [bytes(HelloRequest(name="Hello, again!"))]


async def test_an_oversized_message_is_refused_before_it_is_sent_whole(
    live_server: RunningServer,
) -> None:
    async with await raw(live_server) as conn:
        stream = conn.start(request_headers(SAY_HELLO))
        # Claim LIMIT + 1 bytes but send only 1 KiB of them: the answer cannot wait for the rest.
        await conn.send(stream, grpc_frame(b"\x0a" * 1024, length=LIMIT + 1))
        reply = await conn.reply(stream)
        assert reply.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
        assert (
            reply.grpc_message
            == f"a {LIMIT + 1}-byte message is over this server's {LIMIT}-byte limit"
        )
        await assert_serves(conn)


async def test_a_message_of_exactly_the_limit_is_accepted(live_server: RunningServer) -> None:
    name = "x" * (LIMIT - 4)  # tag (1 byte) + length (3 bytes) + name = LIMIT
    assert len(bytes(HelloRequest(name=name))) == LIMIT
    async with Client(live_server.target) as client:
        assert (await client.say_hello(name)).message == f"Hello, {name}!"
        with pytest.raises(RpcError) as caught:
            await client.say_hello(name + "x")
        assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert (await client.say_hello("small")).message == "Hello, small!"


async def test_every_message_of_a_stream_is_checked(live_server: RunningServer) -> None:
    async with await raw(live_server) as conn:
        stream = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(stream, hello("a") + hello("b") + grpc_frame(b"", length=LIMIT + 1))
        reply = await conn.reply(stream)
        assert reply.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
        await assert_serves(conn)


async def test_clients_may_send_frames_of_a_mebibyte(live_server: RunningServer) -> None:
    async with await raw(live_server) as conn:
        await assert_serves(conn)  # both SETTINGS frames have arrived before the reply
        assert conn.h2.remote_settings.max_frame_size == MAX_FRAME_BYTES == 1 << 20
        name = "n" * (40 * 1024)  # one DATA frame, more than HTTP/2's default 16 KiB
        reply = await conn.call(SAY_HELLO, hello(name))
        assert reply.grpc_status == StatusCode.OK.value
        assert reply.messages() == [bytes(HelloRequest(name=f"Hello, {name}!"))]


async def test_the_stream_limit_is_advertised_and_clients_queue_behind_it(
    live_server: RunningServer,
) -> None:
    async with await raw(live_server) as conn:
        await assert_serves(conn)  # both SETTINGS frames have arrived before the reply
        assert conn.h2.remote_settings.max_concurrent_streams == 3

    release = asyncio.Event()

    async def held_names() -> AsyncIterator[str]:
        yield "held"
        await release.wait()

    channel = Channel(live_server.host, live_server.port)
    asked = asyncio.Event()

    async def on_request(event: SendRequest) -> None:
        if event.method_name == SAY_HELLO:
            asked.set()

    # grpclib fires SendRequest just before the stream's HEADERS, and waits for a free
    # stream, if none is, in the same step: once the test runs again, the queued call is
    # waiting, or (a client that ignored the limit) its HEADERS are out, and the server,
    # which sees them before any held call ends, refuses them.
    listen(channel, SendRequest, on_request)
    async with Client(live_server.target, channel=channel) as client:
        await client.say_hello("first")  # after the server's SETTINGS: the limit is known
        asked.clear()
        held = [asyncio.create_task(client.lots_of_greetings(held_names())) for _ in range(3)]
        await until(lambda: live_server.lifecycle.calls.pending == 3)
        queued = asyncio.create_task(client.say_hello("queued"))
        await asked.wait()
        assert not queued.done()  # the fourth call waits for a free stream
        release.set()
        assert (await queued).message == "Hello, queued!"
        assert [(await task).message for task in held] == ["Hello, held!"] * 3


async def test_a_connection_over_the_limit_gets_goaway(live_server: RunningServer) -> None:
    admitted = [await raw(live_server) for _ in range(4)]
    try:
        for conn in admitted:
            await assert_serves(conn)
        async with await raw(live_server) as refused:
            await refused.wait_closed()
            assert refused.goaway is not None
            assert refused.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            assert refused.goaway.additional_data == b"too many connections"
        await admitted.pop().aclose()
        await until(lambda: connections(live_server) == 3)
        async with await raw(live_server) as conn:
            await assert_serves(conn)
    finally:
        for conn in admitted:
            await conn.aclose()


async def test_an_idle_connection_gets_goaway(live_server: RunningServer) -> None:
    async with await raw(live_server) as conn:
        await assert_serves(conn)
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.error_code == ErrorCodes.NO_ERROR
        assert conn.goaway.additional_data == b"idle"
    assert connections(live_server) == 0


async def test_a_connection_with_a_call_open_is_not_idle(
    live_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks_with_a_call_open = 0
    check_idle = _LimitedProtocol._check_idle

    def counted_check(protocol: _LimitedProtocol) -> None:
        nonlocal checks_with_a_call_open
        checks_with_a_call_open += protocol.calls_open > 0
        check_idle(protocol)

    monkeypatch.setattr(_LimitedProtocol, "_check_idle", counted_check)
    async with await raw(live_server) as conn:
        stream = conn.start(request_headers(LOTS_OF_GREETINGS))
        await conn.send(stream, hello("slow"))
        await until(lambda: checks_with_a_call_open >= 3)  # three idle timeouts went by
        assert not conn.closed.is_set()
        await conn.send(stream, b"", end=True)
        assert (await conn.reply(stream)).grpc_status == StatusCode.OK.value
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.additional_data == b"idle"


async def test_streams_reset_before_their_handlers_run_are_released(
    live_server: RunningServer,
) -> None:
    assert isinstance(live_server.server, LimitedServer)
    async with await raw(live_server) as conn:
        conn.open_and_reset(request_headers(SAY_HELLO), 200)
        await assert_serves(conn)  # the server has read every reset
        (protocol,) = live_server.server.connections
        await until(lambda: protocol.calls_open == 0)
        assert protocol.streams_held == 0
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.additional_data == b"idle"


async def test_the_sdk_reconnects_after_an_idle_goaway(live_server: RunningServer) -> None:
    async with Client(live_server.target) as client:
        assert (await client.say_hello("before")).message == "Hello, before!"
        protocol = client._caller.channel._protocol
        assert protocol is not None
        handler = protocol.handler
        assert isinstance(handler, grpclib.client.Handler)
        # Once grpclib's channel has read the GOAWAY (a call racing it gets UNAVAILABLE).
        await until(lambda: handler.connection_lost)
        await until(lambda: connections(live_server) == 0)
        assert (await client.say_hello("after")).message == "Hello, after!"


@pytest.mark.parametrize(
    "settings", [{"keepalive_time": 0.2, "keepalive_timeout": 0.3}], indirect=True
)
async def test_keepalive_closes_a_peer_that_stops_answering(live_server: RunningServer) -> None:
    # A peer that opens a call, then never reads again, so never answers the server's ping.
    reader, writer = await asyncio.open_connection(live_server.host, live_server.port)
    try:
        peer = H2Connection(H2Configuration(client_side=True))
        peer.initiate_connection()
        peer.send_headers(1, request_headers(LOTS_OF_GREETINGS))
        writer.write(peer.data_to_send())
        await until(lambda: connections(live_server) == 1)
        await until(lambda: connections(live_server) == 0)
        assert b"\x00\x00\x08\x06\x00" in await reader.read()  # it was sent a PING first
    finally:
        writer.close()


# The client must answer the ping within keepalive_timeout: 1 s, generous for a loop that
# answers in its next turn (0.3 s, as before, is a stall a loaded machine can produce).
@pytest.mark.parametrize(
    "settings", [{"keepalive_time": 0.2, "keepalive_timeout": 1.0}], indirect=True
)
async def test_keepalive_keeps_a_slow_but_live_call(live_server: RunningServer) -> None:
    async def slow_names() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(2.0)  # the scenario: a client that pauses longer than a ping round
        yield "second"

    async with Client(live_server.target) as client, client.bidi_hello(slow_names()) as replies:
        assert [reply.message async for reply in replies] == ["Hello, first!", "Hello, second!"]
