"""grpcio's client over muxs's Unix domain socket: ``RunningServer.target`` is its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from muxs import serve


async def test_grpcio_calls_muxs_over_its_unix_socket(tmp_path: Path, pb: tuple[Any, Any]) -> None:
    pb2, pb2_grpc = pb
    async with serve(root=tmp_path / "root", path=tmp_path / "muxs.sock") as running:
        assert running.target.startswith("unix:///")
        async with grpc.aio.insecure_channel(running.target) as channel:
            call = pb2_grpc.GreeterStub(channel).SayHello(
                pb2.HelloRequest(name="grpcio"), metadata=(("x-request-id", "r1"),)
            )
            reply = await call
            assert reply.message == "Hello, grpcio!"
            assert await call.code() == grpc.StatusCode.OK
