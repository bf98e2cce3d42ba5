"""The server stops a handler when its call ends early: deadline, cancel or disconnect.

A ``CallProbe`` (tests/probe.py) counts what the server's handler produced and how it
ended; the calls run over a real socket. Every test also checks that no task is left.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.config import Configuration

from muxs import Client, HelloReply, RpcError, RunningServer, StatusCode
from tests.probe import COUNT, NAME, CallProbe, in_flight, read_all

IN_FLIGHT = in_flight(Configuration().http2_stream_window_size)  # grpclib's default window


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


@pytest.fixture
async def no_task_left(live_server: RunningServer) -> AsyncIterator[None]:
    """Fail if a test leaves a task running in the server's event loop."""
    before = other_tasks()
    yield
    assert other_tasks() == before


class Outbox:
    """Names for a request stream, released one at a time by the test."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, name: str | None) -> None:
        await self._queue.put(name)

    async def names(self) -> AsyncIterator[str]:
        while (name := await self._queue.get()) is not None:
            yield name


@pytest.mark.usefixtures("no_task_left")
async def test_the_deadline_stops_a_streaming_handler(
    live_server: RunningServer, probe: CallProbe
) -> None:
    received: list[HelloReply] = []
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await read_all(client.lots_of_replies(NAME, COUNT, timeout=0.5), into=received)
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert await probe.finished() == ["cancelled"]
    # Nothing more was produced than what was in flight when the deadline passed.
    assert len(received) <= probe.sent <= len(received) + IN_FLIGHT
    assert probe.sent < COUNT


@pytest.mark.usefixtures("no_task_left")
async def test_the_deadline_stops_a_stream_that_never_waits_for_flow_control(
    live_server: RunningServer, probe: CallProbe
) -> None:
    # Small replies to a reader that keeps up: the handler never has to wait, so only the
    # server's yielding to the event loop lets the deadline fire.
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await read_all(client.lots_of_replies("you", COUNT, timeout=0.5))
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert await probe.finished() == ["cancelled"]
    assert probe.sent < COUNT


async def test_a_long_stream_does_not_hold_up_other_calls(live_server: RunningServer) -> None:
    async with (
        Client(live_server.target) as streaming,
        Client(live_server.target) as other,
        streaming.lots_of_replies("you", COUNT) as replies,
    ):
        await anext(replies)
        reader = asyncio.create_task(read_all(replies))
        for _ in range(3):
            assert (await other.say_hello("meanwhile")).message == "Hello, meanwhile!"
        assert not reader.done()  # answered while the stream still ran, not after it
        reader.cancel()
        await asyncio.wait({reader})


@pytest.mark.usefixtures("no_task_left")
async def test_the_server_honours_the_client_deadline_by_itself(
    live_server: RunningServer, probe: CallProbe
) -> None:
    async with (
        Client(live_server.target) as client,
        client.lots_of_replies(NAME, COUNT, timeout=0.5) as replies,
    ):
        await anext(replies)
        # The client stays idle (it sends no cancel): the server's own deadline, from the
        # grpc-timeout header, ends the handler.
        assert await probe.finished() == ["cancelled"]
        with pytest.raises(RpcError) as caught:
            await anext(replies)
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert probe.sent <= 1 + IN_FLIGHT


@pytest.mark.usefixtures("no_task_left")
async def test_the_deadline_ends_a_client_stream_whose_requests_stall(
    live_server: RunningServer, probe: CallProbe
) -> None:
    outbox = Outbox()
    await outbox.send("a")
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.lots_of_greetings(outbox.names(), timeout=0.3)
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert await probe.finished() == ["cancelled"]


@pytest.mark.usefixtures("no_task_left")
async def test_the_deadline_ends_a_bidi_call_mid_conversation(
    live_server: RunningServer, probe: CallProbe
) -> None:
    outbox = Outbox()
    async with (
        Client(live_server.target) as client,
        client.bidi_hello(outbox.names(), timeout=0.3) as replies,
    ):
        await outbox.send("a")
        assert (await anext(replies)).message == "Hello, a!"
        with pytest.raises(RpcError) as caught:
            await anext(replies)  # no next name comes
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert await probe.finished() == ["cancelled"]


@pytest.mark.usefixtures("no_task_left")
async def test_leaving_a_reply_stream_early_cancels_the_handler(
    live_server: RunningServer, probe: CallProbe
) -> None:
    async with Client(live_server.target) as client:
        async with client.lots_of_replies(NAME, COUNT) as replies:
            assert [(await anext(replies)).index for _ in range(3)] == [1, 2, 3]
        assert await probe.finished() == ["cancelled"]
        assert probe.sent <= 3 + IN_FLIGHT
        # The connection is still good for other calls.
        assert (await client.say_hello("again")).message == "Hello, again!"
        await probe.finished()


@pytest.mark.usefixtures("no_task_left")
async def test_closing_a_bidi_call_mid_conversation_cancels_the_handler(
    live_server: RunningServer, probe: CallProbe
) -> None:
    outbox = Outbox()
    async with Client(live_server.target) as client:
        replies = client.bidi_hello(outbox.names())
        await outbox.send("a")
        assert (await anext(replies)).message == "Hello, a!"
        await replies.aclose()
        assert await probe.finished() == ["cancelled"]


@pytest.mark.usefixtures("no_task_left")
async def test_cancelling_a_client_stream_cancels_the_handler(
    live_server: RunningServer, probe: CallProbe
) -> None:
    outbox = Outbox()
    await outbox.send("a")
    async with Client(live_server.target) as client:
        call = asyncio.create_task(client.lots_of_greetings(outbox.names()))
        await probe.started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await probe.finished() == ["cancelled"]


@pytest.mark.usefixtures("no_task_left")
async def test_a_client_that_disconnects_mid_stream_cancels_the_handler(
    live_server: RunningServer, probe: CallProbe
) -> None:
    client = Client(live_server.target)
    replies = client.lots_of_replies(NAME, COUNT)
    await anext(replies)
    client.close()  # the connection goes away with the call in flight
    assert await probe.finished() == ["cancelled"]
    assert probe.sent <= 1 + IN_FLIGHT
    with pytest.raises(RpcError) as caught:
        await anext(replies)
    assert caught.value.status is StatusCode.UNAVAILABLE
    await replies.aclose()
