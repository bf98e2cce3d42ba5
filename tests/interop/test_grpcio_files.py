"""FileController with grpcio peers: the path-attack corpus, the seed's client, sha256 checks."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from muxs import Client, RpcError, RunningServer, ServerSettings, StatusCode, serve
from tests.path_attacks import CORPUS, Attack, plant, snapshot

# The seed's client sequence and what its server printed ("結果" in the reference).
SEED_RESULT = ["File Read: Error: read failed", "File Write: 0", "File Read: 37183714ghgjh243"]


def grpcio_answers(target: str, pb: tuple[Any, Any], name: str, methods: list[str]) -> list[str]:
    """Each method's status name ("OK" for success), called by a grpcio client."""
    pb2, pb2_grpc = pb
    answers = []
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.FileControllerStub(channel)
        calls: dict[str, Callable[[], object]] = {
            "Read": lambda: stub.Read(pb2.Files(filename=name)),
            "ReadStream": lambda: list(stub.ReadStream(pb2.Files(filename=name))),
            "Stat": lambda: stub.Stat(pb2.Files(filename=name)),
            "Delete": lambda: stub.Delete(pb2.Files(filename=name)),
            "List": lambda: list(stub.List(pb2.ListRequest(path=name))),
            "Write": lambda: stub.Write(pb2.Files(filename=name, text="pwned")),
            "WriteStream": lambda: stub.WriteStream(
                iter([pb2.Chunk(filename=name, data=b"pwned")])
            ),
        }
        for method in methods:
            try:
                calls[method]()
            except grpc.RpcError as exc:
                answers.append(exc.code().name)
            else:
                answers.append("OK")
    return answers


@pytest.mark.parametrize("attack", CORPUS, ids=[attack.id for attack in CORPUS])
async def test_the_corpus_through_grpcio(
    settings: ServerSettings, root_dir: Path, pb: tuple[Any, Any], attack: Attack
) -> None:
    outside = plant(root_dir)
    before = snapshot(outside)
    expected = attack.expectations()
    async with serve(settings=settings) as running:
        answers = await asyncio.to_thread(
            grpcio_answers, running.target, pb, attack.name, list(expected)
        )
    assert dict(zip(expected, answers, strict=True)) == expected
    assert snapshot(outside) == before


def raw_call(target: str, method: str, request: bytes) -> tuple[str, str]:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/muxs.FileController/{method}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        try:
            call(request)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""
    return "OK", ""


@pytest.mark.parametrize("method", ["Read", "Write", "Stat", "Delete"])
async def test_a_filename_that_is_not_utf8_is_internal(
    live_server: RunningServer, method: str
) -> None:
    """Field 1 (filename) holding the bytes ``\\xff/x``: protobuf strings must be UTF-8, and
    a request the server cannot parse is INTERNAL, as in every gRPC implementation."""
    code, details = await asyncio.to_thread(raw_call, live_server.target, method, b"\x0a\x03\xff/x")
    assert code == "INTERNAL"
    assert details.startswith("the request is not a valid muxs.Files")


def seed_file_client(target: str, pb2: Any, pb2_grpc: Any) -> list[str]:
    """The seed's FileController client, as written there (printing into a list)."""
    lines = []
    channel = grpc.insecure_channel(target)
    stub2 = pb2_grpc.FileControllerStub(channel)
    res2 = stub2.Read(pb2.Files(filename="aaaa.txt", text=""))
    lines.append("File Read: " + res2.text)
    res3 = stub2.Write(pb2.Files(filename="aaaa2.txt", text="37183714ghgjh243"))
    lines.append("File Write: " + str(res3.code))
    res2 = stub2.Read(pb2.Files(filename="aaaa2.txt", text=""))
    lines.append("File Read: " + res2.text)
    channel.close()
    return lines


async def test_the_seed_client_sees_the_seed_results_in_seed_error_style(
    settings: ServerSettings, pb: tuple[Any, Any]
) -> None:
    async with serve(settings=replace(settings, error_style="seed")) as running:
        lines = await asyncio.to_thread(seed_file_client, running.target, *pb)
    assert lines == SEED_RESULT


async def test_seed_error_style_write_failures_are_code_1_for_grpcio(
    settings: ServerSettings, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb

    def write(target: str) -> Any:
        with grpc.insecure_channel(target) as channel:
            return pb2_grpc.FileControllerStub(channel).Write(pb2.Files(filename="../x", text="y"))

    async with serve(settings=replace(settings, error_style="seed")) as running:
        status = await asyncio.to_thread(write, running.target)
    assert status.code == 1


@pytest.fixture
def lying_server(pb: tuple[Any, Any]) -> Iterator[Callable[[str], str]]:
    """A grpcio WriteStream server answering with a sha256 it is told; yields a setter."""
    pb2, pb2_grpc = pb
    answer = {"sha256": ""}

    class FileController(pb2_grpc.FileControllerServicer):  # type: ignore[misc,name-defined]
        def WriteStream(self, request_iterator: Any, context: Any) -> Any:
            for _ in request_iterator:
                pass
            return pb2.Status(code=0, sha256=answer["sha256"])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb2_grpc.add_FileControllerServicer_to_server(FileController(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def reply_with(sha256: str) -> str:
        answer["sha256"] = sha256
        return f"127.0.0.1:{port}"

    try:
        yield reply_with
    finally:
        server.stop(grace=None)


async def test_the_sdk_checks_the_servers_sha256(lying_server: Callable[[str], str]) -> None:
    data = b"some bytes"
    async with Client(lying_server(hashlib.sha256(data).hexdigest())) as client:
        assert (await client.write_bytes("f", data)).code == 0
    async with Client(lying_server("")) as client:  # a server without sha256: nothing to check
        assert (await client.write_bytes("f", data)).code == 0
    async with Client(lying_server(hashlib.sha256(b"other").hexdigest())) as client:
        with pytest.raises(RpcError) as caught:
            await client.write_bytes("f", data)
    assert caught.value.status is StatusCode.DATA_LOSS
