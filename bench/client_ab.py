"""Side by side in short slices: this tree's ``muxs.Client`` beside another checkout's, and
grpcio.aio's client (or ``SyncClient`` and grpcio's sync client), on one scenario against
the client suite's grpcio sync server.

``python -m bench.client_ab --base DIR [--scenario unary-64] [--slices 30] [--seconds 0.5]
[--sync] [--wall]``; ``--sync`` runs ``SyncClient`` beside grpcio's sync client instead
(threads for calls in flight), ``--wall`` adds the rates per wall second.
``bench.clients`` runs each client for seconds in its own process; on a shared machine the
drift between two such runs is often larger than a lever. Here each client is one long-lived
process (pinned to the load CPU, the server to its own), and the clients take turns for
``--seconds`` at a time, in a new random order each slice, ``--slices`` times: a figure is the
median of the slices' per-CPU rates with their interquartile range, and ``paired`` the median
of the per-slice ratios to the first client, which cancels most of the drift.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench.client_load import (
    CONCURRENCY,
    PER_CALL,
    SCENARIOS,
    SYNC_CLIENTS,
    add_worker_options,
    async_calls,
    cpu_seconds,
    prepare,
    shadow_checkout,
    sync_calls,
    worker_arguments,
    worker_environment,
)

log = logging.getLogger(__name__)

WORKER_TIMEOUT = 120.0


def serve_slices(client: str, scenario: str, port: int, stubs: Path, local: Path) -> None:
    """A worker: build ``client``'s call, then for each ``seconds`` line read from stdin run
    ``scenario`` that long and print ``units cpu_seconds wall_seconds``."""
    if client in SYNC_CLIENTS:
        serve_sync_slices(client, scenario, port, stubs, local)
        return

    async def main() -> None:
        prepare(local)
        _, call = async_calls(client, port, scenario, local, stubs)
        loop = asyncio.get_running_loop()

        async def run(seconds: float) -> int:
            until, done = loop.time() + seconds, 0

            async def one() -> None:
                nonlocal done
                while loop.time() < until:
                    await call()
                    done += 1

            await asyncio.gather(*(one() for _ in range(CONCURRENCY.get(scenario, 1))))
            return done

        await run(0.5)  # warm-up: the connection made, the caches filled
        print("ready", flush=True)
        for line in sys.stdin:
            before, wall = cpu_seconds(), loop.time()
            calls = await run(float(line))
            print(
                calls * PER_CALL[scenario], cpu_seconds() - before, loop.time() - wall, flush=True
            )

    asyncio.run(main())


def serve_sync_slices(client: str, scenario: str, port: int, stubs: Path, local: Path) -> None:
    """``serve_slices`` for a blocking client: one thread per call in flight."""
    prepare(local)
    _, call = sync_calls(client, port, scenario, local, stubs)

    def run(seconds: float) -> int:
        until = time.monotonic() + seconds
        done = [0] * CONCURRENCY.get(scenario, 1)

        def one(index: int) -> None:
            while time.monotonic() < until:
                call()
                done[index] += 1

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(done))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done)

    run(0.5)
    print("ready", flush=True)
    for line in sys.stdin:
        before, wall = cpu_seconds(), time.monotonic()
        calls = run(float(line))
        print(
            calls * PER_CALL[scenario], cpu_seconds() - before, time.monotonic() - wall, flush=True
        )
    os._exit(0)  # grpcio's threads can hold up a normal exit


def _spawn(
    client: str, checkout: Path | None, scenario: str, port: int, stubs: Path, local: Path
) -> subprocess.Popen[str]:
    from bench.__main__ import _cpus

    env = worker_environment(checkout)
    command = [sys.executable, "-m", "bench.client_ab"]
    command += worker_arguments(client, scenario, port, stubs, local)
    load_cpu = _cpus()[1]
    if load_cpu is not None:
        command = ["taskset", "-c", load_cpu, *command]
    worker = subprocess.Popen(
        command, cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    if worker.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{client} did not start")
    return worker


def side_by_side(
    clients: dict[str, Path | None], scenario: str, slices: int, seconds: float, workdir: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each client's per-CPU and per-wall-second rates in each slice (``clients``: name ->
    the checkout whose muxs it runs, None for this tree's or for grpcio)."""
    from bench.__main__ import _cpus
    from bench.client_load import BLOB, BLOB_BYTES
    from bench.servers import GRPCIO_SYNC, running
    from tools.codegen import grpcio_stubs

    stubs = grpcio_stubs(workdir / "stubs")
    rates: dict[str, list[float]] = {name: [] for name in clients}
    wall_rates: dict[str, list[float]] = {name: [] for name in clients}
    with running(GRPCIO_SYNC, workdir, stubs, _cpus()[0]) as server:
        (server.root / BLOB).write_bytes(bytes(BLOB_BYTES))
        workers = {
            name: _spawn(
                name.split("@")[0],
                checkout,
                scenario,
                server.port,
                stubs,
                workdir / f"local-{index}",
            )
            for index, (name, checkout) in enumerate(clients.items())
        }
        try:
            for number in range(slices):
                log.info("slice %d/%d", number + 1, slices)
                for name in random.sample(list(workers), len(workers)):
                    stdin, stdout = workers[name].stdin, workers[name].stdout
                    assert stdin is not None
                    assert stdout is not None
                    stdin.write(f"{seconds}\n")
                    stdin.flush()
                    units, cpu, wall = map(float, stdout.readline().split())
                    rates[name].append(units / cpu)
                    wall_rates[name].append(units / wall)
        finally:
            for worker in workers.values():
                worker.communicate(timeout=WORKER_TIMEOUT)  # stdin closed: the worker ends
    return rates, wall_rates


