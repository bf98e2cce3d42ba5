"""The 60-second soak of bench/soak.py: every reply checked, no failure, bounded memory.

RSS growth compares medians of one-second samples (after warm-up, and at the end), not two
single samples: one taken while the shared machine was busy made a run fail at +10.11%."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert report["rss_growth"] < 0.10, report
    assert report["ok"]
    assert done.returncode == 0, done.stderr
