"""Run h2load with a pre-encoded gRPC request body and read its figures."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


@dataclass(frozen=True)
class Load:
    """How hard to push: connections x concurrent streams each, for ``duration`` seconds."""

    clients: int
    streams: int
    duration: float
    warm_up: float


@dataclass(frozen=True)
class Measured:
    requests_per_second: float
    succeeded: int
    failed: int
    data_bytes: int
    latencies_us: list[int]

    def percentile_ms(self, fraction: float) -> float | None:
        if not self.latencies_us:
            return None
        ordered = sorted(self.latencies_us)
        index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
        return ordered[index] / 1000


_FINISHED = re.compile(r"^finished in [\d.]+\w+, ([\d.]+) req/s", re.M)
_REQUESTS = re.compile(
    r"^requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", re.M
)
_DATA = re.compile(r"^traffic: .*, [\d.]+\w* \((\d+)\) data", re.M)


def run_h2load(
    url: str, body: Path, load: Load, log_file: Path, cpus: str | None, timeout: float
) -> Measured:
    """One h2load run (pinned to ``cpus`` with taskset when given) against ``url``."""
    command = [
        "h2load",
        f"--clients={load.clients}",
        f"--max-concurrent-streams={load.streams}",
        f"--duration={round(load.duration * 1000)}ms",
        f"--warm-up-time={round(load.warm_up * 1000)}ms",
        f"--data={body}",
        f"--log-file={log_file}",
    ]
    for header in GRPC_HEADERS:
        command.append(f"--header={header}")
    command.append(url)
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    return parse(done.stdout + done.stderr, log_file, done.returncode)


def parse(output: str, log_file: Path, returncode: int = 0) -> Measured:
    finished, requests, data = (p.search(output) for p in (_FINISHED, _REQUESTS, _DATA))
    if returncode != 0 or not (finished and requests and data):
        raise RuntimeError(f"h2load failed (exit {returncode}): {output.strip()[-500:]}")
    latencies = []
    if log_file.exists():
        for line in log_file.read_text().splitlines():
            _start, status, elapsed = line.split("\t")
            if status == "200":
                latencies.append(int(elapsed))
    failed = sum(int(n) for n in requests.groups()[1:])
    return Measured(
        float(finished.group(1)), int(requests.group(1)), failed, int(data.group(1)), latencies
    )
