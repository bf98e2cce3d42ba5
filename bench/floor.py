"""The floor: a bare grpclib server for the benchmarked calls, with a raw-bytes codec and
hand-written protobuf (no betterproto, no muxs). What grpclib and h2 alone cost.

Run as ``python -m bench.floor --root DIR [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.server import Server, Stream

from bench.filework import Upload, read_chunks
from bench.wire import RawCodec, field, fields

log = logging.getLogger(__name__)

DEFAULT_REPLY_COUNT = 10
RawStream = Stream[bytes, bytes]


class Floor:
    """SayHello, LotsOfReplies, ReadStream and WriteStream on raw bytes."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def __mapping__(self) -> dict[str, Handler]:
        def handler(
            method: Callable[[RawStream], Coroutine[Any, Any, None]], cardinality: Cardinality
        ) -> Handler:
            return Handler(method, cardinality, bytes, bytes)

        return {
            "/muxs.Greeter/SayHello": handler(self.say_hello, Cardinality.UNARY_UNARY),
            "/muxs.Greeter/LotsOfReplies": handler(self.lots_of_replies, Cardinality.UNARY_STREAM),
            "/muxs.FileController/ReadStream": handler(self.read_stream, Cardinality.UNARY_STREAM),
            "/muxs.FileController/WriteStream": handler(
                self.write_stream, Cardinality.STREAM_UNARY
            ),
        }

    async def say_hello(self, stream: RawStream) -> None:
        request = dict(fields(await stream.recv_message() or b""))
        await stream.send_message(field(1, b"Hello, " + bytes(request.get(1, b"")) + b"!"))

    async def lots_of_replies(self, stream: RawStream) -> None:
        request = dict(fields(await stream.recv_message() or b""))
        message = field(1, b"Hello, " + bytes(request.get(1, b"")) + b"!")
        count = int(request.get(2, DEFAULT_REPLY_COUNT))
        for index in range(1, count + 1):
            await stream.send_message(message + field(2, index))

    async def read_stream(self, stream: RawStream) -> None:
        request = dict(fields(await stream.recv_message() or b""))
        for data in read_chunks(self._root, bytes(request.get(1, b"")).decode()):
            await stream.send_message(field(2, data))

    async def write_stream(self, stream: RawStream) -> None:
        upload = None
        async for message in stream:
            chunk = dict(fields(message))
            upload = upload or Upload(self._root, bytes(chunk.get(1, b"")).decode())
            upload.write(bytes(chunk.get(2, b"")))
        assert upload is not None, "WriteStream without a chunk"
        await stream.send_message(field(2, upload.finish().encode()))


async def serve(root: Path, host: str) -> None:
    server = Server([Floor(root)], codec=RawCodec())
    sock = socket.create_server((host, 0))
    await server.start(sock=sock)
    log.info("listening on %s:%d", host, sock.getsockname()[1])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="directory of the files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.uvloop:
        import uvloop

        uvloop.run(serve(args.root, args.host))
    else:
        asyncio.run(serve(args.root, args.host))


if __name__ == "__main__":
    main()
