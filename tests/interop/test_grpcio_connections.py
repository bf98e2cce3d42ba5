"""Connection management with grpcio clients: ``max_connection_age`` and the ping policy."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from muxs import RunningServer, ServerSettings
from muxs.server.limits import LimitedServer, _LimitedProtocol
from muxs.server.services.greeter import greeting
from tests.polling import until

ANY_STREAM = 2**31 - 1


@pytest.fixture
def settings(root_dir: Path, request: pytest.FixtureRequest) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, idle_timeout=0, **request.param)


class OpenCall:
    """A grpcio LotsOfGreetings call whose names are sent as the test puts them."""

    def __init__(self, channel: grpc.Channel, pb: tuple[Any, Any]) -> None:
        pb2, pb2_grpc = pb
        self._pb2 = pb2
        self._names: queue.Queue[str | None] = queue.Queue()
        stub = pb2_grpc.GreeterStub(channel)
        self.future = stub.LotsOfGreetings.future(self._requests())

    def _requests(self) -> Iterator[Any]:
        while (name := self._names.get()) is not None:
            yield self._pb2.HelloRequest(name=name)

    def send(self, name: str) -> None:
        self._names.put(name)

    def end(self) -> None:
        self._names.put(None)

    async def result(self) -> Any:
        return await asyncio.to_thread(self.future.result, 10)


def connections(server: RunningServer) -> set[_LimitedProtocol]:
    assert isinstance(server.server, LimitedServer)
    return server.server.connections


def only_connection(server: RunningServer) -> _LimitedProtocol:
    (connection,) = connections(server)
    return connection


def connection_count(server: RunningServer) -> int:
    return len(connections(server))


@pytest.mark.parametrize("settings", [{"max_connection_age": 0.3}], indirect=True)
async def test_a_call_in_flight_finishes_after_a_max_age_goaway(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    with grpc.insecure_channel(live_server.target) as channel:
        call = OpenCall(channel, pb)
        call.send("a")
        await until(lambda: connection_count(live_server) == 1)
        old = only_connection(live_server)
        await until(lambda: old.refuses_stream(ANY_STREAM))  # the final GOAWAY is sent
        call.end()
        assert (await call.result()).message == greeting(["a"])
        await until(lambda: old not in connections(live_server))
        again = OpenCall(channel, pb)  # a new call: on a new connection
        again.end()
        assert (await again.result()).message == greeting([])


@pytest.mark.parametrize(
    "settings", [{"max_connection_age": 0.3, "max_connection_age_grace": 0.3}], indirect=True
)
async def test_a_call_past_the_grace_fails_unavailable(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    with grpc.insecure_channel(live_server.target) as channel:
        call = OpenCall(channel, pb)
        call.send("a")
        with pytest.raises(grpc.RpcError) as raised:
            await call.result()
        call.end()
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("settings", [{"min_ping_interval": 0.5}], indirect=True)
async def test_a_compliant_keepalive_is_never_punished(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    options = [
        ("grpc.keepalive_time_ms", 750),  # at the allowed rate, with margin
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging while no data flows
    ]
    with grpc.insecure_channel(live_server.target, options=options) as channel:
        call = OpenCall(channel, pb)
        call.send("a")
        await until(lambda: connection_count(live_server) == 1)
        connection = only_connection(live_server)
        await until(lambda: connection.ping_policy.received >= 5, bound=30)
        assert connection.ping_policy.strikes == 0
        call.end()
        assert (await call.result()).message == greeting(["a"])
        assert only_connection(live_server) is connection
