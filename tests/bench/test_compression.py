"""bench.compression on a tiny run: every figure per mode, gzip smaller on the wire."""

from __future__ import annotations

from bench import compression


async def test_a_run_measures_every_figure_of_both_modes() -> None:
    figures = await compression.measure(size=64 * 1024, rounds=2)
    assert set(figures) == {"none", "gzip"}
    for per_mode in figures.values():
        assert all(len(runs) == 2 and min(runs) >= 0 for runs in per_mode.values())
    assert max(figures["gzip"]["wire_bytes"]) < min(figures["none"]["wire_bytes"]) / 4
    text = compression.table(figures)
    assert text.count("\n") == 4
    assert "| wire_bytes |" in text


def test_the_text_is_the_size_asked_for() -> None:
    assert len(compression.compressible_text(1000)) == 1000
