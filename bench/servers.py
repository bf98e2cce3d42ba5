"""The servers under test, each a subprocess pinned to its own CPUs."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
UVLOOP = importlib.util.find_spec("uvloop") is not None
_LISTENING = re.compile(r"listening on [\w.\[\]:]+:(\d+)")
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServerKind:
    """How to start one server: ``{root}`` and ``{stubs}`` in ``command`` are filled in."""

    name: str
    command: tuple[str, ...]
    description: str
    #: Prepended to the server's PYTHONPATH (which its worker processes inherit).
    pythonpath: tuple[str, ...] = ()


def muxs(
    name: str, *options: str, python: str = sys.executable, pythonpath: tuple[str, ...] = ()
) -> ServerKind:
    """``muxs serve`` with ``options``, run by ``python`` (the muxs installed there: ``-P``
    keeps a ``muxs`` in the working directory off ``sys.path``)."""
    command = (python, "-P", "-m", "muxs", "serve", "--port", "0", "--root", "{root}", *options)
    description = f"muxs serve {' '.join(options)}".strip()
    if python != sys.executable:
        description += f" ({python})"
    return ServerKind(name, command, description, pythonpath)


def intercepted_muxs(count: int) -> ServerKind:
    """muxs with ``count`` no-op server interceptors (``bench.intercepted``)."""
    return ServerKind(
        f"interceptors-{count}",
        (sys.executable, "-m", "bench.intercepted", str(count), "--root", "{root}"),
        f"muxs.serve with {count} no-op interceptor(s)",
    )


GRPCIO_AIO = ServerKind(
    "grpcio-aio",
    (sys.executable, "-m", "bench.grpcio_server", "aio", "--stubs", "{stubs}", "--root", "{root}"),
    "grpcio grpc.aio server, same calls",
)
GRPCIO_SYNC = ServerKind(
    "grpcio-sync",
    (sys.executable, "-m", "bench.grpcio_server", "sync", "--stubs", "{stubs}", "--root", "{root}"),
    "grpcio sync server, thread pool of 10 (the reference's design)",
)
FLOOR = ServerKind(
    "floor",
    (sys.executable, "-m", "bench.floor", "--root", "{root}", *(["--uvloop"] if UVLOOP else [])),
    "bare grpclib, raw-bytes codec, no muxs" + (" (uvloop)" if UVLOOP else ""),
)


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue  # gone meanwhile
    ticks, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        pending.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Running:
    kind: ServerKind
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _wait_for_port(process: subprocess.Popen[bytes], log: Path, name: str) -> int:
    """The port the server logs once it listens (polls its log; fails if it exits)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")


@contextmanager
def running(kind: ServerKind, workdir: Path, stubs: Path, cpus: str | None) -> Iterator[Running]:
    """Start ``kind`` (under ``taskset -c cpus`` when given) and stop it on exit."""
    root = workdir / kind.name / "root"
    root.mkdir(parents=True)
    log = workdir / kind.name / "server.log"
    command = [part.format(root=root, stubs=stubs) for part in kind.command]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    env = dict(os.environ)
    if kind.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*kind.pythonpath, env.get("PYTHONPATH")]))
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    try:
        yield Running(kind, _wait_for_port(process, log, kind.name), root, process)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
