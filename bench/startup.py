"""``python -m bench.startup``: what starting muxs costs, this tree beside an earlier commit.

The earlier commit (``--base``) is checked out with ``git worktree add`` into a temp dir; both
trees run with this interpreter and its packages (the base with ``--base-python``'s, when its
dependencies differ: another venv of the same CPython), each first on ``PYTHONPATH``, in
alternate turns of every round (so a busy moment of the machine falls on both). Figures per
tree:

- ``import muxs``: the total that ``python -X importtime -c "import muxs"`` reports (the
  interpreter's own count of the import, without its start-up), and the wall and CPU time
  of ``python -c "import muxs"``;
- ``muxs hello x``: the wall and CPU time of the console script's code against a running
  server (one ``muxs serve`` of this tree serves both);
- ``python -c pass``: the interpreter's start, which no change to muxs shortens.

CPU time (the process's user + system time) is what other processes on a busy machine
disturb least; wall time is what a user waits.

Prints the medians, their spread (min-max) and ratios (this tree / base); writes
``startup.json`` and ``startup.md`` in ``--out`` (default ``bench/results``).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.servers import HOST, muxs, running

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BASE = "8f2fafd"  # the commit before issue 12's start-up work
THIS_TREE = "this tree"
# What the ``muxs`` console script runs (pip's entry-point wrapper, without its argv fix-up).
CONSOLE_SCRIPT = "import sys; from muxs.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class Probe:
    """A run of this interpreter on a tree: its arguments (``{target}`` filled in) and what it
    must print, if anything."""

    name: str
    args: tuple[str, ...]
    expected_stdout: str | None = None


@dataclass(frozen=True)
class Ran:
    """What one run printed and took (``cpu_ms``: the process's user + system time)."""

    stdout: str
    stderr: str
    wall_ms: float
    cpu_ms: float


@dataclass(frozen=True)
class Figure:
    """One quantity in milliseconds, read from each run of ``probe``."""

    key: str
    title: str
    probe: Probe
    read: Callable[[Ran], float]


IMPORTTIME = Probe("importtime", ("-X", "importtime", "-c", "import muxs"))
IMPORT = Probe("import", ("-c", "import muxs"))
HELLO = Probe("hello", ("-c", CONSOLE_SCRIPT, "hello", "x", "--target", "{target}"), "Hello, x!\n")
PASS = Probe("pass", ("-c", "pass"))


def importtime_total_ms(stderr: str, module: str = "muxs") -> float:
    """The cumulative time of ``module``'s top-level line in ``-X importtime`` output."""
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[2] == f" {module}":  # a nested import is indented
            return int(fields[1]) / 1000
    raise ValueError(f"no top-level {module!r} in the -X importtime output")


def _wall(ran: Ran) -> float:
    return ran.wall_ms


def _cpu(ran: Ran) -> float:
    return ran.cpu_ms


FIGURES = (
    Figure(
        "import-total",
        "import muxs (-X importtime total)",
        IMPORTTIME,
        lambda ran: importtime_total_ms(ran.stderr),
    ),
    Figure("import-wall", 'python -c "import muxs" (wall)', IMPORT, _wall),
    Figure("import-cpu", 'python -c "import muxs" (CPU)', IMPORT, _cpu),
    Figure("hello-wall", "muxs hello x (wall, server running)", HELLO, _wall),
    Figure("hello-cpu", "muxs hello x (CPU)", HELLO, _cpu),
    Figure("python-wall", "python -c pass (wall: the interpreter's start)", PASS, _wall),
)


def _env(tree: Path) -> dict[str, str]:
    """This interpreter's environment with ``tree`` (and its generated code) imported first."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "generated")])}


def run(tree: Path, probe: Probe, target: str, python: str = sys.executable) -> Ran:
    """Run ``probe`` on ``tree`` with ``python`` from a directory holding no code; fail if it
    fails or prints something else than expected."""
    args = [arg.format(target=target) for arg in probe.args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [python, *args],
        env=_env(tree),
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if probe.expected_stdout is not None and done.stdout != probe.expected_stdout:
        raise RuntimeError(f"{probe.name} on {tree} printed {done.stdout!r}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Ran(done.stdout, done.stderr, wall * 1000, cpu * 1000)


def check_tree(tree: Path, python: str = sys.executable) -> None:
    """Fail unless ``import muxs`` on ``tree`` imports that tree's muxs."""
    where = Probe("where", ("-c", "import muxs; print(muxs.__file__)"))
    imported = Path(run(tree, where, "", python).stdout.strip())
    if not imported.is_relative_to(tree):
        raise RuntimeError(f"{tree}: import muxs found {imported} instead")


def measure(
    trees: Mapping[str, Path],
    target: str,
    runs: int,
    figures: Sequence[Figure] = FIGURES,
    pythons: Mapping[str, str] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """``{figure key: {tree name: [ms per run]}}``: one untimed round (compiles the trees'
    bytecode), then ``runs`` rounds, each running every probe on every tree in turn (the
    trees' order alternating). ``pythons`` names the interpreter of a tree (default: this
    one)."""
    python = {name: (pythons or {}).get(name, sys.executable) for name in trees}
    probes = list(dict.fromkeys(figure.probe for figure in figures))
    for name, tree in trees.items():
        check_tree(tree, python[name])
        for probe in probes:
            run(tree, probe, target, python[name])
    results: dict[str, dict[str, list[float]]] = {
        f.key: {name: [] for name in trees} for f in figures
    }
    for round_number in range(runs):
        order = list(trees.items())
        if round_number % 2:
            order.reverse()
        for probe in probes:
            for name, tree in order:
                ran = run(tree, probe, target, python[name])
                for figure in figures:
                    if figure.probe == probe:
                        results[figure.key][name].append(figure.read(ran))
    return results


def table(
    results: Mapping[str, Mapping[str, Sequence[float]]],
    base: str,
    figures: Sequence[Figure] = FIGURES,
) -> str:
    """A markdown table: each figure's median (min-max) on ``base`` and this tree, and their
    ratio (this tree / base; the goal is at most 0.5)."""
    lines = [
        f"| figure (ms) | {base} | {THIS_TREE} | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for figure in figures:
        cells = []
        medians = []
        for name in (base, THIS_TREE):
            values = results[figure.key][name]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:.0f} ({min(values):.0f}-{max(values):.0f})")
        lines.append(
            f"| {figure.title} | {cells[0]} | {cells[1]} | {medians[1] / medians[0]:.2f} |"
        )
    return "\n".join(lines)


@contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """``commit`` of this repository, checked out in a temp dir for as long as it is used."""
    with tempfile.TemporaryDirectory(prefix="muxs-startup-") as tmp:
        tree = Path(tmp) / "tree"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", "--quiet", str(tree), commit], check=True)
        try:
            yield tree
        finally:
            subprocess.run([*git, "remove", "--force", str(tree)], check=True)


def conditions(base: str, runs: int) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "base": git("rev-parse", "--short", base),
        "this_tree": git("rev-parse", "--short", "HEAD")
        + (
            " (modified)"
            if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
            else ""
        ),
        "runs": runs,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--base", default=BASE, help="the commit to compare with (%(default)s)")
    parser.add_argument(
        "--base-python",
        default=sys.executable,
        help="the interpreter the base runs with: a venv holding its dependencies (this one)",
    )
    parser.add_argument("--runs", type=int, default=20, help="rounds (median taken; %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    document: dict[str, Any] = {"conditions": conditions(args.base, args.runs)}
    base = document["conditions"]["base"]
    with (
        tempfile.TemporaryDirectory(prefix="muxs-startup-") as tmp,
        checkout(base) as base_tree,
        running(muxs("startup-server"), Path(tmp), Path(tmp), cpus=None) as server,
    ):
        log.info("%d rounds: %s vs %s", args.runs, base, THIS_TREE)
        trees = {base: base_tree, THIS_TREE: REPO}
        results = measure(
            trees, f"{HOST}:{server.port}", args.runs, pythons={base: args.base_python}
        )
    document["conditions"]["load_average_at_end"] = os.getloadavg()
    document["figures"] = {f.key: {"title": f.title, "ms": results[f.key]} for f in FIGURES}
    text = table(results, base)
    print(text)
    report.write_json(args.out / "startup.json", document)
    (args.out / "startup.md").write_text(text + "\n")
    print(f"bench: wrote startup.json and startup.md in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
