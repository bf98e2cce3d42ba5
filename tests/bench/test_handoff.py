"""bench.handoff on a tiny run: every way on both loops, a figure each, its threads ended."""

from __future__ import annotations

import re
import threading

import pytest

from bench import handoff


def test_a_run_measures_every_way_on_both_loops(capsys: pytest.CaptureFixture[str]) -> None:
    handoff.main(["--calls", "50", "--rounds", "2"])

    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| run_coroutine_threadsafe, asyncio",
        "| SyncClient's hand-off, asyncio",
        "| run_coroutine_threadsafe, uvloop",
        "| SyncClient's hand-off, uvloop",
    ]
    for row in rows:
        assert re.fullmatch(r"\| .+ \| [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+ \|", row), row
    assert not [t for t in threading.enumerate() if t.name == "muxs-sync-client"]
