"""Shared fixtures: an in-memory client (most tests) and a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from grpclib.testing import ChannelFor

from muxs import Client, RunningServer, ServerSettings, serve
from muxs.server import build_services
from muxs.storage import Root
from tests.probe import CallProbe


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
def storage(root_dir: Path) -> Iterator[Root]:
    root = Root(root_dir)
    yield root
    root.close()


@pytest.fixture
async def client(settings: ServerSettings, storage: Root) -> AsyncIterator[Client]:
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
