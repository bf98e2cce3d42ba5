"""``python -m bench.instructions``: CPU instructions a unary call costs the server, counted.

Timings on a shared machine are noisy; an instruction count is not. ``muxs serve --event-loop
asyncio`` (the plain install) runs under valgrind's callgrind with counting off; h2load makes
``--warm`` SayHello calls one at a time, then counting is switched on for ``--calls`` more
(``callgrind_control``): the server process's user-space instructions, every thread, per call.
The same instructions run cold at 1x1 cost more time than warm (docs/PERFORMANCE.md, "Unary,
fifth pass"), so this counts work, not time: confirm a gain with ``bench.fixed_work``.

    python -m bench.instructions [--base DIR] [--calls 1000] [--warm 200]

Needs valgrind (``apt install valgrind``) and h2load.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.scenarios import FULL, unary
from bench.servers import ServerKind, muxs, running
from bench.wire import frame

_TOTALS = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


def _h2load(url: str, body: Path, calls: int) -> None:
    command = ["h2load", f"-n{calls}", "-c1", "-m1", f"--data={body}"]
    command += ["--header=content-type: application/grpc", "--header=te: trailers", url]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if f"{calls} succeeded" not in done.stdout:
        raise RuntimeError(done.stdout[-500:])


def instructions_per_call(kind: ServerKind, workdir: Path, calls: int, warm: int) -> float:
    """The user-space instructions per unary call of the server ``kind`` under callgrind."""
    counts = workdir / f"{kind.name}.callgrind"
    valgrind = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
    command = (*valgrind, f"--callgrind-out-file={counts}", *kind.command)
    counted = ServerKind(kind.name, command, kind.description, kind.pythonpath)
    scenario = unary(1, 1, FULL)
    body = workdir / "body"
    body.write_bytes(b"".join(frame(message) for message in scenario.messages))
    with running(counted, workdir, workdir, None) as server:
        pid = str(server.process.pid)
        _h2load(server.url + scenario.path, body, warm)
        subprocess.run(["callgrind_control", "--instr=on", pid], capture_output=True, check=True)
        _h2load(server.url + scenario.path, body, calls)
        subprocess.run(["callgrind_control", "--dump", pid], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "--instr=off", pid], capture_output=True, check=True)
    dumps = sorted(workdir.glob(f"{counts.name}.*"))
    match = _TOTALS.search(dumps[0].read_bytes()) if dumps else None
    if match is None:
        raise RuntimeError(f"{kind.name}: callgrind wrote no count")
    return int(match[1]) / calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--base", type=Path, help="an earlier checkout with its venv in .venv")
    parser.add_argument("--calls", type=int, default=1000, help="calls counted")
    parser.add_argument("--warm", type=int, default=200, help="calls before counting")
    args = parser.parse_args(argv)
    kinds = [muxs("muxs", "--event-loop", "asyncio")]
    if args.base is not None:
        python = str(args.base / ".venv" / "bin" / "python")
        kinds.insert(0, muxs("muxs-base", "--event-loop", "asyncio", python=python))
    figures = {}
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        for kind in kinds:
            figures[kind.name] = instructions_per_call(kind, Path(tmp), args.calls, args.warm)
            print(f"  {kind.name}: {figures[kind.name] / 1e6:.3f} M instructions a unary call")
    if args.base is not None:
        print(f"  muxs / muxs-base: {figures['muxs'] / figures['muxs-base']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
