"""``python -m bench.off_loop``: what a 4 MiB compressed message costs the event loop.

A large message is compressed, and inflated past its first 64 KiB, in a worker thread
(``muxs.compression.OFF_LOOP_BYTES``); before, both ran on the event loop. Each mode is
measured in alternate turns of every round (a busy moment of the machine falls on both):

- ``inline``: ``OFF_LOOP_BYTES`` set past any message, as before;
- ``thread``: as shipped.

Figures, medians over the rounds, for compressing one 4 MiB message with gzip (the SDK's
and the server's ``CompressingWriter``) and for inflating it (``inflate``): the wall time
and the event loop's longest stall meanwhile (the longest a task ready to run waited).
End to end, an in-process muxs server and the SDK write 4 MiB of text with gzip while
another task calls SayHello in a loop: the slowest SayHello during the Write, which
waits for the compression (client side) and the inflation (server side) when they run
on the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.compression import compressible_text
from muxs import Client, ServerSettings, compression, serve

MODES: dict[str, int] = {"inline": sys.maxsize, "thread": compression.OFF_LOOP_BYTES}
SIZE = 4 * 1024 * 1024

Figures = dict[str, dict[str, list[float]]]


#: The ticker's period: a loop with other work to do every millisecond (a ticker that never
#: sleeps would fight the worker thread for the GIL, which no server's loop does).
TICK = 0.001


async def stall(work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(the wall time of ``work()``, the loop's longest stall meanwhile: how late a
    ``TICK`` timer fired at worst), in milliseconds."""
    gaps: list[float] = [0.0]
    done = False

    async def ticker() -> None:
        while not done:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            gaps.append(time.perf_counter() - start - TICK)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    await work()
    wall = time.perf_counter() - start
    done = True
    await ticking
    return wall * 1000, max(gaps) * 1000


async def _discard(data: bytes, end_stream: bool = False) -> None:
    pass


async def measure(size: int = SIZE, rounds: int = 5) -> Figures:
    """Per mode: ``compress_ms``, ``compress_stall_ms``, ``inflate_ms``, ``inflate_stall_ms``
    and ``slowest_hello_ms`` of each round."""
    body = compressible_text(size).encode()
    message = b"\x00" + len(body).to_bytes(4, "big") + body
    compressed = compression.frame(body, "gzip")[5:]
    writer = compression.CompressingWriter(_discard, "gzip")
    keys = ("compress_ms", "compress_stall_ms", "inflate_ms", "inflate_stall_ms")
    figures: Figures = {mode: {key: [] for key in (*keys, "slowest_hello_ms")} for mode in MODES}
    with tempfile.TemporaryDirectory() as root:
        settings = ServerSettings(
            host="127.0.0.1", port=0, root=Path(root), max_message_bytes=2 * size
        )
        async with (
            serve(settings=settings) as server,
            Client(server.target, compression="gzip") as client,
        ):
            await client.say_hello("warm")
            for _ in range(rounds):
                for mode, threshold in MODES.items():
                    compression.OFF_LOOP_BYTES = threshold
                    try:
                        runs = (
                            await stall(lambda: writer(message)),
                            await stall(lambda: compression.inflate(compressed, "gzip", size)),
                        )
                        slowest = await _slowest_hello(client, size)
                    finally:
                        compression.OFF_LOOP_BYTES = MODES["thread"]
                    for key, value in zip(keys, [v for run in runs for v in run], strict=True):
                        figures[mode][key].append(value)
                    figures[mode]["slowest_hello_ms"].append(slowest)
    return figures


async def _slowest_hello(client: Client, size: int) -> float:
    """The slowest SayHello (ms) while ``client`` writes ``size`` bytes of text."""
    writing = asyncio.create_task(client.write("big.txt", compressible_text(size)))
    slowest = 0.0
    while not writing.done():
        start = time.perf_counter()
        await client.say_hello("meanwhile")
        slowest = max(slowest, (time.perf_counter() - start) * 1000)
    await writing
    return slowest


def table(figures: Figures) -> str:
    """A Markdown table: each figure's median (min-max) per mode, and thread / inline."""
    rows = ["| figure | inline | thread | thread / inline |", "| --- | --- | --- | --- |"]
    for key in figures["inline"]:
        medians = {mode: statistics.median(figures[mode][key]) for mode in MODES}
        cells = [
            f"{medians[mode]:.1f} ({min(figures[mode][key]):.1f}-{max(figures[mode][key]):.1f})"
            for mode in MODES
        ]
        ratio = medians["thread"] / medians["inline"] if medians["inline"] else float("nan")
        rows.append(f"| {key} | {cells[0]} | {cells[1]} | {ratio:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.off_loop", description=__doc__)
    parser.add_argument("--size", type=int, default=SIZE, help="message bytes (default 4 MiB)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args(argv)
    print(table(asyncio.run(measure(args.size, args.rounds))))


if __name__ == "__main__":
    main()
