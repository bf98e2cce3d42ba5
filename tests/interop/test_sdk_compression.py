"""The SDK with ``compression=`` against muxs and against a grpcio server with compression."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from muxs import (
    Client,
    ConfigError,
    RpcError,
    RunningServer,
    ServerSettings,
    StatusCode,
    call_compression,
    compression,
    serve,
)
from muxs.call_compression import USE_CLIENT_DEFAULT, UseClientDefault

NAME = "muxs " * 300  # compressible, over 1 KiB


@pytest.fixture
def sdk_inflated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The encoding of every reply message the SDK inflates, in order."""
    seen: list[str] = []
    real = compression.inflate

    async def counting(data: bytes, encoding: str, limit: int) -> bytes:
        seen.append(encoding)
        return await real(data, encoding, limit)

    monkeypatch.setattr(call_compression, "inflate", counting)
    return seen


async def calls(client: Client, choice: str | UseClientDefault | None = USE_CLIENT_DEFAULT) -> None:
    """A call of each kind, each with ``compression=choice``."""
    assert (await client.say_hello(NAME, compression=choice)).message == f"Hello, {NAME}!"
    replies = [reply async for reply in client.lots_of_replies(NAME, count=3, compression=choice)]
    assert [reply.index for reply in replies] == [1, 2, 3]
    assert NAME in (await client.lots_of_greetings([NAME, NAME], compression=choice)).message
    chat = [reply async for reply in client.bidi_hello([NAME, NAME], compression=choice)]
    assert len(chat) == 2
    await client.write("big.txt", NAME * 10, compression=choice)
    assert (await client.read("big.txt", compression=choice)).text == NAME * 10


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_the_sdk_compresses_its_requests(
    live_server: RunningServer, inflated: list[str], encoding: str
) -> None:
    async with Client(live_server.target, compression=encoding) as client:
        await calls(client)
    # SayHello, LotsOfReplies, 2 LotsOfGreetings, 2 BidiHello, Write.
    assert inflated == [encoding] * 7


async def test_the_sdk_sends_plain_requests_by_default(
    live_server: RunningServer, inflated: list[str]
) -> None:
    async with Client(live_server.target) as client:
        await calls(client)
    assert inflated == []


@pytest.mark.parametrize(
    ("client_compression", "call_compression", "sent"),
    [(None, "gzip", "gzip"), ("gzip", None, None), ("deflate", "identity", None)],
)
async def test_a_calls_compression_overrides_the_clients(
    live_server: RunningServer,
    inflated: list[str],
    client_compression: str | None,
    call_compression: str | None,
    sent: str | None,
) -> None:
    async with Client(live_server.target, compression=client_compression) as client:
        await calls(client, call_compression)
    assert inflated == ([sent] * 7 if sent else [])


def test_an_unknown_compression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'br' is not gzip, deflate, identity or None"):
        Client("127.0.0.1:1", compression="br")