def table(scenario: str, rates: dict[str, list[float]], per: str = "CPU") -> str:
    """Markdown: each client's median rate (interquartile range), its ratio to the first
    client's median, and the median of the per-slice ratios (paired)."""
    first = next(iter(rates))
    lines = [
        f"| {scenario}, per {per} | median (IQR) | / {first} | paired (IQR) |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in rates.items():
        paired = [a / b for a, b in zip(values, rates[first], strict=True)]
        lines.append(
            f"| {name} | {_quartiles(values, '{:,.0f}')} | "
            f"{statistics.median(values) / statistics.median(rates[first]):.2f} | "
            f"{_quartiles(paired, '{:.2f}')} |"
        )
    return "\n".join(lines)


def _quartiles(values: Sequence[float], form: str) -> str:
    low, median, high = statistics.quantiles(values, n=4)
    return f"{form.format(median)} ({form.format(low)}-{form.format(high)})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_ab", description=__doc__)
    parser.add_argument("--base", type=Path, help="a checkout whose muxs runs as muxs@base")
    parser.add_argument("--scenario", choices=SCENARIOS, default="unary-64")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--sync", action="store_true", help="SyncClient and grpcio sync")
    parser.add_argument("--wall", action="store_true", help="also the rates per wall second")
    add_worker_options(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        serve_slices(args.worker, args.scenario, args.port, args.stubs, args.local)
        return 0
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    with tempfile.TemporaryDirectory(prefix="muxs-ab-", dir="/dev/shm") as tmp:
        ours, grpcio = ("muxs-sync", "grpcio-sync") if args.sync else ("muxs", "grpcio-aio")
        clients: dict[str, Path | None] = {ours: None}
        if args.base is not None:  # its muxs alone, so that bench comes from this tree
            clients[f"{ours}@base"] = shadow_checkout(args.base, Path(tmp))
        clients[grpcio] = None
        rates, wall_rates = side_by_side(
            clients, args.scenario, args.slices, args.seconds, Path(tmp)
        )
    print(table(args.scenario, rates))
    if args.wall:
        print()
        print(table(args.scenario, wall_rates, per="wall second"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
