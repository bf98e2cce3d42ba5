"""Leaving ``muxs.serve`` drains: calls in flight get the grace period, then are cancelled."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import replace

import pytest
from google.rpc.error_details_pb2 import ErrorInfo, RetryInfo
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from muxs import Client, RpcError, RunningServer, ServerSettings, StatusCode, serve
from muxs.server.hooks import DRAIN_RETRY_SECONDS
from muxs.server.refusals import DRAINING
from tests.access import access_records


class Names:
    """A request stream the test feeds one name at a time."""

    def __init__(self) -> None:
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, name: str | None) -> None:
        self._outbox.put_nowait(name)

    async def __aiter__(self) -> AsyncIterator[str]:
        while (name := await self._outbox.get()) is not None:
            yield name


async def start_leaving(
    entered: AbstractAsyncContextManager[RunningServer], channel: Channel
) -> asyncio.Task[bool | None]:
    """Leave the ``serve`` block in a task; return once the drain has begun."""
    async with HealthStub(channel).Watch.open() as watch:
        await watch.send_message(HealthCheckRequest(service=""), end=True)
        assert await watch.recv_message() == HealthCheckResponse(status=HealthCheckResponse.SERVING)
        leaving = asyncio.create_task(entered.__aexit__(None, None, None))
        assert await watch.recv_message() == HealthCheckResponse(
            status=HealthCheckResponse.NOT_SERVING
        )
        await watch.cancel()
    return leaving


async def test_a_stream_in_flight_finishes_and_new_calls_are_refused(
    settings: ServerSettings,
) -> None:
    tasks_before = asyncio.all_tasks()
    entered = serve(settings=settings)
    running = await entered.__aenter__()
    channel = Channel("127.0.0.1", running.port)
    client = Client(running.target, channel=channel)
    names = Names()
    try:
        async with client.bidi_hello(names) as replies:
            names.send("early")
            assert (await anext(replies)).message == "Hello, early!"
            leaving = await start_leaving(entered, channel)
            with pytest.raises(RpcError) as refused:
                await client.say_hello("new")
            names.send("late")
            assert (await anext(replies)).message == "Hello, late!"
            assert not leaving.done()
            names.send(None)
            assert [reply async for reply in replies] == []
        await asyncio.wait_for(leaving, 10)
    finally:
        channel.close()
    assert refused.value.status is StatusCode.UNAVAILABLE
    assert refused.value.message == "the server is shutting down; retry on another server"
    retry = refused.value.detail(RetryInfo)
    assert retry is not None
    assert retry.retry_delay.ToTimedelta().total_seconds() == DRAIN_RETRY_SECONDS
    assert refused.value.detail(ErrorInfo) == DRAINING  # what clients retry transparently
    assert asyncio.all_tasks() == tasks_before


async def test_calls_still_running_after_the_grace_period_are_cancelled(
    settings: ServerSettings,
) -> None:
    names = Names()
    with access_records() as logs:
        async with (
            serve(settings=replace(settings, shutdown_grace=0)) as running,
            Client(running.target) as client,
        ):
            replies = client.bidi_hello(names)
            names.send("early")
            assert (await anext(replies)).message == "Hello, early!"
        with pytest.raises(RpcError) as cut:
            await anext(replies)
        logged = await logs.finished("/muxs.Greeter/BidiHello")
    assert cut.value.status is StatusCode.UNAVAILABLE
    assert logged["status"] == "CANCELLED"


async def test_hurry_cuts_the_grace_period_short(settings: ServerSettings) -> None:
    entered = serve(settings=replace(settings, shutdown_grace=3600))
    running = await entered.__aenter__()
    channel = Channel("127.0.0.1", running.port)
    names = Names()
    try:
        replies = Client(running.target, channel=channel).bidi_hello(names)
        names.send("early")
        assert (await anext(replies)).message == "Hello, early!"
        leaving = await start_leaving(entered, channel)
        running.lifecycle.hurry()
        await asyncio.wait_for(leaving, 10)
        with pytest.raises(RpcError) as cut:
            await anext(replies)
    finally:
        channel.close()
    assert cut.value.status is StatusCode.UNAVAILABLE


async def test_a_grpclib_clients_last_call_ends_intact_before_the_drain_retires_it(
    settings: ServerSettings,
) -> None:
    """A plain grpclib client fails every call it holds at a GOAWAY, even one whose trailers
    it read with it: the drain's first GOAWAY waits for a PING round trip after the last
    call's trailers (written with them, this call failed: "Connection lost")."""
    entered = serve(settings=settings)
    running = await entered.__aenter__()
    channel = Channel("127.0.0.1", running.port)  # grpclib's own, not the SDK's
    names = Names()
    try:
        async with Client(running.target, channel=channel).bidi_hello(names) as replies:
            names.send("early")
            assert (await anext(replies)).message == "Hello, early!"
            leaving = await start_leaving(entered, channel)
            names.send("late")
            names.send(None)  # the call ends: its trailers, then the connection's retirement
            assert [reply.message async for reply in replies] == ["Hello, late!"]
        await asyncio.wait_for(leaving, 10)
    finally:
        channel.close()
