"""Disk work never blocks the event loop: SayHello is answered while an upload waits on the disk.

Every fsync of the upload is held until the test lets it go, and the test lets it go only
after SayHello calls were answered meanwhile: a server that fsynced on its event loop could
not answer them (nor run the test), so no time is measured, only what happened in which order.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxs import Client, RunningServer

UPLOAD_BYTES = 32 * 1024 * 1024
PROBES_PER_FSYNC = 5
# A hang guard, not a speed bound: an fsync nobody lets go (the event loop that would is
# stuck) goes on after this long, and the test fails instead of hanging.
HELD_AT_MOST_SECONDS = 60.0


class HeldDisk:
    """Stands in for ``os.fsync``: each call, off the event loop's thread, waits until the
    test lets it go; one on the loop's thread is only counted (holding it would hang)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._fsync = os.fsync
        self.held: asyncio.Queue[threading.Event] = asyncio.Queue()
        self.on_the_loop = 0
        self.never_let_go = 0

    def __call__(self, fd: int) -> None:
        if threading.get_ident() == self._loop_thread:
            self.on_the_loop += 1
        else:
            let_go = threading.Event()
            self._loop.call_soon_threadsafe(self.held.put_nowait, let_go)
            if not let_go.wait(HELD_AT_MOST_SECONDS):
                self.never_let_go += 1
        self._fsync(fd)


@pytest.fixture
async def held_disk(monkeypatch: pytest.MonkeyPatch) -> HeldDisk:
    disk = HeldDisk()
    monkeypatch.setattr(os, "fsync", disk)
    return disk


def blocks() -> Iterator[bytes]:
    block = os.urandom(64 * 1024)
    for _ in range(UPLOAD_BYTES // len(block)):
        yield block


async def test_say_hello_is_answered_while_an_upload_waits_on_the_disk(
    live_server: RunningServer, root_dir: Path, held_disk: HeldDisk
) -> None:
    held = answered = 0
    async with Client(live_server.target) as uploader, Client(live_server.target) as prober:
        upload = asyncio.create_task(uploader.write_chunks("big.bin", blocks()))
        while True:
            next_fsync = asyncio.ensure_future(held_disk.held.get())
            await asyncio.wait({next_fsync, upload}, return_when=asyncio.FIRST_COMPLETED)
            if not next_fsync.done():
                next_fsync.cancel()
                break
            held += 1
            for _ in range(PROBES_PER_FSYNC):  # answered while the fsync still waits
                assert (await prober.say_hello("probe")).message == "Hello, probe!"
                answered += 1
            next_fsync.result().set()
        status = await upload
    assert status.code == 0
    assert (root_dir / "big.bin").stat().st_size == UPLOAD_BYTES
    assert held_disk.on_the_loop == 0
    assert held_disk.never_let_go == 0
    assert held >= 2  # the file's and its directory's
    assert answered == held * PROBES_PER_FSYNC
