"""The client suite and the memory bench on a tiny load: real processes, real calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import clients
from bench.memory import measure
from bench.servers import muxs, running
from tools.codegen import grpcio_stubs


@pytest.mark.slow
def test_each_client_is_measured_per_cpu_second_and_compared(tmp_path: Path) -> None:
    stubs = grpcio_stubs(tmp_path / "stubs")
    chosen = ["muxs", "grpcio-aio"]
    figures = clients.benchmark(
        tmp_path, stubs, None, None, runs=2, seconds=0.2, clients=chosen, scenarios=["unary-1"]
    )
    for name in chosen:
        cell = figures["unary-1"][name]
        assert cell.errors == []
        assert len(cell.per_cpu) == 2
        assert min(cell.per_cpu) > 0
        assert len(cell.per_second) == 2
    text = clients.table(figures, chosen)
    assert "| SayHello, sequential per CPU | calls/CPU-s | " in text
    assert text.splitlines()[0].endswith("| muxs/grpcio-aio |")
    assert clients.as_json(figures)["unary-1"]["muxs"]["errors"] == []


@pytest.mark.slow
def test_a_client_that_fails_is_reported_not_measured(tmp_path: Path) -> None:
    stubs = grpcio_stubs(tmp_path / "stubs")
    figures = clients.benchmark(
        tmp_path, stubs, None, None, runs=1, seconds=0.2, clients=["no-such-client"]
    )
    cell = figures["unary-1"]["no-such-client"]
    assert cell.per_cpu == []
    assert "invalid choice: 'no-such-client'" in cell.errors[0]
    assert "| SayHello, sequential per CPU | calls/CPU-s | error |" in clients.table(
        figures, ["no-such-client"]
    )


@pytest.mark.slow
def test_the_memory_bench_sees_connections_and_held_calls_grow_the_server(tmp_path: Path) -> None:
    with running(muxs("muxs", "--event-loop", "asyncio"), tmp_path, tmp_path, None) as server:
        per_connection, per_call = asyncio.run(measure(server.port, server.process.pid, 50, 4))
    assert per_connection > 0
    assert per_call > 0
