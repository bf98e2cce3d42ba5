"""grpcio clients with compression on (gzip, deflate) against muxs: every RPC of both services.

grpcio compresses a message only when that makes it smaller, so the requests here are
compressible, and each test counts the messages the server inflated. Replies compressed (by the
server's setting, or by an interceptor's choice) are read by grpcio, which inflates a reply only
as its response headers' ``grpc-encoding`` says (it keeps that header from its metadata).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import grpc
import pytest

from muxs import CallContext, RunningServer, ServerProceed, ServerSettings, serve
from muxs.server.reply_compression import ReplyCompression

ENCODINGS = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}
#: A grpcio channel that accepts no compression: its ``grpc-accept-encoding`` says identity.
IDENTITY_ONLY = [("grpc.compression_enabled_algorithms_bitset", 1)]
NAME = "muxs " * 200  # compressible
DATA = b"0123456789abcdef" * 4096  # 64 KiB, compressible


def every_rpc(
    target: str,
    compression: grpc.Compression,
    pb2: Any,
    pb2_grpc: Any,
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """Each RPC of both services, with compressible requests; checks each answer."""
    with grpc.insecure_channel(target, options=options, compression=compression) as channel:
        greeter = pb2_grpc.GreeterStub(channel)
        files = pb2_grpc.FileControllerStub(channel)
        assert greeter.SayHello(pb2.HelloRequest(name=NAME)).message == f"Hello, {NAME}!"
        assert greeter.Square(pb2.Number(value=4.0)).value == 2.0
        replies = list(greeter.LotsOfReplies(pb2.HelloRequest(name=NAME, count=3)))
        assert [reply.index for reply in replies] == [1, 2, 3]
        names = (pb2.HelloRequest(name=NAME) for _ in range(3))
        assert NAME in greeter.LotsOfGreetings(names).message
        bidi = list(greeter.BidiHello(pb2.HelloRequest(name=NAME) for _ in range(3)))
        assert len(bidi) == 3
        assert all(NAME in reply.message for reply in bidi)
        text = NAME * 10
        written = files.Write(pb2.Files(filename="small.txt", text=text))
        assert written.sha256 == hashlib.sha256(text.encode()).hexdigest()
        assert files.Read(pb2.Files(filename="small.txt")).text == text
        chunks = [pb2.Chunk(filename="big.bin", data=DATA)] + [pb2.Chunk(data=DATA)] * 3
        streamed = files.WriteStream(iter(chunks))
        assert streamed.sha256 == hashlib.sha256(DATA * 4).hexdigest()
        read = b"".join(chunk.data for chunk in files.ReadStream(pb2.Files(filename="big.bin")))
        assert read == DATA * 4
        assert files.Stat(pb2.Files(filename="big.bin")).size == len(DATA) * 4
        listed = {info.name for info in files.List(pb2.ListRequest(path=""))}
        assert {"small.txt", "big.bin"} <= listed
        assert files.Delete(pb2.Files(filename="small.txt")).code == 0


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_a_grpcio_client_with_compression_calls_every_rpc(
    live_server: RunningServer, pb: tuple[Any, Any], inflated: list[str], encoding: str
) -> None:
    await asyncio.to_thread(every_rpc, live_server.target, ENCODINGS[encoding], *pb)
    # SayHello, LotsOfReplies, 3 LotsOfGreetings, 3 BidiHello, Write, 4 WriteStream chunks:
    # every compressible request (grpcio leaves the rest plain).
    assert inflated == [encoding] * 13


@pytest.mark.parametrize("server_encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("encoding", ["gzip", "none"])
async def test_a_grpcio_client_reads_compressed_replies(
    settings: ServerSettings,
    pb: tuple[Any, Any],
    inflated: list[str],
    compressed_replies: list[int],
    server_encoding: str,
    encoding: str,
) -> None:
    compression = ENCODINGS.get(encoding, grpc.Compression.NoCompression)
    async with serve(settings=replace(settings, compression=server_encoding)) as running:
        await asyncio.to_thread(every_rpc, running.target, compression, *pb)
    assert len(inflated) == (13 if encoding != "none" else 0)
    # The replies of 1 KiB or more: LotsOfGreetings, Read, 4 ReadStream chunks (the greetings
    # of the other calls, about 1000 bytes, are under it).
    assert len(compressed_replies) == 6


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("accepting", [True, False], ids=["accepting", "identity only"])
async def test_a_grpcio_client_reads_the_replies_an_interceptor_compressed(
    settings: ServerSettings,
    pb: tuple[Any, Any],
    compressed_replies: list[int],
    encoding: ReplyCompression,
    accepting: bool,
) -> None:
    """An interceptor chooses ``encoding`` for every call of a server compressing none: a
    grpcio client that accepts it reads the replies compressed (those of 1 KiB or more, as
    with ``--compression``); one that accepts only identity gets them plain."""
    chosen: list[str] = []

    async def compress_replies(call: CallContext, proceed: ServerProceed) -> None:
        chosen.append(call.set_compression(encoding))
        await proceed()

    options = () if accepting else IDENTITY_ONLY
    calls = partial(every_rpc, compression=grpc.Compression.NoCompression, options=options)
    async with serve(settings=settings, interceptors=[compress_replies]) as running:
        await asyncio.to_thread(calls, running.target, pb2=pb[0], pb2_grpc=pb[1])
    assert len(chosen) == 12  # one per RPC
    assert set(chosen) == {encoding if accepting else "identity"}
    assert len(compressed_replies) == (6 if accepting else 0)
