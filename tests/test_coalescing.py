"""``CoalescingTransport``: one turn's writes reach the socket together, in order, and a
close sends what is pending first. Real sockets on 127.0.0.1."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from muxs.coalescing import CoalescingTransport


@asynccontextmanager
async def connected(
    bypass: int | None = None,
) -> AsyncIterator[tuple[CoalescingTransport, socket.socket]]:
    """A coalescing transport over one end of a TCP connection, and the other end."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    peer_future = loop.run_in_executor(None, listener.accept)
    transport, _ = await loop.create_connection(
        asyncio.Protocol, "127.0.0.1", listener.getsockname()[1]
    )
    peer, _ = await peer_future
    listener.close()
    peer.setblocking(False)
    try:
        yield CoalescingTransport(transport, bypass=bypass), peer
    finally:
        transport.close()
        peer.close()


async def received(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(peer, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def test_writes_of_one_turn_are_held_until_the_next_and_arrive_in_order() -> None:
    async with connected() as (transport, peer):
        for part in (b"headers|", b"message|", b"trailers"):
            transport.write(part)
        # A plain transport's write reaches a loopback peer at once; these are held.
        with pytest.raises(BlockingIOError):
            peer.recv(100)
        assert await received(peer, 24) == b"headers|message|trailers"


async def test_close_sends_what_is_pending_first() -> None:
    async with connected() as (transport, peer):
        transport.write(b"last words")
        transport.close()
        assert transport.is_closing()
        assert await received(peer, 100) == b"last words"


async def test_writes_after_the_transport_closed_are_dropped() -> None:
    async with connected() as (transport, peer):
        transport.close()
        transport.write(b"too late")
        transport.flush()
        assert await received(peer, 100) == b""


async def test_a_large_write_goes_out_at_once_after_what_was_held() -> None:
    async with connected(bypass=8) as (transport, peer):
        transport.write(b"small|")
        transport.write(b"large chunk")
        assert transport.pending_bytes == 0
        assert peer.recv(100) == b"small|large chunk"  # no loop turn needed
        transport.write(b"small")
        assert transport.pending_bytes == 5
        assert await received(peer, 5) == b"small"


async def test_work_before_a_flush_runs_in_it_and_its_writes_go_out_with_the_turns() -> None:
    async with connected() as (transport, peer):
        ran: list[str] = []
        transport.before_flush(lambda: ran.append("acknowledged"))  # schedules the flush
        transport.before_flush(lambda: transport.write(b"window update|"))
        transport.write(b"reply|")
        assert ran == []
        assert await received(peer, 20) == b"reply|window update|"
        assert ran == ["acknowledged"]
        assert transport.pending_bytes == 0
        transport.before_flush(lambda: transport.write(b"alone"))  # no write in this turn
        assert await received(peer, 5) == b"alone"


async def test_work_before_a_flush_that_fails_holds_up_no_write() -> None:
    async with connected() as (transport, peer):

        def fails() -> None:
            raise RuntimeError("a bug")

        transport.before_flush(fails)
        transport.write(b"reply|")
        with pytest.raises(RuntimeError):
            transport.flush()
        assert await received(peer, 6) == b"reply|"
        transport.write(b"next")  # schedules its flush again
        assert await received(peer, 4) == b"next"


async def test_write_now_goes_out_at_once_after_what_was_held() -> None:
    async with connected() as (transport, peer):
        transport.write(b"held|")
        transport.write_now(b"now")
        assert transport.pending_bytes == 0
        assert peer.recv(100) == b"held|now"  # no loop turn needed
        assert transport.writes == 2
