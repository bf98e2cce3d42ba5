"""Client interceptors: around every call kind, in order, from the async and sync clients;
they add metadata, see the status and the duration, and retry a unary call."""

from __future__ import annotations

import asyncio
import time

import pytest

from muxs import (
    CallInfo,
    Client,
    ClientCall,
    Interceptor,
    Proceed,
    RpcError,
    RunningServer,
    StatusCode,
    SyncClient,
)
from tests.echo import EchoGreeter


class Recorder:
    """Adds ``x-by: name`` and records (method, kind, status, duration) of every call."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.seen: list[tuple[str, str, StatusCode | None, float]] = []

    async def __call__(self, call: ClientCall, proceed: Proceed) -> None:
        self.log.append(f"{self.name} in")
        call.metadata.append(("x-by", self.name))
        started = time.monotonic()
        try:
            await proceed(call)
        finally:
            duration = time.monotonic() - started
            self.seen.append((call.method, call.kind, call.info.status, duration))
            self.log.append(f"{self.name} out")


async def retry_unavailable(call: ClientCall, proceed: Proceed) -> None:
    """Retry a unary call refused with UNAVAILABLE, up to 3 attempts."""
    while True:
        try:
            await proceed(call)
            return
        except RpcError as exc:
            if call.kind != "unary" or exc.status is not StatusCode.UNAVAILABLE:
                raise
            if call.attempt >= 3:
                raise


async def test_interceptors_compose_in_order_and_add_metadata(echo_target: str) -> None:
    log: list[str] = []
    outer, inner = Recorder("outer", log), Recorder("inner", log)
    info = CallInfo()
    async with Client(echo_target, timeout=10, interceptors=[outer, inner]) as client:
        await client.say_hello("you", call_info=info)
    assert log == ["outer in", "inner in", "inner out", "outer out"]
    assert info.trailers.get_all("x-by") == ["outer", "inner"]
    method, kind, status, duration = outer.seen[0]
    assert (method, kind, status) == ("/muxs.Greeter/SayHello", "unary", StatusCode.OK)
    assert duration >= inner.seen[0][3] >= 0


async def test_an_interceptor_sees_a_failed_calls_status(echo_target: str) -> None:
    recorder = Recorder("r", [])
    async with Client(echo_target, timeout=10, interceptors=[recorder]) as client:
        with pytest.raises(RpcError) as caught:
            await client.square(-1)
    assert caught.value.status is StatusCode.INVALID_ARGUMENT
    assert recorder.seen[0][2] is StatusCode.INVALID_ARGUMENT


async def test_an_interceptor_retries_a_unary_call(
    echo_target: str, echo_greeter: EchoGreeter
) -> None:
    echo_greeter.unavailable = 2
    recorder = Recorder("r", [])
    interceptors: list[Interceptor] = [recorder, retry_unavailable]
    async with Client(echo_target, timeout=10, interceptors=interceptors) as client:
        assert (await client.square(4)).value == 4
    assert echo_greeter.calls == 3
    assert recorder.seen[0][2] is StatusCode.OK


async def test_retries_stop_where_the_interceptor_says(
    echo_target: str, echo_greeter: EchoGreeter
) -> None:
    echo_greeter.unavailable = 5
    async with Client(echo_target, timeout=10, interceptors=[retry_unavailable]) as client:
        with pytest.raises(RpcError) as caught:
            await client.square(4)
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert echo_greeter.calls == 3


async def test_a_server_stream_passes_through_interceptors_as_it_arrives(
    echo_target: str,
) -> None:
    log: list[str] = []
    recorder = Recorder("r", log)
    async with Client(echo_target, timeout=10, interceptors=[recorder]) as client:
        replies = client.lots_of_replies("x", 3)
        first = await anext(replies)
        assert first.index == 1
        assert log == ["r in"]  # the call is still running around the reply handed over
        assert [r.index async for r in replies] == [2, 3]
    assert log == ["r in", "r out"]
    assert recorder.seen[0][1:3] == ("server_stream", StatusCode.OK)


async def test_every_call_kind_goes_through_interceptors(live_server: RunningServer) -> None:
    recorder = Recorder("r", [])
    async with Client(live_server.target, timeout=10, interceptors=[recorder]) as client:
        await client.say_hello("a")
        assert [r.index async for r in client.lots_of_replies("a", 2)] == [1, 2]
        assert (await client.lots_of_greetings(["a", "b"])).message == "Hello, a and b!"
        async with client.bidi_hello(["a"]) as replies:
            assert [r.message async for r in replies] == ["Hello, a!"]
    kinds = [(kind, status) for _, kind, status, _ in recorder.seen]
    assert kinds == [
        ("unary", StatusCode.OK),
        ("server_stream", StatusCode.OK),
        ("client_stream", StatusCode.OK),
        ("bidi_stream", StatusCode.OK),
    ]


async def test_a_streaming_call_cannot_be_retried_after_its_replies_were_read(
    echo_target: str,
) -> None:
    async def twice(call: ClientCall, proceed: Proceed) -> None:
        await proceed(call)
        await proceed(call)

    async with Client(echo_target, timeout=10, interceptors=[twice]) as client:
        with pytest.raises(RuntimeError, match="cannot be retried"):
            [r async for r in client.lots_of_replies("x", 1)]


async def test_leaving_a_stream_early_cancels_the_interceptors_call(echo_target: str) -> None:
    recorder = Recorder("r", [])
    client = Client(echo_target, timeout=10, interceptors=[recorder])
    async with client, client.lots_of_replies("x", 1000) as replies:
        await anext(replies)
    assert recorder.seen[0][2] is StatusCode.CANCELLED


async def test_the_sync_client_runs_async_interceptors(echo_target: str) -> None:
    log: list[str] = []
    recorder = Recorder("r", log)
    info = CallInfo()

    def calls() -> None:  # in a thread: the server runs on this test's loop
        with SyncClient(echo_target, timeout=10, interceptors=[recorder]) as client:
            client.say_hello("you", call_info=info)
            assert [r.index for r in client.lots_of_replies("x", 2)] == [1, 2]

    await asyncio.to_thread(calls)
    assert info.trailers["x-by"] == "r"
    assert [kind for _, kind, _, _ in recorder.seen] == ["unary", "server_stream"]


async def test_a_request_stream_cannot_be_retried(live_server: RunningServer) -> None:
    async def retry_everything(call: ClientCall, proceed: Proceed) -> None:
        try:
            await proceed(call)
        except RpcError:
            await proceed(call)

    client = Client(live_server.target, timeout=10, interceptors=[retry_everything])
    async with client:
        with pytest.raises(RuntimeError, match="its requests were sent"):
            await client.write_chunks("/absolute", [b"x"])
