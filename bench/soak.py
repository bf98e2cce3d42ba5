"""Soak: a fixed-rate mixed workload against a `muxs serve` process, every answer checked.

    python -m bench.soak [--duration 60] [--rate 40] [--files 40] [--cancel-share 0.3] [--json]

Starts `muxs serve` on an ephemeral loopback port with a scratch root, then for
``--duration`` seconds starts calls at ``--rate`` per second (open loop: a slow server
does not slow the schedule), cycling through every kind: unary Greeter calls, all three
Greeter stream kinds, and unary reads and writes of ``--files`` files (plus ReadStream
and WriteStream of as many binary files when the server implements them). Each reply's
content is checked, not only its status; at the end every file's SHA-256 on disk must be
that of the last content written. With ``--cancel-share``, a grpcio (``grpc.aio``) client
joins in with SayHello and LotsOfReplies calls, and cancels that share of them mid-call (as
ordinary clients do); a cancelled call is counted, never a failure, and every other call
must be answered. It reports calls made, failures (must be 0), p99 latency and the server's
memory, and exits 1 if any of these fails.

Memory is counted as the blocks Python holds after a collection (``bench/counted_serve.py``
runs ``muxs serve`` and answers with ``sys.getallocatedblocks()``), at two quiet moments, no
call in flight: after warm-up (``WARM_UP`` of the calls; the schedule pauses while the calls
in flight end) and at the end. They may grow by less than ``MAX_BLOCKS_PER_CALL`` per call
made in between: a leak of one object per call grows them by a block per call or more, and
a loaded machine does not move them (it moved RSS: a backlog raises the allocator's
high-water mark, which it keeps; a 60-second run measured +22% RSS under load, no leak).
RSS is still sampled every second and reported (medians after warm-up and at the end); it
bounds native memory loosely (``MAX_RSS_GROWTH``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpclib.client import Channel
from grpclib.const import Status as GrpcStatus
from grpclib.exceptions import GRPCError

from bench.stubs import load_stubs
from muxs import Client
from muxs.server.services.greeter import greeting
from muxs_api.muxs import Chunk, FileControllerStub, Files
from tools.codegen import grpcio_stubs

#: Python's blocks may grow by less than this per call between the two quiet counts.
MAX_BLOCKS_PER_CALL = 0.25
#: Quiet counts taken at each moment, the lowest kept: what a call's last steps (its stream's
#: release, a log line) still held a moment after its client saw it end is gone by then.
QUIET_COUNTS = 5
QUIET_EVERY = 0.2  # seconds between them
#: A loose bound on RSS growth: native memory, which Python's blocks do not count.
MAX_RSS_GROWTH = 0.5
WARM_UP = 0.15  # of the duration (and of the calls): the starts are counted after it
RSS_EVERY = 1.0  # seconds between RSS samples
MAX_IN_FLIGHT = 64
CALL_TIMEOUT = 30.0  # seconds: a call still unanswered then is a failure


@dataclass
class Report:
    duration: float
    rate: float
    calls: int = 0
    failures: int = 0
    late: int = 0
    cancelled: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_growth: float = 0.0
    rss_samples: int = 0
    blocks_start: int = 0
    blocks_end: int = 0
    #: Python's blocks grown per call made between the two quiet counts.
    blocks_per_call: float = 0.0
    files_checked: int = 0
    file_streaming: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and self.blocks_per_call < MAX_BLOCKS_PER_CALL
            and self.rss_growth < MAX_RSS_GROWTH
            and self.calls > 0
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def text_of(rng: random.Random) -> str:
    size = rng.choice((0, 1, 100, 4096, 60_000))
    return "".join(rng.choice("abcdefghij é字🙂\n") for _ in range(min(size, 200))) * (
        size // 200 + 1
    )


def median_in(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """The median RSS of the samples taken between ``start`` and ``end`` (0 if none)."""
    window = [rss for at, rss in samples if start <= at < end]
    return statistics.median(window) if window else 0.0


class GrpcioCalls:
    """A grpcio client's calls, a share of them cancelled mid-call."""

    def __init__(self, target: str, stubs: Path, cancel_share: float, seed: int) -> None:
        self.pb2, pb2_grpc = load_stubs(stubs)
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = pb2_grpc.GreeterStub(self.channel)
        self.cancel_share = cancel_share
        self.rng = random.Random(seed)
        self.cancelled = 0

    async def say_hello(self) -> None:
        call = self.stub.SayHello(self.pb2.HelloRequest(name="grpcio"))
        if self.rng.random() < self.cancel_share:
            await asyncio.sleep(self.rng.uniform(0, 0.002))  # before or after it is answered
            self.cancelled += call.cancel()
            return
        assert (await call).message == "Hello, grpcio!"

    async def lots_of_replies(self) -> None:
        count = 50
        call = self.stub.LotsOfReplies(self.pb2.HelloRequest(name="g", count=count))
        if self.rng.random() < self.cancel_share:
            await anext(aiter(call))
            self.cancelled += call.cancel()
            return
        got = [(reply.message, reply.index) async for reply in call]
        assert got == [("Hello, g!", i) for i in range(1, count + 1)]


