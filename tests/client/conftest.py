"""Ports on 127.0.0.1 where no muxs server answers (yet), and a channel counting its attempts."""

import socket
from collections.abc import Awaitable, Callable, Iterator

import pytest
from grpclib.protocol import H2Protocol

from muxs.channel import AnsweringChannel


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def unready() -> Iterator[socket.socket]:
    """A socket bound on 127.0.0.1 that does not listen yet (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


class CountingChannel(AnsweringChannel):
    """A channel that counts its connection attempts."""

    attempts = 0

    async def connect(self, connect: Callable[[], Awaitable[H2Protocol]]) -> H2Protocol:
        self.attempts += 1
        return await super().connect(connect)
