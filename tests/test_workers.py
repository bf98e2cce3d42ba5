"""``muxs serve --workers N``: the shared port, restarts, and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from muxs import Client
from muxs.workers import listening_sockets
from tests.processes import die_with_parent

STARTUP = 60.0  # seconds: spawned workers import muxs, slowly on a busy machine


def test_listening_sockets_share_one_port() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in sockets)
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


class Served:
    """A ``muxs serve --workers 2`` process and what its log has said so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[str] = []

    async def wait_for(self, pattern: str, after: int = 0) -> re.Match[str]:
        """The first log line from line ``after`` on (read so far or next) matching ``pattern``."""
        for line in self.log[after:]:
            if match := re.search(pattern, line):
                return match
        assert self.process.stderr is not None
        async with asyncio.timeout(STARTUP):
            while line := (await self.process.stderr.readline()).decode():
                self.log.append(line)
                if match := re.search(pattern, line):
                    return match
        raise AssertionError(f"{pattern!r} never logged:\n{''.join(self.log)}")

    async def worker_pid(self, index: int, after: int = 0) -> int:
        """The pid of worker ``index`` as its first start logged from line ``after`` on says."""
        return int((await self.wait_for(rf"worker {index} started \(pid (\d+)\)", after)).group(1))


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    command = [sys.executable, "-m", "muxs", "serve", "--workers", "2", "--port", "0"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--root",
        str(tmp_path / "data"),
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    try:
        yield Served(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _hello_each_on_its_own_connection(target: str, count: int) -> list[str]:
    async def hello(n: int) -> str:
        async with Client(target, timeout=STARTUP) as client:
            return (await client.say_hello(f"n{n}")).message

    return list(await asyncio.gather(*(hello(n) for n in range(count))))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
async def test_a_killed_worker_is_restarted_and_calls_keep_succeeding(served: Served) -> None:
    target = (await served.wait_for(r"listening on (127\.0\.0\.1:\d+) .*2 workers")).group(1)
    first = await served.worker_pid(1)
    second = await served.worker_pid(2)
    assert await _hello_each_on_its_own_connection(target, 8) == [f"Hello, n{n}!" for n in range(8)]

    os.kill(first, signal.SIGKILL)
    # New connections hashed to the dead worker's socket wait in its backlog: none is refused.
    assert await _hello_each_on_its_own_connection(target, 8) == [f"Hello, n{n}!" for n in range(8)]
    await served.wait_for(rf"worker 1 \(pid {first}\) exited with code -9; restarting")
    restarted = await served.worker_pid(1, after=len(served.log))
    assert restarted != first
    assert _gone(first)
    await served.wait_for(r"\[worker-1\] muxs.server: muxs listening")

    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served.process.wait(), STARTUP) == 0
    assert _gone(restarted)
    assert _gone(second)
    assert served.process.stderr is not None
    rest = (await served.process.stderr.read()).decode()
    assert "Traceback" not in "".join(served.log) + rest


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_every_worker_and_the_parent_exits_0(
    served: Served, signum: int
) -> None:
    target = (await served.wait_for(r"listening on (127\.0\.0\.1:\d+) ")).group(1)
    pids = [await served.worker_pid(1), await served.worker_pid(2)]
    await served.wait_for(r"\[worker-1\] muxs.server: muxs listening")
    await served.wait_for(r"\[worker-2\] muxs.server: muxs listening")
    assert await _hello_each_on_its_own_connection(target, 4) == [f"Hello, n{n}!" for n in range(4)]

    served.process.send_signal(signum)
    assert await asyncio.wait_for(served.process.wait(), STARTUP) == 0
    assert all(_gone(pid) for pid in pids)
    assert served.process.stderr is not None
    rest = (await served.process.stderr.read()).decode()
    assert "muxs stopping 2 worker(s)" in rest
    assert rest.count("muxs.server: muxs stopping") == 2
    assert "Traceback" not in rest