class Workload:
    """The calls, the expected state of every file, and the checks of every reply."""

    def __init__(
        self, client: Client, channel: Channel, files: int, seed: int, grpcio: GrpcioCalls | None
    ) -> None:
        self.client = client
        self.files = FileControllerStub(channel)
        self.grpcio = grpcio
        self.rng = random.Random(seed)
        self.texts: dict[str, str] = {}
        self.blobs: dict[str, bytes] = {}
        self.locks = {f"soak/t{n}.txt": asyncio.Lock() for n in range(files)}
        self.locks |= {f"soak/b{n}.bin": asyncio.Lock() for n in range(files)}
        self.streaming = False

    def kinds(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        kinds: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("SayHello", self.say_hello),
            ("Square", self.square),
            ("LotsOfReplies", self.lots_of_replies),
            ("LotsOfGreetings", self.lots_of_greetings),
            ("BidiHello", self.bidi_hello),
            ("Write", self.write),
            ("Read", self.read),
        ]
        if self.streaming:
            kinds += [("WriteStream", self.write_stream), ("ReadStream", self.read_stream)]
        if self.grpcio is not None:
            kinds += [
                ("grpcio SayHello", self.grpcio.say_hello),
                ("grpcio LotsOfReplies", self.grpcio.lots_of_replies),
            ]
        return kinds

    async def detect_streaming(self) -> None:
        """Whether the server implements ReadStream and WriteStream (else they are left out)."""
        try:
            await self.files.read_stream(Files(filename="soak/none")).__anext__()
        except GRPCError as exc:
            self.streaming = exc.status is not GrpcStatus.UNIMPLEMENTED
        except StopAsyncIteration:
            self.streaming = True

    async def say_hello(self) -> None:
        name = self.rng.choice(("", "soak", "名前", "x" * 1000))
        assert (await self.client.say_hello(name)).message == f"Hello, {name}!"

    async def square(self) -> None:
        value = self.rng.choice((0.0, 2.0, 231.0, 1e30))
        got = (await self.client.square(value)).value
        assert math.isclose(got, math.sqrt(value), rel_tol=1e-6), (value, got)

    async def lots_of_replies(self) -> None:
        count = self.rng.randint(1, 30)
        async with self.client.lots_of_replies("r", count) as replies:
            got = [(reply.message, reply.index) async for reply in replies]
        assert got == [("Hello, r!", i) for i in range(1, count + 1)]

    async def lots_of_greetings(self) -> None:
        names = [f"n{i}" for i in range(self.rng.randint(0, 10))]
        assert (await self.client.lots_of_greetings(names)).message == greeting(names)

    async def bidi_hello(self) -> None:
        names = [f"b{i}" for i in range(self.rng.randint(1, 10))]
        async with self.client.bidi_hello(names) as replies:
            got = [reply.message async for reply in replies]
        assert got == [f"Hello, {name}!" for name in names]

    def _file(self, suffix: str) -> str:
        return self.rng.choice([name for name in self.locks if name.endswith(suffix)])

    async def write(self) -> None:
        name = self._file(".txt")
        async with self.locks[name]:
            await self._write_text(name)

    async def read(self) -> None:
        name = self._file(".txt")
        async with self.locks[name]:
            if name not in self.texts:
                await self._write_text(name)
            assert (await self.client.read(name)).text == self.texts[name]

    async def write_stream(self) -> None:
        name = self._file(".bin")
        async with self.locks[name]:
            await self._write_blob(name)

    async def read_stream(self) -> None:
        name = self._file(".bin")
        async with self.locks[name]:
            if name not in self.blobs:
                await self._write_blob(name)
            got = b"".join([c.data async for c in self.files.read_stream(Files(filename=name))])
            assert got == self.blobs[name]

    async def _write_text(self, name: str) -> None:
        """Replace a text file with new content (its lock held)."""
        text = text_of(self.rng)
        status = await self.client.write(name, text)
        assert status.code == 0
        assert status.sha256 in ("", hashlib.sha256(text.encode()).hexdigest())
        self.texts[name] = text

    async def _write_blob(self, name: str) -> None:
        """Replace a binary file with new content by WriteStream (its lock held)."""
        data = self.rng.randbytes(self.rng.choice((0, 10, 100_000, 1_500_000)))

        async def chunks() -> AsyncIterator[Chunk]:
            yield Chunk(filename=name, data=data[:65536])
            for start in range(65536, len(data), 65536):
                yield Chunk(data=data[start : start + 65536])

        status = await self.files.write_stream(chunks())
        assert status.code == 0
        assert status.sha256 in ("", hashlib.sha256(data).hexdigest())
        self.blobs[name] = data

    def check_files(self, root: Path) -> int:
        expected = {name: text.encode() for name, text in self.texts.items()} | self.blobs
        for name, data in expected.items():
            on_disk = hashlib.sha256((root / name).read_bytes()).hexdigest()
            assert on_disk == hashlib.sha256(data).hexdigest(), f"{name} is not what was written"
        return len(expected)


