"""Child processes for the tests that need one (signals, SIGKILL, memory, nginx)."""

from __future__ import annotations

import asyncio
import ctypes
import re
import resource
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies (Linux), so that a
    test killed mid-way (a CI timeout) leaves no server behind (SIGTERM, not SIGKILL: nginx
    and ``muxs serve --workers`` then stop their own worker processes too)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def listening_target(
    process: asyncio.subprocess.Process, timeout: float = 60, *, lines: list[str] | None = None
) -> str:
    """Read ``muxs serve``'s log until it says where it listens (each line added to
    ``lines`` if given); return that ``host:port`` (or ``unix:///path``)."""
    assert process.stderr is not None
    async with asyncio.timeout(timeout):
        while line := (await process.stderr.readline()).decode():
            if lines is not None:
                lines.append(line)
            if match := re.search(r"muxs listening on (127\.0\.0\.1:\d+|unix://\S+)", line):
                return match.group(1)
    raise AssertionError("muxs serve exited before listening")


@asynccontextmanager
async def muxs_process(
    root: Path,
    *options: str,
    open_files: tuple[int, int] | None = None,
    lines: list[str] | None = None,
    later: list[str] | None = None,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``muxs serve --port 0 --root root *options`` on 127.0.0.1: the process and its target.

    ``open_files``: the (soft, hard) RLIMIT_NOFILE it starts with. ``lines`` gets the log
    lines up to the one saying where it listens, ``later`` the rest as they come. Leaving the
    block kills it if it still runs; its log must hold no traceback.
    """

    def before_exec() -> None:
        die_with_parent()
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root)],
        *options,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=before_exec,
    )
    rest: list[str] = [] if later is None else later
    drain: asyncio.Task[None] | None = None

    async def read_rest(stderr: asyncio.StreamReader) -> None:
        async for line in stderr:  # a full pipe would stall it
            rest.append(line.decode(errors="replace"))

    try:
        target = await listening_target(process, lines=lines)
        assert process.stderr is not None
        drain = asyncio.create_task(read_rest(process.stderr))
        yield process, target
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if drain is not None:
            await drain
            assert not any("Traceback" in line for line in rest)


@asynccontextmanager
async def logged_muxs(root: Path, *options: str) -> AsyncIterator[tuple[str, list[str]]]:
    """``muxs serve --port 0 --root root *options``: its target and its log lines. Leaving the
    block stops it with SIGTERM, adds the rest of its log to the lines and checks it exited 0."""
    command = [sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root)]
    process = await asyncio.create_subprocess_exec(
        *command, *options, stderr=asyncio.subprocess.PIPE, preexec_fn=die_with_parent
    )
    lines: list[str] = []
    try:
        target = await listening_target(process, lines=lines)
        yield target, lines
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        rest = await asyncio.wait_for(process.stderr.read(), 30)
        lines += rest.decode().splitlines(keepends=True)
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
