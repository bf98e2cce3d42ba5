"""The client A/B harness on a tiny load: real processes taking turns, real calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import client_ab


@pytest.mark.slow
def test_each_client_takes_its_turn_in_every_slice_and_is_compared(tmp_path: Path) -> None:
    clients: dict[str, Path | None] = {"muxs": None, "grpcio-aio": None}
    rates, wall_rates = client_ab.side_by_side(
        clients, "unary-1", slices=3, seconds=0.1, workdir=tmp_path
    )
    for figures in (rates, wall_rates):
        assert list(figures) == ["muxs", "grpcio-aio"]
        assert all(len(values) == 3 and min(values) > 0 for values in figures.values())
    lines = client_ab.table("unary-1", rates).splitlines()
    assert lines[0] == "| unary-1, per CPU | median (IQR) | / muxs | paired (IQR) |"
    assert lines[2].startswith("| muxs | ")
    assert lines[2].endswith(" | 1.00 | 1.00 (1.00-1.00) |")
    assert lines[3].startswith("| grpcio-aio | ")
    wall = client_ab.table("unary-1", wall_rates, per="wall second").splitlines()
    assert wall[0] == "| unary-1, per wall second | median (IQR) | / muxs | paired (IQR) |"


@pytest.mark.slow
def test_the_blocking_clients_take_turns_with_threads_for_calls_in_flight(
    tmp_path: Path,
) -> None:
    clients: dict[str, Path | None] = {"muxs-sync": None, "grpcio-sync": None}
    rates, wall_rates = client_ab.side_by_side(
        clients, "unary-64", slices=2, seconds=0.1, workdir=tmp_path
    )
    for figures in (rates, wall_rates):
        assert list(figures) == ["muxs-sync", "grpcio-sync"]
        assert all(len(values) == 2 and min(values) > 0 for values in figures.values())
