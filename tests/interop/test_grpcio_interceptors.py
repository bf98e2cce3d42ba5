"""A grpcio client reads the response headers and trailers a muxs interceptor adds, on a
reply and on a refusal, ``-bin`` values as bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from muxs import CallContext, ServerProceed, ServerSettings, serve


async def request_id(call: CallContext, proceed: ServerProceed) -> None:
    call.add_header("x-served-by", "muxs")
    call.add_trailer("x-request-id", str(call.metadata.get("x-request-id", "none")))
    call.add_trailer("x-trace-bin", b"\x00\xff")
    await proceed()


def grpcio_square(target: str, pb: tuple[Any, Any], value: float) -> tuple[Any, Any, Any]:
    """``(code, initial metadata, trailing metadata)`` of a Square call made with grpcio."""
    pb2, pb2_grpc = pb
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.GreeterStub(channel)
        try:
            _, call = stub.Square.with_call(
                pb2.Number(value=value), metadata=[("x-request-id", "r-42")], timeout=10
            )
        except grpc.RpcError as exc:
            call = exc
        return call.code(), dict(call.initial_metadata()), dict(call.trailing_metadata())


@pytest.mark.parametrize(
    ("value", "code"), [(4.0, grpc.StatusCode.OK), (-1.0, grpc.StatusCode.INVALID_ARGUMENT)]
)
async def test_grpcio_reads_an_interceptors_headers_and_trailers(
    settings: ServerSettings, pb: tuple[Any, Any], value: float, code: grpc.StatusCode
) -> None:
    async with serve(settings=settings, interceptors=[request_id]) as running:
        got, headers, trailers = await asyncio.to_thread(grpcio_square, running.target, pb, value)
    assert got == code
    assert headers["x-served-by"] == "muxs"
    assert trailers["x-request-id"] == "r-42"
    assert trailers["x-trace-bin"] == b"\x00\xff"
