"""``python -m bench.compression``: what gzip costs and gains on a 1 MiB compressible Write.

One muxs server (in this process) and the SDK write the same compressible text (log-like
lines, about 1 MiB) with ``Client(compression=None)`` and with ``"gzip"``, in alternate turns
of every round (so a busy moment of the machine falls on both). Figures per mode, medians over
the rounds: the wall time of one Write, the CPU time of this process during it (client and
server together: compressing on one side, inflating on the other) and the request's bytes on
the wire (its message as sent). Prints a Markdown table; ratios are gzip / none.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from muxs import Client, ServerSettings, serve
from muxs.api import Files
from muxs.compression import frame

MODES: dict[str, str | None] = {"none": None, "gzip": "gzip"}


def compressible_text(size: int) -> str:
    """About ``size`` bytes of log-like lines: repetitive, as most text is, not constant."""
    lines, total, index = [], 0, 0
    while total < size:
        stamp = f"2026-11-27T20:{index % 60:02d}:{index % 7:02d}Z"
        line = f"{stamp} INFO request {index} served in {index % 97} ms\n"
        lines.append(line)
        total += len(line)
        index += 1
    return "".join(lines)[:size]


async def measure(size: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per mode: ``wall_ms``, ``cpu_ms`` and ``wire_bytes`` of each round's Write."""
    text = compressible_text(size)
    figures: dict[str, dict[str, list[float]]] = {
        mode: {"wall_ms": [], "cpu_ms": [], "wire_bytes": []} for mode in MODES
    }
    with tempfile.TemporaryDirectory() as root:
        settings = ServerSettings(
            host="127.0.0.1", port=0, root=Path(root), max_message_bytes=4 * size
        )
        async with serve(settings=settings) as server:
            clients = {mode: Client(server.target, compression=enc) for mode, enc in MODES.items()}
            try:
                for client in clients.values():
                    await client.write("warm.txt", "warm")
                for _ in range(rounds):
                    for mode, client in clients.items():
                        wall, cpu = time.perf_counter(), time.process_time()
                        await client.write(f"{mode}.txt", text)
                        figures[mode]["wall_ms"].append((time.perf_counter() - wall) * 1000)
                        figures[mode]["cpu_ms"].append((time.process_time() - cpu) * 1000)
                        body = bytes(Files(filename=f"{mode}.txt", text=text))
                        encoding = MODES[mode]
                        sent = len(frame(body, encoding)) if encoding else 5 + len(body)
                        figures[mode]["wire_bytes"].append(sent)
            finally:
                for client in clients.values():
                    client.close()
    return figures


def table(figures: dict[str, dict[str, list[float]]]) -> str:
    """A Markdown table: each figure's median (min-max) per mode, and gzip / none."""
    rows = ["| figure | none | gzip | gzip / none |", "| --- | --- | --- | --- |"]
    for key in ("wall_ms", "cpu_ms", "wire_bytes"):
        medians = {mode: statistics.median(figures[mode][key]) for mode in MODES}
        cells = [
            f"{medians[mode]:.1f} ({min(figures[mode][key]):.1f}-{max(figures[mode][key]):.1f})"
            for mode in MODES
        ]
        rows.append(
            f"| {key} | {cells[0]} | {cells[1]} | {medians['gzip'] / medians['none']:.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="bytes of text written")
    parser.add_argument("--rounds", type=int, default=21, help="Writes per mode")
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.size, args.rounds))))


if __name__ == "__main__":
    main()
