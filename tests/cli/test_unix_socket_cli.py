"""``muxs serve --uds`` as a process, and client commands with ``--target unix://…``."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import pytest

from muxs.cli import main
from tests.processes import die_with_parent, listening_target, logged_muxs


async def muxs(*args: str) -> tuple[int, str, str]:
    """Run ``muxs *args`` to its end: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "muxs",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_serve_uds_answers_muxs_hello_and_removes_its_socket(tmp_path: Path) -> None:
    path = tmp_path / "muxs.sock"
    async with logged_muxs(tmp_path / "root", "--uds", str(path)) as (target, lines):
        assert target == f"unix://{path}"
        assert await muxs("hello", "cli", "--target", target) == (0, "Hello, cli!\n", "")
    assert any("peer=unix:pid=" in line for line in lines)
    assert not path.exists()


async def test_a_socket_left_by_a_killed_server_is_replaced_at_start(tmp_path: Path) -> None:
    path = tmp_path / "muxs.sock"
    serve = [sys.executable, "-m", "muxs", "serve", "--uds", str(path), "--root", str(tmp_path)]
    killed = await asyncio.create_subprocess_exec(
        *serve, stderr=asyncio.subprocess.PIPE, preexec_fn=die_with_parent
    )
    try:
        await listening_target(killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        await killed.wait()
    assert path.is_socket()
    async with logged_muxs(tmp_path / "root", "--uds", str(path)) as (target, lines):
        assert (await muxs("hello", "again", "--target", target))[0] == 0
    assert any(f"replaced the stale socket {path}" in line for line in lines)


async def test_a_regular_file_at_the_uds_path_is_refused_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    code, _, err = await muxs("serve", "--uds", str(path), "--root", str(tmp_path / "root"))
    assert (code, err) == (
        1,
        f"muxs serve: cannot start: {path} exists and is not a socket: not replacing it\n",
    )
    assert path.read_text() == "keep me"


async def test_a_uds_path_in_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "s.sock"
    code, _, err = await muxs("serve", "--uds", str(path), "--root", str(tmp_path / "root"))
    assert (code, err) == (1, f"muxs serve: cannot start: {path}: No such file or directory\n")


async def test_a_port_in_use_is_refused_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        for workers in ("1", "2"):
            code, _, err = await muxs(
                "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", workers,
                "--root", str(tmp_path / "root"),
            )  # fmt: skip
            assert (code, err) == (
                1,
                f"muxs serve: cannot start: 127.0.0.1:{port}: Address already in use\n",
            )


async def test_the_socket_of_a_running_server_is_refused_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "other.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen()
        code, _, err = await muxs("serve", "--uds", str(path), "--root", str(tmp_path / "root"))
    assert (code, err) == (
        1,
        f"muxs serve: cannot start: {path} is the socket of a server that is running\n",
    )


def test_a_uds_path_too_long_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ("s" * 120)
    assert main(["serve", "--uds", str(path)]) == 2
    length = len(str(path))
    assert capsys.readouterr().err == (
        f"muxs serve: invalid setting: uds: {path} is {length} bytes long as an absolute path; "
        "a Unix socket path holds at most 107: choose a shorter one (from flag --uds)\n"
    )


def test_uds_with_workers_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--uds", str(tmp_path / "s"), "--workers", "2"]) == 2
    assert capsys.readouterr().err == (
        "muxs serve: invalid setting: uds: cannot be shared by several workers (a Unix socket "
        "has one listener): use workers = 1, or TCP (from flag --uds)\n"
    )


def test_a_missing_socket_is_unavailable_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"unix://{tmp_path}/absent.sock"
    assert main(["hello", "x", "--target", target]) == 1
    assert capsys.readouterr().err.startswith(f"muxs hello: UNAVAILABLE: cannot reach {target}:")


def test_a_malformed_unix_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["hello", "x", "--target", "unix://host/s"])
    assert exited.value.code == 2
    assert "is not unix:///ABSOLUTE/PATH or unix:RELATIVE/PATH" in capsys.readouterr().err
