"""Client keepalive: a peer that stops answering is noticed by its unanswered ping."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import PingReceived

from muxs import Client, ConfigError, RpcError, StatusCode


class _SilentPeer:
    """An HTTP/2 server that sends its SETTINGS, then never writes again (a dead peer
    behind a NAT: the socket stays open, nothing answers); it counts the pings it gets."""

    def __init__(self) -> None:
        self.pings = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h2 = H2Connection(H2Configuration(client_side=False))
        h2.initiate_connection()
        writer.write(h2.data_to_send())
        while data := await reader.read(65536):
            self.pings += sum(isinstance(e, PingReceived) for e in h2.receive_data(data))
        writer.close()


@pytest.fixture
async def silent_peer() -> AsyncIterator[tuple[_SilentPeer, str]]:
    peer = _SilentPeer()
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    async with server:
        yield peer, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


async def test_a_call_to_a_peer_that_stops_answering_fails_at_the_unanswered_ping(
    silent_peer: tuple[_SilentPeer, str],
) -> None:
    peer, target = silent_peer
    async with Client(target, keepalive_time=0.05, keepalive_timeout=0.05) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann")  # no deadline: without keepalive, it waits forever
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert peer.pings >= 1


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"keepalive_time": 0}, "keepalive_time"),
        ({"keepalive_time": -1.0}, "keepalive_time"),
        ({"keepalive_timeout": 0}, "keepalive_timeout"),
    ],
)
def test_an_invalid_keepalive_is_refused(options: dict[str, float], option: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Client("127.0.0.1:1", **options)  # type: ignore[arg-type]
    assert refused.value.option == option
