"""Rebalancing: the multi-target client against three `muxs serve` with a short maximum age.

    python -m bench.rebalancing [--age 0.5] [--phase 4] [--callers 8] [--streamers 2]

Starts three servers on loopback with ``--max-connection-age`` (and a grace longer than any
call), then runs ``Client([a, b, c])`` through three phases of ``--phase`` seconds: all
three up; the third stopped (SIGTERM: it drains); the third started again on its port
(and three more phases after that, while the client's connection backoff to it runs out).
``--callers`` tasks make SayHello calls back to back, ``--streamers`` tasks LotsOfGreetings
calls of five names a tenth of a second apart (so that they cross their connection's
GOAWAY). It reports, per phase, the calls each server handled (from its access log) and
the calls that failed (must be 0), and the max-age GOAWAYs sent, with a call open or not.
Exits 1 if a call failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import Running, muxs, running
from muxs import Client, RpcError

_ACCESS = re.compile(r"^(\S+ \S+) INFO muxs\.access_log: method=\S+ .*status=OK", re.M)
_AGED = re.compile(r"reached its max_connection_age with (\d+) call\(s\) open")
NAMES = 5


@dataclass
class Phase:
    name: str
    start: float = 0.0
    end: float = 0.0
    failed: list[str] = field(default_factory=list)


def _served(log: Path, phase: Phase) -> int:
    """Calls the server of ``log`` answered OK during ``phase``."""
    count = 0
    for match in _ACCESS.finditer(log.read_text(errors="replace")):
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        count += phase.start <= stamp < phase.end
    return count


async def _workload(
    target: list[str],
    phases: list[Phase],
    run_phase: Callable[[Phase], Awaitable[None]],
    args: argparse.Namespace,
) -> int:
    """Run the callers through ``phases`` (each run by ``run_phase``); the calls made."""
    made = 0
    current = phases[0]

    async def names() -> AsyncIterator[str]:
        for index in range(NAMES):
            if index:
                await asyncio.sleep(0.1)
            yield f"n{index}"

    async def loop(client: Client, streaming: bool, stop: asyncio.Event) -> None:
        nonlocal made
        while not stop.is_set():
            phase = current
            try:
                if streaming:
                    await client.lots_of_greetings(names())
                else:
                    await client.say_hello("bob")
                made += 1
            except RpcError as exc:
                kind = "LotsOfGreetings" if streaming else "SayHello"
                phase.failed.append(f"{kind} {exc.status.name}: {exc.message}")

    async with Client(target, timeout=30) as client:
        stop = asyncio.Event()
        tasks = [
            *(asyncio.create_task(loop(client, False, stop)) for _ in range(args.callers)),
            *(asyncio.create_task(loop(client, True, stop)) for _ in range(args.streamers)),
        ]
        for phase in phases:
            current = phase
            phase.start = time.time()
            await run_phase(phase)
            phase.end = time.time()
        stop.set()
        await asyncio.gather(*tasks)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--age", type=float, default=0.5, help="--max-connection-age")
    parser.add_argument("--phase", type=float, default=4.0, help="seconds per phase")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--streamers", type=int, default=2)
    args = parser.parse_args()
    options = (
        *("--max-connection-age", str(args.age), "--max-connection-age-grace", "30"),
        *("--log-level", "INFO"),
    )
    phases = [Phase("all three up"), Phase("third stopped"), Phase("third back")]
    phases += [Phase(f"third back, {index * args.phase:g} s on") for index in range(1, 4)]
    with (
        tempfile.TemporaryDirectory() as scratch,
        contextlib.ExitStack() as stack,
        contextlib.ExitStack() as third,
    ):
        workdir = Path(scratch)
        servers: list[Running] = [
            stack.enter_context(running(muxs(name, *options), workdir, workdir, None))
            for name in ("a", "b")
        ]
        servers.append(third.enter_context(running(muxs("c", *options), workdir, workdir, None)))
        again = muxs("c-again", "--port", str(servers[2].port), *options)

        async def run_phase(phase: Phase) -> None:
            if phase is phases[1]:
                await asyncio.to_thread(third.close)  # SIGTERM: the third drains and exits
            elif phase is phases[2]:
                await asyncio.to_thread(stack.enter_context, running(again, workdir, workdir, None))
            await asyncio.sleep(args.phase)

        target = [f"127.0.0.1:{server.port}" for server in servers]
        made = asyncio.run(_workload(target, phases, run_phase, args))
        logs = [workdir / name / "server.log" for name in ("a", "b", "c", "c-again")]
        report(phases, logs, made)
    return 1 if any(phase.failed for phase in phases) else 0


def report(phases: list[Phase], logs: list[Path], made: int) -> None:
    print(f"{made} calls made")
    print("| phase | a | b | c | failed |")
    print("| --- | --- | --- | --- | --- |")
    for phase in phases:
        served = [_served(log, phase) for log in logs]
        served[2] += served.pop()  # the third, before and after its restart
        total = sum(served) or 1
        shares = [f"{count} ({count / total:.0%})" for count in served]
        print(f"| {phase.name} | {' | '.join(shares)} | {len(phase.failed)} |")
        for failure in Counter(phase.failed).most_common(3):
            print(f"  {failure[1]}x {failure[0]}")
    aged = [int(found) for log in logs for found in _AGED.findall(log.read_text(errors="replace"))]
    print(f"max-age GOAWAYs: {len(aged)}, {sum(1 for n in aged if n)} with a call open")


if __name__ == "__main__":
    sys.exit(main())
