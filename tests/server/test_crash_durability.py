"""A ``muxs serve`` process killed with SIGKILL in the middle of writes loses nothing.

Each trial replaces one file with new content and kills the server once the write's temp
file has reached a given size (or once the write has finished), then starts a new server
on the same root: the file must hold the old or the new content, whole, and no temp file
may be left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import pytest

from muxs import Client, RpcError, StatusCode
from muxs.server.storage import TEMP_PREFIX
from tests.processes import muxs_process

TRIALS = 10
FRACTIONS = [0.0, 0.25, 0.5, 0.75, 1.0, None]  # None: kill once the call has returned


def temp_files(root: Path) -> list[str]:
    return [name for _, _, files in os.walk(root) for name in files if name.startswith(TEMP_PREFIX)]


def kill_when_written(pid: int, root: Path, threshold: float | None, done: threading.Event) -> bool:
    """SIGKILL ``pid`` once a temp file in ``root`` holds ``threshold`` bytes, or the call is
    done; return whether the kill came mid-write."""
    while threshold is not None and not done.is_set():
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX):
                    try:
                        size = entry.stat().st_size
                    except FileNotFoundError:  # renamed or removed meanwhile
                        continue
                    if size >= threshold:
                        os.kill(pid, signal.SIGKILL)
                        return True
    done.wait()
    os.kill(pid, signal.SIGKILL)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("streamed", "size"), [(False, 3_000_000), (True, 16_000_000)])
async def test_sigkill_during_writes_leaves_old_or_new_and_no_temp_files(
    tmp_path: Path, streamed: bool, size: int
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    target = root / "file.txt"
    target.write_bytes(b"0" * size)
    mid_write = 0
    for trial in range(TRIALS):
        old = target.read_bytes()
        new = bytes([ord("a") + trial]) * (size - trial)
        fraction = FRACTIONS[trial % len(FRACTIONS)]
        threshold = None if fraction is None else fraction * len(new)
        done = threading.Event()
        async with muxs_process(root) as (process, address):
            assert temp_files(root) == []  # the previous trial's were removed at start-up
            killer = asyncio.create_task(
                asyncio.to_thread(kill_when_written, process.pid, root, threshold, done)
            )
            failure = None
            try:
                async with Client(address) as client:
                    if streamed:
                        await client.write_bytes("file.txt", new)
                    else:
                        await client.write("file.txt", new.decode())
            except RpcError as exc:
                failure = exc.status
            finally:
                done.set()
                mid_write += await killer
            assert failure in (None, StatusCode.UNAVAILABLE)
            assert await process.wait() == -signal.SIGKILL
        assert target.read_bytes() in (old, new), f"trial {trial}: torn content"
    async with muxs_process(root):
        assert temp_files(root) == []
    assert mid_write >= TRIALS // 2  # most kills hit a write in progress
