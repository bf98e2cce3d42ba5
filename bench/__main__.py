"""``python -m bench``: muxs side by side with grpcio and the bare-grpclib floor.

Suites: ``server`` (muxs and muxs[fast] against grpcio.aio per core, with each figure's
spread over the runs), ``main`` (muxs, grpcio.aio, grpcio sync, floor), ``workers``
(``--workers 2`` vs 1), ``levers`` (muxs with and without uvloop), ``features`` (what the
access log and the metrics cost muxs[fast]), ``access-log`` (the plain install with and
without its access log), ``interceptors`` (muxs with 0, 1 and 3 no-op server
interceptors), ``clients`` (muxs's ``Client`` and ``SyncClient`` beside grpcio's clients and
raw grpclib, against one grpcio sync server: ``bench.clients``) and, with
``--base DIR``, ``base`` (muxs and muxs[fast] of this tree beside those of an earlier commit
checked out in DIR, with its own venv in DIR/.venv); ``--scenario KEY`` keeps one scenario
of each (``write-stream``, ``unary-1x1``, ...). Prints a table per suite
and writes ``bench/results/<mode>.json``, ``<mode>.md`` (the tables) and
``<mode>-<suite>.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import clients, report
from bench.client_load import CLIENTS
from bench.run import Placement, benchmark
from bench.scenarios import FULL, QUICK, Scenario, scenarios, unary
from bench.servers import (
    FLOOR,
    GRPCIO_AIO,
    GRPCIO_SYNC,
    UVLOOP,
    ServerKind,
    intercepted_muxs,
    muxs,
)
from tools.codegen import grpcio_stubs

log = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("grpcio", "grpclib", "h2", "betterproto2", "uvloop")
#: The scenarios of the ``base`` suite (before/after a change).
BASE_SCENARIOS = ("unary-4x16", "unary-1x1", "server-stream", "read-stream", "write-stream")


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    kinds: Sequence[ServerKind]
    scenarios: Sequence[Scenario]
    ratios: Sequence[tuple[str, str]]
    placement: Placement
    #: Whether the table shows each median's spread (lowest-highest run) beside it.
    spread: bool = False


def _cpus() -> tuple[str | None, str | None, str | None]:
    """(server CPU, load CPU, every CPU) for taskset; all None on a single CPU."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None, None
    return str(available[0]), str(available[1]), ",".join(map(str, available))


def base_kinds(base: Path) -> list[ServerKind]:
    """muxs and muxs[fast] as installed in ``base``/.venv, then as in this tree.

    An earlier commit that hid betterproto's rust codec with ``bench/no_rust_codec`` (before
    betterproto2) runs its plain muxs with it hidden, as ``pip install muxs`` had none.
    """
    python = str(base / ".venv" / "bin" / "python")
    hide_rust_codec = tuple(str(p) for p in [base / "bench" / "no_rust_codec"] if p.is_dir())
    fast = ("--event-loop", "uvloop") if UVLOOP else ()
    return [
        muxs("muxs-base", "--event-loop", "asyncio", python=python, pythonpath=hide_rust_codec),
        muxs("muxs", "--event-loop", "asyncio"),
        muxs("muxs-fast-base", *fast, python=python),
        muxs("muxs-fast", *fast),
    ]


def suites(quick: bool, base: Path | None = None) -> list[Suite]:
    sizes = QUICK if quick else FULL
    loads = [(1, 1), (4, 16)] if quick else [(1, 1), (4, 16), (32, 2)]
    server_cpu, load_cpu, every_cpu = _cpus()
    pinned = Placement(server_cpu, load_cpu)
    plain = muxs("muxs", "--event-loop", "asyncio")  # what `pip install muxs` runs
    fast = ("--event-loop", "uvloop") if UVLOOP else ()
    fast_kind = muxs("muxs-fast", *fast)  # muxs[fast]
    variants = [muxs("asyncio", "--event-loop", "asyncio")]
    if UVLOOP:
        variants.append(muxs("uvloop", "--event-loop", "uvloop"))
    # What the default features cost on top of muxs-fast: the access log (on by default)
    # and the metrics (off by default).
    features = [
        muxs("no-access-log", *fast, "--no-access-log"),
        muxs("metrics-on", *fast, "--metrics-port", "0"),
    ]
    plain_quiet = muxs("muxs-no-access-log", "--event-loop", "asyncio", "--no-access-log")
    all_scenarios = scenarios(sizes, loads)
    intercepted = [intercepted_muxs(count) for count in (0, 1, 3)]
    return [
        Suite(
            "server",
            "the server per core: muxs and muxs[fast] against grpcio.aio (one server core)",
            [plain, fast_kind, GRPCIO_AIO],
            all_scenarios,
            [(k.name, GRPCIO_AIO.name) for k in (plain, fast_kind)],
            pinned,
            spread=True,
        ),
        Suite(
            "main",
            "muxs vs grpcio vs the grpclib floor (one server core)",
            [plain, fast_kind, GRPCIO_AIO, GRPCIO_SYNC, FLOOR],
            all_scenarios,
            [("muxs-fast", k.name) for k in (GRPCIO_AIO, GRPCIO_SYNC, FLOOR)]
            + [("muxs", FLOOR.name)],
            pinned,
        ),
        Suite(
            "workers",
            "muxs serve --workers 2 vs 1 (servers on every core)",
            [
                muxs("workers-2", "--workers", "2", *fast),
                muxs("workers-1", "--workers", "1", *fast),
            ],
            [unary(16, 4, sizes)],
            [("workers-2", "workers-1")],
            Placement(every_cpu, load_cpu),
        ),
        Suite(
            "levers",
            "muxs levers: the event loop (one server core)",
            variants,
            [s for s in all_scenarios if s.key in ("unary-4x16", "server-stream", "read-stream")],
            [(v.name, variants[0].name) for v in variants[1:]],
            pinned,
        ),
        Suite(
            "features",
            "muxs-fast with its access log off, and with metrics on (one server core)",
            [fast_kind, *features],
            [s for s in all_scenarios if s.key in ("unary-4x16", "server-stream")],
            [("muxs-fast", "no-access-log"), ("metrics-on", "muxs-fast")],
            pinned,
        ),
        Suite(
            "access-log",
            "the plain install with its access log on (the default) and off (one server core)",
            [plain, plain_quiet],
            [s for s in all_scenarios if s.key.startswith("unary-") or s.key == "server-stream"],
            [("muxs", plain_quiet.name)],
            pinned,
            spread=True,
        ),
        Suite(
            "interceptors",
            "muxs with 0, 1 and 3 no-op server interceptors (one server core)",
            intercepted,
            [s for s in all_scenarios if s.key == "unary-4x16"],
            [(kind.name, intercepted[0].name) for kind in intercepted[1:]],
            pinned,
        ),
    ] + (
        [
            Suite(
                "base",
                f"muxs and muxs[fast]: this tree beside {base} (one server core)",
                base_kinds(base),
                [s for key in BASE_SCENARIOS for s in all_scenarios if s.key == key],
                [("muxs", "muxs-base"), ("muxs-fast", "muxs-fast-base")],
                pinned,
            )
        ]
        if base is not None
        else []
    )


