"""What handing one call to ``SyncClient``'s loop thread and its result back costs, alone.

``python -m bench.handoff``: a coroutine that suspends once (as a call waits for its reply) run
from the calling thread on a loop thread, N times in a row, by ``asyncio.run_coroutine_threadsafe``
and ``concurrent.futures.Future.result`` (what ``SyncClient`` did before) and by ``SyncClient``'s
own ``_LoopThread.call``, on asyncio and on uvloop. Prints CPU microseconds and context switches
(voluntary and not, every thread) per hand-off; pin it to one core (``taskset -c 1``) as the
client bench does. No network: the call itself is not in these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from muxs.sync import _LoopThread


async def _one_suspension(value: int) -> int:
    await asyncio.sleep(0)
    return value


def _usage() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw + usage.ru_nivcsw


def _per_call(
    hand_off: Callable[[Coroutine[Any, Any, int]], int], calls: int
) -> tuple[float, float]:
    for i in range(calls // 10):  # warm-up
        hand_off(_one_suspension(i))
    cpu, switches = _usage()
    for i in range(calls):
        hand_off(_one_suspension(i))
    cpu_after, switches_after = _usage()
    return (cpu_after - cpu) / calls * 1e6, (switches_after - switches) / calls


def _threadsafe(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Coroutine[Any, Any, int]], int]:
    def hand_off(coro: Coroutine[Any, Any, int]) -> int:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    return hand_off


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    threads = {name: _LoopThread(name) for name in ("asyncio", "uvloop")}
    ways: dict[str, Callable[[Coroutine[Any, Any, int]], int]] = {}
    for name, thread in threads.items():
        ways[f"run_coroutine_threadsafe, {name}"] = _threadsafe(thread.loop)
        ways[f"SyncClient's hand-off, {name}"] = thread.call
    figures: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for _ in range(args.rounds):  # interleaved, so that drift hits every way alike
        for way, hand_off in ways.items():
            figures[way].append(_per_call(hand_off, args.calls))
    print("| hand-off | CPU µs per call | context switches per call |")
    print("| --- | --- | --- |")
    for way, runs in figures.items():
        cpu = [c for c, _ in runs]
        switches = statistics.median(s for _, s in runs)
        print(
            f"| {way} | {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) "
            f"| {switches:.1f} |"
        )
    for thread in threads.values():
        thread.close()


if __name__ == "__main__":
    main()
