"""Retries: transparent ones of calls the server never processed, and a ``RetryPolicy``'s."""

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.protocol import H2Protocol
from grpclib.server import Server
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import RequestReceived

from muxs import Client, ClientCall, Proceed, RetryPolicy, RpcError, StatusCode, SyncClient
from muxs.channel import AnsweringChannel
from muxs.client import parse_target
from muxs.errors import ConfigError
from muxs.server.codec import Codec
from muxs.server.refusals import draining, retry_after
from tests.client.conftest import CountingChannel
from tests.echo import EchoGreeter
from tests.polling import until


class _RefusedOnce(AnsweringChannel):
    """A channel whose first connection is refused, as by a server not yet listening."""

    refused = 0

    async def connect(self, connect: Callable[[], Awaitable[H2Protocol]]) -> H2Protocol:
        if not self.refused:
            self.refused += 1
            raise ConnectionRefusedError("connection refused")
        return await super().connect(connect)


async def _attempts_seen(call: ClientCall, proceed: Proceed, seen: list[int]) -> None:
    await proceed(call)
    seen.append(call.attempt)


async def test_a_connection_refused_then_accepted_is_retried_transparently(
    echo_target: str,
) -> None:
    host, port = parse_target(echo_target)
    channel = _RefusedOnce(host, port, ssl=None, connect_timeout=5)
    seen: list[int] = []

    async def interceptor(call: ClientCall, proceed: Proceed) -> None:
        await _attempts_seen(call, proceed, seen)

    async with Client(channel=channel, interceptors=[interceptor]) as client:
        reply = await client.say_hello("ann", timeout=10)
    assert reply.message == "Hello, ann!"
    assert channel.refused == 1
    assert seen == [1]  # below the interceptors: one attempt as they see it


async def test_a_connection_refused_twice_is_unavailable(closed_port: int) -> None:
    async with Client(f"127.0.0.1:{closed_port}") as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=10)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.unprocessed


