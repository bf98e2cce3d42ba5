"""``muxs upload``, ``download``, ``ls``, ``stat`` and ``rm`` against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pty
import sys
from pathlib import Path

import pytest

from muxs import RunningServer
from muxs.cli import main
from muxs.cli.files import human_size


async def test_upload_download_ls_stat_rm(
    live_server: RunningServer,
    root_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = ["--target", live_server.target]
    data = os.urandom(150_000)
    (tmp_path / "src.bin").write_bytes(data)
    monkeypatch.chdir(tmp_path)

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(main, [*argv, *target])

    assert await run("upload", "src.bin", "docs/copy.bin") == 0
    assert (root_dir / "docs" / "copy.bin").read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert capsys.readouterr().out == (
        f"uploaded 150000 bytes to docs/copy.bin (sha256 {digest})\n"
    )

    assert await run("download", "docs/copy.bin") == 0
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert await run("download", "docs/copy.bin", "other.bin") == 0
    assert (tmp_path / "other.bin").read_bytes() == data
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "downloaded 150000 bytes to copy.bin",
        "downloaded 150000 bytes to other.bin",
    ]
    assert captured.err == ""  # no progress bar when stderr is not a terminal

    (root_dir / "a.txt").write_text("hi")
    assert await run("ls") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["-", "d"]
    assert [line.split()[-1] for line in lines] == ["a.txt", "docs/"]
    assert lines[0].split()[1] == "2"

    assert await run("stat", "docs/copy.bin") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["name: docs/copy.bin", "type: file", "size: 150000"]
    assert out[3].startswith("mtime: ")

    assert await run("rm", "docs/copy.bin") == 0
    assert capsys.readouterr().out == ""
    assert not (root_dir / "docs" / "copy.bin").exists()


async def test_failures_are_one_line_and_exit_1(
    live_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", live_server.target]
    for argv in (
        ["rm", "missing"],
        ["upload", str(tmp_path / "missing.bin"), "x"],
        ["download", "../escape", str(tmp_path / "x")],
    ):
        assert await asyncio.to_thread(main, [*argv, *target]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "muxs rm: NOT_FOUND: missing does not exist",
        f"muxs upload: No such file or directory: {tmp_path / 'missing.bin'}",
        "muxs download: PERMISSION_DENIED: ../escape leads outside the root",
    ]
    assert os.listdir(tmp_path) == ["root"]


async def test_download_draws_a_progress_bar_on_a_terminal(
    live_server: RunningServer, root_dir: Path, tmp_path: Path
) -> None:
    (root_dir / "big.bin").write_bytes(b"x" * 1_000_000)
    controller, terminal = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "muxs", "download", "big.bin", str(tmp_path / "big.bin")],
            *["--target", live_server.target],
            stdout=asyncio.subprocess.PIPE,
            stderr=terminal,
        )
        out, _ = await process.communicate()
        os.close(terminal)
        drawn = b""
        while True:
            try:
                block = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not block:
                break
            drawn += block
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert out == f"downloaded 1000000 bytes to {tmp_path / 'big.bin'}\n".encode()
    text = drawn.decode()
    assert "download big.bin [" in text
    assert "  0% 0 B of 976.6 KiB" in text
    assert f"[{'#' * 30}] 100% 976.6 KiB of 976.6 KiB" in text
    assert text.endswith("\r\n")


@pytest.mark.parametrize("remote", [".", "dir/..", ""])
def test_download_needs_a_local_name_when_remote_has_none(
    remote: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["download", remote, "--target", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"muxs download: {remote!r} has no file name; give LOCAL\n")


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (20 * 1024**2, "20.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5000 * 1024**3, "5000.0 GiB"),
    ],
)
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize("command", ["upload", "download", "ls", "stat", "rm"])
def test_every_file_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: muxs {command}" in capsys.readouterr().out
