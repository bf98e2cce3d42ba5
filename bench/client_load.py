"""One client driving one scenario against a server for a while, then printing what it did.

Run as ``python -m bench.client_load CLIENT SCENARIO --port N --stubs DIR --local DIR
[--seconds S] [--warm-up S]``; prints one JSON line: ``{"units": ..., "wall": ..., "cpu": ...}``,
``cpu`` being this process's CPU seconds (every thread, user + system) during the measured
part. The clients (``CLIENTS``) are muxs's ``Client`` and ``SyncClient``, grpcio's ``grpc.aio``
and sync channels, and a raw grpclib channel (raw-bytes codec, hand-written protobuf: what
grpclib and h2 alone cost); each does the same work per scenario (``SCENARIOS``):

- ``unary-1``: SayHello, one call at a time; ``unary-64``: 64 calls in flight (tasks, or
  threads for the sync clients);
- ``server-stream``: LotsOfReplies of ``REPLIES`` replies, one call at a time;
- ``download``: ReadStream of the server's ``BLOB`` into a local file;
- ``upload``: WriteStream of a local file of ``UPLOAD_BYTES`` in 64 KiB chunks, its SHA-256
  checked against the server's reply (muxs's SDK does that check; the others do it too).

The side-by-side tools (``bench.client_ab``, ``bench.client_instructions``) start themselves
as workers with the same clients: ``add_worker_options``, ``worker_arguments``, and
``shadow_checkout`` with ``worker_environment`` to run another checkout's muxs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality

from bench.filework import CHUNK_BYTES
from bench.stubs import load_stubs
from bench.wire import RawCodec, field, fields

CLIENTS = ("muxs", "muxs-sync", "grpcio-aio", "grpcio-sync", "grpclib")
#: The blocking clients, run by threads (the others are async).
SYNC_CLIENTS = ("muxs-sync", "grpcio-sync")
SCENARIOS = ("unary-1", "unary-64", "server-stream", "download", "upload")
CONCURRENCY = {"unary-1": 1, "unary-64": 64}
REPLIES = 1000
BLOB = "client-blob"
UPLOAD = "client-upload"
BLOB_BYTES = UPLOAD_BYTES = 8 << 20
#: Units one call of a scenario does: calls, replies, or MB of file data.
PER_CALL = {
    "unary-1": 1.0,
    "unary-64": 1.0,
    "server-stream": float(REPLIES),
    "download": BLOB_BYTES / 1e6,
    "upload": UPLOAD_BYTES / 1e6,
}
NAME = "bench"
GREETING = f"Hello, {NAME}!"

Call = Callable[[], Awaitable[None]]
SyncCall = Callable[[], None]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def _upload_chunks(
    local: Path, digest: Any, first: Callable[[bytes], Any], rest: Any
) -> Iterator[Any]:
    """The upload's requests from the local file, 64 KiB each, hashed as they are read."""
    with local.open("rb") as file:
        made = first
        while data := file.read(CHUNK_BYTES):
            digest.update(data)
            yield made(data)
            made = rest


def _grpcio_chunks(pb2: Any, local: Path, digest: Any) -> Iterator[Any]:
    """The upload's requests as grpcio's ``Chunk`` messages, the first naming the file."""
    return _upload_chunks(
        local / UPLOAD,
        digest,
        lambda data: pb2.Chunk(filename=UPLOAD, data=data),
        lambda data: pb2.Chunk(data=data),
    )


# --- async clients: one coroutine function per call --------------------------------------


def muxs_calls(port: int, scenario: str, local: Path) -> tuple[Any, Call]:
    import muxs

    client = muxs.Client(f"127.0.0.1:{port}")

    async def call() -> None:
        match scenario:
            case "unary-1" | "unary-64":
                _expect((await client.say_hello(NAME)).message == GREETING, "SayHello")
            case "server-stream":
                count = 0
                async for _ in client.lots_of_replies(NAME, REPLIES):
                    count += 1
                _expect(count == REPLIES, "LotsOfReplies")
            case "download":
                got = await client.download(BLOB, local / "downloaded")
                _expect(got == BLOB_BYTES, "ReadStream")
            case _:
                await client.upload(local / UPLOAD, UPLOAD)

    return client, call


def grpcio_aio_calls(port: int, scenario: str, local: Path, stubs: Path) -> tuple[Any, Call]:
    import grpc

    pb2, pb2_grpc = load_stubs(stubs)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    greeter, files = pb2_grpc.GreeterStub(channel), pb2_grpc.FileControllerStub(channel)

    async def call() -> None:
        match scenario:
            case "unary-1" | "unary-64":
                reply = await greeter.SayHello(pb2.HelloRequest(name=NAME))
                _expect(reply.message == GREETING, "SayHello")
            case "server-stream":
                count = 0
                async for _ in greeter.LotsOfReplies(pb2.HelloRequest(name=NAME, count=REPLIES)):
                    count += 1
                _expect(count == REPLIES, "LotsOfReplies")
            case "download":
                with (local / "downloaded").open("wb") as file:
                    async for chunk in files.ReadStream(pb2.Files(filename=BLOB)):
                        file.write(chunk.data)
            case _:
                digest = hashlib.sha256()
                status = await files.WriteStream(_grpcio_chunks(pb2, local, digest))
                _expect(status.sha256 == digest.hexdigest(), "WriteStream sha256")

    return channel, call


