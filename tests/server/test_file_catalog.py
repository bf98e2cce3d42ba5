"""List, Stat and Delete; the create-directories switch; the seed's error style."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from grpclib.testing import ChannelFor

from muxs import Client, FileInfo, RpcError, ServerSettings, StatusCode
from muxs.server.serving import build_services
from muxs.server.storage import TEMP_PREFIX, LocalRoot
from muxs.server.storage.local import LIST_BATCH


async def listing(client: Client, path: str = "") -> dict[str, FileInfo]:
    return {info.name: info async for info in client.list(path)}


async def refused(call: object) -> StatusCode:
    with pytest.raises(RpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.status


async def test_list_describes_files_and_directories(client: Client, root_dir: Path) -> None:
    (root_dir / "a.txt").write_bytes(b"12345")
    (root_dir / "sub").mkdir()
    (root_dir / "sub" / "b.txt").write_bytes(b"")
    entries = await listing(client)
    assert sorted(entries) == ["a.txt", "sub"]
    assert entries["a.txt"].size == 5
    assert not entries["a.txt"].is_dir
    assert entries["a.txt"].mtime == (root_dir / "a.txt").stat().st_mtime
    assert entries["sub"].is_dir
    assert entries["sub"].size == 0
    assert await listing(client, ".") == entries
    assert await listing(client, "sub/../") == entries
    assert sorted(await listing(client, "sub")) == ["b.txt"]


async def test_list_shows_only_what_stat_would_describe(client: Client, root_dir: Path) -> None:
    outside = root_dir.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root_dir / "real.txt").write_bytes(b"abc")
    (root_dir / "inside_link").symlink_to("real.txt")
    (root_dir / "escaping_link").symlink_to(outside / "secret")
    (root_dir / "relative_escape").symlink_to("../outside")
    (root_dir / "dangling").symlink_to("nowhere")
    (root_dir / f"{TEMP_PREFIX}0123").write_bytes(b"partial")
    os.mkfifo(root_dir / "pipe")
    os.mknod(root_dir / "null", 0o600 | 0o020000, os.makedev(1, 3))
    entries = await listing(client)
    assert sorted(entries) == ["inside_link", "real.txt"]
    assert entries["inside_link"].size == 3


async def test_list_streams_directories_of_any_length(client: Client, root_dir: Path) -> None:
    count = LIST_BATCH * 2 + 7
    for index in range(count):
        (root_dir / f"f{index}").touch()
    assert len(await listing(client)) == count


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("missing", StatusCode.NOT_FOUND),
        ("file", StatusCode.FAILED_PRECONDITION),
        ("pipe", StatusCode.PERMISSION_DENIED),
        ("..", StatusCode.PERMISSION_DENIED),
        ("out", StatusCode.PERMISSION_DENIED),
        ("/", StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_list_refusals(client: Client, root_dir: Path, path: str, status: StatusCode) -> None:
    (root_dir / "file").write_bytes(b"x")
    os.mkfifo(root_dir / "pipe")
    (root_dir / "out").symlink_to(root_dir.parent)
    assert await refused(listing(client, path)) is status


async def test_stat_describes_a_file_a_directory_and_the_root(
    client: Client, root_dir: Path
) -> None:
    (root_dir / "d").mkdir()
    (root_dir / "d" / "f.bin").write_bytes(b"\0" * 1000)
    (root_dir / "link").symlink_to("d/f.bin")
    info = await client.stat("d/f.bin")
    assert (info.name, info.size, info.is_dir) == ("d/f.bin", 1000, False)
    assert info.mtime == (root_dir / "d" / "f.bin").stat().st_mtime
    assert (await client.stat("link")).size == 1000
    directory = await client.stat("d")
    assert (directory.name, directory.size, directory.is_dir) == ("d", 0, True)
    assert (await client.stat(".")).is_dir


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("missing", StatusCode.NOT_FOUND),
        ("pipe", StatusCode.PERMISSION_DENIED),
        ("sock", StatusCode.PERMISSION_DENIED),
        ("../x", StatusCode.PERMISSION_DENIED),
        ("", StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_stat_refusals(
    client: Client,
    root_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    status: StatusCode,
) -> None:
    os.mkfifo(root_dir / "pipe")
    monkeypatch.chdir(root_dir)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        assert await refused(client.stat(name)) is status


async def test_delete_removes_a_file(client: Client, root_dir: Path) -> None:
    (root_dir / "d").mkdir()
    (root_dir / "d" / "f").write_bytes(b"x")
    assert (await client.delete("d/f")).code == 0
    assert os.listdir(root_dir / "d") == []
    assert await refused(client.delete("d/f")) is StatusCode.NOT_FOUND


async def test_delete_through_a_symlink_inside_the_root_removes_its_target(
    client: Client, root_dir: Path
) -> None:
    (root_dir / "real").write_bytes(b"x")
    (root_dir / "link").symlink_to("real")
    await client.delete("link")
    assert not (root_dir / "real").exists()
    assert (root_dir / "link").is_symlink()


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("d", StatusCode.PERMISSION_DENIED),
        (".", StatusCode.PERMISSION_DENIED),
        ("pipe", StatusCode.PERMISSION_DENIED),
        ("out/secret", StatusCode.PERMISSION_DENIED),
        ("../outside/secret", StatusCode.PERMISSION_DENIED),
        (f"{TEMP_PREFIX}0123", StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_delete_refusals_remove_nothing(
    client: Client, root_dir: Path, name: str, status: StatusCode
) -> None:
    outside = root_dir.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root_dir / "out").symlink_to(outside)
    (root_dir / "d").mkdir()
    os.mkfifo(root_dir / "pipe")
    (root_dir / f"{TEMP_PREFIX}0123").write_bytes(b"x")
    before = sorted(os.listdir(root_dir))
    assert await refused(client.delete(name)) is status
    assert sorted(os.listdir(root_dir)) == before
    assert (outside / "secret").read_bytes() == b"secret"


@pytest.fixture
async def strict_client(settings: ServerSettings, storage: LocalRoot) -> AsyncIterator[Client]:
    """A client of a server that does not create directories."""
    services = build_services(replace(settings, create_dirs=False), storage)
    async with ChannelFor(services) as channel:
        yield Client("in-memory:0", channel=channel)


async def test_writes_can_be_kept_from_creating_directories(
    strict_client: Client, root_dir: Path
) -> None:
    for call in (strict_client.write("new/f", "x"), strict_client.write_bytes("new/f", b"x")):
        with pytest.raises(RpcError) as caught:
            await call
        assert caught.value.status is StatusCode.NOT_FOUND
        assert caught.value.message == "a parent directory of new/f does not exist"
    assert os.listdir(root_dir) == []
    (root_dir / "old").mkdir()
    assert (await strict_client.write("old/f", "x")).code == 0


@pytest.fixture
async def seed_client(settings: ServerSettings, storage: LocalRoot) -> AsyncIterator[Client]:
    """A client of a server answering Read and Write failures as the seed server did."""
    services = build_services(replace(settings, error_style="seed"), storage)
    async with ChannelFor(services) as channel:
        yield Client("in-memory:0", channel=channel)


@pytest.mark.parametrize("name", ["missing.txt", "../escape", "", "dir", "blob", "/etc/passwd"])
async def test_seed_style_read_failures_are_the_seed_text(
    seed_client: Client, root_dir: Path, name: str
) -> None:
    (root_dir / "dir").mkdir()
    (root_dir / "blob").write_bytes(b"\xff")
    assert (await seed_client.read(name)).text == "Error: read failed"


@pytest.mark.parametrize("name", ["../escape", "", "dir", "/abs"])
async def test_seed_style_write_failures_are_code_1(
    seed_client: Client, root_dir: Path, name: str
) -> None:
    (root_dir / "dir").mkdir()
    status = await seed_client.write(name, "text")
    assert (status.code, status.sha256) == (1, "")


async def test_seed_style_keeps_successes_and_status_codes_for_new_calls(
    seed_client: Client,
) -> None:
    assert (await seed_client.write("f.txt", "hi")).code == 0
    assert (await seed_client.read("f.txt")).text == "hi"
    assert await refused(seed_client.read_bytes("missing")) is StatusCode.NOT_FOUND
    assert await refused(seed_client.stat("missing")) is StatusCode.NOT_FOUND
    assert await refused(seed_client.delete("../x")) is StatusCode.PERMISSION_DENIED
