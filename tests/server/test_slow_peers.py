"""Peers that connect and stall are closed after ``handshake_timeout``; others are not.
Client streams that stall mid-call end after ``stream_idle_timeout``, an upload's file as it was.

A short timeout (0.2 s) keeps the tests quick; each waits for the event (the server
closing the connection), with a generous bound, never for a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from grpclib.const import Status as GrpcStatus
from h2.errors import ErrorCodes

from muxs import RunningServer, ServerSettings, serve
from muxs.api import Chunk, HelloRequest
from muxs.server.limits import LimitedServer
from muxs.server.storage import TEMP_PREFIX
from tests.polling import until
from tests.rawh2 import WAIT, RawConnection, grpc_frame, request_headers

pytestmark = pytest.mark.both_loops
TIMEOUT = 0.2
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SAY_HELLO = "/muxs.Greeter/SayHello"


@pytest.fixture
async def live_server(settings: ServerSettings) -> AsyncIterator[RunningServer]:
    short = replace(settings, handshake_timeout=TIMEOUT, stream_idle_timeout=TIMEOUT)
    async with serve(settings=short) as running:
        yield running


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    received = b""
    async with asyncio.timeout(WAIT):
        while data := await reader.read(65536):
            received += data
    return received


def goaway_frame(received: bytes) -> bool:
    """Whether the server's frames include a GOAWAY (type 7) with NO_ERROR."""
    position = 0
    while position + 9 <= len(received):
        length = int.from_bytes(received[position : position + 3], "big")
        if received[position + 3] == 7:
            code = received[position + 13 : position + 17]
            return int.from_bytes(code, "big") == ErrorCodes.NO_ERROR
        position += 9 + length
    return False


