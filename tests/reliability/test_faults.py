"""Faults under the server: a full disk, a root gone read-only, a crash mid-write.

The disk faults use a small tmpfs mounted by the test (it needs root, as CI has); where
mounting is not permitted they are skipped and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxs import Client, RpcError, ServerSettings, StatusCode, serve
from muxs.server import serving
from muxs.server.storage import TEMP_PREFIX, Root, Sweep
from tests.polling import until
from tests.processes import listening_target


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` for the block, or the test skipped if mounts are refused."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(path: Path) -> None:
    """Write to ``path`` until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
            write_forever(fd)
    finally:
        os.close(fd)


def write_forever(fd: int) -> None:
    while True:
        os.write(fd, b"\0" * 65536)


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob(f"{TEMP_PREFIX}*"))


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "fs", "size=1m,nr_inodes=64") as mounted:
        yield mounted


async def test_a_full_disk_is_resource_exhausted_and_the_old_file_stays(small_root: Path) -> None:
    (small_root / "kept.txt").write_text("old")
    async with serve(port=0, root=small_root) as running, Client(running.target) as client:
        fill(small_root / "filler")
        with pytest.raises(RpcError) as caught:
            await client.write("kept.txt", "new" * 100_000)
        assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.message == "the server's storage is full"
        assert (await client.read("kept.txt")).text == "old"
        assert temp_files(small_root) == []
        (small_root / "filler").unlink()
        assert (await client.write("kept.txt", "new")).code == 0
        assert (small_root / "kept.txt").read_text() == "new"


async def test_no_inodes_left_is_resource_exhausted(small_root: Path) -> None:
    (small_root / "kept.txt").write_text("old")
    with contextlib.suppress(OSError):
        for number in range(100):  # more than nr_inodes
            (small_root / f"f{number}").touch()
    async with serve(port=0, root=small_root) as running, Client(running.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.write("kept.txt", "new")
        assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert (small_root / "kept.txt").read_text() == "old"


async def test_a_root_made_read_only_while_serving(small_root: Path) -> None:
    (small_root / "kept.txt").write_text("old")
    async with serve(port=0, root=small_root) as running, Client(running.target) as client:
        remount(small_root, "ro")
        try:
            with pytest.raises(RpcError) as caught:
                await client.write("kept.txt", "new")
            assert caught.value.status is StatusCode.UNAVAILABLE
            assert caught.value.message == "the server's storage is read-only"
            assert (await client.read("kept.txt")).text == "old"
            await running.lifecycle.health.refresh()
            assert await client.check_health("muxs.FileController") == "NOT_SERVING"
            assert await client.check_health("muxs.Greeter") == "SERVING"
        finally:
            remount(small_root, "rw")
        await running.lifecycle.health.refresh()
        assert await client.check_health("muxs.FileController") == "SERVING"
        assert (await client.write("kept.txt", "new")).code == 0
        assert (await client.read("kept.txt")).text == "new"


CRASH_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from muxs.server.storage import Root

new = Root(Path(sys.argv[1])).open_for_replace(sys.argv[2])
new.write(b"half of the new content")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_restart_removes_only_its_own_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("old a")
    for name in ("top.txt", "sub/a.txt"):
        crashed = subprocess.run([sys.executable, "-c", CRASH_MID_WRITE, str(root), name])
        assert crashed.returncode == -signal.SIGKILL
    left = temp_files(root)
    assert len(left) == 2
    outside = tmp_path / "outside.txt"
    outside.write_text("not muxs's")
    decoys = {
        ".muxs-tmp-notes.txt": "a user's file",
        ".muxs-tmp-0123456789abcde": "15 hex digits",
        ".muxs-tmp-0123456789ABCDEF": "upper case",
        "sub/muxs-tmp-0123456789abcdef": "no dot",
        ".muxs-tmp-0123456789abcdef.d/inner.txt": "in a directory",
    }
    for name, text in decoys.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / ".muxs-tmp-fedcba9876543210").symlink_to(outside)

    storage = Root(root)
    try:
        assert storage.remove_stale_temp_files() == Sweep(removed=2, complete=True)
    finally:
        storage.close()
    assert not any(path.exists() for path in left)
    assert {name: (root / name).read_text() for name in decoys} == decoys
    assert (root / ".muxs-tmp-fedcba9876543210").is_symlink()
    assert outside.read_text() == "not muxs's"
    assert (root / "sub" / "a.txt").read_text() == "old a"
    assert not (root / "top.txt").exists()


def test_a_sweep_beside_a_write_in_progress_leaves_it(root_dir: Path) -> None:
    """A second server starting on the same root (a replica, a rolling restart) while the
    first is writing: the write's temp file is in use, not stale."""
    (root_dir / "shared.txt").write_text("old")
    writer, starting = Root(root_dir), Root(root_dir)
    try:
        with writer.open_for_replace("shared.txt") as new:
            new.write(b"first half, ")
            assert starting.remove_stale_temp_files() == Sweep(removed=0, kept=1, complete=True)
            new.write(b"second half")
            new.commit()
    finally:
        writer.close()
        starting.close()
    assert (root_dir / "shared.txt").read_text() == "first half, second half"
    assert temp_files(root_dir) == []


