"""bench.off_loop on a tiny run: every figure of both modes, the threshold restored."""

from __future__ import annotations

from bench import off_loop
from muxs import compression


async def test_a_run_measures_every_figure_of_both_modes() -> None:
    threshold = compression.OFF_LOOP_BYTES
    figures = await off_loop.measure(size=128 * 1024, rounds=1)
    assert threshold == compression.OFF_LOOP_BYTES
    assert set(figures) == {"inline", "thread"}
    for per_mode in figures.values():
        assert len(per_mode) == 5
        assert all(len(runs) == 1 and runs[0] >= 0 for runs in per_mode.values())
    text = off_loop.table(figures)
    assert text.count("\n") == 6
    assert "| compress_stall_ms |" in text
