"""TLS over a Unix domain socket: allowed, as grpc allows it; the name checked is localhost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc

from muxs import Client, ServerSettings, serve
from tests.access import access_records
from tests.security.conftest import Pki


async def test_tls_over_a_unix_socket_verifies_localhost_and_logs_the_peer(
    tmp_path: Path, pki: Pki, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb
    settings = ServerSettings(
        root=tmp_path / "root", uds=tmp_path / "tls.sock", tls_cert=pki.cert, tls_key=pki.key
    )
    with access_records() as records:
        async with serve(settings=settings) as running:
            async with Client(running.target, tls=pki.ca) as client:
                assert (await client.say_hello("tls")).message == "Hello, tls!"
            fields = await records.finished("/muxs.Greeter/SayHello")
            assert fields["peer"] == f"unix:pid={os.getpid()},uid={os.getuid()}"
            credentials = grpc.ssl_channel_credentials(pki.pem("ca"))
            # grpcio's authority for a unix: target is the path: it must be told what to check.
            override = [("grpc.ssl_target_name_override", "localhost")]
            async with grpc.aio.secure_channel(running.target, credentials, override) as channel:
                stub = pb2_grpc.GreeterStub(channel)
                reply = await stub.SayHello(pb2.HelloRequest(name="grpcio"))
                assert reply.message == "Hello, grpcio!"
