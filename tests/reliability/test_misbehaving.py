"""Misbehaving clients: the server cleans up after them and keeps serving everyone else.

Leaks are counted, not guessed: the event loop's tasks, the process's open file
descriptors and the temp files under the root must come back to what they were. Being
served is checked by events, not by time: another client's calls succeed while the
misbehaving client still holds what it took (how fast they are is bench/'s business).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection

from muxs import Client, RunningServer
from muxs.api import Files, HelloRequest
from muxs.server.limits import LimitedServer
from muxs.server.storage import TEMP_PREFIX
from tests.polling import until
from tests.rawh2 import RawConnection, grpc_frame, request_headers

SAY_HELLO = "/muxs.Greeter/SayHello"
# A hang guard, not a speed bound: a server that never answered would fail the test
# (DEADLINE_EXCEEDED) instead of hanging it.
OTHERS_DEADLINE = 60.0


@dataclass(frozen=True)
class Usage:
    tasks: int
    fds: int

    @classmethod
    def now(cls) -> Usage:
        return cls(len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd")))


async def assert_back_to(baseline: Usage, server: RunningServer) -> None:
    """Wait until no task, fd or connection is left over; no temp file may remain."""
    assert isinstance(server.server, LimitedServer)
    limited = server.server
    await until(lambda: not limited.connections)
    await until(lambda: Usage.now().tasks <= baseline.tasks)
    await until(lambda: Usage.now().fds <= baseline.fds)
    assert list(server.root.rglob(f"{TEMP_PREFIX}*")) == []


async def assert_others_served(server: RunningServer, calls: int = 20) -> None:
    """Another client, on its own connection, has its calls answered."""
    async with Client(server.target, timeout=OTHERS_DEADLINE) as client:
        for number in range(calls):
            assert (await client.say_hello(f"other {number}")).message == f"Hello, other {number}!"


async def raw(server: RunningServer) -> RawConnection:
    return await RawConnection.open(server.host, server.port)


async def test_disconnect_mid_unary_write(live_server: RunningServer) -> None:
    (live_server.root / "kept.txt").write_text("old")
    baseline = Usage.now()
    message = bytes(Files(filename="kept.txt", text="n" * 50_000))
    conn = await raw(live_server)
    stream = conn.start(request_headers("/muxs.FileController/Write"))
    await conn.send(stream, grpc_frame(message)[:20_000])  # part of the message, then gone
    await conn.aclose()
    await assert_back_to(baseline, live_server)
    assert (live_server.root / "kept.txt").read_text() == "old"
    await assert_others_served(live_server)


@pytest.mark.parametrize("path", ["/muxs.Greeter/LotsOfReplies", "/muxs.Greeter/BidiHello"])
async def test_disconnect_mid_stream(live_server: RunningServer, path: str) -> None:
    baseline = Usage.now()
    conn = await raw(live_server)
    stream = conn.start(request_headers(path))
    await conn.send(stream, grpc_frame(bytes(HelloRequest(name="x" * 10_000, count=50))))
    await until(lambda: len(conn.replies[stream].data) > 0)  # the server is streaming
    await conn.aclose()
    await assert_back_to(baseline, live_server)
    await assert_others_served(live_server)


async def test_disconnect_mid_upload(live_server: RunningServer) -> None:
    from muxs_api.muxs import Chunk

    (live_server.root / "kept.bin").write_bytes(b"old")
    baseline = Usage.now()
    conn = await raw(live_server)
    stream = conn.start(request_headers("/muxs.FileController/WriteStream"))
    first = grpc_frame(bytes(Chunk(filename="kept.bin", data=b"a" * 30_000)))
    await conn.send(stream, first + grpc_frame(bytes(Chunk(data=b"b" * 30_000))))
    await until(lambda: any(live_server.root.glob(f"{TEMP_PREFIX}*")))  # the upload started
    await conn.aclose()
    await assert_back_to(baseline, live_server)
    assert (live_server.root / "kept.bin").read_bytes() == b"old"


async def test_streams_opened_and_never_sent_on(live_server: RunningServer) -> None:
    baseline = Usage.now()
    conn = await raw(live_server)
    silent = [conn.start(request_headers("/muxs.Greeter/LotsOfGreetings")) for _ in range(50)]
    silent += [conn.start(request_headers(SAY_HELLO)) for _ in range(40)]
    await until(lambda: Usage.now().tasks >= baseline.tasks + len(silent))  # handlers wait
    await assert_others_served(live_server)
    await conn.aclose()
    await assert_back_to(baseline, live_server)


async def test_a_client_that_never_reads(live_server: RunningServer) -> None:
    baseline = Usage.now()
    reader, writer = await asyncio.open_connection(live_server.host, live_server.port)
    peer = H2Connection(H2Configuration(client_side=True))
    peer.initiate_connection()
    request = grpc_frame(bytes(HelloRequest(name="y" * 10_000, count=50)))  # 500 kB of replies
    for stream in (1, 3, 5):
        peer.send_headers(stream, request_headers("/muxs.Greeter/LotsOfReplies"))
        peer.send_data(stream, request, end_stream=True)
    writer.write(peer.data_to_send())
    await until(lambda: Usage.now().tasks >= baseline.tasks + 3)
    # The replies stop at the HTTP/2 window and socket buffers, not in the server's memory.
    await assert_others_served(live_server)
    writer.close()
    await assert_back_to(baseline, live_server)
    del reader


async def test_a_client_that_stops_reading_a_stream(live_server: RunningServer) -> None:
    baseline = Usage.now()
    async with (
        Client(live_server.target) as client,
        client.lots_of_replies("z" * 60_000, 50) as replies,
    ):
        assert (await anext(replies)).index == 1
        await assert_others_served(live_server)
    await assert_back_to(baseline, live_server)


@pytest.mark.slow
async def test_a_thousand_idle_connections(live_server: RunningServer) -> None:
    baseline = Usage.now()
    rss_before = rss_bytes()
    idle = [await raw(live_server) for _ in range(1000)]
    assert isinstance(live_server.server, LimitedServer)
    limited = live_server.server
    await until(lambda: len(limited.connections) == 1000)
    # Both ends of 1000 connections live in this process: 2000 sockets and reader tasks.
    grown = rss_bytes() - rss_before
    assert grown < 150 * 2**20, f"{grown / 2**20:.0f} MiB for 1000 idle connections"
    await assert_others_served(live_server)
    for conn in idle:
        await conn.aclose()
    await assert_back_to(baseline, live_server)


@pytest.mark.slow
async def test_five_hundred_concurrent_streams(live_server: RunningServer) -> None:
    baseline = Usage.now()
    release = asyncio.Event()

    async def names(number: int) -> AsyncIterator[str]:
        yield f"first {number}"
        await release.wait()
        yield f"second {number}"

    async def one(client: Client, number: int) -> list[str]:
        async with client.bidi_hello(names(number)) as replies:
            return [reply.message async for reply in replies]

    clients = [Client(live_server.target) for _ in range(5)]  # 100 streams each: the default
    try:
        calls = [asyncio.create_task(one(clients[number % 5], number)) for number in range(500)]
        await until(lambda: live_server.lifecycle.calls.pending == 500, bound=60)
        await assert_others_served(live_server)  # while the 500 streams are all open
        assert live_server.lifecycle.calls.pending == 500
        release.set()
        results = await asyncio.gather(*calls)
    finally:
        for client in clients:
            client.close()
    assert results == [[f"Hello, first {n}!", f"Hello, second {n}!"] for n in range(500)]
    await assert_back_to(baseline, live_server)


def rss_bytes() -> int:
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
