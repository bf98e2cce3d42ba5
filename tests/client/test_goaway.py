"""A GOAWAY retires the SDK's connection: the calls below its last stream id finish, those
above it are sent again on a new connection (``muxs.channel``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded
from hyperframe.frame import GoAwayFrame

from muxs import Client, RpcError, StatusCode
from muxs.api import HelloReply, HelloRequest
from muxs.channel import AnsweringChannel
from tests.polling import until
from tests.rawh2 import grpc_frame


class _GoingAway:
    """A server of SayHello whose first connection, once ``calls`` requests have come, sends
    a GOAWAY (``code``) naming the first of them its last stream, then answers only that
    one (with ``answer_first``); every later connection answers each request."""

    def __init__(self, calls: int, code: ErrorCodes, *, answer_first: bool = True) -> None:
        #: 0: the GOAWAY (naming no stream) comes with the first connection's SETTINGS.
        self.calls = calls
        self.code = code
        self.answer_first = answer_first
        self.address = ""
        #: The names each connection answered, in order of connection.
        self.answered: list[list[str]] = []
        #: How many requests each connection received, in order of connection.
        self.received: list[int] = []
        #: Whether the client closed the first connection (its socket read to its end).
        self.first_closed_by_client = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered: list[str] = []
        self.answered.append(answered)
        connection = len(self.received)
        self.received.append(0)
        first = connection == 0
        h2 = H2Connection(H2Configuration(client_side=False))
        h2.initiate_connection()
        preface = h2.data_to_send()
        if first and not self.calls:  # in the same write: the client reads both at once
            preface += GoAwayFrame(0, last_stream_id=0, error_code=self.code).serialize()
        writer.write(preface)
        names: dict[int, str] = {}
        ended: list[int] = []
        try:
            while data := await reader.read(65536):
                for event in h2.receive_data(data):
                    if isinstance(event, RequestReceived):
                        names[event.stream_id] = ""
                        self.received[connection] += 1
                    elif isinstance(event, DataReceived):
                        h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        names[event.stream_id] = HelloRequest.parse(event.data[5:]).name
                    elif isinstance(event, StreamEnded):
                        ended.append(event.stream_id)
                if first and ended and len(ended) == self.calls:
                    # Written past h2, which would stop serving every stream after it.
                    last = ended[0]
                    writer.write(
                        GoAwayFrame(0, last_stream_id=last, error_code=self.code).serialize()
                    )
                    if self.answer_first:
                        self._answer(h2, last, names[last], answered)
                    ended.clear()
                elif not first:
                    for stream_id in ended:
                        self._answer(h2, stream_id, names[stream_id], answered)
                    ended.clear()
                writer.write(h2.data_to_send())
            self.first_closed_by_client = self.first_closed_by_client or first
        finally:
            writer.close()

    @staticmethod
    def _answer(h2: H2Connection, stream_id: int, name: str, answered: list[str]) -> None:
        answered.append(name)
        h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        h2.send_data(stream_id, grpc_frame(bytes(HelloReply(message=f"Hello, {name}!"))))
        h2.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)


async def _serving(server: _GoingAway) -> AsyncIterator[_GoingAway]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.address = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield server
        listener.close()


@pytest.fixture
async def going_away() -> AsyncIterator[_GoingAway]:
    async for server in _serving(_GoingAway(2, ErrorCodes.NO_ERROR)):
        yield server


async def test_the_call_below_the_goaway_finishes_and_the_one_above_goes_on_a_new_connection(
    going_away: _GoingAway,
) -> None:
    async with Client(going_away.address) as client:
        replies = await asyncio.gather(
            client.say_hello("ann", timeout=10), client.say_hello("bob", timeout=10)
        )
        assert [reply.message for reply in replies] == ["Hello, ann!", "Hello, bob!"]
        # The first connection served its call below the GOAWAY; the other was never
        # processed there, so it was sent again, on a second connection.
        assert sorted(going_away.answered[0] + going_away.answered[1]) == ["ann", "bob"]
        assert [len(names) for names in going_away.answered] == [1, 1]
        # Its last call ended: the client closed the retired connection.
        await until(lambda: going_away.first_closed_by_client)


@pytest.fixture
async def going_away_silent() -> AsyncIterator[_GoingAway]:
    async for server in _serving(_GoingAway(1, ErrorCodes.NO_ERROR, answer_first=False)):
        yield server


async def test_a_new_call_goes_on_a_new_connection_while_the_retired_one_drains(
    going_away_silent: _GoingAway,
) -> None:
    async with Client(going_away_silent.address) as client:
        waiting = asyncio.ensure_future(client.say_hello("ann", timeout=10))
        await until(lambda: len(going_away_silent.answered) == 1)
        channel = client._caller.channel
        assert isinstance(channel, AnsweringChannel)
        retired = channel._protocol
        assert retired is not None
        await until(lambda: not channel.reusable(retired))
        assert (await client.say_hello("bob", timeout=10)).message == "Hello, bob!"
        assert going_away_silent.answered == [[], ["bob"]]
        assert not waiting.done()  # still waiting for its reply on the retired connection
    # Closing the client closes the retired connection too: its call fails.
    with pytest.raises(RpcError) as failed:
        await waiting
    assert failed.value.status is StatusCode.UNAVAILABLE
    await until(lambda: going_away_silent.first_closed_by_client)


@pytest.fixture
async def going_away_in_error() -> AsyncIterator[_GoingAway]:
    async for server in _serving(_GoingAway(2, ErrorCodes.INTERNAL_ERROR, answer_first=False)):
        yield server


async def test_a_goaway_with_an_error_fails_the_calls_below_it_at_once(
    going_away_in_error: _GoingAway,
) -> None:
    async with Client(going_away_in_error.address) as client:
        results = await asyncio.gather(
            client.say_hello("ann", timeout=10),
            client.say_hello("bob", timeout=10),
            return_exceptions=True,
        )
    # The one above the last stream id was sent again and answered; the other failed.
    failed = [result for result in results if isinstance(result, RpcError)]
    assert [error.status for error in failed] == [StatusCode.UNAVAILABLE]
    assert not failed[0].unprocessed
    assert [len(names) for names in going_away_in_error.answered] == [0, 1]


@pytest.fixture
async def going_away_at_once() -> AsyncIterator[_GoingAway]:
    async for server in _serving(_GoingAway(0, ErrorCodes.NO_ERROR)):
        yield server


async def test_a_connection_retired_as_it_answers_is_not_used(
    going_away_at_once: _GoingAway,
) -> None:
    async with Client(going_away_at_once.address) as client:
        assert (await client.say_hello("ann", timeout=10)).message == "Hello, ann!"
    assert going_away_at_once.answered == [[], ["ann"]]  # sent again on a new connection
    assert going_away_at_once.received[0] == 0  # never sent on the retired one
