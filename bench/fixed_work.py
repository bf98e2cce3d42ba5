"""``python -m bench.fixed_work``: server CPU per call, for a fixed number of calls a round.

The suites divide a timed run's throughput by the CPU the server used meanwhile. For long
calls on a loaded machine that misleads: the CPU counted includes h2load's warm-up and the
calls still under way when the run ends, while only the calls completed in the measured
time count, and a server that gets a tenth of its core completes few 8 MiB uploads in 5 s.
Here each round makes exactly ``--calls`` calls (h2load ``-n``, 2 connections, one call
each at a time, or ``--load``) on each server in turn and divides the work by the CPU
seconds they took: MB (or calls) per server CPU second, and this tree's per-round ratios to
the others (``--no-access-log``: this tree with its access log off is one of them).

    python -m bench.fixed_work --base DIR [--grpcio] [--scenario write-stream] [--rounds 5]
    python -m bench.fixed_work --no-access-log --scenario unary-1x1 --load 32x2 --calls 6400
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.scenarios import FULL, scenarios
from bench.servers import GRPCIO_AIO, ServerKind, cpu_seconds, muxs, running
from bench.wire import frame
from tools.codegen import grpcio_stubs

SERVER_CPU, LOAD_CPU = "0", "1"


def _kinds(base: Path | None, grpcio: bool, no_access_log: bool) -> list[ServerKind]:
    """The plain install (asyncio) of ``base``'s venv, of this tree (and with its access log
    off), then grpcio.aio."""
    kinds = []
    if base is not None:
        python = str(base / ".venv" / "bin" / "python")
        kinds.append(muxs("muxs-base", "--event-loop", "asyncio", python=python))
    kinds.append(muxs("muxs", "--event-loop", "asyncio"))
    if no_access_log:
        kinds.append(muxs("muxs-no-access-log", "--event-loop", "asyncio", "--no-access-log"))
    return kinds + ([GRPCIO_AIO] if grpcio else [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fixed_work", description=__doc__)
    parser.add_argument("--base", type=Path, help="an earlier checkout with its venv in .venv")
    parser.add_argument("--grpcio", action="store_true", help="also grpcio.aio")
    parser.add_argument("--no-access-log", action="store_true", help="also with the log off")
    parser.add_argument("--load", default="2x1", help="connections x streams (default 2x1)")
    parser.add_argument("--scenario", default="write-stream", help="a scenario key")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after one)")
    parser.add_argument("--calls", type=int, default=16, help="calls per server a round")
    args = parser.parse_args(argv)
    chosen = [s for s in scenarios(FULL, [(1, 1), (4, 16)]) if s.key == args.scenario]
    if not chosen:
        parser.error(f"--scenario: no scenario {args.scenario!r}")
    scenario, kinds = chosen[0], _kinds(args.base, args.grpcio, args.no_access_log)
    clients, streams = args.load.split("x")
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    figures: dict[str, list[float]] = {kind.name: [] for kind in kinds}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        stubs = grpcio_stubs(workdir / "stubs")
        servers = [stack.enter_context(running(k, workdir, stubs, SERVER_CPU)) for k in kinds]
        body = workdir / "body"
        body.write_bytes(b"".join(frame(message) for message in scenario.messages))
        for server in servers:
            for name, data in scenario.files.items():
                (server.root / name).write_bytes(data)
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for server in servers:
                before = cpu_seconds(server.process.pid)
                command = ["taskset", "-c", LOAD_CPU, "h2load", f"-n{args.calls}"]
                command += [f"-c{clients}", f"-m{streams}"]
                command += [f"--data={body}", "--header=content-type: application/grpc"]
                command += ["--header=te: trailers", server.url + scenario.path]
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                cpu = cpu_seconds(server.process.pid) - before
                if f"{args.calls} succeeded" not in done.stdout:
                    raise RuntimeError(f"{server.kind.name}: {done.stdout[-500:]}")
                if round_:
                    figures[server.kind.name].append(args.calls * scenario.per_call / cpu)
    unit = scenario.unit.split("/")[0]
    print(f"{scenario.path} at {args.load}: {unit} per server CPU second, {args.rounds} rounds")
    for name, values in figures.items():
        print(f"  {name}: {statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})")
    for name in figures:
        if name != "muxs":
            ratios = [a / b for a, b in zip(figures["muxs"], figures[name], strict=True)]
            low, median, high = min(ratios), statistics.median(ratios), max(ratios)
            print(f"  muxs / {name}: {median:.2f} ({low:.2f}-{high:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
