"""Embedding: ``muxs.serve`` runs inside the caller's event loop and stops cleanly."""

import asyncio
import socket
from pathlib import Path

import pytest

from muxs import Client, ConfigError, RpcError, ServerSettings, StatusCode, serve
from muxs.server.storage import TEMP_PREFIX


async def test_serve_binds_an_ephemeral_port_and_stops(tmp_path: Path) -> None:
    tasks_before = asyncio.all_tasks()
    async with serve("127.0.0.1", 0, root=tmp_path / "data") as running:
        assert running.port > 0
        assert running.root == (tmp_path / "data").resolve()
        async with Client(running.target) as client:
            assert (await client.say_hello("embedded")).message == "Hello, embedded!"
    assert asyncio.all_tasks() == tasks_before
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", running.port)) != 0
    async with Client(running.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("gone")
    assert caught.value.status is StatusCode.UNAVAILABLE


async def test_serve_creates_the_root_and_removes_stale_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / f"{TEMP_PREFIX}deadbeefdeadbeef").write_text("torn")  # as AtomicFile names it
    (root / "keep.txt").write_text("mine")
    async with serve("127.0.0.1", 0, root=root):
        assert sorted(p.name for p in root.rglob("*")) == ["keep.txt", "sub"]


async def test_explicit_arguments_override_settings(tmp_path: Path) -> None:
    base = ServerSettings(host="127.0.0.1", port=1, root=tmp_path / "ignored")
    async with serve(port=0, root=tmp_path / "used", settings=base) as running:
        assert running.port != 1
        assert running.root == (tmp_path / "used").resolve()


@pytest.mark.parametrize(
    ("changes", "option"),
    [({"port": 70000}, "port"), ({"host": ""}, "host"), ({"max_message_bytes": 10}, "max_message")],
)
def test_invalid_settings_name_the_option(changes: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        ServerSettings(**changes)  # type: ignore[arg-type]
