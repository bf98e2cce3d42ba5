"""The typed async SDK: one channel, every muxs method, errors as ``RpcError``."""

from __future__ import annotations

from collections.abc import Awaitable
from types import TracebackType
from typing import Self, TypeVar

from grpclib.client import Channel

from muxs.api import (
    Content,
    FileControllerStub,
    Files,
    GreeterStub,
    HelloReply,
    HelloRequest,
    Number,
    Status,
)
from muxs.errors import translate_errors

DEFAULT_TARGET = "127.0.0.1:50051"

T = TypeVar("T")


def parse_target(target: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into its parts; raise ``ValueError`` if malformed."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


class Client:
    """A connection to a muxs server, for use as ``async with Client(target) as client``.

    Every method takes ``timeout`` (seconds; the call's gRPC deadline), defaulting to the
    client's ``timeout``. A failed call raises ``muxs.RpcError`` with its gRPC status.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = None,
        channel: Channel | None = None,
    ) -> None:
        """Connect to ``target`` (``host:port``), or use an existing grpclib ``channel``."""
        if channel is None:
            host, port = parse_target(target)
            channel = Channel(host, port)
        self.target = target
        self.timeout = timeout
        self._channel = channel
        self._greeter = GreeterStub(channel)
        self._files = FileControllerStub(channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; calls in flight fail with UNAVAILABLE."""
        self._channel.close()

    async def _call(self, call: Awaitable[T]) -> T:
        with translate_errors(self.target):
            return await call

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    async def say_hello(self, name: str, *, timeout: float | None = None) -> HelloReply:
        """``Hello, {name}!``."""
        request = HelloRequest(name=name)
        return await self._call(self._greeter.say_hello(request, timeout=self._timeout(timeout)))

    async def square(self, value: float, *, timeout: float | None = None) -> Number:
        """The square root of ``value`` (the reference's behaviour); negative or NaN is refused."""
        request = Number(value=value)
        return await self._call(self._greeter.square(request, timeout=self._timeout(timeout)))

    async def read(self, filename: str, *, timeout: float | None = None) -> Content:
        """The text of ``filename`` under the server's root."""
        request = Files(filename=filename)
        return await self._call(self._files.read(request, timeout=self._timeout(timeout)))

    async def write(self, filename: str, text: str, *, timeout: float | None = None) -> Status:
        """Atomically replace ``filename`` with ``text``; ``code`` 0 once it is on disk."""
        request = Files(filename=filename, text=text)
        return await self._call(self._files.write(request, timeout=self._timeout(timeout)))