def test_a_temp_file_swept_before_its_writer_locks_it_is_made_again(
    root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, starting = Root(root_dir), Root(root_dir)
    real_flock = fcntl.flock
    raced: list[Sweep] = []

    def sweep_first(fd: int, operation: int) -> None:
        if not raced:  # the writer's first lock: a sweep gets there just before it
            raced.append(Sweep())
            raced[0] = starting.remove_stale_temp_files()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", sweep_first)
    try:
        with writer.open_for_replace("new.txt") as new:
            new.write(b"whole")
            new.commit()
    finally:
        writer.close()
        starting.close()
    assert raced == [Sweep(removed=1, complete=True)]
    assert (root_dir / "new.txt").read_text() == "whole"
    assert temp_files(root_dir) == []


def make_chain(top: Path, depth: int) -> int:
    """Directories ``d/d/.../d`` ``depth`` deep below ``top`` (deeper than a path can name);
    return a descriptor of the deepest (the caller closes it)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    return fd


def remove_chain(top: Path) -> None:
    """Remove what ``make_chain`` made, without recursion (``shutil.rmtree`` recurses, so
    pytest could not clean it up): pull each level's content up one level, then rmdir."""
    while (inner := top / "d").exists():
        for entry in os.listdir(inner):
            os.rename(inner / entry, top / f"up-{entry}")
        inner.rmdir()
        for entry in os.listdir(top):
            if entry == "up-d":
                (top / entry).rename(inner)
            elif entry.startswith("up-"):
                (top / entry).unlink()


def stale_temp_file(dir_fd: int) -> None:
    os.close(os.open(".muxs-tmp-0123456789abcdef", os.O_WRONLY | os.O_CREAT, dir_fd=dir_fd))


async def test_a_tree_deeper_than_the_recursion_limit_is_swept_at_start(
    tmp_path: Path, settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    bottom = make_chain(settings.root, 1100)  # os.walk raised RecursionError: no start
    try:
        stale_temp_file(bottom)
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / ".muxs-tmp-fedcba9876543210").write_text("not muxs's")
        os.symlink(outside, "link", dir_fd=bottom)  # not followed
        caplog.set_level(logging.INFO, logger="muxs.server")
        async with serve(settings=settings) as running, Client(running.target) as client:
            assert (await client.say_hello("deep")).message == "Hello, deep!"
        assert ".muxs-tmp-0123456789abcdef" not in os.listdir(bottom)
    finally:
        os.close(bottom)
        remove_chain(settings.root)
    assert (outside / ".muxs-tmp-fedcba9876543210").read_text() == "not muxs's"
    assert "removed 1 temp file(s) left by an interrupted write" in caplog.messages


def test_the_sweep_stops_when_its_time_is_up(root_dir: Path) -> None:
    (root_dir / "sub").mkdir()
    stale = root_dir / "sub" / ".muxs-tmp-0123456789abcdef"
    stale.write_text("")
    storage = Root(root_dir)
    try:
        assert storage.remove_stale_temp_files(seconds=0) == Sweep(removed=0, complete=False)
        assert stale.exists()
        assert storage.remove_stale_temp_files() == Sweep(removed=1, complete=True)
    finally:
        storage.close()


async def test_a_sweep_cut_short_says_so_at_start(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (settings.root / "sub").mkdir()
    monkeypatch.setattr(serving, "SWEEP_SECONDS", 0)
    caplog.set_level(logging.INFO, logger="muxs.server")
    async with serve(settings=settings):
        pass
    assert caplog.messages[0] == (
        "removed 0 temp file(s) left by an interrupted write, but did not search the whole "
        "root (a 0 s limit, or a directory it could not open); the rest stay"
    )


@pytest.mark.slow
async def test_sigkill_during_writes_tears_no_file_and_restart_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    size = 3 * 2**20
    versions = {n: [f"old {n} ".ljust(size, "o"), f"new {n} ".ljust(size, "n")] for n in range(8)}
    for n, (old, _) in versions.items():
        (root / f"f{n}.txt").write_text(old)
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root)],
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        target = await listening_target(process)

        async def writer(client: Client, n: int) -> None:
            with contextlib.suppress(RpcError):
                while True:
                    await client.write(f"f{n}.txt", versions[n][1])

        async with Client(target) as client:
            writers = [asyncio.create_task(writer(client, n)) for n in versions]
            await until(lambda: bool(temp_files(root)), bound=30)  # a write is under way
            process.send_signal(signal.SIGKILL)
            await asyncio.gather(*writers)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert temp_files(root)
    for n, (old, new) in versions.items():
        assert (root / f"f{n}.txt").read_text() in (old, new), f"f{n}.txt is torn"
    async with serve(port=0, root=root) as running, Client(running.target) as client:
        assert temp_files(root) == []
        for n, (old, new) in versions.items():
            assert (await client.read(f"f{n}.txt")).text in (old, new)
