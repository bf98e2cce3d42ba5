"""Slow and stuck peers are bounded in time, on both event loops: server streams whose
client grants no flow-control window (CVE-2019-9517), requests whose headers never
complete, and idle connections holding ``max_connections`` slots.

A short timeout (``TIMEOUT``) keeps the tests quick; each waits for the event (the server's
answer, or its closing the connection), with a generous bound, never for a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status as GrpcStatus
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import HeadersFrame, PingFrame

from muxs import RunningServer, ServerSettings, serve
from muxs.api import Files, HelloRequest
from muxs.server.limits import LimitedServer
from tests.polling import until
from tests.rawh2 import RawConnection, Reply, grpc_frame, request_headers
from tests.reliability.dos.attacks import PING, Attacker, repeated
from tests.reliability.test_misbehaving import Usage, assert_back_to, assert_others_served

TIMEOUT = 0.3
LOTS_OF_REPLIES = "/muxs.Greeter/LotsOfReplies"
READ_STREAM = "/muxs.FileController/ReadStream"
BIDI_HELLO = "/muxs.Greeter/BidiHello"
SAY_HELLO = "/muxs.Greeter/SayHello"


@pytest.fixture
async def live_server(settings: ServerSettings) -> AsyncIterator[RunningServer]:
    short = dataclasses.replace(
        settings, stream_idle_timeout=TIMEOUT, request_header_timeout=TIMEOUT
    )
    async with serve(settings=short) as running:
        yield running


def zero_window_call(server: RunningServer, path: str) -> tuple[str, bytes]:
    """A call to ``path`` whose replies need far more than the initial windows (64 KiB)."""
    if path == READ_STREAM:
        (server.root / "big").write_bytes(bytes(1024 * 1024))
        return path, grpc_frame(bytes(Files(filename="big")))
    return path, grpc_frame(bytes(HelloRequest(name="x" * 1000, count=1000)))


@pytest.mark.parametrize("path", [LOTS_OF_REPLIES, READ_STREAM, BIDI_HELLO])
@pytest.mark.parametrize("window", ["stream", "connection"])
async def test_a_server_stream_whose_client_grants_no_window_ends(
    live_server: RunningServer, path: str, window: str
) -> None:
    """No reply can be sent for ``stream_idle_timeout``: DEADLINE_EXCEEDED (trailers are not
    flow-controlled), the call's task, file and buffers freed, others served meanwhile."""
    assert isinstance(live_server.server, LimitedServer)
    baseline = Usage.now()
    method, body = zero_window_call(live_server, path)
    if path == BIDI_HELLO:
        body = body * 80  # 80 greetings of 1 KiB each: more than a 64 KiB window
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        if window == "stream":
            conn.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        else:
            conn.grants_window = False
        stream_id = conn.start(request_headers(method))
        await conn.send(stream_id, body, end=path != BIDI_HELLO)
        await assert_others_served(live_server)
        reply = await conn.reply(stream_id)
        assert reply.grpc_status == GrpcStatus.DEADLINE_EXCEEDED.value
        assert "granted no flow-control window" in reply.grpc_message
        connections = live_server.server.connections
        await until(lambda: len(connections) == 1)  # the other client's has closed
        (protocol,) = connections
        await until(lambda: protocol.calls_open == 0 and protocol.streams_held == 0)
    await assert_back_to(baseline, live_server)


