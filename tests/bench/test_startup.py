"""bench.startup on a tiny run: both trees measured, a figure per run, a table of ratios."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import startup
from bench.servers import HOST, muxs, running

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   muxs.errors
import time:       300 |       5000 |     muxs
import time:       900 |      42000 | muxs
"""


def test_the_import_total_is_the_top_level_line() -> None:
    assert startup.importtime_total_ms(IMPORTTIME) == 42.0
    with pytest.raises(ValueError, match="no top-level 'muxs'"):
        startup.importtime_total_ms(IMPORTTIME.replace("| muxs\n", "| other\n"))


@pytest.mark.slow
def test_a_run_measures_every_figure_on_both_trees(tmp_path: Path) -> None:
    trees = {"base": startup.REPO, startup.THIS_TREE: startup.REPO}
    with running(muxs("startup-server"), tmp_path, tmp_path, cpus=None) as server:
        results = startup.measure(trees, f"{HOST}:{server.port}", runs=2)

    assert set(results) == {figure.key for figure in startup.FIGURES}
    for per_tree in results.values():
        assert set(per_tree) == set(trees)
        assert all(len(runs) == 2 and min(runs) > 0 for runs in per_tree.values())
    text = startup.table(results, "base")
    assert text.count("\n") == 1 + len(startup.FIGURES)
    assert "| muxs hello x (wall, server running) |" in text


@pytest.mark.skipif(
    shutil.which("git") is None or not (startup.REPO / ".git").exists(), reason="not a git tree"
)
def test_a_commit_is_checked_out_for_the_run_and_removed_after() -> None:
    with startup.checkout("HEAD") as tree:
        assert (tree / "muxs" / "__init__.py").is_file()
        assert (tree / "generated" / "muxs_api").is_dir()
    assert not tree.exists()
