"""Interop with the official gRPC implementation, both ways."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from muxs import Client, RpcError, RunningServer, StatusCode


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