async def test_a_peer_that_reads_nothing_is_closed_after_stream_idle_timeout(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Its socket takes nothing more (the server's write buffer stays over its high-water
    mark) for ``stream_idle_timeout``: not even a GOAWAY can reach it, so it is aborted."""
    caplog.set_level(logging.INFO, "muxs.server.limits")
    unbudgeted = dataclasses.replace(settings, control_frame_budget=0, stream_idle_timeout=TIMEOUT)
    async with serve(settings=unbudgeted) as server:
        assert isinstance(server.server, LimitedServer)
        limited = server.server
        baseline = Usage.now()
        attacker = await Attacker.open(server, read_replies=False)
        await attacker.flood(repeated(PING, 500))  # until the server aborts the connection
        await attacker.aclose()
        await until(lambda: not limited.sockets)
        await assert_back_to(baseline, server)
        await assert_others_served(server)
    host, port = attacker.address
    closed = [r.getMessage() for r in caplog.records if "read too little" in r.getMessage()]
    assert closed == [
        f"closed a connection from {host}:{port}: it read too little of its replies in {TIMEOUT:g}s"
    ]


async def seconds_pass(seconds: float) -> None:
    """Return once ``seconds`` have passed on the loop's clock (the server's)."""
    loop = asyncio.get_running_loop()
    since = loop.time()
    await until(lambda: loop.time() > since + seconds)


async def test_at_max_connections_the_longest_idle_connection_makes_room(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that made a call and now idles holds its slot no longer than
    ``handshake_timeout`` once the slots are full; of two, the one idle the longest goes (a
    call waiting on its client's next message counts as idle since it began to wait)."""
    full = dataclasses.replace(settings, max_connections=2, handshake_timeout=TIMEOUT)
    async with serve(settings=full) as server:
        assert isinstance(server.server, LimitedServer)
        limited = server.server
        async with (
            await RawConnection.open(server.host, server.port) as active,
            await RawConnection.open(server.host, server.port) as idle,
        ):
            greeting = active.start(request_headers(BIDI_HELLO))  # a call left open
            await active.send(greeting, grpc_frame(bytes(HelloRequest(name="a"))))
            hello = await idle.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="i"))))
            assert hello.grpc_status == 0
            await active.send(greeting, grpc_frame(bytes(HelloRequest(name="a2"))))
            await until(lambda: len(active.replies[greeting].messages()) == 2)
            await until(lambda: len(limited.connections) == 2)
            await seconds_pass(2 * TIMEOUT)  # idle since its call ended
            async with await RawConnection.open(server.host, server.port) as newcomer:
                hello = await newcomer.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="n"))))
                assert hello.grpc_status == 0
                await idle.wait_closed()
                assert idle.goaway is not None
                assert idle.goaway.error_code == ErrorCodes.NO_ERROR
                assert idle.goaway.additional_data == b"idle, closed to make room"
                assert active.goaway is None
                await active.send(greeting, grpc_frame(bytes(HelloRequest(name="b"))), end=True)
                reply = await active.reply(greeting)
                assert reply.grpc_status == 0
                assert len(reply.messages()) == 3
    host, port = idle.address
    made_room = [r.getMessage() for r in caplog.records if "to make room" in r.getMessage()]
    assert len(made_room) == 1
    assert made_room[0].startswith(f"closed a connection from {host}:{port} idle for ")
    assert made_room[0].endswith("s, to make room: 2 are open")


async def assert_room_made(server: RunningServer, waiting: RawConnection) -> None:
    """Past ``handshake_timeout`` twice over, a newcomer at ``max_connections`` is served
    and ``waiting``, whose every call waits on its client, is closed to make room."""
    await seconds_pass(2 * TIMEOUT)
    async with await RawConnection.open(server.host, server.port) as newcomer:
        hello = await newcomer.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="n"))))
        assert hello.grpc_status == 0
    await waiting.wait_closed()
    assert waiting.goaway is not None
    assert (waiting.goaway.error_code, waiting.goaway.additional_data) == (
        ErrorCodes.NO_ERROR,
        b"idle, closed to make room",
    )


async def test_at_max_connections_a_call_waiting_on_its_client_makes_room(
    settings: ServerSettings,
) -> None:
    """A BidiHello that sends a message just before each ``stream_idle_timeout`` would keep
    its slot for ever: a connection whose every call waits on its client (here, for its
    next message) for ``handshake_timeout`` makes room as an idle one does."""
    full = dataclasses.replace(settings, max_connections=1, handshake_timeout=TIMEOUT)
    async with serve(settings=full) as server:
        assert isinstance(server.server, LimitedServer)
        limited = server.server
        async with await RawConnection.open(server.host, server.port) as waiting:
            greeting = waiting.start(request_headers(BIDI_HELLO))
            await waiting.send(greeting, grpc_frame(bytes(HelloRequest(name="a"))))
            await until(lambda: len(waiting.replies[greeting].messages()) == 1)
            await assert_room_made(server, waiting)
        await until(lambda: len(limited.connections) == 0)


