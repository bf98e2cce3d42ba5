"""``python -m bench.instructions``: the server's instructions per unary call, by callgrind.

Unlike CPU time, an instruction count does not move with what else the machine runs. Each
variant is ``muxs serve --event-loop asyncio`` (the plain install) plus its options, run
under ``valgrind --tool=callgrind``, by this checkout and, with ``--base DIR``, by DIR's
venv too; h2load makes ``--warm-up`` SayHello calls, the counters are zeroed,
h2load makes ``--calls`` more at ``--load``, and the counters are dumped. Before zeroing and
before dumping the server is left idle for ``--settle`` seconds, so that what a call leaves
for later (an access line's batch, 50 ms after the call) is counted with its call. The
count is the whole process's user space, every thread. The same instructions run cold at
1x1 cost more time than warm (docs/performance-history.md, "Unary, fifth pass"), so this
counts work, not time: confirm a gain with ``bench.fixed_work``.

    python -m bench.instructions --load 1x1 --calls 1000 --base DIR
    python -m bench.instructions --load 32x2 --calls 3200 -- "" --no-access-log

Needs valgrind and h2load.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import servers
from bench.scenarios import NAME
from bench.servers import ServerKind, muxs, running
from bench.wire import field, frame

SERVER_CPU, LOAD_CPU = "0", "1"
_TOTALS = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def _h2load(url: str, body: Path, calls: int, clients: int, streams: int) -> None:
    command = ["taskset", "-c", LOAD_CPU, "h2load", f"-n{calls}", f"-c{clients}"]
    command += [f"-m{streams}", f"--data={body}", "--header=content-type: application/grpc"]
    command += ["--header=te: trailers", url + "/muxs.Greeter/SayHello"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if f"{calls} succeeded" not in done.stdout:
        raise RuntimeError(done.stdout[-500:] + done.stderr[-500:])


def _control(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True, capture_output=True)


def count(options: Sequence[str], python: str, args: argparse.Namespace, workdir: Path) -> float:
    """Instructions per call of ``muxs serve`` with ``options``, run by ``python``."""
    plain = muxs("muxs", "--event-loop", "asyncio", *options, python=python)
    valgrind: tuple[str, ...] = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
    valgrind += (f"--callgrind-out-file={workdir / 'callgrind.out'}",)
    valgrind += (f"--log-file={workdir / 'valgrind.log'}",)
    kind = ServerKind(plain.name, (*valgrind, *plain.command), plain.description)
    clients, streams = (int(part) for part in args.load.split("x"))
    calls: int = args.calls
    body = workdir / "body"
    body.write_bytes(frame(field(1, NAME)))
    with running(kind, workdir, workdir, SERVER_CPU) as server:
        _h2load(server.url, body, args.warm_up, clients, streams)
        time.sleep(args.settle)
        _control(server.process.pid, "-i", "on")
        _control(server.process.pid, "-z")
        _h2load(server.url, body, calls, clients, streams)
        time.sleep(args.settle)
        _control(server.process.pid, "-d")
        dump = max(workdir.glob("callgrind.out.*"), key=lambda path: path.stat().st_mtime)
        match = _TOTALS.search(dump.read_text())
    if match is None:
        raise RuntimeError(f"no totals in {dump}")
    return int(match.group(1)) / calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "variants", nargs="*", default=[""], help='serve options of each variant ("" for none)'
    )
    parser.add_argument("--base", type=Path, help="an earlier checkout with its venv in .venv")
    parser.add_argument("--load", default="32x2", help="connections x streams (default 32x2)")
    parser.add_argument("--calls", type=int, default=3200, help="calls counted")
    parser.add_argument("--warm-up", type=int, default=640, help="calls before counting")
    parser.add_argument("--settle", type=float, default=1.0, help="idle seconds around them")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    servers.START_TIMEOUT = 600.0  # start-up runs under valgrind
    print(f"SayHello {args.load}, {args.calls} calls: instructions per call")
    pythons = {"": sys.executable}
    if args.base is not None:
        pythons[f" ({args.base})"] = str(args.base / ".venv" / "bin" / "python")
    for variant in args.variants:
        for checkout, python in pythons.items():
            with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
                per_call = count(shlex.split(variant), python, args, Path(tmp))
            print(f"  muxs serve {variant or '(defaults)'}{checkout}: {per_call:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
