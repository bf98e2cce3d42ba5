"""``muxs serve --workers N``: the shared port, restarts, stopping on SIGTERM, and one
metrics endpoint for every worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from muxs import Client
from muxs.server.workers import listening_sockets
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
        return (await self.line_matching(pattern, after))[1]

    async def line_matching(self, pattern: str, after: int = 0) -> tuple[int, re.Match[str]]:
        """Like ``wait_for``, with the index of the line in ``log``."""
        for index in range(after, len(self.log)):
            if match := re.search(pattern, self.log[index]):
                return index, match
        assert self.process.stderr is not None
        async with asyncio.timeout(STARTUP):
            while line := (await self.process.stderr.readline()).decode():
                self.log.append(line)
                if match := re.search(pattern, line):
                    return len(self.log) - 1, match
        raise AssertionError(f"{pattern!r} never logged:\n{''.join(self.log)}")

    async def worker_pid(self, index: int, after: int = 0) -> int:
        """The pid of worker ``index`` as its first start logged from line ``after`` on says."""
        return int((await self.wait_for(rf"worker {index} started \(pid (\d+)\)", after)).group(1))


@asynccontextmanager
async def serve_two_workers(tmp_path: Path, *options: str) -> AsyncIterator[Served]:
    """``muxs serve --workers 2`` on an ephemeral port, with its temp files in ``tmp_path``."""
    command = [sys.executable, "-m", "muxs", "serve", "--workers", "2", "--port", "0", *options]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--root",
        str(tmp_path / "data"),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        preexec_fn=die_with_parent,
    )
    try:
        yield Served(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_two_workers(tmp_path) as served:
        yield served


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
    await served.wait_for(r"\[worker-1\] muxs.server.serving: muxs listening")

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
    await served.wait_for(r"\[worker-1\] muxs.server.serving: muxs listening")
    await served.wait_for(r"\[worker-2\] muxs.server.serving: muxs listening")
    assert await _hello_each_on_its_own_connection(target, 4) == [f"Hello, n{n}!" for n in range(4)]

    served.process.send_signal(signum)
    assert await asyncio.wait_for(served.process.wait(), STARTUP) == 0
    assert all(_gone(pid) for pid in pids)
    assert served.process.stderr is not None
    rest = (await served.process.stderr.read()).decode()
    assert "muxs stopping 2 worker(s)" in rest
    assert rest.count("muxs.server.serving: muxs stopping") == 2
    assert "Traceback" not in rest


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _metrics_dirs(tmp_path: Path) -> list[Path]:
    """The supervisor's metrics directories (its TMPDIR is ``tmp_path``)."""
    return list(tmp_path.glob("muxs-metrics-*"))


def _pids_with_files(directory: Path) -> set[str]:
    """The pids of the processes that wrote metrics files (``counter_1234.db``, ...)."""
    return {path.stem.rsplit("_", 1)[1] for path in directory.iterdir()}


def _has_in_flight_file(directory: Path, pid: int) -> bool:
    """Whether worker ``pid``'s ``muxs_calls_in_flight`` (a ``livesum`` gauge) has a file."""
    return (directory / f"gauge_livesum_{pid}.db").exists()


HELLO = frozenset(
    {"grpc_service": "muxs.Greeter", "grpc_method": "SayHello", "grpc_type": "unary"}.items()
)
HELLO_OK = HELLO | {("grpc_code", "OK")}


@dataclass(frozen=True)
class Metered:
    """``muxs serve --workers 2 --metrics-port 0``, both workers listening."""

    served: Served
    target: str
    metrics_port: int
    pids: list[int]
    directory: Path  # where the workers write their metrics


@asynccontextmanager
async def metered_workers(tmp_path: Path) -> AsyncIterator[Metered]:
    async with serve_two_workers(tmp_path, "--metrics-port", "0") as served:
        target = (await served.wait_for(r"listening on (127\.0\.0\.1:\d+) ")).group(1)
        port = int((await served.wait_for(r"every worker on http://127\.0\.0\.1:(\d+)/")).group(1))
        pids = [await served.worker_pid(1), await served.worker_pid(2)]
        await served.wait_for(r"\[worker-1\] muxs.server.serving: muxs listening")
        await served.wait_for(r"\[worker-2\] muxs.server.serving: muxs listening")
        (directory,) = _metrics_dirs(tmp_path)
        yield Metered(served, target, port, pids, directory)


async def _hello_until_each_worker_answered(metered: Metered) -> dict[str, int]:
    """One call per connection until each worker has answered some (the kernel picks the
    worker of each connection); how many each answered, as their access lines say.

    A worker counts a call before it logs the call's access line: on return, every call
    is counted in the metrics.
    """
    calls: dict[str, int] = {"1": 0, "2": 0}
    line = 0
    while 0 in calls.values():
        assert sum(calls.values()) < 64, "every connection went to one worker"
        assert await _hello_each_on_its_own_connection(metered.target, 1) == ["Hello, n0!"]
        line, answered = await metered.served.line_matching(
            r"\[worker-(\d)\] muxs.access_log: method=/muxs.Greeter/SayHello", line
        )
        line += 1
        calls[answered.group(1)] += 1
    return calls


@pytest.mark.slow
async def test_one_metrics_endpoint_counts_the_calls_of_every_worker(tmp_path: Path) -> None:
    async with metered_workers(tmp_path) as metered:
        calls = await _hello_until_each_worker_answered(metered)
        samples = await asyncio.to_thread(_scrape, metered.metrics_port)

        assert samples[("grpc_server_handled_total", HELLO_OK)] == sum(calls.values())
        assert samples[("grpc_server_started_total", HELLO)] == sum(calls.values())
        assert samples[("grpc_server_handling_seconds_count", HELLO)] == sum(calls.values())
        assert samples[("muxs_calls_in_flight", HELLO)] == 0
        assert not any(name.startswith("process_") for name, _ in samples)
        assert _pids_with_files(metered.directory) == {str(pid) for pid in metered.pids}

        served = metered.served
        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.process.wait(), STARTUP) == 0
        assert served.process.stderr is not None
        log = "".join(served.log) + (await served.process.stderr.read()).decode()
        assert re.findall(r"worker (\d) started", log) == ["1", "2"]  # neither restarted
        assert "restarting" not in log
        assert "Traceback" not in log
        assert _metrics_dirs(tmp_path) == []


@pytest.mark.slow
async def test_a_dead_workers_calls_stay_counted_and_leave_the_in_flight_gauge(
    tmp_path: Path,
) -> None:
    async with metered_workers(tmp_path) as metered:
        calls = await _hello_until_each_worker_answered(metered)
        first = metered.pids[0]
        assert _has_in_flight_file(metered.directory, first)

        os.kill(first, signal.SIGKILL)
        await metered.served.wait_for(rf"worker 1 \(pid {first}\) exited with code -9; restarting")
        assert not _has_in_flight_file(metered.directory, first)  # the supervisor marked it dead
        samples = await asyncio.to_thread(_scrape, metered.metrics_port)
        assert samples[("grpc_server_handled_total", HELLO_OK)] == sum(calls.values())
        assert samples[("muxs_calls_in_flight", HELLO)] == 0
