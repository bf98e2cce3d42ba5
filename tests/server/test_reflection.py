"""Reflection v1 and v1alpha list every service and return full file descriptors."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.reflection.v1 import reflection_grpc, reflection_pb2
from grpclib.reflection.v1alpha import reflection_grpc as reflection_v1alpha_grpc
from grpclib.reflection.v1alpha import reflection_pb2 as reflection_v1alpha_pb2

from muxs import RunningServer

SERVICES = {
    "muxs.Greeter",
    "muxs.FileController",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
VERSIONS = [
    (reflection_grpc.ServerReflectionStub, reflection_pb2.ServerReflectionRequest),
    (reflection_v1alpha_grpc.ServerReflectionStub, reflection_v1alpha_pb2.ServerReflectionRequest),
]


@asynccontextmanager
async def channel_to(server: RunningServer) -> AsyncIterator[Channel]:
    channel = Channel("127.0.0.1", server.port)
    try:
        yield channel
    finally:
        channel.close()


async def ask(channel: Channel, stub: Any, request: Any) -> Any:
    async with stub(channel).ServerReflectionInfo.open() as stream:
        await stream.send_message(request, end=True)
        return await stream.recv_message()


@pytest.mark.parametrize(("stub", "request_type"), VERSIONS)
async def test_lists_every_service(
    live_server: RunningServer, stub: Any, request_type: Any
) -> None:
    async with channel_to(live_server) as channel:
        reply = await ask(channel, stub, request_type(list_services=""))
    assert {service.name for service in reply.list_services_response.service} == SERVICES


@pytest.mark.parametrize(("stub", "request_type"), VERSIONS)
async def test_returns_the_full_file_descriptor_of_a_service(
    live_server: RunningServer, stub: Any, request_type: Any
) -> None:
    async with channel_to(live_server) as channel:
        reply = await ask(channel, stub, request_type(file_containing_symbol="muxs.Greeter"))
    [serialized] = reply.file_descriptor_response.file_descriptor_proto
    file = FileDescriptorProto.FromString(serialized)
    assert file.name == "muxs.proto"
    assert file.package == "muxs"
    methods = {s.name: [m.name for m in s.method] for s in file.service}
    assert methods["Greeter"] == [
        "SayHello",
        "Square",
        "LotsOfReplies",
        "LotsOfGreetings",
        "BidiHello",
    ]
    assert "Write" in methods["FileController"]
    assert {m.name for m in file.message_type} >= {"HelloRequest", "HelloReply", "Files", "Content"}


async def test_an_unknown_symbol_is_not_found(live_server: RunningServer) -> None:
    async with channel_to(live_server) as channel:
        reply = await ask(
            channel,
            reflection_grpc.ServerReflectionStub,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="muxs.Nope"),
        )
    assert reply.error_response.error_code == Status.NOT_FOUND.value


@pytest.mark.parametrize(("stub", "request_type"), VERSIONS)
async def test_a_method_is_a_symbol_of_its_services_file(
    live_server: RunningServer, stub: Any, request_type: Any
) -> None:
    """``grpcurl describe muxs.Greeter.SayHello`` asks for the file containing the method."""
    async with channel_to(live_server) as channel:
        found = await ask(channel, stub, request_type(file_containing_symbol="muxs.Greeter.Square"))
        missing = await ask(channel, stub, request_type(file_containing_symbol="muxs.Greeter.Nope"))
    [serialized] = found.file_descriptor_response.file_descriptor_proto
    assert FileDescriptorProto.FromString(serialized).name == "muxs.proto"
    assert missing.error_response.error_code == Status.NOT_FOUND.value