def grpclib_calls(port: int, scenario: str, local: Path) -> tuple[Any, Call]:
    channel = Channel("127.0.0.1", port, codec=RawCodec())
    hello = field(1, NAME.encode())

    def request(path: str, cardinality: Cardinality) -> Any:
        return channel.request(path, cardinality, bytes, bytes)

    async def call() -> None:
        match scenario:
            case "unary-1" | "unary-64":
                async with request("/muxs.Greeter/SayHello", Cardinality.UNARY_UNARY) as stream:
                    await stream.send_message(hello, end=True)
                    reply = await stream.recv_message()
                _expect(dict(fields(reply or b""))[1] == GREETING.encode(), "SayHello")
            case "server-stream":
                count = 0
                path = "/muxs.Greeter/LotsOfReplies"
                async with request(path, Cardinality.UNARY_STREAM) as stream:
                    await stream.send_message(hello + field(2, REPLIES), end=True)
                    async for _ in stream:
                        count += 1
                _expect(count == REPLIES, "LotsOfReplies")
            case "download":
                path = "/muxs.FileController/ReadStream"
                with (local / "downloaded").open("wb") as file:
                    async with request(path, Cardinality.UNARY_STREAM) as stream:
                        await stream.send_message(field(1, BLOB.encode()), end=True)
                        async for reply in stream:
                            file.write(dict(fields(reply))[2])  # type: ignore[arg-type]
            case _:
                digest = hashlib.sha256()
                path = "/muxs.FileController/WriteStream"
                async with request(path, Cardinality.STREAM_UNARY) as stream:
                    for message in _upload_chunks(
                        local / UPLOAD,
                        digest,
                        lambda data: field(1, UPLOAD.encode()) + field(2, data),
                        lambda data: field(2, data),
                    ):
                        await stream.send_message(message)
                    await stream.end()
                    status = dict(fields(await stream.recv_message() or b""))
                _expect(status[2] == digest.hexdigest().encode(), "WriteStream sha256")

    return channel, call


async def drive_async(
    call: Call, concurrency: int, warm_up: float, seconds: float
) -> tuple[int, float, float]:
    """(calls, wall, cpu) of ``concurrency`` loops of ``call`` for ``seconds`` after ``warm_up``."""
    measuring = False
    count = 0

    async def loop(until: float) -> None:
        nonlocal count
        while time.monotonic() < until:
            await call()
            if measuring:
                count += 1

    await asyncio.gather(*(loop(time.monotonic() + warm_up) for _ in range(concurrency)))
    measuring = True
    wall, cpu = time.monotonic(), cpu_seconds()
    await asyncio.gather(*(loop(wall + seconds) for _ in range(concurrency)))
    return count, time.monotonic() - wall, cpu_seconds() - cpu


# --- sync clients: one function per call, run by threads ---------------------------------


def muxs_sync_calls(port: int, scenario: str, local: Path) -> tuple[Any, SyncCall]:
    import muxs

    client = muxs.SyncClient(f"127.0.0.1:{port}")

    def call() -> None:
        match scenario:
            case "unary-1" | "unary-64":
                _expect(client.say_hello(NAME).message == GREETING, "SayHello")
            case "server-stream":
                with client.lots_of_replies(NAME, REPLIES) as replies:
                    count = sum(1 for _ in replies)
                _expect(count == REPLIES, "LotsOfReplies")
            case "download":
                _expect(client.download(BLOB, local / "downloaded") == BLOB_BYTES, "ReadStream")
            case _:
                client.upload(local / UPLOAD, UPLOAD)

    return client, call


def grpcio_sync_calls(port: int, scenario: str, local: Path, stubs: Path) -> tuple[Any, SyncCall]:
    import grpc

    pb2, pb2_grpc = load_stubs(stubs)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    greeter, files = pb2_grpc.GreeterStub(channel), pb2_grpc.FileControllerStub(channel)

    def call() -> None:
        match scenario:
            case "unary-1" | "unary-64":
                _expect(
                    greeter.SayHello(pb2.HelloRequest(name=NAME)).message == GREETING, "SayHello"
                )
            case "server-stream":
                replies = greeter.LotsOfReplies(pb2.HelloRequest(name=NAME, count=REPLIES))
                _expect(sum(1 for _ in replies) == REPLIES, "LotsOfReplies")
            case "download":
                with (local / "downloaded").open("wb") as file:
                    for chunk in files.ReadStream(pb2.Files(filename=BLOB)):
                        file.write(chunk.data)
            case _:
                digest = hashlib.sha256()
                status = files.WriteStream(_grpcio_chunks(pb2, local, digest))
                _expect(status.sha256 == digest.hexdigest(), "WriteStream sha256")

    return channel, call


