"""Shared fixtures: an in-memory client (most tests), a real server on 127.0.0.1, and grpcio
stubs (``_pb2`` modules compiled from proto/ at test time) for interop tests."""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvloop
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.server import Server
from grpclib.testing import ChannelFor

from muxs import Client, RunningServer, ServerSettings, compression, serve
from muxs.server import limits
from muxs.server.codec import Codec
from muxs.server.serving import build_services
from muxs.server.storage import LocalRoot, Root
from tests.echo import EchoGreeter
from tests.probe import CallProbe
from tests.seaweedfs import S3Engine, seaweedfs
from tools.codegen import grpcio_stubs

#: ``pytester``: tests/test_testing_example.py runs the README's test module as a user would.
pytest_plugins = ["pytester"]

#: The event loops a test marked ``both_loops`` runs on: muxs serves on uvloop when it is
#: installed, and uvloop hands a socket's data to the server differently from asyncio.
BOTH_LOOPS: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked ``both_loops`` run once per loop of ``BOTH_LOOPS``; the others on asyncio
    (one factory: pytest-asyncio adds nothing to their ids)."""
    if item.get_closest_marker("both_loops") is not None:
        return BOTH_LOOPS
    return {"asyncio": asyncio.SelectorEventLoop}


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Undo what an in-process ``muxs serve`` configured: its handler writes to the stderr
    of the test that ran it (pytest closes that stream), and its logger levels."""
    root = logging.getLogger()
    handlers, levels = root.handlers[:], {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_level = root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def root_dir(tmp_path: Path) -> Path:
    """The server's root directory, inside a parent the tests may use as 'outside'."""
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir)


@pytest.fixture
def storage(root_dir: Path) -> Iterator[LocalRoot]:
    root = Root(root_dir)
    yield LocalRoot(root)
    root.close()


@pytest.fixture
async def client(settings: ServerSettings, storage: LocalRoot) -> AsyncIterator[Client]:
    """An SDK client wired to the muxs services through grpclib's in-memory channel."""
    async with ChannelFor(build_services(settings, storage)) as channel:
        yield Client("in-memory:0", channel=channel)


@pytest.fixture
async def live_server(settings: ServerSettings) -> AsyncIterator[RunningServer]:
    """A muxs server listening on an ephemeral port of 127.0.0.1."""
    async with serve(settings=settings) as running:
        yield running


@pytest.fixture
def probe(live_server: RunningServer) -> CallProbe:
    """Watches the calls ``live_server`` handles (see ``tests/probe.py``)."""
    return CallProbe(live_server.server)


PROTO_DIR = Path(__file__).resolve().parents[1] / "proto"


@pytest.fixture(scope="session")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """``(muxs_pb2, muxs_pb2_grpc)`` as grpcio's own code generator writes them."""
    out = grpcio_stubs(tmp_path_factory.mktemp("grpcio_stubs"))
    sys.path.insert(0, str(out))
    try:
        modules: list[ModuleType] = [
            importlib.import_module("muxs_pb2"),
            importlib.import_module("muxs_pb2_grpc"),
        ]
        yield modules[0], modules[1]
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("muxs_pb2", None)
        sys.modules.pop("muxs_pb2_grpc", None)


@pytest.fixture
def echo_greeter() -> EchoGreeter:
    return EchoGreeter()


@pytest.fixture
async def echo_target(echo_greeter: EchoGreeter) -> AsyncIterator[str]:
    """``host:port`` of a grpclib server hosting ``echo_greeter`` (muxs's server codecs)."""
    server = Server([echo_greeter], codec=Codec(), status_details_codec=ProtoStatusDetailsCodec())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await server.start(sock=sock)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()
        sock.close()


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The encoding of every request message the server inflates, in order."""
    seen: list[str] = []

    async def counting(data: bytes, encoding: str, limit: int) -> bytes:
        seen.append(encoding)
        return await compression.inflate(data, encoding, limit)

    monkeypatch.setattr(limits, "inflate", counting)
    return seen


@pytest.fixture(scope="session")
def s3_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Engine]:
    """SeaweedFS, started once for the session (``tests/seaweedfs.py``)."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as engine:
        yield engine
