"""What a call can make the server keep is capped, measured with tracemalloc (both ends run
in this process, so the figures include the client's side: the bounds leave room for it).

- LotsOfGreetings keeps the names it greets: no more than its reply may hold, which is one
  message (``max_message_bytes``, 64 KiB here). It kept every name (100 names of 4 MiB:
  422 MiB on one call).
- ReadStream reads the file ahead of what it sends by no more than the client's
  flow-control window lets it send: a stalled reader holds about one chunk on the server,
  not a 1 MiB read batch (300 stalled streams held 413 MiB).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality

from muxs import Client, RpcError, RunningServer, StatusCode
from muxs.api import Chunk, Files
from muxs.server.services.greeter import greeting
from tests.polling import until
from tests.probe import CallProbe
from tests.reliability.methods import LIMIT

pytestmark = pytest.mark.both_loops
MIB = 1024**2
READ_STREAM = "/muxs.FileController/ReadStream"
# greeting() adds "Hello, " and "!" to one name: this name makes a reply of exactly LIMIT.
REPLY_FRAMING = 1 + 3  # HelloReply's field tag and the varint length of a 64 KiB text


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


async def test_a_greeting_over_the_message_limit_is_resource_exhausted(
    live_server: RunningServer, traced: None
) -> None:
    names = 400  # of 60 KiB: 24 MiB, all of which the server used to keep

    async def big_names() -> AsyncIterator[str]:
        for number in range(names):
            yield f"{number:05}" + "x" * (60 * 1024)

    async with Client(live_server.target, timeout=60) as client:
        with pytest.raises(RpcError) as refused:
            await client.lots_of_greetings(big_names())
    assert refused.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.message == (
        f"the greeting would be larger than this server's {LIMIT}-byte message limit "
        "(max_message_bytes); send fewer or shorter names"
    )
    _, peak = tracemalloc.get_traced_memory()
    # At most the connection's 4 MiB window of unread names and the greeting's 64 KiB.
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB for {names * 60 / 1024:.0f} MiB of names"


async def test_a_greeting_of_exactly_the_message_limit_is_served(
    live_server: RunningServer,
) -> None:
    name = "y" * (LIMIT - REPLY_FRAMING - len(greeting([""])))
    async with Client(live_server.target, timeout=60) as client:
        assert (await client.lots_of_greetings([name])).message == greeting([name])
        with pytest.raises(RpcError) as refused:
            await client.lots_of_greetings([name + "y"])
        assert refused.value.status is StatusCode.RESOURCE_EXHAUSTED
        split = [name[:100], name[100 : -len(" and ")]]  # " and " joins two names
        assert (await client.lots_of_greetings(split)).message == greeting(split)


async def test_stalled_read_streams_hold_about_a_chunk_each(
    live_server: RunningServer, probe: CallProbe, traced: None
) -> None:
    streams = 30
    (live_server.root / "big.bin").write_bytes(b"z" * 4 * MIB)
    # The smallest stream window HTTP/2 allows, and a connection window that never stalls:
    # each stream is stopped by its own reader, which reads nothing.
    config = Configuration(
        http2_stream_window_size=2**16 - 1, http2_connection_window_size=2**31 - 1
    )
    channel = Channel("127.0.0.1", live_server.port, config=config)
    try:
        async with AsyncExitStack() as opened:
            stalled = [
                await opened.enter_async_context(
                    channel.request(READ_STREAM, Cardinality.UNARY_STREAM, Files, Chunk)
                )
                for _ in range(streams)
            ]
            for stream in stalled:
                await stream.send_message(Files(filename="big.bin"), end=True)
            # Every handler has read ahead and is waiting to send its first chunk.
            await until(lambda: probe.sent >= streams)
            held, _ = tracemalloc.get_traced_memory()
            for stream in stalled:
                await stream.cancel()
    finally:
        channel.close()
    per_stream = held / streams
    # A chunk is 64 KiB: the server holds it, its encoding and grpclib's copy; the client
    # buffers the window. A 1 MiB read batch per stream would be far over.
    assert per_stream < 512 * 1024, f"{per_stream / 1024:.0f} KiB held per stalled stream"