def drive_threads(
    call: SyncCall, concurrency: int, warm_up: float, seconds: float
) -> tuple[int, float, float]:
    """``drive_async`` for a blocking ``call``: one thread per call in flight."""
    counts = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    until = [0.0]

    def loop(index: int) -> None:
        warm_until = time.monotonic() + warm_up
        while time.monotonic() < warm_until:
            call()
        start.wait()
        start.wait()
        while time.monotonic() < until[0]:
            call()
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()  # every thread has warmed up
    wall, cpu = time.monotonic(), cpu_seconds()
    until[0] = wall + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts), time.monotonic() - wall, cpu_seconds() - cpu


def async_calls(
    client: str, port: int, scenario: str, local: Path, stubs: Path
) -> tuple[Any, Call]:
    """An async client of ``CLIENTS`` (not ``SYNC_CLIENTS``): what to close, and its call."""
    if client == "muxs":
        return muxs_calls(port, scenario, local)
    if client == "grpcio-aio":
        return grpcio_aio_calls(port, scenario, local, stubs)
    return grpclib_calls(port, scenario, local)


def sync_calls(
    client: str, port: int, scenario: str, local: Path, stubs: Path
) -> tuple[Any, SyncCall]:
    """A blocking client of ``SYNC_CLIENTS``: what to close, and its call."""
    if client == "muxs-sync":
        return muxs_sync_calls(port, scenario, local)
    return grpcio_sync_calls(port, scenario, local, stubs)


def run(args: argparse.Namespace) -> dict[str, float]:
    concurrency = CONCURRENCY.get(args.scenario, 1)
    if args.client not in SYNC_CLIENTS:

        async def main() -> tuple[int, float, float]:
            closable, call = async_calls(
                args.client, args.port, args.scenario, args.local, args.stubs
            )
            try:
                return await drive_async(call, concurrency, args.warm_up, args.seconds)
            finally:
                closed = closable.close()
                if closed is not None:
                    await closed

        calls, wall, cpu = asyncio.run(main())
    else:
        closable, sync_call = sync_calls(
            args.client, args.port, args.scenario, args.local, args.stubs
        )
        try:
            calls, wall, cpu = drive_threads(sync_call, concurrency, args.warm_up, args.seconds)
        finally:
            closable.close()
    return {"units": calls * PER_CALL[args.scenario], "calls": calls, "wall": wall, "cpu": cpu}


def prepare(local: Path) -> None:
    """The local file an upload sends (the same bytes every run)."""
    local.mkdir(parents=True, exist_ok=True)
    path = local / UPLOAD
    if not path.exists() or path.stat().st_size != UPLOAD_BYTES:
        path.write_bytes((bytes(range(256)) * (UPLOAD_BYTES // 256 + 1))[:UPLOAD_BYTES])


# --- workers of the side-by-side tools (``bench.client_ab``, ``bench.client_instructions``) --


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The hidden options with which a tool starts itself as a worker (``worker_arguments``)."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stubs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--local", type=Path, help=argparse.SUPPRESS)


def worker_arguments(client: str, scenario: str, port: int, stubs: Path, local: Path) -> list[str]:
    """The arguments that make a tool a worker running ``client`` on ``scenario``."""
    arguments = ["--worker", client, "--scenario", scenario, "--port", str(port)]
    return [*arguments, "--stubs", str(stubs), "--local", str(local)]


def shadow_checkout(base: Path, workdir: Path) -> Path:
    """A directory holding only a link to ``base``'s ``muxs``: a worker started in it (its
    working directory comes first on ``sys.path``) runs that checkout's muxs, and this tree's
    bench through ``worker_environment``."""
    shadow = workdir / "base-path"
    shadow.mkdir()
    (shadow / "muxs").symlink_to(base.resolve() / "muxs")
    return shadow


def worker_environment(checkout: Path | None) -> dict[str, str]:
    """The environment of a worker: for one started in a ``shadow_checkout``, this tree on
    ``PYTHONPATH``, after the other checkout's muxs, so that ``bench`` is this tree's."""
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stubs", type=Path, required=True)
    parser.add_argument("--local", type=Path, required=True, help="directory for local files")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warm-up", type=float, default=0.5)
    args = parser.parse_args()
    prepare(args.local)
    print(json.dumps(run(args)))
    sys.stdout.flush()
    os._exit(0)  # grpcio's threads can hold up a normal exit


if __name__ == "__main__":
    main()
