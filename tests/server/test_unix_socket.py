"""Serving on a Unix domain socket: the socket file's life, refusals, clients and access logs."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from muxs import Client, ConfigError, ServerSettings, SyncClient, serve
from muxs.client import unix_socket_path
from muxs.server.settings import MAX_UDS_PATH_BYTES
from muxs.server.unix_socket import bind_unix, describe_unix_peer
from tests.access import access_records


async def test_a_client_calls_the_server_over_its_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "muxs.sock"
    async with serve(root=tmp_path / "root", path=path) as running:
        assert running.target == f"unix://{path}"
        assert (running.path, running.host, running.port) == (path, "", 0)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        async with Client(running.target) as client:
            assert (await client.say_hello("you")).message == "Hello, you!"
    assert not path.exists()


async def test_a_sync_client_and_a_relative_target_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with serve(root="root", path="muxs.sock"):

        def call() -> str:
            with SyncClient("unix:muxs.sock") as client:
                return client.say_hello("sync").message

        assert await asyncio.to_thread(call) == "Hello, sync!"


async def test_the_access_log_names_the_unix_peer_by_pid_and_uid(tmp_path: Path) -> None:
    with access_records() as records:
        async with serve(root=tmp_path / "root", path=tmp_path / "s") as running:
            async with Client(running.target) as client:
                await client.say_hello("x")
            fields = await records.finished("/muxs.Greeter/SayHello")
    assert fields["peer"] == f"unix:pid={os.getpid()},uid={os.getuid()}"


@pytest.mark.parametrize(("access", "mode"), [("group", 0o660), ("anyone", 0o666)])
async def test_uds_access_sets_the_socket_file_mode(tmp_path: Path, access: str, mode: int) -> None:
    settings = ServerSettings(root=tmp_path / "root", uds=tmp_path / "s", uds_access=access)
    async with serve(settings=settings):
        assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == mode


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s"
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(str(path))  # bound, then gone without removing its file: as after SIGKILL
    crashed.close()
    async with (
        serve(root=tmp_path / "root", path=path) as running,
        Client(running.target) as client,
    ):
        assert (await client.say_hello("again")).message == "Hello, again!"


async def test_a_running_servers_socket_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "s"
    async with serve(root=tmp_path / "root", path=path) as running:
        with pytest.raises(OSError, match="is the socket of a server that is running") as refused:
            async with serve(root=tmp_path / "root", path=path):
                pass
        assert refused.value.errno == errno.EADDRINUSE
        async with Client(running.target) as client:
            assert (await client.say_hello("still")).message == "Hello, still!"


async def test_a_regular_file_at_the_path_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not a socket: not replacing it"):
        async with serve(root=tmp_path / "root", path=path):
            pass
    assert path.read_text() == "keep me"


def test_stop_leaves_a_socket_file_that_another_server_made_since(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = bind_unix(path, "owner")
    path.unlink()  # by hand, while the first server still runs
    second = bind_unix(path, "owner")
    first.sock.close()
    first.remove()
    assert path.exists()
    second.sock.close()
    second.remove()
    assert not path.exists()


def test_a_path_too_long_for_a_unix_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ("a" * MAX_UDS_PATH_BYTES)
    with pytest.raises(ConfigError, match="a Unix socket path holds at most 107"):
        ServerSettings(uds=path)


def test_several_workers_cannot_share_a_unix_socket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uds: cannot be shared by several workers"):
        ServerSettings(uds=tmp_path / "s", workers=2)


def test_tokens_over_a_unix_socket_need_no_tls(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    settings = ServerSettings(host="0.0.0.0", uds=tmp_path / "s", auth_tokens=tokens)
    assert not settings.plaintext_remote_auth


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("unix:///run/muxs.sock", "/run/muxs.sock"),
        ("unix:/run/muxs.sock", "/run/muxs.sock"),
        ("unix:muxs.sock", "muxs.sock"),
        ("127.0.0.1:50051", None),
    ],
)
def test_unix_targets_follow_grpcs_syntax(target: str, path: str | None) -> None:
    assert unix_socket_path(target) == path


@pytest.mark.parametrize("target", ["unix:", "unix://", "unix:///", "unix://host/run/s"])
def test_malformed_unix_targets_are_refused(target: str) -> None:
    with pytest.raises(ValueError, match="unix"):
        unix_socket_path(target)


def test_a_peer_the_kernel_does_not_describe_is_just_unix() -> None:
    assert describe_unix_peer(None) == "unix"


async def test_a_unix_socket_passed_as_sock_is_described_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "given.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    async with serve(root=tmp_path / "root", sock=sock) as running:
        assert running.target == f"unix://{path}"
        async with Client(running.target) as client:
            assert (await client.say_hello("given")).message == "Hello, given!"
