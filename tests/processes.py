"""``muxs serve`` as a child process, for the tests that need one (SIGKILL, memory)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path


async def listening_target(process: asyncio.subprocess.Process, timeout: float = 60) -> str:
    """Read ``muxs serve``'s log until it says where it listens; return that ``host:port``."""
    assert process.stderr is not None
    async with asyncio.timeout(timeout):
        while line := (await process.stderr.readline()).decode():
            if match := re.search(r"muxs listening on (127\.0\.0\.1:\d+)", line):
                return match.group(1)
    raise AssertionError("muxs serve exited before listening")


@asynccontextmanager
async def muxs_process(root: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``muxs serve`` on an ephemeral port of 127.0.0.1: the process and its target.

    Leaving the block kills it if it still runs; its log must hold no traceback.
    """
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root)],
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[bytes] | None = None
    try:
        target = await listening_target(process)
        assert process.stderr is not None
        drain = asyncio.create_task(process.stderr.read())  # a full pipe would stall it
        yield process, target
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if drain is not None:
            assert b"Traceback" not in await drain