@pytest.fixture(params=["gzip", "deflate"])
def compressing_grpcio_server(
    request: pytest.FixtureRequest, pb: tuple[Any, Any], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """A grpcio server whose replies are compressed; (its target, the encoding)."""
    pb2, pb2_grpc = pb

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def SayHello(self, request: Any, context: Any) -> Any:
            return pb2.HelloReply(message=f"Hello, {request.name}!")

        def LotsOfReplies(self, request: Any, context: Any) -> Iterator[Any]:
            for index in range(1, request.count + 1):
                yield pb2.HelloReply(message=f"Hello, {request.name}!", index=index)

        def LotsOfGreetings(self, request_iterator: Iterator[Any], context: Any) -> Any:
            return pb2.HelloReply(message=" ".join(r.name for r in request_iterator))

        def BidiHello(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
            for index, request in enumerate(request_iterator, 1):
                yield pb2.HelloReply(message=f"Hello, {request.name}!", index=index)

    class FileController(pb2_grpc.FileControllerServicer):  # type: ignore[misc,name-defined]
        def Read(self, request: Any, context: Any) -> Any:
            return pb2.Content(text=(tmp_path / request.filename).read_text())

        def Write(self, request: Any, context: Any) -> Any:
            (tmp_path / request.filename).write_text(request.text)
            return pb2.Status(code=0)

    encoding = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), compression=encoding[request.param]
    )
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    pb2_grpc.add_FileControllerServicer_to_server(FileController(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", request.param
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize("compression", ["gzip", "deflate", None])
@pytest.mark.parametrize("per_call", [False, True])
async def test_the_sdk_against_a_grpcio_server_with_compression(
    compressing_grpcio_server: tuple[str, str],
    sdk_inflated: list[str],
    compression: str | None,
    per_call: bool,
) -> None:
    target, encoding = compressing_grpcio_server
    if per_call:  # the client's says otherwise
        async with Client(target, compression="deflate" if compression else "gzip") as client:
            await calls(client, compression)
    else:
        async with Client(target, compression=compression) as client:
            await calls(client)
    # Every reply grpcio compressed (it does when that gains): the greetings and the Read.
    assert sdk_inflated == [encoding] * 8


@pytest.fixture
async def gzip_server(settings: ServerSettings) -> AsyncIterator[RunningServer]:
    async with serve(settings=replace(settings, compression="gzip")) as running:
        yield running


async def test_the_sdk_reads_compressed_replies_of_muxs(
    gzip_server: RunningServer, sdk_inflated: list[str]
) -> None:
    async with Client(gzip_server.target) as client:
        await calls(client)
    # The replies of 1 KiB or more: the greetings (about 1.5 KiB) and the Read.
    assert sdk_inflated == ["gzip"] * 8


async def test_a_reply_inflating_past_the_sdks_limit_is_resource_exhausted(
    gzip_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(call_compression, "MAX_REPLY_BYTES", 64 * 1024)
    (gzip_server.root / "zeros.txt").write_text("0" * (64 * 1024 + 1))
    async with Client(gzip_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.read("zeros.txt")
        assert caught.value.status == StatusCode.RESOURCE_EXHAUSTED
        assert "inflates to more than 65536 bytes" in caught.value.message
        assert (await client.say_hello("still")).message == "Hello, still!"


def gzipped_as(members: Callable[[bytes], bytes]) -> Callable[[bytes | memoryview, str], bytes]:
    """A ``compression.frame`` that writes each reply gzipped as ``members(body)`` says."""

    def frame(body: bytes | memoryview, encoding: str) -> bytes:
        data = members(bytes(body))
        return b"\x01" + len(data).to_bytes(4, "big") + data

    return frame


def two_members(body: bytes) -> bytes:
    return gzip.compress(body[:100]) + gzip.compress(body[100:])


async def test_the_sdk_reads_replies_of_several_gzip_members(
    gzip_server: RunningServer, sdk_inflated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compression, "frame", gzipped_as(two_members))
    async with Client(gzip_server.target) as client:
        assert (await client.say_hello(NAME)).message == f"Hello, {NAME}!"
    assert sdk_inflated == ["gzip"]


@pytest.mark.parametrize(
    ("members", "status", "message"),
    [
        (
            lambda body: two_members(body) + b"junk",
            StatusCode.INTERNAL,
            "a reply is corrupt: the message has 4 bytes after its last gzip member",
        ),
        (
            lambda body: gzip.compress(b"") * compression.MAX_GZIP_MEMBERS + gzip.compress(body),
            StatusCode.RESOURCE_EXHAUSTED,
            "a reply is too large: the message has more than 1024 gzip members",
        ),
    ],
    ids=["bytes after the last member", "too many members"],
)
async def test_a_reply_of_bad_gzip_members_is_refused(
    gzip_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    members: Callable[[bytes], bytes],
    status: StatusCode,
    message: str,
) -> None:
    monkeypatch.setattr(compression, "frame", gzipped_as(members))
    async with Client(gzip_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello(NAME)
    assert (caught.value.status, caught.value.message) == (status, message)
