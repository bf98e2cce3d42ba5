"""A 1 GiB file up and down through a ``muxs serve`` process: same SHA-256, bounded memory.

Peak resident memory (Linux ``VmHWM``) is read from ``/proc``: the server's for the whole
run, and the test process's since it was reset (``clear_refs``) before the transfers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from muxs import Client
from tests.processes import muxs_process

SIZE = 1024**3
BLOCK = 1024**2
MIB = 1024**2
SERVER_PEAK_BOUND = 150 * MIB
CLIENT_GROWTH_BOUND = 100 * MIB


def write_source(path: Path) -> str:
    """A ``SIZE``-byte file of distinct 1 MiB blocks; its SHA-256."""
    digest = hashlib.sha256()
    noise = os.urandom(BLOCK)
    with path.open("wb") as file:
        for index in range(SIZE // BLOCK):
            block = index.to_bytes(8, "big") + noise[8:]
            digest.update(block)
            file.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def peak_rss(pid: int | str = "self") -> int:
    """Peak resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def reset_peak_rss() -> int:
    """Restart this process's peak count from its current resident memory; return that."""
    Path("/proc/self/clear_refs").write_text("5")
    return peak_rss()


@pytest.mark.slow
async def test_a_1_gib_round_trip_keeps_its_sha256_and_memory_bounded(tmp_path: Path) -> None:
    source, back, root = tmp_path / "source.bin", tmp_path / "back.bin", tmp_path / "data"
    expected = await asyncio.to_thread(write_source, source)
    baseline = reset_peak_rss()
    async with muxs_process(root) as (process, target):
        async with Client(target) as client:
            status = await client.upload(source, "big/file.bin")
            assert status.sha256 == expected
            assert await client.download("big/file.bin", back) == SIZE
        server_peak = peak_rss(process.pid)
    client_growth = peak_rss() - baseline
    assert await asyncio.to_thread(sha256_of, root / "big" / "file.bin") == expected
    assert await asyncio.to_thread(sha256_of, back) == expected
    assert server_peak < SERVER_PEAK_BOUND, f"server peak {server_peak // MIB} MiB"
    assert client_growth < CLIENT_GROWTH_BOUND, f"client grew {client_growth // MIB} MiB"
