"""Interop with the official gRPC implementation, both ways."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from muxs import Client, RpcError, RunningServer, ServerSettings, StatusCode, SyncClient, serve
from muxs.server.limits import LimitedServer
from muxs.server.services.greeter import greeting
from tests.polling import until
from tests.probe import COUNT, NAME, CallProbe


def seed_client(target: str, pb2: Any, pb2_grpc: Any) -> list[str]:
    """The reference's client code, as written there (printing into a list)."""
    lines = []
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.GreeterStub(channel)
        response = stub.SayHello(pb2.HelloRequest(name="you"))
        lines.append("Greeter client received: " + response.message)
        res = stub.Square(pb2.Number(value=231))
        lines.append("client Square 231 get :" + str(res.value))
        stub2 = pb2_grpc.FileControllerStub(channel)
        res3 = stub2.Write(pb2.Files(filename="aaaa2.txt", text="37183714ghgjh243"))
        lines.append("File Write: " + str(res3.code))
        res2 = stub2.Read(pb2.Files(filename="aaaa2.txt", text=""))
        lines.append("File Read: " + res2.text)
    return lines


async def test_the_reference_client_works_against_muxs(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    lines = await asyncio.to_thread(seed_client, live_server.target, *pb)
    assert lines == [
        "Greeter client received: Hello, you!",
        "client Square 231 get :15.198683738708496",
        "File Write: 0",
        "File Read: 37183714ghgjh243",
    ]


def grpcio_call(target: str, method: str, request: Any, pb2_grpc: Any, stub: str) -> Any:
    with grpc.insecure_channel(target) as channel:
        return getattr(getattr(pb2_grpc, stub)(channel), method)(request)


@pytest.mark.parametrize(
    ("stub", "method", "request_fields", "code"),
    [
        ("GreeterStub", "Square", ("Number", {"value": -1.0}), grpc.StatusCode.INVALID_ARGUMENT),
        ("FileControllerStub", "Read", ("Files", {"filename": "nope"}), grpc.StatusCode.NOT_FOUND),
        (
            "FileControllerStub",
            "Write",
            ("Files", {"filename": "../x", "text": "y"}),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ],
)
async def test_grpcio_clients_see_muxs_status_codes(
    live_server: RunningServer,
    pb: tuple[Any, Any],
    stub: str,
    method: str,
    request_fields: tuple[str, dict[str, Any]],
    code: grpc.StatusCode,
) -> None:
    pb2, pb2_grpc = pb
    message, fields = request_fields
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.to_thread(
            grpcio_call, live_server.target, method, getattr(pb2, message)(**fields), pb2_grpc, stub
        )
    assert caught.value.code() == code


@pytest.fixture
def grpcio_server(pb: tuple[Any, Any], tmp_path: Path) -> Iterator[str]:
    """The reference's server design (grpcio, thread pool), confined to a temp directory."""
    pb2, pb2_grpc = pb

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def SayHello(self, request: Any, context: Any) -> Any:
            return pb2.HelloReply(message=f"Hello, {request.name}!")

        def Square(self, request: Any, context: Any) -> Any:
            return pb2.Number(value=math.sqrt(request.value))

        def LotsOfReplies(self, request: Any, context: Any) -> Iterator[Any]:
            for index in range(1, (request.count or 10) + 1):
                yield pb2.HelloReply(message=f"Hello, {request.name}!", index=index)

        def LotsOfGreetings(self, request_iterator: Iterator[Any], context: Any) -> Any:
            return pb2.HelloReply(message=greeting([request.name for request in request_iterator]))

        def BidiHello(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
            for index, request in enumerate(request_iterator, 1):
                yield pb2.HelloReply(message=f"Hello, {request.name}!", index=index)

    class FileController(pb2_grpc.FileControllerServicer):  # type: ignore[misc,name-defined]
        def Read(self, request: Any, context: Any) -> Any:
            path = tmp_path / request.filename
            if not path.exists():
                context.abort(grpc.StatusCode.NOT_FOUND, f"{request.filename} does not exist")
            return pb2.Content(text=path.read_text())

        def Write(self, request: Any, context: Any) -> Any:
            (tmp_path / request.filename).write_text(request.text)
            return pb2.Status(code=0)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    pb2_grpc.add_FileControllerServicer_to_server(FileController(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


async def test_the_sdk_works_against_a_grpcio_server(grpcio_server: str) -> None:
    async with Client(grpcio_server) as client:
        assert (await client.say_hello("you")).message == "Hello, you!"
        assert (await client.square(231)).value == 15.198683738708496
        assert (await client.write("aaaa2.txt", "37183714ghgjh243")).code == 0
        assert (await client.read("aaaa2.txt")).text == "37183714ghgjh243"
        with pytest.raises(RpcError) as caught:
            await client.read("aaaa.txt")
    assert caught.value.status is StatusCode.NOT_FOUND
    assert caught.value.message == "aaaa.txt does not exist"


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_the_sdk_reads_a_grpcio_bidi_call_that_ends_before_its_requests_do(
    pb: tuple[Any, Any], event_loop: str
) -> None:
    """grpcio's server ends a BidiHello that returns early with its trailers and a
    RST_STREAM NO_ERROR; the SDK keeps the replies and the status, and stops sending."""
    pb2, pb2_grpc = pb

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def BidiHello(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
            name = next(request_iterator).name
            yield pb2.HelloReply(message=f"Hello, {name}!", index=1)
            yield pb2.HelloReply(message=f"Bye, {name}!", index=2)

    def names() -> Iterator[str]:
        yield "ann"
        while True:  # more than any window: sending must stop once the call has ended
            yield "x" * 1000

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with SyncClient(f"127.0.0.1:{port}", timeout=10, event_loop=event_loop) as client:
            replies = [(reply.message, reply.index) for reply in client.bidi_hello(names())]
    finally:
        server.stop(grace=None)
    assert replies == [("Hello, ann!", 1), ("Bye, ann!", 2)]


# The streaming calls, both ways.


def grpcio_streams(target: str, pb2: Any, pb2_grpc: Any) -> list[object]:
    """Every streaming Greeter call through grpcio's generated stub."""
    outbox: queue.Queue[Any] = queue.Queue()
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.GreeterStub(channel)
        replies = [(r.message, r.index) for r in stub.LotsOfReplies(pb2.HelloRequest(name="you"))]
        names = (pb2.HelloRequest(name=name) for name in ["a", "b", "c"])
        greeting = stub.LotsOfGreetings(names).message
        conversation = []
        chat = stub.BidiHello(iter(outbox.get, None))
        for name in ["a", "b"]:
            outbox.put(pb2.HelloRequest(name=name))  # the next one only after the reply
            reply = next(chat)
            conversation.append((reply.message, reply.index))
        outbox.put(None)
        conversation.extend((reply.message, reply.index) for reply in chat)
    return [replies, greeting, conversation]


async def test_grpcio_makes_every_streaming_call_to_muxs(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    results = await asyncio.to_thread(grpcio_streams, live_server.target, *pb)
    assert results == [
        [("Hello, you!", index) for index in range(1, 11)],
        "Hello, a, b and c!",
        [("Hello, a!", 1), ("Hello, b!", 2)],
    ]


async def test_grpcio_sees_the_count_limit(live_server: RunningServer, pb: tuple[Any, Any]) -> None:
    pb2, pb2_grpc = pb

    def call() -> grpc.RpcError:
        with grpc.insecure_channel(live_server.target) as channel:
            replies = pb2_grpc.GreeterStub(channel).LotsOfReplies(
                pb2.HelloRequest(name="you", count=100_001)
            )
            with pytest.raises(grpc.RpcError) as caught:
                next(replies)
        return caught.value

    error = await asyncio.to_thread(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit of 100000" in (error.details() or "")


async def test_a_grpcio_deadline_cancels_the_muxs_handler(
    live_server: RunningServer, pb: tuple[Any, Any], probe: CallProbe
) -> None:
    pb2, pb2_grpc = pb

    def call() -> grpc.RpcError:
        with grpc.insecure_channel(live_server.target) as channel:
            request = pb2.HelloRequest(name=NAME, count=COUNT)
            replies = pb2_grpc.GreeterStub(channel).LotsOfReplies(request, timeout=0.5)
            with pytest.raises(grpc.RpcError) as caught:
                for _ in replies:
                    pass
        return caught.value

    error = await asyncio.to_thread(call)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await probe.finished() == ["cancelled"]
    assert probe.sent < COUNT


async def test_a_grpcio_cancel_cancels_the_muxs_handler(
    live_server: RunningServer, pb: tuple[Any, Any], probe: CallProbe
) -> None:
    pb2, pb2_grpc = pb

    def call() -> int:
        with grpc.insecure_channel(live_server.target) as channel:
            request = pb2.HelloRequest(name=NAME, count=COUNT)
            replies = pb2_grpc.GreeterStub(channel).LotsOfReplies(request)
            index: int = next(replies).index
            replies.cancel()
        return index

    assert await asyncio.to_thread(call) == 1
    assert await probe.finished() == ["cancelled"]
    assert probe.sent < COUNT


async def test_calls_grpcio_cancels_leave_the_connection_idle(
    settings: ServerSettings, pb: tuple[Any, Any]
) -> None:
    """grpcio resets a cancelled call's stream, often before its handler took a step: the
    connection must still count no call open, hold no stream and close when idle."""
    pb2, pb2_grpc = pb
    answered, hang_up = threading.Event(), threading.Event()

    def cancel_many(target: str) -> str:
        with grpc.insecure_channel(target) as channel:
            stub = pb2_grpc.GreeterStub(channel)
            for number in range(500):
                stub.SayHello.future(pb2.HelloRequest(name=str(number))).cancel()
            message: str = stub.SayHello(pb2.HelloRequest(name="last")).message
            answered.set()
            hang_up.wait()
        return message

    async with serve(settings=dataclasses.replace(settings, idle_timeout=0.5)) as running:
        assert isinstance(running.server, LimitedServer)
        limited = running.server
        client = asyncio.create_task(asyncio.to_thread(cancel_many, running.target))
        try:
            await until(answered.is_set)
            (protocol,) = limited.connections
            await until(lambda: protocol.calls_open == 0)
            assert protocol.streams_held == 0
            await until(lambda: not limited.connections)  # closed by the idle timeout
        finally:
            hang_up.set()
        assert await client == "Hello, last!"


async def test_the_sdk_makes_every_streaming_call_to_a_grpcio_server(grpcio_server: str) -> None:
    outbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def names() -> AsyncIterator[str]:
        while (name := await outbox.get()) is not None:
            yield name

    async with Client(grpcio_server, timeout=10) as client:
        replies = [(r.message, r.index) async for r in client.lots_of_replies("you", 3)]
        assert replies == [("Hello, you!", index) for index in (1, 2, 3)]
        assert (await client.lots_of_greetings(["a", "b", "c"])).message == "Hello, a, b and c!"
        async with client.bidi_hello(names()) as chat:
            for index, name in enumerate(["a", "b"], 1):
                await outbox.put(name)
                assert (await anext(chat)).index == index
            await outbox.put(None)
            assert [r async for r in chat] == []


async def test_the_sdk_deadline_holds_against_a_grpcio_server(grpcio_server: str) -> None:
    async def stalled() -> AsyncIterator[str]:
        yield "a"
        await asyncio.Event().wait()

    async with Client(grpcio_server) as client:
        with pytest.raises(RpcError) as caught:
            await client.lots_of_greetings(stalled(), timeout=0.3)
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED


async def test_the_sync_client_makes_every_greeter_call_to_a_grpcio_server(
    grpcio_server: str,
) -> None:
    def calls() -> list[object]:
        with SyncClient(grpcio_server, timeout=10) as client:
            return [
                client.say_hello("you").message,
                client.square(231).value,
                [r.index for r in client.lots_of_replies("you", 3)],
                client.lots_of_greetings(iter(["a", "b"])).message,
                [r.message for r in client.bidi_hello(iter(["a", "b"]))],
            ]

    assert await asyncio.to_thread(calls) == [
        "Hello, you!",
        15.198683738708496,
        [1, 2, 3],
        "Hello, a and b!",
        ["Hello, a!", "Hello, b!"],
    ]
