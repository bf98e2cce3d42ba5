"""``muxs upload``, ``download``, ``ls``, ``stat`` and ``rm`` against a real server."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from muxs import RunningServer
from muxs.cli import main
from muxs.cli.files import Progress


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


async def test_failures_say_what_failed_and_exit_1(
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
        "  field: filename",
    ]
    assert os.listdir(tmp_path) == ["root"]


COLUMNS = 60
RATE_AND_ETA = re.compile(r" [\d.]+[kMG]?B/s ETA \d\d:\d\d$")


async def drawn_on_a_terminal(*argv: str) -> tuple[int, bytes, str]:
    """Run ``muxs ARGV`` with stderr on a pseudo-terminal COLUMNS wide: (exit code, stdout,
    what was drawn on the terminal)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    try:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "muxs", *argv],
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
    assert process.returncode is not None
    return process.returncode, out, drawn.decode()


@pytest.mark.parametrize("command", ["download", "upload"])
async def test_a_transfer_draws_a_progress_bar_with_rate_and_eta_as_wide_as_the_terminal(
    command: str, live_server: RunningServer, root_dir: Path, tmp_path: Path
) -> None:
    (root_dir / "big.bin").write_bytes(b"x" * 1_000_000)
    (tmp_path / "big.bin").write_bytes(b"x" * 1_000_000)
    paths = ["big.bin", str(tmp_path / "big.bin")]
    if command == "upload":
        paths.reverse()
    code, out, drawn = await drawn_on_a_terminal(command, *paths, "--target", live_server.target)
    assert code == 0
    done = "downloaded 1000000 bytes to" if command == "download" else "uploaded 1000000 bytes"
    assert out.decode().startswith(done)
    redraws = [line for line in re.split(r"[\r\n]+", drawn) if line.strip()]
    assert redraws[0].startswith(f"{command} big.bin   0%")
    assert redraws[-1].startswith(f"{command} big.bin 100%")
    assert "977k/977k" in redraws[-1]
    assert RATE_AND_ETA.search(redraws[-1])
    assert all(len(line) <= COLUMNS for line in redraws)
    assert drawn.endswith("\r\n")


def test_the_progress_bar_draws_nothing_and_imports_nothing_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress("download x", stream)
    for done in (0, 500, 1000):
        progress(done, 1000)
    progress.finish()
    assert stream.getvalue() == ""
    assert progress.done == 1000
    check = "import sys, muxs.cli, muxs.cli.files; print('tqdm' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    assert imported.stdout == "False\n"


@pytest.mark.parametrize("remote", [".", "dir/..", ""])
def test_download_needs_a_local_name_when_remote_has_none(
    remote: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["download", remote, "--target", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"muxs download: {remote!r} has no file name; give LOCAL\n")


@pytest.mark.parametrize("command", ["upload", "download", "ls", "stat", "rm"])
def test_every_file_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: muxs {command}" in capsys.readouterr().out