class _Draining(EchoGreeter):
    """Refuses SayHello as a muxs drain does, ``refusals`` times."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def say_hello(self, stream):  # type: ignore[no-untyped-def]
        if self.refusals:
            self.refusals -= 1
            raise draining(0.001, "the server is shutting down; retry on another server")
        await super().say_hello(stream)


@pytest.mark.parametrize("echo_greeter", [_Draining(1)])
async def test_a_call_a_drain_refused_is_sent_again_once(
    echo_target: str, echo_greeter: _Draining
) -> None:
    async with Client(echo_target) as client:
        reply = await client.say_hello("ann", timeout=10)
    assert reply.message == "Hello, ann!"
    assert echo_greeter.refusals == 0


@pytest.mark.parametrize("echo_greeter", [_Draining(2)])
async def test_a_call_a_drain_refused_twice_is_unavailable(
    echo_target: str, echo_greeter: _Draining
) -> None:
    async with Client(echo_target) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=10)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.unprocessed
    assert echo_greeter.refusals == 0


async def test_a_handler_failure_is_not_retried_without_a_policy(
    echo_target: str, echo_greeter: EchoGreeter
) -> None:
    echo_greeter.unavailable = 1
    async with Client(echo_target) as client:
        with pytest.raises(RpcError) as failed:
            await client.square(4, timeout=10)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert not failed.value.unprocessed
    assert echo_greeter.calls == 1


@pytest.mark.parametrize(("failures", "calls"), [(2, 3), (5, 3)])
async def test_a_policy_retries_up_to_max_attempts(
    echo_target: str, echo_greeter: EchoGreeter, failures: int, calls: int
) -> None:
    echo_greeter.unavailable = failures
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001)
    async with Client(echo_target, retry_policy=policy) as client:
        if failures < calls:
            assert (await client.square(4, timeout=10)).value == 4
        else:
            with pytest.raises(RpcError) as failed:
                await client.square(4, timeout=10)
            assert failed.value.status is StatusCode.UNAVAILABLE
    assert echo_greeter.calls == calls


async def test_a_method_policy_overrides_the_clients(
    echo_target: str, echo_greeter: EchoGreeter
) -> None:
    echo_greeter.unavailable = 1
    policy = RetryPolicy(initial_backoff=0.001)
    async with Client(
        echo_target, retry_policy=policy, method_retry_policies={"/muxs.Greeter/Square": None}
    ) as client:
        with pytest.raises(RpcError) as failed:
            await client.square(4, timeout=10)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert echo_greeter.calls == 1


async def test_a_status_the_policy_does_not_name_is_not_retried(
    echo_target: str, echo_greeter: EchoGreeter
) -> None:
    policy = RetryPolicy(initial_backoff=0.001)
    async with Client(echo_target, retry_policy=policy) as client:
        with pytest.raises(RpcError) as failed:
            await client.square(-1, timeout=10)
    assert failed.value.status is StatusCode.INVALID_ARGUMENT
    assert echo_greeter.calls == 1


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"max_attempts": 1}, "max_attempts"),
        ({"initial_backoff": 0}, "initial_backoff"),
        ({"max_backoff": -1}, "max_backoff"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"retryable_status_codes": frozenset()}, "retryable_status_codes"),
        ({"retryable_status_codes": frozenset({StatusCode.OK})}, "retryable_status_codes"),
    ],
)
def test_an_invalid_policy_is_refused(options: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert refused.value.option == option


class _RefusingFront:
    """A TCP front of ``target`` whose first connection answers as a server that refuses
    the first request (``refusal``), and whose later connections it relays to ``target``."""

    def __init__(self, target: str, refusal: str) -> None:
        self.target = parse_target(target)
        self.refusal = refusal
        self.connections = 0
        self.refused = 0
        self.address = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections == 1:
                await self._refuse(reader, writer)
            else:
                await self._relay(reader, writer)
        finally:
            writer.close()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h2 = H2Connection(H2Configuration(client_side=False))
        h2.initiate_connection()
        writer.write(h2.data_to_send())
        while data := await reader.read(65536):
            for event in h2.receive_data(data):
                if isinstance(event, RequestReceived):
                    self.refused += 1
                    if self.refusal == "refused_stream":
                        h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                    else:  # the GOAWAY was on its way when the request was sent
                        last = event.stream_id if self.refusal == "goaway_at" else 0
                        h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=last)
                    writer.write(h2.data_to_send())
                    await writer.drain()
                    if self.refusal != "refused_stream":
                        return
            writer.write(h2.data_to_send())

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()


@pytest.fixture
async def front(echo_target: str, request: pytest.FixtureRequest) -> AsyncIterator[_RefusingFront]:
    front = _RefusingFront(echo_target, request.param)
    server = await asyncio.start_server(front.handle, "127.0.0.1", 0)
    front.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield front
        server.close()


@pytest.mark.parametrize("front", ["goaway_below"], indirect=True)
async def test_a_call_racing_an_idle_goaway_is_sent_again_on_a_fresh_connection(
    front: _RefusingFront, echo_greeter: EchoGreeter
) -> None:
    async with Client(front.address) as client:
        reply = await client.say_hello("ann", timeout=10)
    assert reply.message == "Hello, ann!"
    assert (front.connections, front.refused, echo_greeter.calls) == (2, 1, 1)


@pytest.mark.parametrize("front", ["refused_stream"], indirect=True)
async def test_a_refused_stream_is_sent_again_once(front: _RefusingFront) -> None:
    async with Client(front.address) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=10)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.unprocessed
    assert (front.connections, front.refused) == (1, 2)  # the connection stays open


@pytest.mark.parametrize("front", ["goaway_at"], indirect=True)
async def test_a_call_a_goaway_may_have_let_through_is_not_sent_again(
    front: _RefusingFront, echo_greeter: EchoGreeter
) -> None:
    async with Client(front.address) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=10)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert not failed.value.unprocessed
    assert front.connections == 1


@pytest.mark.parametrize("per_call", [False, True])
async def test_a_call_that_waits_for_ready_is_served_once_the_server_listens(
    unready: socket.socket, echo_greeter: EchoGreeter, per_call: bool
) -> None:
    channel = CountingChannel("127.0.0.1", unready.getsockname()[1], ssl=None, connect_timeout=5)

    async def wait_for_ready(call: ClientCall, proceed: Proceed) -> None:
        call.wait_for_ready = True
        await proceed(call)

    options = {"interceptors": [wait_for_ready]} if per_call else {"wait_for_ready": True}
    server = Server([echo_greeter], codec=Codec(), status_details_codec=ProtoStatusDetailsCodec())
    try:
        async with Client(channel=channel, **options) as client:
            call = asyncio.create_task(client.say_hello("ann", timeout=30))
            await until(lambda: channel.attempts >= 2)  # refused, then refused again
            assert not call.done()
            await server.start(sock=unready)
            assert (await call).message == "Hello, ann!"
    finally:  # after the client's connection closed: Python 3.12+ waits for it
        server.close()
        await server.wait_closed()


async def test_a_call_that_waits_for_ready_ends_at_its_deadline(closed_port: int) -> None:
    async with Client(f"127.0.0.1:{closed_port}", wait_for_ready=True) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=0.5)
    assert failed.value.status is StatusCode.DEADLINE_EXCEEDED
    assert "waiting for a connection" in failed.value.message


async def test_without_wait_for_ready_a_refused_connection_fails_at_once(
    closed_port: int,
) -> None:
    channel = CountingChannel("127.0.0.1", closed_port, ssl=None, connect_timeout=5)
    async with Client(channel=channel) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=30)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert channel.attempts == 2  # the first and its transparent retry


class _PushingBack(EchoGreeter):
    """Refuses SayHello with UNAVAILABLE and a ``RetryInfo`` of a minute, ``refusals`` times."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def say_hello(self, stream):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.refusals:
            self.refusals -= 1
            raise retry_after(60, StatusCode.UNAVAILABLE, "busy for a minute")
        await super().say_hello(stream)


@pytest.mark.parametrize("echo_greeter", [_PushingBack(1)])
async def test_a_policy_never_waits_past_the_deadline_for_the_servers_pushback(
    echo_target: str, echo_greeter: _PushingBack
) -> None:
    policy = RetryPolicy(initial_backoff=0.001)
    async with Client(echo_target, retry_policy=policy) as client:
        with pytest.raises(RpcError) as failed:
            await client.say_hello("ann", timeout=30)  # the pushback asks for 60 s
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.message == "busy for a minute"
    assert echo_greeter.calls == 1


async def test_the_sync_client_retries_by_its_policy(
    echo_target: str, echo_greeter: EchoGreeter
) -> None:
    echo_greeter.unavailable = 2
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001)

    def call() -> float:
        with SyncClient(echo_target, timeout=10, retry_policy=policy) as client:
            return client.square(9).value

    assert await asyncio.to_thread(call) == 9
    assert echo_greeter.calls == 3
