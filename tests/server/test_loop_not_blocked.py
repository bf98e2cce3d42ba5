"""Disk work never blocks the event loop: SayHello stays quick while 200 MB stream to disk.

The disk is made slow on purpose (each fsync takes 2 s more), so a server that fsynced on
its event loop would hold SayHello, or the pause between two of them, for seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxs import Client, RunningServer

UPLOAD_BYTES = 200 * 1024 * 1024
SLOW_FSYNC_SECONDS = 2.0
LATENCY_BOUND_SECONDS = 1.0
PROBE_INTERVAL_SECONDS = 0.05  # pacing only: back-to-back probes would slow the upload


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        real_fsync(fd)
        time.sleep(SLOW_FSYNC_SECONDS)

    monkeypatch.setattr(os, "fsync", slow_fsync)


def blocks() -> Iterator[bytes]:
    block = os.urandom(64 * 1024)
    for _ in range(UPLOAD_BYTES // len(block)):
        yield block


@pytest.mark.slow
@pytest.mark.usefixtures("slow_disk")
async def test_say_hello_stays_quick_during_a_200_mb_upload(
    live_server: RunningServer, root_dir: Path
) -> None:
    latencies: list[float] = []
    async with Client(live_server.target) as uploader, Client(live_server.target) as prober:
        upload = asyncio.create_task(uploader.write_chunks("big.bin", blocks()))
        while not upload.done():  # each round: a SayHello, then a pause
            start = time.monotonic()
            await prober.say_hello("probe")
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            latencies.append(time.monotonic() - start - PROBE_INTERVAL_SECONDS)
        status = await upload
    assert status.code == 0
    assert (root_dir / "big.bin").stat().st_size == UPLOAD_BYTES
    assert len(latencies) > 20
    assert max(latencies) < LATENCY_BOUND_SECONDS, sorted(latencies)[-5:]
