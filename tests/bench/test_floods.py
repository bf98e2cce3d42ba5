"""bench/floods.py on a tiny run: each scenario runs and reports its figures."""

from __future__ import annotations

import json

import pytest

from bench import floods


@pytest.mark.slow
def test_a_tiny_run_reports_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert floods.main(["--loops", "asyncio", "--rounds", "2", "--seconds", "0.5", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["loop"] == "asyncio"
    assert len(report["rounds"]) == 2
    # Each round ran until the server's GOAWAY: more resets sent than the default budget.
    assert all(one["resets"] > 10_000 and one["rss_after_mb"] > 0 for one in report["rounds"])
    assert report["quiet"]["calls"] > 0
    assert sorted(report["flooded"]) == ["mixed", "pings"]
    assert all(figures["calls"] > 0 for figures in report["flooded"].values())
