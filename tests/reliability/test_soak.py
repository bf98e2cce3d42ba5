"""The 60-second soak of bench/soak.py: every reply checked, no failure, bounded memory.

Memory is Python's allocated blocks after a collection, counted at two quiet moments (no
call in flight) and compared per call made in between; RSS, bounded loosely, made the run
fail under load without a leak (+10.11% once, then +22%: a backlog raises the allocator's
high-water mark, which it keeps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import MAX_BLOCKS_PER_CALL, MAX_RSS_GROWTH

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_minute_of_mixed_load_loses_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--duration", "60", "--rate", "40", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stdout)
    assert report["errors"] == []
    assert report["failures"] == 0
    assert report["calls"] == 60 * 40
    assert report["files_checked"] > 0
    assert report["blocks_per_call"] < MAX_BLOCKS_PER_CALL, report
    assert report["rss_growth"] < MAX_RSS_GROWTH, report
    assert report["ok"]
    assert done.returncode == 0, done.stderr
