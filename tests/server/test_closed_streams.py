"""What a connection remembers of its closed streams is bounded: h2 alone keeps 65,536 of
them, about 7.5 MiB a connection once as many calls have ended on it."""

import asyncio

import pytest

from muxs import Client, RunningServer, ServerSettings
from muxs._internals import h2_connection
from muxs.server.limits import LimitedServer, closed_streams_kept
from tests.polling import until


def test_a_connection_keeps_four_times_its_streams_at_least_512_at_most_h2s() -> None:
    assert closed_streams_kept(ServerSettings(max_concurrent_streams=100)) == 512
    assert closed_streams_kept(ServerSettings(max_concurrent_streams=1000)) == 4000
    assert closed_streams_kept(ServerSettings(max_concurrent_streams=2**31 - 1)) == 65536


@pytest.mark.parametrize("settings", [{"max_concurrent_streams": 8}], indirect=True)
async def test_a_busy_connection_remembers_at_most_its_latest_closed_streams(
    live_server: RunningServer,
) -> None:
    server = live_server.server
    assert isinstance(server, LimitedServer)
    async with Client(live_server.target) as client:
        for _ in range(10):
            await asyncio.gather(*(client.say_hello(str(n)) for n in range(64)))
        await until(lambda: len(server.connections) == 1)
        (protocol,) = server.connections
        h2_conn = h2_connection(protocol)
        assert h2_conn.open_inbound_streams == 0  # h2 files its closed streams as it counts
        assert len(h2_conn._closed_streams) == 512  # 640 calls ended
