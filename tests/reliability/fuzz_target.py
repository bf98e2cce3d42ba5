"""A fuzz target over the server's request path: framing, decoding and every handler.

An input is a method (its first byte picks one) and the raw bytes of a request stream
(the rest). They go through what the server runs for a call: ``RequestReader`` over
grpclib's stream ``Buffer``, grpclib's ``recv_message`` with muxs's ``Codec``, the
generated glue and muxs's handler, whose replies are encoded. Only the HTTP/2 transport
is left out, for speed (tests/reliability/test_garbage.py covers it). The call must
end with replies or a ``GRPCError`` of a status a client can act on; anything else
(another exception, UNKNOWN) is a crash.

``tests/reliability/fuzz.py`` runs it coverage-guided with atheris; a crash file it
writes goes into tests/reliability/fuzz_crashes/, where tests/reliability/test_fuzz.py
replays it in every test run.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

from grpclib.const import Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import Buffer
from grpclib.server import Stream as ServerStream
from grpclib.stream import StreamIterator, recv_message

from muxs.server.codec import Codec
from muxs.server.limits import RequestReader
from muxs.server.serving import build_services
from muxs.server.settings import ServerSettings
from muxs.server.storage import LocalRoot, Root
from muxs_api.muxs import Chunk, Files, HelloRequest, ListRequest, Number
from tests.rawh2 import grpc_frame
from tests.reliability.methods import LIMIT, MAX_REPLIES, REFUSALS, implemented

_CLEAN_EVERY = 500


class _CallStream(StreamIterator[Any]):
    """The part of grpclib's server ``Stream`` the generated glue uses, over bytes in memory."""

    def __init__(self, body: bytes, method: Handler) -> None:
        buffer = Buffer(lambda size: None)
        buffer.add(body, len(body))
        buffer.eof()
        self.recv_data = RequestReader(
            buffer.read,
            max_message_bytes=LIMIT,
            client_streaming=method.cardinality.client_streaming,
            request_headers=(),
        )
        self._method = method
        self._codec = Codec()
        self.replies = 0

    async def recv_message(self) -> Any:
        return await recv_message(cast(Any, self), self._codec, self._method.request_type)

    async def send_message(self, message: Any) -> None:
        self._codec.encode(message, self._method.reply_type)
        self.replies += 1


class Target:
    """The muxs services over a scratch root, and one event loop, for many inputs."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="muxs-fuzz-"))
        self._root = Root(self._dir)
        settings = ServerSettings(
            root=self._dir, max_message_bytes=LIMIT, max_stream_replies=MAX_REPLIES
        )
        self.methods = {
            path: method
            for service in build_services(settings, LocalRoot(self._root))
            for path, method in service.__mapping__().items()
        }
        self._paths = sorted(self.methods)
        self._loop = asyncio.new_event_loop()
        self._runs = 0

    def close(self) -> None:
        self._loop.close()
        self._root.close()
        shutil.rmtree(self._dir)

    def path_for(self, data: bytes) -> str:
        return self._paths[data[0] % len(self._paths)] if data else self._paths[0]

    def check(self, data: bytes) -> None:
        """Run one input; raise ``AssertionError`` (or what escaped) if it is a crash."""
        self._runs += 1
        if not self._runs % _CLEAN_EVERY:
            for entry in self._dir.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self._loop.run_until_complete(self._call(self.path_for(data), data[1:]))

    async def _call(self, path: str, body: bytes) -> None:
        method = self.methods[path]
        stream = _CallStream(body, method)
        try:
            await method.func(cast(ServerStream[Any, Any], stream))
        except GRPCError as exc:
            _check_refusal(path, exc)
            return
        if not method.cardinality.server_streaming:
            assert stream.replies == 1, f"{path}: {stream.replies} replies"


def _check_refusal(path: str, error: GRPCError) -> None:
    if error.status is Status.UNIMPLEMENTED and not implemented(path):
        return
    assert error.status in REFUSALS, f"{path}: {error.status.name} {error.message}"
    assert error.message, f"{path}: {error.status.name} without a message"
    assert "Traceback" not in error.message


def seeds(target: Target) -> list[bytes]:
    """One well-formed call for each method, for the fuzzer to start from."""
    requests: dict[type, list[bytes]] = {
        HelloRequest: [bytes(HelloRequest(name="fuzz", count=3))],
        Number: [bytes(Number(value=2.0))],
        Files: [bytes(Files(filename="dir/seed.txt", text="seed text"))],
        Chunk: [bytes(Chunk(filename="seed.bin", data=b"\x00\x01")), bytes(Chunk(data=b"more"))],
        ListRequest: [bytes(ListRequest(path="dir"))],
    }
    out = []
    for index, path in enumerate(target._paths):
        messages = requests[target.methods[path].request_type]
        out.append(bytes([index]) + b"".join(grpc_frame(message) for message in messages))
    return out
