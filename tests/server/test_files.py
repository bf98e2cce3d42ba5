"""FileController through the SDK: reads, atomic writes and every refusal with its status."""

import os
import socket
from pathlib import Path

import pytest

from muxs import Client, RpcError, StatusCode


async def refused(call: object) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_write_then_read_round_trips(client: Client, root_dir: Path) -> None:
    status = await client.write("aaaa2.txt", "37183714ghgjh243")
    assert status.code == 0
    assert (root_dir / "aaaa2.txt").read_text() == "37183714ghgjh243"
    assert (await client.read("aaaa2.txt")).text == "37183714ghgjh243"


async def test_write_replaces_and_creates_parent_directories(
    client: Client, root_dir: Path
) -> None:
    await client.write("a/b/c.txt", "one")
    await client.write("a/b/c.txt", "two ✓")
    assert (root_dir / "a" / "b" / "c.txt").read_text() == "two ✓"
    assert (await client.read("./a//b/c.txt")).text == "two ✓"


async def test_write_leaves_no_temp_files(client: Client, root_dir: Path) -> None:
    await client.write("x.txt", "text")
    assert sorted(os.listdir(root_dir)) == ["x.txt"]


async def test_write_keeps_the_mode_of_the_file_it_replaces(client: Client, root_dir: Path) -> None:
    (root_dir / "script.sh").write_text("old")
    (root_dir / "script.sh").chmod(0o750)
    await client.write("script.sh", "new")
    assert (root_dir / "script.sh").stat().st_mode & 0o777 == 0o750


async def test_read_of_a_missing_file_is_not_found(client: Client) -> None:
    error = await refused(client.read("aaaa.txt"))
    assert error.status is StatusCode.NOT_FOUND
    assert error.message == "aaaa.txt does not exist"


async def test_read_in_a_missing_directory_is_not_found(client: Client) -> None:
    assert (await refused(client.read("no/such.txt"))).status is StatusCode.NOT_FOUND


async def test_symlinks_inside_the_root_are_followed(client: Client, root_dir: Path) -> None:
    (root_dir / "real").mkdir()
    (root_dir / "real" / "f.txt").write_text("inside")
    (root_dir / "alias").symlink_to("real")
    (root_dir / "link.txt").symlink_to("real/f.txt")
    assert (await client.read("alias/f.txt")).text == "inside"
    assert (await client.read("link.txt")).text == "inside"
    await client.write("link.txt", "through the link")
    assert (root_dir / "real" / "f.txt").read_text() == "through the link"
    assert (root_dir / "link.txt").is_symlink()


@pytest.mark.parametrize(
    ("name", "status"),
    [
        (".", StatusCode.PERMISSION_DENIED),
        ("a/..", StatusCode.PERMISSION_DENIED),
        ("a/b/../..", StatusCode.PERMISSION_DENIED),
        ("./", StatusCode.INVALID_ARGUMENT),  # a name ending in "/" is never a file's
    ],
)
async def test_the_root_itself_is_not_a_file(
    client: Client, root_dir: Path, name: str, status: StatusCode
) -> None:
    """More names are refused in tests/server/test_path_attacks.py, for every call."""
    (root_dir / "a" / "b").mkdir(parents=True)
    assert (await refused(client.read(name))).status is status
    assert (await refused(client.write(name, "x"))).status is status
    assert sorted(os.listdir(root_dir)) == ["a"]


async def test_symlink_loops_are_refused(client: Client, root_dir: Path) -> None:
    (root_dir / "loop").symlink_to("loop")
    assert (await refused(client.read("loop"))).status is StatusCode.INVALID_ARGUMENT


async def test_directories_are_not_files(client: Client, root_dir: Path) -> None:
    (root_dir / "dir").mkdir()
    assert (await refused(client.read("dir"))).status is StatusCode.PERMISSION_DENIED
    assert (await refused(client.write("dir", "x"))).status is StatusCode.PERMISSION_DENIED
    for name in ["dir/", "dir/."]:  # a name ending in "/" is never a file's
        assert (await refused(client.read(name))).status is StatusCode.INVALID_ARGUMENT
        assert (await refused(client.write(name, "x"))).status is StatusCode.INVALID_ARGUMENT
    assert (root_dir / "dir").is_dir()


async def test_a_file_used_as_a_directory_is_failed_precondition(
    client: Client, root_dir: Path
) -> None:
    (root_dir / "file").write_text("x")
    assert (await refused(client.read("file/x"))).status is StatusCode.FAILED_PRECONDITION
    assert (await refused(client.write("file/x", "y"))).status is StatusCode.FAILED_PRECONDITION


async def test_a_fifo_is_refused_without_hanging(client: Client, root_dir: Path) -> None:
    os.mkfifo(root_dir / "pipe")
    error = await refused(client.read("pipe", timeout=5))
    assert error.status is StatusCode.PERMISSION_DENIED
    assert (await refused(client.write("pipe", "x"))).status is StatusCode.PERMISSION_DENIED


async def test_a_socket_is_refused(
    client: Client, root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root_dir)  # AF_UNIX paths are short: bind relative to the root
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        assert (await refused(client.read("sock"))).status is StatusCode.PERMISSION_DENIED


async def test_non_utf8_content_is_failed_precondition(client: Client, root_dir: Path) -> None:
    (root_dir / "blob.bin").write_bytes(b"\xff\xfe\x00")
    error = await refused(client.read("blob.bin"))
    assert error.status is StatusCode.FAILED_PRECONDITION
    assert error.message == "blob.bin is not UTF-8 text; ReadStream reads any bytes"


async def test_messages_never_show_server_paths(client: Client, root_dir: Path) -> None:
    (root_dir / "dir").mkdir()
    for call in [client.read("missing"), client.read("dir"), client.read("../x")]:
        assert str(root_dir) not in (await refused(call)).message


@pytest.mark.parametrize("becomes", ["nothing", "a file"])
async def test_a_symlink_changed_as_it_is_resolved_is_looked_at_again(
    client: Client, root_dir: Path, monkeypatch: pytest.MonkeyPatch, becomes: str
) -> None:
    """The symlink seen a moment ago is gone, or a file, when its target is read: the
    name is resolved again (before: an OSError, INTERNAL and a traceback in the log)."""
    (root_dir / "target").write_text("through the link")
    (root_dir / "link").symlink_to("target")
    readlink = os.readlink

    def racing(path: str, *, dir_fd: int | None = None) -> str:
        monkeypatch.setattr(os, "readlink", readlink)  # once
        os.unlink(path, dir_fd=dir_fd)
        if becomes == "a file":
            (root_dir / "link").write_text("a file now")
        return readlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "readlink", racing)
    if becomes == "nothing":
        refusal = await refused(client.read("link"))
        assert (refusal.status, refusal.message) == (StatusCode.NOT_FOUND, "link does not exist")
    else:
        assert (await client.read("link")).text == "a file now"
