"""The instruction counter's worker on a tiny load (real calls, without valgrind), and how it
reads callgrind's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import client_instructions
from bench.servers import GRPCIO_SYNC, running
from tools.codegen import grpcio_stubs


@pytest.mark.slow
@pytest.mark.parametrize("client", ["muxs", "muxs-sync"])
def test_a_worker_makes_its_calls_and_exits(tmp_path: Path, client: str) -> None:
    stubs = grpcio_stubs(tmp_path / "stubs")
    with running(GRPCIO_SYNC, tmp_path, stubs, None) as server:
        command = [sys.executable, "-m", "bench.client_instructions", "--worker", client]
        command += ["--port", str(server.port), "--stubs", str(stubs)]
        command += ["--local", str(tmp_path / "local"), "--calls", "5"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_totals_are_read_from_callgrinds_summary_line() -> None:
    text = "version: 1\ncreator: callgrind-3.22.0\nevents: Ir\nsummary: 1234567\n\nfn=(1) main\n"
    assert client_instructions.totals(text) == 1234567
    with pytest.raises(RuntimeError, match="no totals"):
        client_instructions.totals("events: Ir\n")
