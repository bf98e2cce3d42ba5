"""What a connection and a call cost in server memory: muxs beside grpcio.aio.

``python -m bench.memory [--connections N] [--calls-per-connection K] [--rounds R]``: for each
server (muxs as ``pip install muxs`` runs it, and a ``grpc.aio`` server), one warm-up call,
then N idle HTTP/2 connections (handshake done, no call), then K calls held open on each
(LotsOfGreetings, one request sent, the request stream left open, so the handler waits).
The server's resident memory (VmRSS) is read after each step, once it has stopped growing;
bytes per idle connection = growth / N, bytes per call in flight = growth / (N x K).
RSS counts what the allocator holds, not only live objects: read these as upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from bench.servers import GRPCIO_AIO, HOST, ServerKind, muxs, running
from bench.wire import field, frame
from tools.codegen import grpcio_stubs

log = logging.getLogger("bench.memory")

GREETINGS = "/muxs.Greeter/LotsOfGreetings"
SETTLE_SECONDS = 0.5  # between RSS readings: it has settled when two agree
SERVERS = (muxs("muxs", "--event-loop", "asyncio"), GRPCIO_AIO)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def settled_rss(pid: int) -> int:
    """The server's RSS once two readings half a second apart agree within 64 KiB."""
    previous = rss_bytes(pid)
    for _ in range(40):
        await asyncio.sleep(SETTLE_SECONDS)
        current = rss_bytes(pid)
        if abs(current - previous) < 64 * 1024:
            return current
        previous = current
    return previous


class Connection:
    """One raw HTTP/2 client connection (h2), for opening calls and leaving them open."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        self.writer.write(self.h2.data_to_send())

    @classmethod
    async def open(cls, port: int) -> Connection:
        """A connection whose handshake is done (the server's SETTINGS received)."""
        connection = cls(*await asyncio.open_connection(HOST, port))
        while True:
            data = await connection.reader.read(65536)
            if not data:
                raise RuntimeError("the server closed a new connection")
            events = connection.h2.receive_data(data)
            connection.writer.write(connection.h2.data_to_send())
            if any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
                return connection

    def hold_call(self) -> None:
        """Open a LotsOfGreetings call: headers and one request, the request stream open."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", GREETINGS),
            (":authority", HOST),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, frame(field(1, b"memory")))
        self.writer.write(self.h2.data_to_send())

    def close(self) -> None:
        self.writer.close()


async def measure(port: int, pid: int, connections: int, calls: int) -> tuple[float, float]:
    """(bytes per idle connection, bytes per call in flight) of the server ``pid``."""
    warm = await Connection.open(port)
    warm.hold_call()
    before = await settled_rss(pid)
    opened = [await Connection.open(port) for _ in range(connections)]
    idle = await settled_rss(pid)
    for connection in opened:
        for _ in range(calls):
            connection.hold_call()
        await connection.writer.drain()
    busy = await settled_rss(pid)
    for connection in [warm, *opened]:
        connection.close()
    return (idle - before) / connections, (busy - idle) / (connections * calls)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--calls-per-connection", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    figures: dict[str, list[tuple[float, float]]] = {kind.name: [] for kind in SERVERS}
    with tempfile.TemporaryDirectory(prefix="muxs-memory-") as tmp:
        workdir = Path(tmp)
        stubs = grpcio_stubs(workdir / "stubs")
        for round_ in range(1, args.rounds + 1):
            for kind in SERVERS:
                log.info("round %d/%d: %s", round_, args.rounds, kind.name)
                figures[kind.name].append(one_server(kind, workdir / str(round_), stubs, args))
    print("| server | bytes per idle connection | bytes per call in flight |")
    print("| --- | --- | --- |")
    for name, runs in figures.items():
        per_connection = [f"{c / 1024:.1f}" for c, _ in runs]
        per_call = [f"{c / 1024:.1f}" for _, c in runs]
        print(
            f"| {name} | {statistics.median(c for c, _ in runs) / 1024:.1f} KiB "
            f"({', '.join(per_connection)}) | {statistics.median(c for _, c in runs) / 1024:.1f}"
            f" KiB ({', '.join(per_call)}) |"
        )
    return 0


def one_server(
    kind: ServerKind, workdir: Path, stubs: Path, args: argparse.Namespace
) -> tuple[float, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    with running(kind, workdir, stubs, None) as server:
        return asyncio.run(
            measure(server.port, server.process.pid, args.connections, args.calls_per_connection)
        )


if __name__ == "__main__":
    sys.exit(main())
