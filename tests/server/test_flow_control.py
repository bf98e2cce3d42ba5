"""HTTP/2 flow control pauses a handler whose reader stalls: the server never buffers a stream.

The client here has the smallest window HTTP/2 allows (64 KiB, about 64 replies), so that
a server that kept producing would overshoot the bound at once. A stalled reader waits for
the call's deadline, which ends the call on the server (``CallProbe.finished``).
"""

import tracemalloc
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.config import Configuration

from muxs import Client, RunningServer
from tests.probe import COUNT, NAME, REPLY_BYTES, CallProbe, in_flight

WINDOW = 2**16 - 1


@pytest.fixture
async def small_window_client(live_server: RunningServer) -> AsyncIterator[Client]:
    config = Configuration(http2_stream_window_size=WINDOW, http2_connection_window_size=WINDOW)
    channel = Channel("127.0.0.1", live_server.port, config=config)
    async with Client(live_server.target, channel=channel) as client:
        yield client


@pytest.mark.parametrize("count", [COUNT // 10, COUNT])
async def test_a_stalled_reader_bounds_what_the_server_produces_and_holds(
    small_window_client: Client, probe: CallProbe, count: int
) -> None:
    tracemalloc.start()
    try:
        async with small_window_client.lots_of_replies(NAME, count, timeout=1) as replies:
            await anext(replies)
            # Stall: read nothing more. The server's deadline ends the call after 1 second,
            # in which an unpaused handler would produce thousands of replies.
            assert await probe.finished() == ["cancelled"]
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert probe.sent <= 1 + in_flight(WINDOW)
    # Memory follows the window, not the stream (10 MB or 100 MB of replies).
    assert peak < 2 * 2**20, f"{peak} bytes for a {count * REPLY_BYTES}-byte stream"