def conditions(quick: bool, runs: int) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "runs": runs,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "versions": versions,
        "h2load": shutil.which("h2load"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI-size: 1 run of 1 s per figure")
    parser.add_argument("--runs", type=int, help="runs per figure (median taken); 3, quick 1")
    parser.add_argument(
        "--suite",
        action="append",
        choices=[
            "server",
            "main",
            "workers",
            "levers",
            "features",
            "access-log",
            "interceptors",
            "clients",
            "base",
        ],
        help="suite to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        help="only this scenario of each suite (repeatable, e.g. write-stream; default: all)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--base",
        type=Path,
        help="an earlier commit's checkout, with its venv in BASE/.venv (pip install -e"
        ' "BASE[fast]"): adds the suite base',
    )
    args = parser.parse_args(argv)
    if args.base is not None and not (args.base / ".venv" / "bin" / "python").is_file():
        parser.error(f"--base: no venv at {args.base / '.venv'}")
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    h2load_suites = args.suite is None or any(s != "clients" for s in args.suite)
    if h2load_suites and shutil.which("h2load") is None:
        parser.exit(2, "bench: h2load not found: apt-get install nghttp2-client\n")
    runs = args.runs or (1 if args.quick else 3)
    mode = "quick" if args.quick else "full"
    chosen = [s for s in suites(args.quick, args.base) if not args.suite or s.name in args.suite]
    if args.scenario:
        chosen = [
            dataclasses.replace(
                suite, scenarios=[s for s in suite.scenarios if s.key in args.scenario]
            )
            for suite in chosen
        ]
    server_cpu, load_cpu, _ = _cpus()
    if load_cpu is not None:
        os.sched_setaffinity(0, {int(load_cpu)})
    document: dict[str, Any] = {"conditions": conditions(args.quick, runs), "suites": {}}
    markdown = []
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="muxs-bench-", dir=scratch) as tmp:
        workdir = Path(tmp)
        stubs = grpcio_stubs(workdir / "stubs")
        for suite in chosen:
            log.info("suite %s: %s", suite.name, suite.title)
            suite_dir = workdir / suite.name
            suite_dir.mkdir()
            cells = benchmark(suite.kinds, suite.scenarios, runs, suite_dir, stubs, suite.placement)
            rows = report.rows(suite.scenarios, cells)
            servers = [k.name for k in suite.kinds]
            markdown.append(
                f"### {suite.title}\n\n{report.table(rows, servers, suite.ratios, suite.spread)}\n"
            )
            print("\n" + markdown[-1])
            report.chart(args.out / f"{mode}-{suite.name}.png", suite.title, rows, servers)
            document["suites"][suite.name] = {
                "title": suite.title,
                "servers": {k.name: k.description for k in suite.kinds},
                "placement": {"server": suite.placement.server, "load": suite.placement.load},
                "rows": [row.as_json(suite.ratios) for row in rows],
            }
        if args.suite is None or "clients" in args.suite:
            title = "clients against one grpcio sync server (client and server on a core each)"
            log.info("suite clients: %s", title)
            (workdir / "clients").mkdir()
            seconds = 1.0 if args.quick else 3.0
            figures = clients.benchmark(
                workdir / "clients", stubs, server_cpu, load_cpu, runs, seconds
            )
            markdown.append(f"### {title}\n\n{clients.table(figures, CLIENTS)}\n")
            print("\n" + markdown[-1])
            document["suites"]["clients"] = {"title": title, "figures": clients.as_json(figures)}
    document["conditions"]["load_average_at_end"] = os.getloadavg()
    report.write_json(args.out / f"{mode}.json", document)
    (args.out / f"{mode}.md").write_text("\n".join(markdown))
    print(f"bench: wrote {mode}.json, {mode}.md and charts in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