@pytest.mark.parametrize(
    "sent", [b"", PREFACE[:10], PREFACE], ids=["nothing", "half", "no-settings"]
)
async def test_a_peer_without_a_whole_preface_is_closed(
    live_server: RunningServer, sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    limited = live_server.server
    assert isinstance(limited, LimitedServer)
    caplog.set_level(logging.INFO, logger="muxs.server.limits")
    reader, writer = await asyncio.open_connection("127.0.0.1", live_server.port)
    try:
        writer.write(sent)
        received = await closed_by_server(reader)
    finally:
        writer.close()
    assert goaway_frame(received)
    await until(lambda: not limited.connections)
    assert f"no HTTP/2 preface within {TIMEOUT:g}s" in caplog.text


async def test_a_client_that_sent_its_preface_is_kept(live_server: RunningServer) -> None:
    loop = asyncio.get_running_loop()
    async with await RawConnection.open("127.0.0.1", live_server.port) as conn:
        reply = await conn.call(SAY_HELLO, grpc_frame(b"\n\x01a"))
        assert reply.grpc_status == 0
        # Outlive the preface timeout several times over, then call again on the same connection.
        passed = loop.time() + 5 * TIMEOUT
        await until(lambda: loop.time() > passed)
        stream = conn.start(request_headers(SAY_HELLO))
        await conn.send(stream, grpc_frame(b"\n\x01b"), end=True)
        assert (await conn.reply(stream)).grpc_status == 0
        assert conn.goaway is None


STALLED = (
    f"the client sent nothing for {TIMEOUT:g} seconds (this server's stream_idle_timeout); "
    "the call was ended"
)


async def test_a_stalled_upload_is_deadline_exceeded_and_the_file_stays(
    live_server: RunningServer,
) -> None:
    (live_server.root / "kept.txt").write_bytes(b"old")
    async with await RawConnection.open("127.0.0.1", live_server.port) as conn:
        stream = conn.start(request_headers("/muxs.FileController/WriteStream"))
        first = bytes(Chunk(filename="kept.txt", data=b"new, partial"))
        await conn.send(stream, grpc_frame(first))  # ... and nothing more, no end of stream
        reply = await conn.reply(stream)
    assert (reply.grpc_status, reply.grpc_message) == (GrpcStatus.DEADLINE_EXCEEDED.value, STALLED)
    assert (live_server.root / "kept.txt").read_bytes() == b"old"
    assert list(live_server.root.rglob(f"{TEMP_PREFIX}*")) == []


@pytest.mark.parametrize("method", ["LotsOfGreetings", "BidiHello"])
async def test_a_stalled_greeting_stream_is_deadline_exceeded(
    live_server: RunningServer, method: str
) -> None:
    async with await RawConnection.open("127.0.0.1", live_server.port) as conn:
        stream = conn.start(request_headers(f"/muxs.Greeter/{method}"))
        await conn.send(stream, grpc_frame(bytes(HelloRequest(name="a"))))
        reply = await conn.reply(stream)
    assert (reply.grpc_status, reply.grpc_message) == (GrpcStatus.DEADLINE_EXCEEDED.value, STALLED)


async def test_at_max_connections_a_silent_connection_makes_room(settings: ServerSettings) -> None:
    loop = asyncio.get_running_loop()
    full = replace(settings, max_connections=2, handshake_timeout=TIMEOUT)
    async with serve(settings=full) as running:
        limited = running.server
        assert isinstance(limited, LimitedServer)
        busy = await RawConnection.open("127.0.0.1", running.port)
        silent = await RawConnection.open("127.0.0.1", running.port)
        try:
            assert (await busy.call(SAY_HELLO, grpc_frame(b"\n\x01a"))).grpc_status == 0
            await until(lambda: len(limited.connections) == 2)
            # Only a connection idle for handshake_timeout may be closed for a new one.
            silent_since = loop.time()
            await until(lambda: loop.time() > silent_since + 2 * TIMEOUT)
            async with await RawConnection.open("127.0.0.1", running.port) as newcomer:
                assert (await newcomer.call(SAY_HELLO, grpc_frame(b"\n\x01n"))).grpc_status == 0
                await silent.wait_closed()
                assert silent.goaway is not None
                assert silent.goaway.error_code == ErrorCodes.NO_ERROR
                assert silent.goaway.additional_data == b"idle, closed to make room"
                assert (await busy.call(SAY_HELLO, grpc_frame(b"\n\x01b"))).grpc_status == 0
        finally:
            await busy.aclose()
            await silent.aclose()


WATCH = "/grpc.health.v1.Health/Watch"


async def test_at_max_connections_a_connection_holding_only_a_health_watch_makes_room(
    settings: ServerSettings,
) -> None:
    """A watch lasts as long as its client wants: one on each connection must not lock
    every other client out (its client watches again on a new connection)."""
    loop = asyncio.get_running_loop()
    full = replace(settings, max_connections=2, handshake_timeout=TIMEOUT)
    async with serve(settings=full) as running:
        limited = running.server
        assert isinstance(limited, LimitedServer)
        watchers = [await RawConnection.open("127.0.0.1", running.port) for _ in range(2)]
        try:
            watches = [watcher.start(request_headers(WATCH)) for watcher in watchers]
            for watcher, stream in zip(watchers, watches, strict=True):
                await watcher.send(stream, grpc_frame(b""), end=True)  # the whole server
            replies = [watcher.replies[s] for watcher, s in zip(watchers, watches, strict=True)]
            await until(lambda: all(reply.data for reply in replies))  # SERVING, both
            await until(lambda: sum(open_.calls_open for open_ in limited.connections) == 2)
            settled = loop.time()
            await until(lambda: loop.time() > settled + 2 * TIMEOUT)
            async with await RawConnection.open("127.0.0.1", running.port) as newcomer:
                assert (await newcomer.call(SAY_HELLO, grpc_frame(b"\n\x01n"))).grpc_status == 0
            closed = [watcher for watcher in watchers if watcher.goaway is not None]
            assert len(closed) == 1
            assert closed[0].goaway is not None
            assert closed[0].goaway.additional_data == b"idle, closed to make room"
        finally:
            for watcher in watchers:
                await watcher.aclose()