async def test_at_max_connections_a_reply_waiting_for_window_makes_room(
    settings: ServerSettings,
) -> None:
    """The same for a server stream whose client grants window just before each
    ``stream_idle_timeout``: its replies wait on its client."""
    full = dataclasses.replace(settings, max_connections=1, handshake_timeout=TIMEOUT)
    async with (
        serve(settings=full) as server,
        await RawConnection.open(server.host, server.port) as waiting,
    ):
        waiting.grants_window = False
        path, body = zero_window_call(server, LOTS_OF_REPLIES)
        stream = waiting.start(request_headers(path))
        await waiting.send(stream, body, end=True)
        await until(lambda: len(waiting.replies[stream].data) >= 65535)
        await assert_room_made(server, waiting)


def replied(reply: Reply, count: int) -> bool:
    return len(reply.messages()) == count


async def test_at_max_connections_a_call_making_progress_keeps_its_slot(
    settings: ServerSettings,
) -> None:
    """A BidiHello whose client sends more often than ``handshake_timeout`` is a call the
    server is working on: its connection is never closed for another."""
    patience = 1.0  # well above the gaps between messages, on a loaded machine too
    full = dataclasses.replace(settings, max_connections=1, handshake_timeout=patience)
    async with (
        serve(settings=full) as server,
        await RawConnection.open(server.host, server.port) as active,
    ):
        greeting = active.start(request_headers(BIDI_HELLO))
        sent = 0
        loop = asyncio.get_running_loop()
        since = loop.time()
        while loop.time() < since + 2 * patience:  # a conversation: a message each 20 ms
            await active.send(greeting, grpc_frame(bytes(HelloRequest(name="a"))))
            sent += 1
            await until(functools.partial(replied, active.replies[greeting], sent))
            await asyncio.sleep(0.02)
        async with await RawConnection.open(server.host, server.port) as refused:
            await refused.wait_closed()
            assert refused.goaway is not None
            assert refused.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            assert refused.goaway.additional_data == b"too many connections"
        await active.send(greeting, grpc_frame(bytes(HelloRequest(name="b"))), end=True)
        reply = await active.reply(greeting)
        assert reply.grpc_status == 0
        assert len(reply.messages()) == sent + 1


#: Request headers that never end: HEADERS without END_HEADERS, then nothing.
UNENDED_HEADERS = HeadersFrame(1, b"").serialize()
#: A PING frame cut short: its header and 3 of its 8 bytes.
CUT_SHORT = PingFrame(0, opaque_data=b"12345678").serialize()[:12]


@pytest.mark.parametrize("sent", [UNENDED_HEADERS, CUT_SHORT], ids=["headers", "frame"])
async def test_a_request_or_frame_left_unfinished_closes_the_connection(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture, sent: bytes
) -> None:
    """A slowloris: what the client began stays unfinished for ``request_header_timeout``;
    it gets GOAWAY NO_ERROR and its connection closes. Others are served meanwhile."""
    caplog.set_level(logging.INFO, "muxs.server.limits")
    baseline = Usage.now()
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        hello = await conn.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="before"))))
        assert hello.grpc_status == 0
        conn.write_raw(sent)
        await assert_others_served(live_server)
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.error_code == ErrorCodes.NO_ERROR
        assert conn.goaway.additional_data == b"request header timeout"
    await assert_back_to(baseline, live_server)
    host, port = conn.address
    closed = [r.getMessage() for r in caplog.records if "unfinished" in r.getMessage()]
    assert closed == [
        f"closed a connection from {host}:{port}: a frame or request headers unfinished for "
        f"{TIMEOUT:g}s"
    ]


async def test_a_connection_between_frames_is_not_timed(live_server: RunningServer) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        hello = await conn.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="a"))))
        assert hello.grpc_status == 0
        await seconds_pass(3 * TIMEOUT)
        hello = await conn.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="b"))))
        assert hello.grpc_status == 0
        assert conn.goaway is None
