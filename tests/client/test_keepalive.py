"""Client keepalive: a peer that stops answering is noticed by its unanswered ping."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpclib.protocol
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import PingReceived

from muxs import Client, ConfigError, RpcError, RunningServer, ServerSettings, StatusCode
from muxs.server.limits import LimitedServer, _LimitedProtocol
from muxs.server.pings import MAX_STRIKES
from tests.polling import until


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


@pytest.fixture
def settings(root_dir: Path, request: pytest.FixtureRequest) -> ServerSettings:
    # Pings with no call open are struck unless the server permits them (param).
    return ServerSettings(
        host="127.0.0.1",
        port=0,
        root=root_dir,
        min_ping_interval=0.01,
        keepalive_permit_without_calls=request.param,
    )


@pytest.fixture
def keepalive_timers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the firings of every client connection's keepalive timer (one item each)."""
    fired: list[int] = []
    ping = grpclib.protocol.Connection._ping

    def counted(self: grpclib.protocol.Connection) -> None:
        fired.append(1)
        ping(self)

    monkeypatch.setattr(grpclib.protocol.Connection, "_ping", counted)
    return fired


def connections(server: RunningServer) -> set[_LimitedProtocol]:
    assert isinstance(server.server, LimitedServer)
    return server.server.connections


def only_connection(server: RunningServer) -> _LimitedProtocol:
    (connection,) = connections(server)
    return connection


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_by_default_the_client_pings_only_while_a_call_is_open(
    live_server: RunningServer, keepalive_timers: list[int]
) -> None:
    async with Client(live_server.target, keepalive_time=0.02) as client:
        names: asyncio.Queue[str | None] = asyncio.Queue()

        async def queued() -> AsyncIterator[str]:
            while (name := await names.get()) is not None:
                yield name

        call = asyncio.ensure_future(client.lots_of_greetings(queued()))
        names.put_nowait("a")
        await until(lambda: len(connections(live_server)) == 1)
        connection = only_connection(live_server)
        await until(lambda: connection.ping_policy.received >= 3)  # a call is open: pings
        names.put_nowait(None)
        await call
        received = connection.ping_policy.received
        fired = len(keepalive_timers)
        await until(lambda: len(keepalive_timers) >= fired + 5)  # idle: no ping
        assert (await client.say_hello("b")).message == "Hello, b!"  # read after the pings
        assert connection.ping_policy.received <= received + 1  # one, if during this call
        assert connection.ping_policy.strikes == 0
        assert only_connection(live_server) is connection


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_pinging_without_calls_unpermitted_gets_goaway_enhance_your_calm(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(
        live_server.target, keepalive_time=0.02, keepalive_permit_without_calls=True
    ) as client:
        assert (await client.say_hello("a")).message == "Hello, a!"
        connection = only_connection(live_server)
        await until(lambda: connection not in connections(live_server))
        await until(lambda: "GOAWAY ENHANCE_YOUR_CALM 'too_many_pings'" in caplog.text)
        assert connection.ping_policy.strikes == MAX_STRIKES + 1
        assert (await client.say_hello("b")).message == "Hello, b!"  # on a new connection


@pytest.mark.parametrize("settings", [True], indirect=True)
async def test_pinging_without_calls_permitted_is_never_struck(
    live_server: RunningServer,
) -> None:
    async with Client(
        live_server.target, keepalive_time=0.05, keepalive_permit_without_calls=True
    ) as client:
        assert (await client.say_hello("a")).message == "Hello, a!"
        connection = only_connection(live_server)
        await until(lambda: connection.ping_policy.received >= 5)
        assert connection.ping_policy.strikes == 0
        assert (await client.say_hello("b")).message == "Hello, b!"
        assert only_connection(live_server) is connection
