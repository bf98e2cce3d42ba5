"""A connection lost while calls wait to write on it: each fails UNAVAILABLE at once.

The server reads nothing, so the client's transport pauses writing; then the connection is
lost (a server killed mid-call). grpclib cancels the calls it had opened, but a call still
waiting to open its stream, or sending its requests from a task of its own, waited for ever
for a ``write_ready`` that never comes (``tests/reliability/test_faults.py``'s SIGKILL test
hung on it once). ``muxs._internals.wake_writers`` wakes them.
"""

from __future__ import annotations

import asyncio

from muxs import Client, RpcError, StatusCode
from muxs.channel import AnsweringChannel
from tests.polling import until
from tests.rawframes import SETTINGS, frame, window_update
from tests.rawh2 import WAIT

LARGEST_WINDOW = 2**31 - 1
#: More than the kernel's buffers on both ends of a loopback connection hold.
LARGE = "x" * (48 * 2**20)


async def test_a_call_waiting_to_open_its_stream_on_a_lost_connection_fails_unavailable() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The largest windows, so that only the socket holds the client back; then nothing
        # is read (the reader stops reading at its limit).
        settings = (4).to_bytes(2, "big") + LARGEST_WINDOW.to_bytes(4, "big")
        writer.write(frame(SETTINGS, 0, 0, settings) + window_update(0, LARGEST_WINDOW - 65535))
        connections.append(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with Client(f"127.0.0.1:{port}") as client:
        first = asyncio.ensure_future(client.say_hello(LARGE))
        channel = client._caller.channel
        assert isinstance(channel, AnsweringChannel)
        await until(lambda: channel._protocol is not None)
        protocol = channel._protocol
        assert protocol is not None
        write_ready = protocol.processor.connection.write_ready
        await until(lambda: not write_ready.is_set(), bound=WAIT)  # the first waits to write
        second = asyncio.ensure_future(client.say_hello("bob"))
        # Both wait to write (asyncio's Event keeps its waiters in _waiters).
        await until(lambda: len(write_ready._waiters) == 2)
        assert not second.done()
        server.close()  # a retry finds nobody
        (connection,) = connections
        connection.transport.abort()  # a TCP reset: the server is gone
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        assert isinstance(result, RpcError), result
        assert result.status is StatusCode.UNAVAILABLE
