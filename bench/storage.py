"""FileController on its two stores: ReadStream/WriteStream MB/s and the server's peak RSS.

``python -m bench.storage`` starts SeaweedFS (``weed mini``, from the ``test`` extra) and, per
backend, a ``muxs serve`` process; it uploads a 256 MiB file and reads it back through the SDK,
then (S3 only) uploads 1 GiB. The peak RSS is the server process's ``VmHWM``, reset before
each phase (``/proc/PID/clear_refs``, Linux). Figures go to docs/PERFORMANCE.md ("Storage").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from muxs import Client
from tests.processes import muxs_process
from tests.seaweedfs import seaweedfs

MIB = 1024 * 1024
CHUNK = 64 * 1024


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def source(size: int) -> AsyncIterator[bytes]:
    block = os.urandom(CHUNK)
    for _ in range(size // CHUNK):
        yield block


async def measure(name: str, root: Path, options: list[str], sizes: list[int]) -> list[str]:
    rows = []
    async with muxs_process(root, *options) as (process, target), Client(target) as client:
        for size in sizes:
            reset_peak(process.pid)
            start = time.perf_counter()
            await client.write_chunks("bench.bin", source(size))
            seconds = time.perf_counter() - start
            rows.append(
                f"| {name} | WriteStream | {size // MIB} MiB | {size / MIB / seconds:.0f} MiB/s "
                f"| {peak_rss_mib(process.pid):.0f} MiB |"
            )
            reset_peak(process.pid)
            start = time.perf_counter()
            received = 0
            async for chunk in client.read_chunks("bench.bin"):
                received += len(chunk)
            seconds = time.perf_counter() - start
            assert received == size
            rows.append(
                f"| {name} | ReadStream | {size // MIB} MiB | {size / MIB / seconds:.0f} MiB/s "
                f"| {peak_rss_mib(process.pid):.0f} MiB |"
            )
    return rows


async def main(big: int) -> None:
    rows = [
        "| store | call | file | throughput | server's peak RSS |",
        "| --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="muxs-bench-storage-") as scratch:
        root = Path(scratch) / "root"
        weed = Path(scratch) / "weed"
        weed.mkdir()
        rows += await measure("local root", root, [], [256 * MIB])
        with seaweedfs(weed) as engine:
            settings = engine.settings("bench")
            assert settings.storage is not None
            assert settings.s3_endpoint is not None
            options = ["--storage", settings.storage, "--s3-endpoint", settings.s3_endpoint]
            options += ["--s3-region", "us-east-1", "--s3-access-key-id", "bench"]
            options += ["--s3-secret-access-key", "bench-secret", "--max-file-bytes", str(2**31)]
            rows += await measure("S3 (SeaweedFS)", root, options, [256 * MIB, big])
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024, help="the large S3 upload, in MiB")
    args = parser.parse_args()
    asyncio.run(main(args.big_mib * MIB))
    sys.exit(0)
