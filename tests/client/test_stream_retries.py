"""Retries of streaming calls (gRFC A6): sent again only while they are not committed.

A server stream is committed once the server's response headers arrive (a grpclib server
sends them with its first reply); a call that streams requests also once they outgrow the
bytes kept to send them again (``muxs.calls.RETRY_BUFFER_BYTES``).
"""

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from grpclib.const import Cardinality, Handler
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from muxs import Client, ClientCall, Proceed, RetryPolicy, RpcError, StatusCode, SyncClient
from muxs.api import HelloReply, HelloRequest
from muxs.calls import RETRY_BUFFER_BYTES
from muxs.server.codec import Codec
from muxs.server.refusals import draining, retry_after
from tests.client.conftest import CountingChannel
from tests.polling import until

POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.001)
KINDS = ["server_stream", "client_stream", "bidi_stream"]


class FlakyGreeter:
    """A Greeter whose streaming methods fail as told, counting their calls.

    ``refusals``: calls refused as a muxs drain does, before anything is read;
    ``failures``: calls that fail UNAVAILABLE once the requests are read, before a reply;
    ``failures_after_headers``: calls that send their headers, then fail UNAVAILABLE;
    ``failures_after_reply``: calls that send one reply, then fail UNAVAILABLE (BidiHello:
    when the next request arrives).
    Each call's request names are recorded in ``received``.
    """

    def __init__(self) -> None:
        self.refusals = 0
        self.failures = 0
        self.failures_after_headers = 0
        self.failures_after_reply = 0
        self.pushback = 0.0
        self.received: list[list[str]] = []

    @property
    def calls(self) -> int:
        return len(self.received)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/muxs.Greeter/LotsOfReplies": Handler(
                self.lots_of_replies, Cardinality.UNARY_STREAM, HelloRequest, HelloReply
            ),
            "/muxs.Greeter/LotsOfGreetings": Handler(
                self.lots_of_greetings, Cardinality.STREAM_UNARY, HelloRequest, HelloReply
            ),
            "/muxs.Greeter/BidiHello": Handler(
                self.bidi_hello, Cardinality.STREAM_STREAM, HelloRequest, HelloReply
            ),
        }

    async def _before_replies(self, stream: Stream[Any, Any], names: list[str]) -> None:
        self.received.append(names)
        if self.refusals:
            self.refusals -= 1
            raise draining(0.001, "the server is shutting down; retry on another server")
        if self.pushback:
            raise retry_after(self.pushback, StatusCode.UNAVAILABLE, "busy for a while")
        if self.failures:
            self.failures -= 1
            raise GRPCError(StatusCode.UNAVAILABLE, "flaky")
        if self.failures_after_headers:
            self.failures_after_headers -= 1
            await stream.send_initial_metadata()
            raise GRPCError(StatusCode.UNAVAILABLE, "flaky after the headers")

    async def _after_a_reply(self) -> None:
        if self.failures_after_reply:
            self.failures_after_reply -= 1
            raise GRPCError(StatusCode.UNAVAILABLE, "flaky after a reply")

    async def lots_of_replies(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await self._before_replies(stream, [request.name])
        for index in range(1, request.count + 1):
            await stream.send_message(HelloReply(message=request.name, index=index))
            await self._after_a_reply()

    async def lots_of_greetings(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        names = [request.name async for request in stream]
        await self._before_replies(stream, names)
        await stream.send_message(HelloReply(message=",".join(names)))

    async def bidi_hello(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        names: list[str] = []
        async for request in stream:
            names.append(request.name)
            if len(names) == 1:
                await self._before_replies(stream, names)
            else:  # a reply was sent: fail once the caller sends more
                await self._after_a_reply()
            await stream.send_message(HelloReply(message=request.name, index=len(names)))


@pytest.fixture
def greeter() -> FlakyGreeter:
    return FlakyGreeter()


def _server(greeter: FlakyGreeter) -> Server:
    return Server([greeter], codec=Codec(), status_details_codec=ProtoStatusDetailsCodec())


@pytest.fixture
async def target(greeter: FlakyGreeter) -> AsyncIterator[str]:
    server = _server(greeter)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        await server.start(sock=sock)
        try:
            yield f"127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.close()
            await server.wait_closed()


async def _call(
    client: Client, kind: str, names: list[str] | None = None, timeout: float = 10
) -> list[str]:
    """The reply messages of one call of ``kind`` (the names sent: ``names``)."""
    names = names or ["ann", "bob"]
    if kind == "server_stream":
        replies = client.lots_of_replies(names[0], count=2, timeout=timeout)
        return [reply.message async for reply in replies]
    if kind == "client_stream":
        return [(await client.lots_of_greetings(names, timeout=timeout)).message]
    return [reply.message async for reply in client.bidi_hello(names, timeout=timeout)]


EXPECTED = {
    "server_stream": (["ann", "ann"], ["ann"]),
    "client_stream": (["ann,bob"], ["ann", "bob"]),
    "bidi_stream": (["ann", "bob"], ["ann"]),
}
"""What each kind answers, and the names its handler has read when it fails."""


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("failures", "calls"), [(2, 3), (3, 3)])
async def test_a_policy_retries_a_stream_that_failed_before_its_headers(
    target: str, greeter: FlakyGreeter, kind: str, failures: int, calls: int
) -> None:
    greeter.failures = failures
    replies, read = EXPECTED[kind]
    async with Client(target, retry_policy=POLICY) as client:
        if failures < calls:
            assert await _call(client, kind) == replies
        else:
            with pytest.raises(RpcError) as failed:
                await _call(client, kind)
            assert failed.value.status is StatusCode.UNAVAILABLE
            assert failed.value.message == "flaky"
    assert greeter.calls == calls
    assert greeter.received[:failures] == [read] * min(failures, calls)  # sent again in full


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_is_not_retried_without_a_policy(
    target: str, greeter: FlakyGreeter, kind: str
) -> None:
    greeter.failures = 1
    async with Client(target) as client:
        with pytest.raises(RpcError) as failed:
            await _call(client, kind)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert not failed.value.unprocessed
    assert greeter.calls == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("refusals", "calls"), [(1, 2), (2, 2)])
async def test_a_stream_a_drain_refused_is_sent_again_once(
    target: str, greeter: FlakyGreeter, kind: str, refusals: int, calls: int
) -> None:
    greeter.refusals = refusals
    async with Client(target) as client:
        if refusals < calls:
            assert await _call(client, kind) == EXPECTED[kind][0]
        else:
            with pytest.raises(RpcError) as failed:
                await _call(client, kind)
            assert failed.value.status is StatusCode.UNAVAILABLE
            assert failed.value.unprocessed
    assert greeter.calls == calls


@pytest.mark.parametrize("kind", ["server_stream", "bidi_stream"])
async def test_a_stream_whose_reply_was_handed_over_is_committed(
    target: str, greeter: FlakyGreeter, kind: str
) -> None:
    greeter.failures_after_reply = 1
    received: list[str] = []
    handed = asyncio.Event()

    async def names() -> AsyncIterator[str]:
        yield "ann"
        await handed.wait()  # BidiHello fails at the next request
        yield "bob"

    async def read(client: Client) -> None:
        if kind == "server_stream":
            replies = client.lots_of_replies("ann", count=2, timeout=10)
        else:
            replies = client.bidi_hello(names(), timeout=10)
        async for reply in replies:
            received.append(reply.message)
            handed.set()

    async with Client(target, retry_policy=POLICY) as client:
        with pytest.raises(RpcError) as failed:
            await read(client)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.message == "flaky after a reply"
    assert received == ["ann"]
    assert greeter.calls == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_whose_headers_arrived_is_committed(
    target: str, greeter: FlakyGreeter, kind: str
) -> None:
    greeter.failures_after_headers = 1
    async with Client(target, retry_policy=POLICY) as client:
        with pytest.raises(RpcError) as failed:
            await _call(client, kind)
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.message == "flaky after the headers"
    assert greeter.calls == 1


@pytest.mark.parametrize("kind", ["client_stream", "bidi_stream"])
async def test_requests_past_the_retry_buffer_commit_the_call(
    target: str, greeter: FlakyGreeter, kind: str
) -> None:
    greeter.failures = 1
    async with Client(target, retry_policy=POLICY) as client:
        with pytest.raises(RpcError) as failed:
            await _call(client, kind, ["a" * RETRY_BUFFER_BYTES])  # its tag and length too
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.message == "flaky"
    assert greeter.calls == 1


async def test_a_request_stream_within_the_buffer_is_sent_again_in_full(
    target: str, greeter: FlakyGreeter
) -> None:
    greeter.failures = 1
    names = [f"{index}" * 1000 for index in range(10)]
    pulled = 0

    async def requests() -> AsyncIterator[str]:
        nonlocal pulled
        for name in names:
            pulled += 1
            yield name

    async with Client(target, retry_policy=POLICY) as client:
        reply = await client.lots_of_greetings(requests(), timeout=10)
    assert reply.message == ",".join(names)
    assert greeter.received == [names, names]
    assert pulled == len(names)  # the caller's iterator is read once


async def test_a_request_the_caller_is_still_producing_survives_a_retry(
    target: str, greeter: FlakyGreeter
) -> None:
    greeter.failures = 1
    more: asyncio.Queue[str | None] = asyncio.Queue()
    more.put_nowait("ann")

    async def names() -> AsyncIterator[str]:
        while (name := await more.get()) is not None:
            yield name

    async with Client(target, retry_policy=POLICY) as client:
        chat = client.bidi_hello(names(), timeout=10)
        first = asyncio.ensure_future(anext(chat))
        await until(lambda: greeter.calls == 2)  # failed, sent again, the iterator waiting
        more.put_nowait("bob")
        assert (await first).message == "ann"
        more.put_nowait(None)
        assert [reply.message async for reply in chat] == ["bob"]
    assert greeter.received == [["ann"], ["ann", "bob"]]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_retry_never_waits_past_the_deadline(
    target: str, greeter: FlakyGreeter, kind: str
) -> None:
    greeter.pushback = 60
    async with Client(target, retry_policy=POLICY) as client:
        with pytest.raises(RpcError) as failed:
            await _call(client, kind)  # a deadline of 10 s; the pushback asks for 60 s
    assert failed.value.status is StatusCode.UNAVAILABLE
    assert failed.value.message == "busy for a while"
    assert greeter.calls == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_interceptors_see_one_attempt_of_a_retried_stream(
    target: str, greeter: FlakyGreeter, kind: str
) -> None:
    greeter.failures = 1
    seen: list[int] = []

    async def interceptor(call: ClientCall, proceed: Proceed) -> None:
        await proceed(call)
        seen.append(call.attempt)

    async with Client(target, retry_policy=POLICY, interceptors=[interceptor]) as client:
        assert await _call(client, kind) == EXPECTED[kind][0]
    assert seen == [1]
    assert greeter.calls == 2


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_that_waits_for_ready_is_served_once_the_server_listens(
    unready: socket.socket, greeter: FlakyGreeter, kind: str
) -> None:
    channel = CountingChannel("127.0.0.1", unready.getsockname()[1], ssl=None, connect_timeout=5)
    server = _server(greeter)
    try:
        async with Client(channel=channel, wait_for_ready=True) as client:
            call = asyncio.ensure_future(_call(client, kind))
            await until(lambda: channel.attempts >= 2)  # refused, then refused again
            assert not call.done()
            await server.start(sock=unready)
            assert await call == EXPECTED[kind][0]
    finally:  # after the client's connection closed: Python 3.12+ waits for it
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_that_waits_for_ready_ends_at_its_deadline(
    closed_port: int, kind: str
) -> None:
    async with Client(f"127.0.0.1:{closed_port}", wait_for_ready=True) as client:
        with pytest.raises(RpcError) as failed:
            await _call(client, kind, timeout=0.5)
    assert failed.value.status is StatusCode.DEADLINE_EXCEEDED
    assert "waiting for a connection" in failed.value.message


async def test_the_sync_client_retries_a_request_stream_from_a_generator(
    target: str, greeter: FlakyGreeter
) -> None:
    greeter.failures = 1
    pulled: list[str] = []

    def names() -> Iterator[str]:
        for name in ["ann", "bob"]:
            pulled.append(name)
            yield name

    def call() -> str:
        with SyncClient(target, timeout=10, retry_policy=POLICY) as client:
            return client.lots_of_greetings(names()).message

    assert await asyncio.to_thread(call) == "ann,bob"
    assert greeter.received == [["ann", "bob"], ["ann", "bob"]]
    assert pulled == ["ann", "bob"]
