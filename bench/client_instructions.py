"""Instructions per call of one client, counted with callgrind, against the client suite's
grpcio sync server.

``python -m bench.client_instructions [--client muxs] [--scenario unary-1] [--calls 1000]
[--warm-up 200] [--base DIR]``: the client's process runs under ``valgrind --tool=callgrind``
twice, once making ``--warm-up`` calls and once ``--warm-up`` + ``--calls``; the difference
of the two totals over ``--calls`` is what one call costs the client (every thread, user
space: start-up, imports and the first calls cancel out). Repeatable whatever else runs on
the machine, unlike CPU time. ``--base DIR`` counts another checkout's muxs too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from bench.client_load import (
    CLIENTS,
    CONCURRENCY,
    SCENARIOS,
    SYNC_CLIENTS,
    add_worker_options,
    async_calls,
    prepare,
    shadow_checkout,
    sync_calls,
    worker_arguments,
    worker_environment,
)

log = logging.getLogger(__name__)

_TOTALS = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def run_calls(client: str, scenario: str, port: int, stubs: Path, local: Path, calls: int) -> None:
    """A worker: make ``calls`` calls of ``scenario`` (spread over the scenario's calls in
    flight), then exit."""
    prepare(local)
    concurrency = CONCURRENCY.get(scenario, 1)
    if client in SYNC_CLIENTS:
        _, call = sync_calls(client, port, scenario, local, stubs)

        def one() -> None:
            for _ in range(calls // concurrency):
                call()

        threads = [threading.Thread(target=one) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        os._exit(0)  # grpcio's threads can hold up a normal exit

    async def main() -> None:
        _, acall = async_calls(client, port, scenario, local, stubs)

        async def one() -> None:
            for _ in range(calls // concurrency):
                await acall()

        await asyncio.gather(*(one() for _ in range(concurrency)))

    asyncio.run(main())
    os._exit(0)


def count(
    client: str,
    checkout: Path | None,
    scenario: str,
    port: int,
    stubs: Path,
    workdir: Path,
    calls: int,
) -> int:
    """Instructions of a client process making ``calls`` calls."""
    out = workdir / f"callgrind-{os.getpid()}-{client}-{calls}.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    command += ["-m", "bench.client_instructions"]
    command += worker_arguments(client, scenario, port, stubs, workdir / "local")
    command += ["--calls", str(calls)]
    subprocess.run(
        command, cwd=checkout, env=worker_environment(checkout), check=True, capture_output=True
    )
    text = out.read_text(errors="replace")
    out.unlink()
    return totals(text)


def totals(callgrind_out: str) -> int:
    """The instructions a callgrind output file counts in all (its ``summary:`` line)."""
    found = _TOTALS.search(callgrind_out)
    if found is None:
        raise RuntimeError("no totals in callgrind's output")
    return int(found.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client_instructions", description=__doc__
    )
    parser.add_argument("--client", choices=CLIENTS, action="append")
    parser.add_argument("--scenario", choices=SCENARIOS, default="unary-1")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warm-up", type=int, default=200)
    parser.add_argument("--base", type=Path, help="a checkout whose muxs is counted too")
    add_worker_options(parser)
    args = parser.parse_args(argv)
    if args.worker is not None:
        run_calls(args.worker, args.scenario, args.port, args.stubs, args.local, args.calls)
        return 0
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    from bench.__main__ import _cpus
    from bench.servers import GRPCIO_SYNC, running
    from tools.codegen import grpcio_stubs

    with tempfile.TemporaryDirectory(prefix="muxs-instr-", dir="/dev/shm") as tmp:
        workdir = Path(tmp)
        stubs = grpcio_stubs(workdir / "stubs")
        clients: dict[str, Path | None] = {name: None for name in args.client or ["muxs"]}
        if args.base is not None:
            shadow = shadow_checkout(args.base, workdir)
            for name in list(clients):
                if name.startswith("muxs"):
                    clients[f"{name}@base"] = shadow
        with running(GRPCIO_SYNC, workdir, stubs, _cpus()[0]) as server:
            print(f"| {args.scenario}, instructions per call | |\n| --- | --- |")
            for name, checkout in clients.items():
                client = name.split("@")[0]
                few, many = (
                    count(client, checkout, args.scenario, server.port, stubs, workdir, calls)
                    for calls in (args.warm_up, args.warm_up + args.calls)
                )
                print(f"| {name} | {(many - few) / args.calls:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