_log_readers: set[asyncio.Task[bytes]] = set()


async def start_server(root: Path, *options: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``muxs serve`` (with ``options``) on an ephemeral port, counting its memory
    blocks on request (``quiet_blocks``); its process and target."""
    serve = ["serve", "--port", "0", "--root", str(root), *options]
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bench.counted_serve", *serve],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines = []
    async with asyncio.timeout(30):
        while line := (await process.stderr.readline()).decode():
            lines.append(line)
            if match := re.search(r"muxs listening on (\S+)", line):
                # Keep reading its log (one line per call): a full pipe would block the server.
                _log_readers.add(asyncio.create_task(process.stderr.read()))
                return process, match.group(1)
    process.kill()
    raise RuntimeError(f"muxs serve did not start: {''.join(lines)!r}")


async def quiet_blocks(process: asyncio.subprocess.Process) -> int:
    """The fewest memory blocks Python holds in the server (``bench/counted_serve.py``) over
    ``QUIET_COUNTS`` counts, each after a collection; call it with no call in flight."""
    assert process.stdin is not None
    assert process.stdout is not None
    counts = []
    for _ in range(QUIET_COUNTS):
        process.stdin.write(b"\n")
        counts.append(int(await process.stdout.readline()))
        await asyncio.sleep(QUIET_EVERY)
    return min(counts)


async def sample_rss(pid: int, begin: float, into: list[tuple[float, float]]) -> None:
    """Append ``(seconds since begin, RSS in MiB)`` every ``RSS_EVERY`` seconds."""
    while True:
        into.append((time.monotonic() - begin, rss_mb(pid)))
        await asyncio.sleep(RSS_EVERY)


async def soak(
    duration: float, rate: float, files: int, seed: int, cancel_share: float = 0.0
) -> Report:
    report = Report(duration=duration, rate=rate)
    latencies: list[float] = []
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="muxs-soak-") as scratch:
        root = Path(scratch) / "root"
        process, target = await start_server(root)
        grpcio = None
        if cancel_share:
            grpcio = GrpcioCalls(target, grpcio_stubs(Path(scratch) / "stubs"), cancel_share, seed)
        try:
            host, _, port = target.rpartition(":")
            channel = Channel(host, int(port))
            async with Client(target, channel=channel) as client:
                work = Workload(client, channel, files, seed, grpcio)
                await work.detect_streaming()
                report.file_streaming = work.streaming
                kinds = work.kinds()
                in_flight: set[asyncio.Task[None]] = set()

                async def timed(kind: str, call: Callable[[], Awaitable[None]]) -> None:
                    start = time.monotonic()
                    try:
                        await asyncio.wait_for(call(), CALL_TIMEOUT)
                    except Exception as exc:
                        report.failures += 1
                        if len(report.errors) < 20:
                            report.errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
                    latencies.append(time.monotonic() - start)

                begin = time.monotonic()
                sampler = asyncio.create_task(sample_rss(process.pid, begin, samples))
                planned = int(duration * rate)
                warmed_up = int(WARM_UP * planned)
                for number in range(planned):
                    if number == warmed_up:  # quiet: the calls in flight end, then a count
                        paused = time.monotonic()
                        if in_flight:
                            await asyncio.wait(in_flight)
                        report.blocks_start = await quiet_blocks(process)
                        begin += time.monotonic() - paused  # the schedule goes on from here
                    await asyncio.sleep(max(0.0, begin + number / rate - time.monotonic()))
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        report.late += 1
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    kind, call = kinds[number % len(kinds)]
                    report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
                    task = asyncio.create_task(timed(kind, call))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if in_flight:
                    await asyncio.wait(in_flight)
                sampler.cancel()
                report.blocks_end = await quiet_blocks(process)
                report.calls = sum(report.by_kind.values())
                grown = report.blocks_end - report.blocks_start
                report.blocks_per_call = grown / max(1, report.calls - warmed_up)
                window = WARM_UP * duration
                report.rss_start_mb = median_in(samples, window, 2 * window)
                report.rss_end_mb = median_in(samples, duration - window, math.inf)
                report.rss_samples = len(samples)
                try:
                    report.files_checked = work.check_files(root)
                except AssertionError as exc:
                    report.failures += 1
                    report.errors.append(str(exc))
        finally:
            if grpcio is not None:
                report.cancelled = grpcio.cancelled
                await grpcio.channel.close()
            process.terminate()
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(process.wait(), 30)
    latencies.sort()
    if latencies:
        report.p50_ms = latencies[len(latencies) // 2] * 1000
        report.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    report.rss_growth = report.rss_end_mb / report.rss_start_mb - 1 if report.rss_start_mb else 0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--rate", type=float, default=40.0, help="calls started per second")
    parser.add_argument("--files", type=int, default=40, help="files of each kind")
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    parser.add_argument(
        "--cancel-share",
        type=float,
        default=0.0,
        help="add a grpcio client that cancels this share of its calls (0: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    print(f"soak: seed {args.seed}", file=sys.stderr)
    report = asyncio.run(soak(args.duration, args.rate, args.files, args.seed, args.cancel_share))
    if args.json:
        print(json.dumps(asdict(report) | {"ok": report.ok, "seed": args.seed}))
    else:
        print(
            f"soak {report.duration:.0f} s at {report.rate:.0f}/s (seed {args.seed}): "
            f"{report.calls} calls, {report.failures} failures, {report.cancelled} cancelled "
            f"on purpose, {report.late} started late, "
            f"p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, "
            f"server Python blocks {report.blocks_start} -> {report.blocks_end} "
            f"({report.blocks_per_call:+.3f} a call), "
            f"RSS {report.rss_start_mb:.1f} -> {report.rss_end_mb:.1f} MiB "
            f"({report.rss_growth:+.1%}, medians of {report.rss_samples} samples), "
            f"{report.files_checked} files checked by SHA-256, "
            f"file streaming {'on' if report.file_streaming else 'off (not implemented)'}"
        )
        for error in report.errors:
            print("  " + error)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
