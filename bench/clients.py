"""The client suite: muxs's SDK beside grpcio's clients and raw grpclib, against one server.

One grpcio sync server (thread pool of 10) is pinned to the server CPU; each client runs in
its own process (``bench.client_load``) pinned to the load CPU, one at a time, scenario by
scenario, the clients interleaved in every round so that drift on a shared machine hits them
alike. A figure is the median of the rounds with its min-max; ``per CPU`` divides what the
client did by the CPU seconds its process used (every thread), ``wall`` by the seconds it ran.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client_load import BLOB, BLOB_BYTES, CLIENTS, SCENARIOS, shadow_checkout
from bench.servers import GRPCIO_SYNC, running

log = logging.getLogger(__name__)

TITLES = {
    "unary-1": ("SayHello, sequential", "calls"),
    "unary-64": ("SayHello, 64 in flight", "calls"),
    "server-stream": ("LotsOfReplies x1000", "replies"),
    "download": ("download 8 MiB", "MB"),
    "upload": ("upload 8 MiB", "MB"),
}
#: (subject, reference) pairs whose ratios the tables print.
RATIOS = (
    ("muxs", "grpcio-aio"),
    ("grpclib", "grpcio-aio"),
    ("muxs-sync", "grpcio-sync"),
    ("muxs", "muxs@base"),
    ("muxs-sync", "muxs-sync@base"),
)
RUN_TIMEOUT = 120.0
#: ``client@suffix`` runs ``client`` with this PYTHONPATH first (another checkout's muxs).
BASE_PATHS: dict[str, str] = {}


@dataclass
class Figures:
    """One client on one scenario: each round's figures."""

    per_cpu: list[float] = field(default_factory=list)
    per_second: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "error"
    median = statistics.median(values)
    text = f"{median:,.0f}" if median >= 100 else f"{median:.1f}"
    if len(values) > 1:
        low, high = min(values), max(values)
        text += f" ({low:,.0f}-{high:,.0f})" if median >= 100 else f" ({low:.1f}-{high:.1f})"
    return text


def _ratio(values: Sequence[float], reference: Sequence[float]) -> str:
    if not values or not reference:
        return "n/a"
    return f"{statistics.median(values) / statistics.median(reference):.2f}"


def table(figures: dict[str, dict[str, Figures]], clients: Sequence[str]) -> str:
    """Markdown: per scenario, per-CPU and wall rates of each client, and the ratios."""
    ratios = [(a, b) for a, b in RATIOS if a in clients and b in clients]
    header = ["figure", "unit", *clients, *(f"{a}/{b}" for a, b in ratios)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for scenario, by_client in figures.items():
        title, unit = TITLES[scenario]
        for label, attribute, per in (
            ("per CPU", "per_cpu", "/CPU-s"),
            ("wall", "per_second", "/s"),
        ):
            runs = {name: getattr(by_client[name], attribute) for name in clients}
            cells = [_spread(runs[name]) for name in clients]
            cells += [_ratio(runs[a], runs[b]) for a, b in ratios]
            lines.append(f"| {title} {label} | {unit}{per} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure(
    client: str,
    scenario: str,
    port: int,
    stubs: Path,
    local: Path,
    cpu: str | None,
    seconds: float,
) -> dict[str, Any]:
    """One run of ``client`` on ``scenario`` in its own process: its JSON figures."""
    name, at, suffix = client.partition("@")
    env, cwd = dict(os.environ), None
    if at:  # the other checkout's muxs first, then this tree's bench
        cwd = BASE_PATHS["@" + suffix]
        env["PYTHONPATH"] = os.pathsep.join([cwd, str(Path(__file__).resolve().parents[1])])
    command = [
        sys.executable,
        "-m",
        "bench.client_load",
        name,
        scenario,
        "--port",
        str(port),
        "--stubs",
        str(stubs),
        "--local",
        str(local / client),
        "--seconds",
        str(seconds),
    ]
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=cwd
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def benchmark(
    workdir: Path,
    stubs: Path,
    server_cpu: str | None,
    load_cpu: str | None,
    runs: int,
    seconds: float,
    clients: Sequence[str] = CLIENTS,
    scenarios: Sequence[str] = SCENARIOS,
) -> dict[str, dict[str, Figures]]:
    """``{scenario: {client: Figures}}`` of ``runs`` interleaved rounds."""
    figures = {s: {c: Figures() for c in clients} for s in scenarios}
    with running(GRPCIO_SYNC, workdir, stubs, server_cpu) as server:
        (server.root / BLOB).write_bytes(bytes(BLOB_BYTES))
        for round_ in range(1, runs + 1):
            for scenario in scenarios:
                for client in clients:
                    log.info("round %d/%d: %s with %s", round_, runs, scenario, client)
                    cell = figures[scenario][client]
                    try:
                        got = measure(
                            client, scenario, server.port, stubs, workdir, load_cpu, seconds
                        )
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        log.warning("%s on %s: %s", client, scenario, exc)
                        cell.errors.append(str(exc))
                        continue
                    if got["cpu"] > 0:
                        cell.per_cpu.append(got["units"] / got["cpu"])
                    cell.per_second.append(got["units"] / got["wall"])
    return figures


def as_json(figures: dict[str, dict[str, Figures]]) -> dict[str, Any]:
    return {
        scenario: {
            client: {"per_cpu": f.per_cpu, "per_second": f.per_second, "errors": f.errors}
            for client, f in by_client.items()
        }
        for scenario, by_client in figures.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.clients``: the client suite alone, some clients or scenarios, and
    muxs's clients of another checkout beside this tree's (``--base DIR``: ``muxs@base``)."""
    import argparse
    import tempfile

    from bench.__main__ import RESULTS, _cpus
    from bench.report import write_json
    from tools.codegen import grpcio_stubs

    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--client", action="append", help=f"of {', '.join(CLIENTS)}")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--base", type=Path, help="a checkout whose muxs runs as muxs@base")
    parser.add_argument("--out", type=Path, help="write the JSON and Markdown here (stem)")
    parser.add_argument(
        "--unpinned", action="store_true", help="clients on every CPU (the server still on one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    chosen = list(args.client or CLIENTS)
    with tempfile.TemporaryDirectory(prefix="muxs-clients-", dir="/dev/shm") as tmp:
        workdir = Path(tmp)
        if args.base is not None:
            BASE_PATHS["@base"] = str(shadow_checkout(args.base, workdir))
            chosen += [f"{c}@base" for c in chosen if c.startswith("muxs")]
        server_cpu, load_cpu, every_cpu = _cpus()
        if args.unpinned:
            load_cpu = every_cpu
        elif load_cpu is not None:
            os.sched_setaffinity(0, {int(load_cpu)})
        stubs = grpcio_stubs(workdir / "stubs")
        figures = benchmark(
            workdir,
            stubs,
            server_cpu,
            load_cpu,
            args.runs,
            args.seconds,
            chosen,
            args.scenario or SCENARIOS,
        )
    text = table(figures, chosen)
    print(text)
    out = args.out or RESULTS / "clients"
    write_json(out.with_suffix(".json"), {"clients": as_json(figures)})
    out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
