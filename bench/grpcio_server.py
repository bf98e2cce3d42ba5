"""The same calls on grpcio: ``grpc.aio`` (asyncio) or the reference's design (sync server,
thread pool of 10). Run as ``python -m bench.grpcio_server {aio,sync} --stubs DIR --root DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from bench.filework import Upload, read_chunks
from bench.stubs import load_stubs

log = logging.getLogger(__name__)

DEFAULT_REPLY_COUNT = 10
SYNC_THREADS = 10


def _write(upload: Upload | None, root: Path, chunk: Any) -> Upload:
    """Write one WriteStream chunk; the first one names the file."""
    upload = upload or Upload(root, chunk.filename)
    upload.write(chunk.data)
    return upload


def _greeting(names: list[str]) -> str:
    """LotsOfGreetings' reply text (the memory bench holds such calls open)."""
    return f"Hello, {' and '.join(names)}!"


def _written(pb2: Any, upload: Upload | None) -> Any:
    if upload is None:
        raise ValueError("WriteStream without a chunk")
    return pb2.Status(code=0, sha256=upload.finish())


def sync_servicers(pb2: Any, pb2_grpc: Any, root: Path) -> tuple[Any, Any]:
    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc]
        def SayHello(self, request: Any, context: Any) -> Any:
            return pb2.HelloReply(message=f"Hello, {request.name}!")

        def LotsOfReplies(self, request: Any, context: Any) -> Iterator[Any]:
            message = f"Hello, {request.name}!"
            for index in range(1, (request.count or DEFAULT_REPLY_COUNT) + 1):
                yield pb2.HelloReply(message=message, index=index)

        def LotsOfGreetings(self, request_iterator: Iterator[Any], context: Any) -> Any:
            return pb2.HelloReply(message=_greeting([r.name for r in request_iterator]))

    class Files(pb2_grpc.FileControllerServicer):  # type: ignore[misc]
        def ReadStream(self, request: Any, context: Any) -> Iterator[Any]:
            for data in read_chunks(root, request.filename):
                yield pb2.Chunk(data=data)

        def WriteStream(self, request_iterator: Iterator[Any], context: Any) -> Any:
            upload = None
            for chunk in request_iterator:
                upload = _write(upload, root, chunk)
            return _written(pb2, upload)

    return Greeter(), Files()


def aio_servicers(pb2: Any, pb2_grpc: Any, root: Path) -> tuple[Any, Any]:
    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc]
        async def SayHello(self, request: Any, context: Any) -> Any:
            return pb2.HelloReply(message=f"Hello, {request.name}!")

        async def LotsOfReplies(self, request: Any, context: Any) -> AsyncIterator[Any]:
            message = f"Hello, {request.name}!"
            for index in range(1, (request.count or DEFAULT_REPLY_COUNT) + 1):
                yield pb2.HelloReply(message=message, index=index)

        async def LotsOfGreetings(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
            return pb2.HelloReply(message=_greeting([r.name async for r in request_iterator]))

    class Files(pb2_grpc.FileControllerServicer):  # type: ignore[misc]
        async def ReadStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for data in read_chunks(root, request.filename):
                yield pb2.Chunk(data=data)

        async def WriteStream(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
            upload = None
            async for chunk in request_iterator:
                upload = _write(upload, root, chunk)
            return _written(pb2, upload)

    return Greeter(), Files()


def _add(server: Any, pb2_grpc: Any, greeter: Any, files: Any, host: str) -> int:
    pb2_grpc.add_GreeterServicer_to_server(greeter, server)
    pb2_grpc.add_FileControllerServicer_to_server(files, server)
    port: int = server.add_insecure_port(f"{host}:0")
    log.info("listening on %s:%d", host, port)
    return port


def serve_sync(stubs: Path, root: Path, host: str) -> None:
    pb2, pb2_grpc = load_stubs(stubs)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SYNC_THREADS))
    _add(server, pb2_grpc, *sync_servicers(pb2, pb2_grpc, root), host)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


async def serve_aio(stubs: Path, root: Path, host: str) -> None:
    pb2, pb2_grpc = load_stubs(stubs)
    server = grpc.aio.server()
    _add(server, pb2_grpc, *aio_servicers(pb2, pb2_grpc, root), host)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("flavour", choices=["aio", "sync"])
    parser.add_argument("--stubs", type=Path, required=True, help="where compile_stubs wrote")
    parser.add_argument("--root", type=Path, required=True, help="directory of the files")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.flavour == "aio":
        asyncio.run(serve_aio(args.stubs, args.root, args.host))
    else:
        serve_sync(args.stubs, args.root, args.host)


if __name__ == "__main__":
    main()
