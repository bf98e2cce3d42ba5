"""Interop with grpcio for metadata, trailers and rich error details, both ways: a grpcio
client (with grpcio-status) calling muxs's server codecs, and the SDK calling a grpcio server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any, cast

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyMessage
from google.rpc import code_pb2, status_pb2
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, QuotaFailure
from grpc_status import rpc_status

from muxs import CallInfo, Client, RpcError, RunningServer, StatusCode

BLOB = bytes(range(256))


def grpcio_say_hello(target: str, pb2: Any, pb2_grpc: Any) -> tuple[str, Any, Any]:
    """SayHello with metadata through grpcio: the reply, the headers and the trailers."""
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.GreeterStub(channel)
        metadata = (("x-request-id", "r1"), ("x-blob-bin", BLOB))
        reply, call = stub.SayHello.with_call(pb2.HelloRequest(name="you"), metadata=metadata)
        return reply.message, dict(call.initial_metadata()), dict(call.trailing_metadata())


async def test_a_grpcio_client_sends_metadata_and_reads_headers_and_trailers(
    echo_target: str, pb: tuple[Any, Any]
) -> None:
    message, headers, trailers = await asyncio.to_thread(grpcio_say_hello, echo_target, *pb)
    assert message == "Hello, you!"
    assert headers["x-echo-request-id"] == "r1"
    assert headers["x-echo-blob-bin"] == BLOB
    assert trailers["x-request-id"] == "r1"
    assert trailers["x-blob-bin"] == BLOB


def grpcio_status(target: str, call: Any) -> status_pb2.Status | None:
    """The google.rpc.Status grpcio-status reads from a failed call's trailers."""
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        call(channel)
    # A unary call's RpcError is also its grpc.Call (grpcio's _InactiveRpcError).
    status: status_pb2.Status | None = rpc_status.from_call(cast(grpc.Call, caught.value))
    return status


async def test_grpcio_status_reads_a_handlers_details(
    echo_target: str, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb
    status = await asyncio.to_thread(
        grpcio_status,
        echo_target,
        lambda channel: pb2_grpc.GreeterStub(channel).Square(pb2.Number(value=-1)),
    )
    assert status is not None
    assert status.code == code_pb2.INVALID_ARGUMENT
    bad, info = BadRequest(), ErrorInfo()
    assert status.details[0].Unpack(bad)
    assert status.details[1].Unpack(info)
    assert bad.field_violations[0].field == "value"
    assert info.reason == "NEGATIVE"


async def test_grpcio_status_reads_muxs_refusals_details(
    live_server: RunningServer, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb
    status = await asyncio.to_thread(
        grpcio_status,
        live_server.target,
        lambda channel: pb2_grpc.FileControllerStub(channel).Read(pb2.Files(filename="../x")),
    )
    assert status is not None
    assert status.code == code_pb2.PERMISSION_DENIED
    bad = BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "filename"


@pytest.fixture
def grpcio_echo_server(pb: tuple[Any, Any]) -> Iterator[str]:
    """A grpcio Greeter: SayHello echoes ``x-`` metadata as headers and trailers, Square
    refuses a negative value with a QuotaFailure (a rich status, through grpcio-status)."""
    pb2, pb2_grpc = pb

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def SayHello(self, request: Any, context: grpc.ServicerContext) -> Any:
            echoed = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]
            context.send_initial_metadata(tuple(("x-echo-" + k[2:], v) for k, v in echoed))
            context.set_trailing_metadata(tuple(echoed))
            return pb2.HelloReply(message=f"Hello, {request.name}!")

        def Square(self, request: Any, context: grpc.ServicerContext) -> Any:
            violation = QuotaFailure.Violation(subject="squares", description="none left")
            packed = AnyMessage()
            packed.Pack(QuotaFailure(violations=[violation]))
            status = status_pb2.Status(
                code=code_pb2.RESOURCE_EXHAUSTED, message="no squares left", details=[packed]
            )
            context.abort_with_status(rpc_status.to_status(status))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


async def test_the_sdk_sends_metadata_to_grpcio_and_reads_its_headers_and_trailers(
    grpcio_echo_server: str,
) -> None:
    info = CallInfo()
    sent: dict[str, str | bytes] = {"x-request-id": "r1", "x-blob-bin": BLOB}
    async with Client(grpcio_echo_server, timeout=10) as client:
        reply = await client.say_hello("you", metadata=sent, call_info=info)
    assert reply.message == "Hello, you!"
    assert info.headers["x-echo-request-id"] == "r1"
    assert info.headers["x-echo-blob-bin"] == BLOB
    assert info.trailers["x-request-id"] == "r1"
    assert info.trailers["x-blob-bin"] == BLOB


async def test_the_sdk_reads_a_grpcio_servers_details(grpcio_echo_server: str) -> None:
    async with Client(grpcio_echo_server, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.square(4)
    assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.message == "no squares left"
    quota = caught.value.detail(QuotaFailure)
    assert quota is not None
    assert quota.violations[0].subject == "squares"
