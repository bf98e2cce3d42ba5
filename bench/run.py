"""Run scenarios against servers: probe each call once, then measure it several times."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpclib.const import Cardinality

from bench.h2load import run_h2load
from bench.scenarios import Scenario
from bench.servers import HOST, Running, ServerKind, cpu_seconds, running
from bench.wire import frame

log = logging.getLogger(__name__)

OK = "ok"
NOT_AVAILABLE = "n/a"
PROBE_TIMEOUT = 60.0


@dataclass
class Cell:
    """One scenario on one server: its status and each run's figures.

    ``per_core`` is the throughput divided by the CPU the server used meanwhile (its CPU
    seconds over the wall-clock seconds): what one fully busy core does, which CPU taken
    by other processes on the machine skews far less than the throughput itself.
    """

    status: str = OK
    values: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    per_core: list[float] = field(default_factory=list)

    def median(self, figures: list[float]) -> float | None:
        return statistics.median(figures) if self.status == OK and figures else None


@dataclass(frozen=True)
class Placement:
    """Which CPUs the servers and the load generator run on (None: anywhere)."""

    server: str | None
    load: str | None


def _call(port: int, scenario: Scenario) -> list[bytes]:
    """The replies to ``scenario``'s messages, through a grpcio channel carrying raw bytes."""
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        # grpcio's stubs leave the request type of a call without serializer open: Any.
        path = scenario.path
        request: Any = scenario.messages[0]
        requests: Any = iter(scenario.messages)
        match scenario.cardinality:
            case Cardinality.UNARY_UNARY:
                return [channel.unary_unary(path)(request, timeout=PROBE_TIMEOUT)]
            case Cardinality.UNARY_STREAM:
                return list(channel.unary_stream(path)(request, timeout=PROBE_TIMEOUT))
            case Cardinality.STREAM_UNARY:
                return [channel.stream_unary(path)(requests, timeout=PROBE_TIMEOUT)]
            case _:
                return list(channel.stream_stream(path)(requests, timeout=PROBE_TIMEOUT))


def probe(server: Running, scenario: Scenario) -> str:
    """``ok`` if the server answers ``scenario`` correctly, ``n/a`` if it is UNIMPLEMENTED,
    else a short description of what went wrong."""
    try:
        scenario.check(_call(server.port, scenario))
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return NOT_AVAILABLE
        return f"error: {code.name}: {exc.details()}"
    except AssertionError as exc:
        return f"error: wrong reply: {exc}"
    return OK


def measure(
    server: Running, scenario: Scenario, workdir: Path, placement: Placement, cell: Cell
) -> None:
    """One h2load run of ``scenario`` against ``server``; its figures go into ``cell``."""
    body = workdir / f"{scenario.key}.body"
    if not body.exists():
        body.write_bytes(b"".join(frame(message) for message in scenario.messages))
    load = scenario.load
    cpu_before, began = cpu_seconds(server.process.pid), time.monotonic()
    measured = run_h2load(
        server.url + scenario.path,
        body,
        load,
        workdir / f"{scenario.key}-{server.kind.name}.tsv",
        placement.load,
        timeout=load.duration + load.warm_up + 120,
    )
    cores = (cpu_seconds(server.process.pid) - cpu_before) / (time.monotonic() - began)
    if measured.failed:
        cell.status = f"error: {measured.failed} of {measured.succeeded + measured.failed} failed"
        return
    value = measured.requests_per_second * scenario.per_call
    cell.values.append(value)
    if cores > 0:
        cell.per_core.append(value / cores)
    if scenario.latency:
        cell.p50_ms.append(measured.percentile_ms(0.50) or 0.0)
        cell.p99_ms.append(measured.percentile_ms(0.99) or 0.0)


def benchmark(
    kinds: Sequence[ServerKind],
    scenarios: Sequence[Scenario],
    runs: int,
    workdir: Path,
    stubs: Path,
    placement: Placement,
) -> dict[str, dict[str, Cell]]:
    """``{scenario key: {server name: Cell}}``; runs interleave servers to spread drift."""
    cells = {s.key: {k.name: Cell() for k in kinds} for s in scenarios}
    with ExitStack() as stack:
        servers = [stack.enter_context(running(k, workdir, stubs, placement.server)) for k in kinds]
        for scenario in scenarios:
            for server in servers:
                for name, data in scenario.files.items():
                    (server.root / name).write_bytes(data)
                cell = cells[scenario.key][server.kind.name]
                cell.status = probe(server, scenario)
                if cell.status != OK:
                    log.warning("%s on %s: %s", scenario.title, server.kind.name, cell.status)
        for run in range(1, runs + 1):
            for scenario in scenarios:
                for server in servers:
                    cell = cells[scenario.key][server.kind.name]
                    if cell.status == OK:
                        log.info("run %d/%d: %s on %s", run, runs, scenario.title, server.kind.name)
                        measure(server, scenario, workdir, placement, cell)
    return cells
