"""Connection management with grpcio clients: ``max_connection_age`` and the ping policy."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from muxs import Client, RunningServer, ServerSettings
from muxs.channel import AnsweringChannel
from muxs.server.limits import LimitedServer, _LimitedProtocol
from muxs.server.pings import MAX_STRIKES
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


@pytest.fixture
def aging_grpcio_server(pb: tuple[Any, Any]) -> Iterator[str]:
    """A grpcio server whose connections are retired after 0.3 s (its calls get 30 s)."""
    pb2, pb2_grpc = pb

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def SayHello(self, request: Any, context: Any) -> Any:
            return pb2.HelloReply(message=f"Hello, {request.name}!")

        def LotsOfGreetings(self, request_iterator: Iterator[Any], context: Any) -> Any:
            return pb2.HelloReply(message=" ".join(r.name for r in request_iterator))

    options = [("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 30_000)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


async def test_an_sdk_call_in_flight_finishes_across_a_grpcio_servers_max_age(
    aging_grpcio_server: str,
) -> None:
    names: asyncio.Queue[str | None] = asyncio.Queue()

    async def queued() -> AsyncIterator[str]:
        while (name := await names.get()) is not None:
            yield name

    async with Client(aging_grpcio_server) as client:
        call = asyncio.ensure_future(client.lots_of_greetings(queued()))
        names.put_nowait("a")
        channel = client._caller.channel
        assert isinstance(channel, AnsweringChannel)
        await until(lambda: channel._protocol is not None)
        retired = channel._protocol
        assert retired is not None
        await until(lambda: not channel.reusable(retired))  # grpcio's GOAWAY came
        assert (await client.say_hello("b")).message == "Hello, b!"  # on a new connection
        assert channel._protocol is not retired
        names.put_nowait("c")
        names.put_nowait(None)
        assert (await call).message == "a c"


#: A grpcio keepalive far faster than the policies below allow: a ping every 100 ms, with or
#: without data (grpc core then paces them about a second apart).
FAST_KEEPALIVE = [("grpc.keepalive_time_ms", 100), ("grpc.http2.max_pings_without_data", 0)]
#: What grpc core logs when a server answers its pings with GOAWAY ENHANCE_YOUR_CALM.
GRPC_TOO_MANY_PINGS = (
    'Received a GOAWAY with error code ENHANCE_YOUR_CALM and debug data equal to "too_many_pings"'
)


@pytest.mark.parametrize("settings", [{"min_ping_interval": 5.0}], indirect=True)
async def test_a_grpcio_keepalive_faster_than_the_policy_gets_too_many_pings(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    with grpc.insecure_channel(live_server.target, options=FAST_KEEPALIVE) as channel:
        call = OpenCall(channel, pb)
        call.send("a")
        await until(lambda: connection_count(live_server) == 1)
        connection = only_connection(live_server)
        await until(lambda: connection not in connections(live_server))
        call.end()
        with pytest.raises(grpc.RpcError) as raised:
            await call.result()
        # What grpcio surfaces: its call in flight ends UNAVAILABLE, naming the GOAWAY.
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Error code: 11; Debug Text: too_many_pings" in str(raised.value.details())
        assert connection.ping_policy.strikes == MAX_STRIKES + 1


@pytest.mark.parametrize("settings", [{"min_ping_interval": 0.5}], indirect=True)
async def test_a_grpcio_keepalive_without_calls_unpermitted_gets_too_many_pings(
    live_server: RunningServer, pb: tuple[Any, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    options = [*FAST_KEEPALIVE, ("grpc.keepalive_permit_without_calls", 1)]
    with grpc.insecure_channel(live_server.target, options=options) as channel:
        OpenCall(channel, pb).end()
        await until(lambda: connection_count(live_server) == 1)
        connection = only_connection(live_server)
        await until(lambda: connection not in connections(live_server))
        assert connection.ping_policy.strikes == MAX_STRIKES + 1
        # What grpcio surfaces with no call open: grpc core's log (and slower keepalives).
        logged = ""

        def grpc_logged_too_many_pings() -> bool:
            nonlocal logged
            logged += capfd.readouterr().err
            return GRPC_TOO_MANY_PINGS in logged

        await until(grpc_logged_too_many_pings)


@pytest.mark.parametrize(
    "settings",
    [{"min_ping_interval": 0.5, "keepalive_permit_without_calls": True}],
    indirect=True,
)
async def test_a_grpcio_keepalive_without_calls_permitted_is_never_struck(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    options = [("grpc.keepalive_time_ms", 750), ("grpc.keepalive_permit_without_calls", 1)]
    options.append(("grpc.http2.max_pings_without_data", 0))
    with grpc.insecure_channel(live_server.target, options=options) as channel:
        OpenCall(channel, pb).end()
        await until(lambda: connection_count(live_server) == 1)
        connection = only_connection(live_server)
        await until(lambda: connection.ping_policy.received >= 4, bound=30)
        assert connection.ping_policy.strikes == 0
        again = OpenCall(channel, pb)
        again.end()
        assert (await again.result()).message == greeting([])
        assert only_connection(live_server) is connection


def grpcio_calls_back_to_back(channel: grpc.Channel, pb: tuple[Any, Any], calls: int) -> int:
    """SayHello ``calls`` times, then LotsOfReplies and a BidiHello of ``calls`` messages,
    each after the last: the replies counted."""
    pb2, pb2_grpc = pb
    stub = pb2_grpc.GreeterStub(channel)
    request = pb2.HelloRequest(name="bob")
    replies = sum(1 for _ in range(calls) if stub.SayHello(request, timeout=10).message)
    replies += sum(1 for _ in range(calls // 10) for _ in stub.LotsOfReplies(request, timeout=10))
    names = (pb2.HelloRequest(name=str(index)) for index in range(calls))
    return replies + sum(1 for _ in stub.BidiHello(names, timeout=10))


@pytest.mark.parametrize("settings", [{"control_frame_budget": 20}], indirect=True)
async def test_a_grpcio_client_calling_back_to_back_stays_within_the_control_budget(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    """grpcio updates its windows as each reply comes (two frames a unary call, one a bidi
    reply): what the server sends earns them, so a busy client is never told to calm down."""
    with grpc.insecure_channel(live_server.target) as channel:
        first = await asyncio.to_thread(grpcio_calls_back_to_back, channel, pb, 1)
        connection = only_connection(live_server)
        replies = await asyncio.to_thread(grpcio_calls_back_to_back, channel, pb, 300)
        assert only_connection(live_server) is connection  # never sent a GOAWAY
    assert (first, replies) == (1 + 0 + 1, 300 + 30 * 10 + 300)
